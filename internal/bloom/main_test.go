package bloom_test

import (
	"os"
	"testing"

	"github.com/cairnfs/cairn/internal/testserver"
)

func TestMain(m *testing.M) { os.Exit(testserver.Run(m)) }
