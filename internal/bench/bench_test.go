package bench

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// fakeWait is the wait of runs in a synctest bubble, whose clock only
// time.Sleep advances.
func fakeWait(t time.Time) { time.Sleep(time.Until(t)) }

// sleeper is a target taking d to answer.
func sleeper(d time.Duration) Target {
	return func(context.Context) error {
		time.Sleep(d)
		return nil
	}
}

func TestRunSendsAtTheRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		res, err := Run(t.Context(), Load{Rate: 100, Duration: time.Second, Wait: fakeWait}, sleeper(5*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		if res.Count != 100 || res.Errors != 0 {
			t.Fatalf("count %d, errors %d; want 100 and 0", res.Count, res.Errors)
		}
		// The last request falls due at 990ms and takes 5ms.
		if res.Elapsed != 995*time.Millisecond {
			t.Errorf("elapsed %v, want 995ms", res.Elapsed)
		}
		if got := res.Latency.Summary(); got != (Summary{5 * time.Millisecond, 5 * time.Millisecond, 5 * time.Millisecond, 5 * time.Millisecond, 5 * time.Millisecond}) {
			t.Errorf("latency %+v, want 5ms throughout", got)
		}
		if res.Lag.Max() != 0 {
			t.Errorf("lag up to %v, want every request sent when due", res.Lag.Max())
		}
		if a := res.Achieved(); a != 100 {
			t.Errorf("achieved %v requests/s, want 100", a)
		}
	})
}

// A request that fell due while every slot was taken counts the time it
// waited for one: with one slot, requests due every 10ms and a target
// taking 20ms, request i is sent at 20i ms, answered at 20i+20 ms, and was
// due at 10i ms. A closed-loop generator would report 20ms throughout.
func TestRunCountsLatencyFromTheDueTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		res, err := Run(t.Context(), Load{Rate: 100, Duration: 100 * time.Millisecond, MaxInFlight: 1, Wait: fakeWait}, sleeper(20*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		if res.Count != 10 {
			t.Fatalf("count %d, want 10", res.Count)
		}
		for i, d := range res.Latency {
			if want := time.Duration(10*i+20) * time.Millisecond; d != want {
				t.Errorf("latency #%d = %v, want %v", i, d, want)
			}
			if want := time.Duration(10*i) * time.Millisecond; res.Lag[i] != want {
				t.Errorf("lag #%d = %v, want %v", i, res.Lag[i], want)
			}
		}
		if res.Elapsed != 200*time.Millisecond {
			t.Errorf("elapsed %v, want 200ms", res.Elapsed)
		}
		if a := res.Achieved(); a != 50 {
			t.Errorf("achieved %v requests/s, want 50", a)
		}
	})
}

// Open loop: one slow answer does not hold back the requests due after it.
func TestRunDoesNotWaitForSlowAnswers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var calls atomic.Int32
		target := func(context.Context) error {
			d := time.Millisecond
			if calls.Add(1) == 1 {
				d = 100 * time.Millisecond
			}
			time.Sleep(d)
			return nil
		}
		res, err := Run(t.Context(), Load{Rate: 1000, Duration: 200 * time.Millisecond, Wait: fakeWait}, target)
		if err != nil {
			t.Fatal(err)
		}
		if res.Count != 200 || res.Lag.Max() != 0 {
			t.Errorf("count %d, lag up to %v; want 200 requests, each sent when due", res.Count, res.Lag.Max())
		}
		if res.Latency.Percentile(99) != time.Millisecond || res.Latency.Max() != 100*time.Millisecond {
			t.Errorf("latency p99 %v max %v, want 1ms and 100ms", res.Latency.Percentile(99), res.Latency.Max())
		}
	})
}

func TestRunCountsErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var calls atomic.Int32
		target := func(context.Context) error {
			n := calls.Add(1)
			time.Sleep(time.Millisecond)
			if n%4 == 0 {
				return errors.New("boom")
			}
			return nil
		}
		res, err := Run(t.Context(), Load{Rate: 100, Duration: time.Second, Wait: fakeWait}, target)
		if err != nil {
			t.Fatal(err)
		}
		if res.Count != 100 || res.Errors != 25 || res.FirstError == nil || res.FirstError.Error() != "boom" {
			t.Errorf("count %d, errors %d, first %v; want 100, 25, boom", res.Count, res.Errors, res.FirstError)
		}
		if len(res.Latency) != 100 {
			t.Errorf("%d latencies, want failed requests timed too", len(res.Latency))
		}
	})
}

func TestRunStopsWithItsContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 505*time.Millisecond)
		defer cancel()
		res, err := Run(ctx, Load{Rate: 100, Duration: time.Hour, Wait: fakeWait}, sleeper(time.Millisecond))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err %v, want the context's", err)
		}
		if res.Count != 51 {
			t.Errorf("count %d, want the 51 requests due in 505ms", res.Count)
		}
	})
}

func TestLoadValidate(t *testing.T) {
	err := Load{Rate: -1, Duration: 0, MaxInFlight: -2}.Validate()
	for _, want := range []string{"rate -1", "duration 0s", "max in flight -2"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want it to mention %q", err, want)
		}
	}
	if err := (Load{Rate: 1e9, Duration: time.Hour, MaxInFlight: 1}).Validate(); err == nil {
		t.Error("3.6e12 requests accepted")
	}
	if _, err := Run(context.Background(), Load{Rate: 10}, sleeper(0)); err == nil {
		t.Error("Run without a duration did not fail")
	}
}

// On Linux the default wait sends requests within a fraction of a
// millisecond of their due time; Go's timers alone are often a millisecond
// late. Real time: the median is robust to the odd late wake-up, and of
// three tries one must be precise, since a machine busy with other work
// delays every wake-up of one try alike.
func TestRunDefaultWaitIsPrecise(t *testing.T) {
	var lags []time.Duration
	for range 3 {
		res, err := Run(t.Context(), Load{Rate: 1000, Duration: 200 * time.Millisecond}, func(context.Context) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		if res.Count != 200 {
			t.Fatalf("count %d, want 200", res.Count)
		}
		lag := res.Lag.Percentile(50)
		if lag <= 400*time.Microsecond {
			return
		}
		lags = append(lags, lag)
	}
	t.Errorf("median lags %v in three tries, want requests sent within 400µs of their due time in one", lags)
}
