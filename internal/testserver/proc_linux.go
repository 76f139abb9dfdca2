package testserver

import (
	"os"
	"syscall"
)

// stopSignal asks a server to exit cleanly.
var stopSignal os.Signal = syscall.SIGTERM

// sysProcAttr makes the kernel kill a server when the thread that started it
// exits, which happens at the latest when the test binary exits.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
