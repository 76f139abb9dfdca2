//go:build !unix

package testserver

import "syscall"

// pauseSignal and resumeSignal have no equivalent outside Unix: sending them
// fails, so Pause and Resume fail the test.
var (
	pauseSignal  = syscall.Signal(-1)
	resumeSignal = syscall.Signal(-1)
)
