//go:build !linux

package bench

import "errors"

// pinSupported reports whether [pinProcess] can pin processes here.
const pinSupported = false

var errNoPin = errors.New("bench: --pin: processes are pinned to CPUs on Linux only")

func pinProcess(int, []int) error { return errNoPin }

func allowedCPUs() ([]int, error) { return nil, errNoPin }
