package bloom

import (
	"sync"
	"time"
)

// logInterval is the least time between two lines of one warning that a
// failing dependency could otherwise emit on every poll or fetch.
const logInterval = 10 * time.Second

// logLimiter lets one line through per interval and counts the rest.
type logLimiter struct {
	every time.Duration

	mu struct {
		sync.Mutex
		last       time.Time
		suppressed int
	}
}

// allow reports whether a line may be logged at now and, if so, how many
// were suppressed since the last one.
func (l *logLimiter) allow(now time.Time) (suppressed int, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.mu.last.IsZero() && now.Sub(l.mu.last) < l.every {
		l.mu.suppressed++
		return 0, false
	}
	n := l.mu.suppressed
	l.mu.last, l.mu.suppressed = now, 0
	return n, true
}
