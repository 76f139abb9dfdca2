package hedge

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

const wait = 100 * time.Millisecond

func newHedger(t *testing.T, maxInFlight int) *Hedger {
	t.Helper()
	h, err := New("test", Config{Wait: wait, MaxInFlight: maxInFlight}, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func count(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// call is a scripted fn: copy i (0 the first, 1 the second) answers after
// delays[i] with errs[i] (nil for success), or gives up when its context
// is cancelled.
type call struct {
	delays    []time.Duration
	errs      []error
	n         atomic.Int32
	cancelled [2]atomic.Bool
}

func (c *call) fn(ctx context.Context) (int, error) {
	i := int(c.n.Add(1)) - 1
	select {
	case <-time.After(c.delays[i]):
		return i, c.errs[i]
	case <-ctx.Done():
		c.cancelled[i].Store(true)
		return -1, ctx.Err()
	}
}

func TestDo(t *testing.T) {
	boom, bang := errors.New("boom"), errors.New("bang")
	tests := []struct {
		name        string
		delays      []time.Duration
		errs        []error
		want        int // the copy whose answer wins
		wantErr     error
		wantElapsed time.Duration
		wantCopies  int32
		wantWon     float64 // races won by the second copy
		wantCancel  int     // the copy cancelled, -1 for none
	}{
		{name: "fast first copy, no race", delays: []time.Duration{wait / 2}, errs: []error{nil},
			want: 0, wantElapsed: wait / 2, wantCopies: 1, wantCancel: -1},
		{name: "straggler beaten by the second copy", delays: []time.Duration{time.Second, 10 * time.Millisecond}, errs: []error{nil, nil},
			want: 1, wantElapsed: wait + 10*time.Millisecond, wantCopies: 2, wantWon: 1, wantCancel: 0},
		{name: "first copy answers during the race", delays: []time.Duration{wait + 5*time.Millisecond, time.Second}, errs: []error{nil, nil},
			want: 0, wantElapsed: wait + 5*time.Millisecond, wantCopies: 2, wantCancel: 1},
		{name: "early failure is not raced", delays: []time.Duration{wait / 2}, errs: []error{boom},
			wantErr: boom, wantElapsed: wait / 2, wantCopies: 1, wantCancel: -1},
		{name: "first copy fails during the race, second answers", delays: []time.Duration{wait + time.Millisecond, 50 * time.Millisecond}, errs: []error{boom, nil},
			want: 1, wantElapsed: wait + 50*time.Millisecond, wantCopies: 2, wantWon: 1, wantCancel: -1},
		{name: "second copy fails, first answers", delays: []time.Duration{wait + 50*time.Millisecond, time.Millisecond}, errs: []error{nil, bang},
			want: 0, wantElapsed: wait + 50*time.Millisecond, wantCopies: 2, wantCancel: -1},
		{name: "both fail: the first copy's error", delays: []time.Duration{wait + 50*time.Millisecond, time.Millisecond}, errs: []error{boom, bang},
			wantErr: boom, wantElapsed: wait + 50*time.Millisecond, wantCopies: 2, wantCancel: -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHedger(t, 1)
				c := &call{delays: tc.delays, errs: tc.errs}
				start := time.Now()
				got, err := Do(context.Background(), h, c.fn)
				elapsed := time.Since(start)
				synctest.Wait() // let the loser see its cancellation
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("error %v, want %v", err, tc.wantErr)
				}
				if err == nil && got != tc.want {
					t.Errorf("answer of copy %d, want copy %d", got, tc.want)
				}
				if elapsed != tc.wantElapsed {
					t.Errorf("answered after %v, want %v", elapsed, tc.wantElapsed)
				}
				if n := c.n.Load(); n != tc.wantCopies {
					t.Errorf("%d copies run, want %d", n, tc.wantCopies)
				}
				if n := count(t, h.started); n != float64(tc.wantCopies-1) {
					t.Errorf("races started = %v, want %d", n, tc.wantCopies-1)
				}
				if n := count(t, h.won); n != tc.wantWon {
					t.Errorf("races won by the second copy = %v, want %v", n, tc.wantWon)
				}
				for i := range c.cancelled {
					if got := c.cancelled[i].Load(); got != (i == tc.wantCancel) {
						t.Errorf("copy %d cancelled = %v", i, got)
					}
				}
			})
		})
	}
}

// Second copies in flight are bounded: a call due one while the bound is
// reached goes on alone.
func TestMaxInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHedger(t, 1)
		// Both copies of the first call hang until released.
		release := make(chan struct{})
		hung := func(ctx context.Context) (int, error) {
			select {
			case <-release:
				return 1, nil
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			if _, err := Do(context.Background(), h, hung); err != nil {
				t.Error(err)
			}
		}()
		time.Sleep(wait + time.Millisecond) // the first call's hedge is in flight
		c := &call{delays: []time.Duration{3 * wait, time.Millisecond}, errs: []error{nil, nil}}
		start := time.Now()
		got, err := Do(context.Background(), h, c.fn)
		if err != nil || got != 0 {
			t.Fatalf("got copy %d, %v; want the first copy's answer", got, err)
		}
		if d := time.Since(start); d != 3*wait {
			t.Errorf("answered after %v, want %v (no second copy)", d, 3*wait)
		}
		if n := count(t, h.skipped); n != 1 {
			t.Errorf("skipped = %v, want 1", n)
		}
		if n := count(t, h.started); n != 1 {
			t.Errorf("started = %v, want 1 (the first call's)", n)
		}
		close(release)
		<-done
	})
}

// Cancelling the caller's context ends both copies.
func TestCallerCancels(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHedger(t, 2)
		c := &call{delays: []time.Duration{time.Hour, time.Hour}, errs: []error{nil, nil}}
		ctx, cancel := context.WithTimeout(context.Background(), 2*wait)
		defer cancel()
		_, err := Do(ctx, h, c.fn)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("error %v, want the deadline", err)
		}
		synctest.Wait()
		if !c.cancelled[0].Load() || !c.cancelled[1].Load() {
			t.Error("a copy kept running after the caller gave up")
		}
	})
}

func TestConfigValidate(t *testing.T) {
	err := Config{Wait: -time.Second}.Validate()
	for _, want := range []string{"wait -1s", "max in flight 0"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %q", err, want)
		}
	}
	if _, err := New("x", Config{}, nil); err == nil {
		t.Error("New accepted a zero Config")
	}
}

// Two hedgers of different names share one registry.
func TestMetricsPerName(t *testing.T) {
	reg := prometheus.NewRegistry()
	for _, name := range []string{"a", "b"} {
		if _, err := New(name, Config{Wait: wait, MaxInFlight: 1}, reg); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := New("a", Config{Wait: wait, MaxInFlight: 1}, reg); err == nil {
		t.Error("a second hedger named a registered its metrics")
	}
}
