//go:build !linux

package testserver

import (
	"os"
	"syscall"
)

// stopSignal asks a server to exit cleanly.
var stopSignal os.Signal = os.Interrupt

// sysProcAttr has nothing to add outside Linux: a test binary that dies
// without running Run's cleanup may leave its servers running.
func sysProcAttr() *syscall.SysProcAttr { return nil }
