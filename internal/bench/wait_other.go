//go:build !linux

package bench

import "time"

// lockPreciseThread does nothing outside Linux.
func lockPreciseThread() {}

// sleepUntil sleeps until t with Go's timers.
func sleepUntil(t time.Time) { time.Sleep(time.Until(t)) }
