// Package lograte rate-limits a log line that a failing dependency could
// otherwise emit per request or per poll: while a broker or a store is down
// every fetch, produce or read fails, and a line per failure would flood the
// log with what the metrics already count. A limited line passes once per
// interval and carries the number of lines held back since the last one.
//
// The caller writes the line itself, after asking:
//
//	if ok, suppressed := l.Allow(time.Now()); ok {
//		log.Warn("store write failed", "err", err, "suppressed", suppressed)
//	}
package lograte

import (
	"sync"
	"time"
)

// Limiter lets one log line through per Interval and counts the calls it
// holds back in between. The first call always passes.
//
// A Limiter is safe for concurrent use. Its zero value, with Interval set,
// is ready to use; it must not be copied after first use.
type Limiter struct {
	// Interval is the least time between two lines let through. Zero lets
	// every line through.
	Interval time.Duration

	mu struct {
		sync.Mutex
		line line
	}
}

// Allow reports whether the line may be written at now and, if so, how many
// calls were held back since the last line let through.
func (l *Limiter) Allow(now time.Time) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.mu.line.allowLocked(now, l.Interval)
}

// Keyed is a [Limiter] per key: one line per key per Interval, so that the
// failures of one key (a namespace, a partition) do not hide another's.
//
// Keys must come from a bounded set, such as the namespaces of the feature
// registry: Keyed keeps the state of every key it has seen and never
// forgets one. Never key it by something a client sends.
//
// A Keyed is safe for concurrent use. Its zero value, with Interval set, is
// ready to use; it must not be copied after first use.
type Keyed struct {
	// Interval is the least time between two lines of one key let through.
	// Zero lets every line through.
	Interval time.Duration

	mu struct {
		sync.Mutex
		lines map[string]*line
	}
}

// Allow reports whether key's line may be written at now and, if so, how
// many calls for key were held back since its last line let through.
func (k *Keyed) Allow(key string, now time.Time) (ok bool, suppressed int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	st := k.mu.lines[key]
	if st == nil {
		if k.mu.lines == nil {
			k.mu.lines = map[string]*line{}
		}
		st = &line{}
		k.mu.lines[key] = st
	}
	return st.allowLocked(now, k.Interval)
}

// line is the state of one limited log line, guarded by its owner's lock.
type line struct {
	passed     bool      // a line was let through, at last
	last       time.Time // when the last line was let through
	suppressed int       // calls held back since last
}

func (st *line) allowLocked(now time.Time, interval time.Duration) (ok bool, suppressed int) {
	if st.passed && now.Sub(st.last) < interval {
		st.suppressed++
		return false, 0
	}
	suppressed = st.suppressed
	st.passed, st.last, st.suppressed = true, now, 0
	return true, suppressed
}
