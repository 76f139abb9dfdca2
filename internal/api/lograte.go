package api

import (
	"sync"
	"time"
)

// namespaceLimiter rate-limits a log line per namespace: during a store
// outage every query fails, and a line per failed read would flood the log
// with what cairn_query_namespace_reads_total already counts.
type namespaceLimiter struct {
	interval time.Duration
	now      func() time.Time

	mu struct {
		sync.Mutex
		byNS map[string]*lineState
	}
}

// lineState is one namespace's log line: when it was last written, and how
// many were suppressed since.
type lineState struct {
	last       time.Time
	suppressed int
}

func newNamespaceLimiter(interval time.Duration, now func() time.Time) *namespaceLimiter {
	l := &namespaceLimiter{interval: interval, now: now}
	l.mu.byNS = map[string]*lineState{}
	return l
}

// allow reports whether ns's line may be written now and, if so, how many
// were suppressed since the last one written.
func (l *namespaceLimiter) allow(ns string) (ok bool, suppressed int) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.mu.byNS[ns] // namespaces come from the registry: the map is bounded
	if st == nil {
		st = &lineState{}
		l.mu.byNS[ns] = st
	} else if now.Sub(st.last) < l.interval {
		st.suppressed++
		return false, 0
	}
	suppressed, st.suppressed, st.last = st.suppressed, 0, now
	return true, suppressed
}
