package ui

import (
	"os"
	"testing"

	"github.com/cairnfs/cairn/internal/testserver"
)

// The browser test starts moto and the cairn binary through testserver.
func TestMain(m *testing.M) { os.Exit(testserver.Run(m)) }
