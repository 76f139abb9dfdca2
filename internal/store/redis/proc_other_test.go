//go:build !linux

package redis

import "syscall"

// serverProcAttr has nothing to add outside Linux.
func serverProcAttr() *syscall.SysProcAttr { return nil }
