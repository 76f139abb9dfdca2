package bench

import (
	"runtime"
	"syscall"
	"time"
)

// prSetTimerSlack is prctl's PR_SET_TIMERSLACK.
const prSetTimerSlack = 29

// lockPreciseThread keeps the calling goroutine on its thread and makes
// the thread's sleeps end within a nanosecond of their deadline rather
// than the default 50µs. The goroutine must not unlock the thread: when
// it ends, the runtime discards the thread, and the slack with it.
func lockPreciseThread() {
	runtime.LockOSThread()
	_, _, _ = syscall.Syscall(syscall.SYS_PRCTL, prSetTimerSlack, 1, 0) // best effort
}

// sleepUntil blocks the thread in nanosleep until t. Go's timers would
// round a wait under a millisecond up to one when nothing else wakes the
// process (the network poller waits in whole milliseconds).
func sleepUntil(t time.Time) {
	for {
		d := time.Until(t)
		if d <= 0 {
			return
		}
		ts := syscall.NsecToTimespec(int64(d))
		_ = syscall.Nanosleep(&ts, nil) // interrupted: the loop sleeps the rest
	}
}
