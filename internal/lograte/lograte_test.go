package lograte_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cairnfs/cairn/internal/lograte"
)

// call is one Allow at t0+at and what it should answer.
type call struct {
	key        string
	at         time.Duration
	ok         bool
	suppressed int
}

func TestAllow(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1000, 0)
	for _, tc := range []struct {
		name     string
		interval time.Duration
		calls    []call
	}{{
		name:     "one line per interval, with the count held back",
		interval: 10 * time.Second,
		calls: []call{
			{at: 0, ok: true},
			{at: time.Second},
			{at: 9 * time.Second},
			{at: 10 * time.Second, ok: true, suppressed: 2},
			{at: 11 * time.Second},
			{at: 30 * time.Second, ok: true, suppressed: 1},
			{at: 41 * time.Second, ok: true},
		},
	}, {
		name:     "calls at the instant of the last line are held back",
		interval: 10 * time.Second,
		calls: []call{
			{at: 0, ok: true},
			{at: 0}, {at: time.Second}, {at: 2 * time.Second}, {at: 3 * time.Second}, {at: 4 * time.Second},
			{at: 10 * time.Second, ok: true, suppressed: 5},
		},
	}, {
		name:     "a clock stepped back holds lines back",
		interval: 10 * time.Second,
		calls: []call{
			{at: time.Minute, ok: true},
			{at: 0},
			{at: 70 * time.Second, ok: true, suppressed: 1},
		},
	}, {
		name:     "zero interval lets every line through",
		interval: 0,
		calls: []call{
			{at: 0, ok: true}, {at: 0, ok: true}, {at: time.Second, ok: true},
		},
	}, {
		name:     "keys are limited apart",
		interval: 10 * time.Second,
		calls: []call{
			{key: "a", at: 0, ok: true},
			{key: "b", at: time.Second, ok: true},
			{key: "a", at: 2 * time.Second},
			{key: "b", at: 3 * time.Second},
			{key: "b", at: 4 * time.Second},
			{key: "a", at: 10 * time.Second, ok: true, suppressed: 1},
			{key: "b", at: 10 * time.Second},
			{key: "b", at: 11 * time.Second, ok: true, suppressed: 3},
			{key: "c", at: 11 * time.Second, ok: true},
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			k := lograte.Keyed{Interval: tc.interval}
			oneKey := true
			for _, c := range tc.calls {
				ok, suppressed := k.Allow(c.key, t0.Add(c.at))
				if ok != c.ok || suppressed != c.suppressed {
					t.Errorf("Keyed.Allow(%q) at +%v = %v, %d; want %v, %d", c.key, c.at, ok, suppressed, c.ok, c.suppressed)
				}
				oneKey = oneKey && c.key == tc.calls[0].key
			}
			if !oneKey {
				return
			}
			l := lograte.Limiter{Interval: tc.interval}
			for _, c := range tc.calls {
				ok, suppressed := l.Allow(t0.Add(c.at))
				if ok != c.ok || suppressed != c.suppressed {
					t.Errorf("Limiter.Allow at +%v = %v, %d; want %v, %d", c.at, ok, suppressed, c.ok, c.suppressed)
				}
			}
		})
	}
}

// TestAllowConcurrent has many goroutines fail at once, as every request
// does during an outage: one line gets through, and the next one counts
// every other call.
func TestAllowConcurrent(t *testing.T) {
	t.Parallel()
	const goroutines, calls = 8, 100
	t0 := time.Unix(1000, 0)
	var l lograte.Limiter
	l.Interval = time.Second
	var k lograte.Keyed
	k.Interval = time.Second
	var (
		wg            sync.WaitGroup
		mu            sync.Mutex
		passed, keyed int
	)
	for range goroutines {
		wg.Go(func() {
			for range calls {
				ok, _ := l.Allow(t0)
				kok, _ := k.Allow("ns", t0)
				mu.Lock()
				passed += btoi(ok)
				keyed += btoi(kok)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if passed != 1 || keyed != 1 {
		t.Fatalf("lines let through at one instant: Limiter %d, Keyed %d; want 1 each", passed, keyed)
	}
	const want = goroutines*calls - 1
	if ok, n := l.Allow(t0.Add(time.Second)); !ok || n != want {
		t.Errorf("Limiter.Allow after the interval = %v, %d; want true, %d", ok, n, want)
	}
	if ok, n := k.Allow("ns", t0.Add(time.Second)); !ok || n != want {
		t.Errorf("Keyed.Allow after the interval = %v, %d; want true, %d", ok, n, want)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func ExampleLimiter() {
	l := lograte.Limiter{Interval: 10 * time.Second}
	t0 := time.Unix(0, 0)
	for _, at := range []time.Duration{0, time.Second, 2 * time.Second, 12 * time.Second} {
		if ok, suppressed := l.Allow(t0.Add(at)); ok {
			fmt.Printf("+%v: store write failed (suppressed %d)\n", at, suppressed)
		}
	}
	// Output:
	// +0s: store write failed (suppressed 0)
	// +12s: store write failed (suppressed 2)
}

func ExampleKeyed() {
	// Keys are namespaces from the feature registry: a bounded set.
	k := lograte.Keyed{Interval: 10 * time.Second}
	t0 := time.Unix(0, 0)
	for _, c := range []struct {
		ns string
		at time.Duration
	}{{"users", 0}, {"items", 0}, {"users", time.Second}, {"users", 10 * time.Second}} {
		if ok, suppressed := k.Allow(c.ns, t0.Add(c.at)); ok {
			fmt.Printf("+%v: %s: store read failed (suppressed %d)\n", c.at, c.ns, suppressed)
		}
	}
	// Output:
	// +0s: users: store read failed (suppressed 0)
	// +0s: items: store read failed (suppressed 0)
	// +10s: users: store read failed (suppressed 1)
}
