//go:build unix

package testserver

import "syscall"

// pauseSignal hangs a process; resumeSignal lets it go on.
var (
	pauseSignal  = syscall.SIGSTOP
	resumeSignal = syscall.SIGCONT
)
