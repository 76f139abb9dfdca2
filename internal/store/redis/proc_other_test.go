//go:build !linux

package redis

import (
	"syscall"
	"time"
)

// serverProcAttr has nothing to add outside Linux.
func serverProcAttr() *syscall.SysProcAttr { return nil }

// processCPU is not measured outside Linux: 0, and benchmarks report no
// CPU time.
func processCPU() time.Duration { return 0 }
