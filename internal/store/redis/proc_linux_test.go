package redis

import "syscall"

// serverProcAttr makes the kernel kill a test's own redis-server when the
// thread that started it exits, so that a crashed test leaves none behind.
func serverProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
