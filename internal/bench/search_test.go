package bench

import (
	"context"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// server is a target served by one worker taking service per request, in
// arrival order: it keeps up with any rate up to 1/service, and beyond it
// a queue builds up and latency grows with it.
func server(service time.Duration) Target {
	busy := make(chan struct{}, 1)
	return func(context.Context) error {
		busy <- struct{}{}
		time.Sleep(service)
		<-busy
		return nil
	}
}

func TestFindMaxRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var steps []Step
		best, err := FindMaxRate(t.Context(), Search{
			Start: 100, Step: time.Second, Bound: 5 * time.Millisecond, Wait: fakeWait,
			MaxInFlight: 1000, // the queue is the server's, not the generator's
			Progress:    func(s Step) { steps = append(steps, s) },
		}, server(time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		// Capacity is 1000 requests/s; 5% beyond it, a second's backlog
		// pushes p99 over 5ms.
		if best.Rate < 950 || best.Rate > 1010 || !best.Pass || best.Latency > 5*time.Millisecond {
			t.Errorf("best %v requests/s (pass %v, p99 %v), want about 1000", best.Rate, best.Pass, best.Latency)
		}
		var rates []float64
		for _, s := range steps {
			rates = append(rates, s.Rate)
		}
		// Doubling to the first failure, then bisecting.
		if len(steps) < 6 || rates[0] != 100 || rates[1] != 200 || rates[2] != 400 || rates[3] != 800 || rates[4] != 1600 || steps[4].Pass {
			t.Errorf("rates tried %v, want 100, 200, 400, 800, 1600 (failing), then bisection", rates)
		}
		if last := steps[len(steps)-1]; last.Result == nil || last.Result.Count == 0 {
			t.Errorf("last step without a result: %+v", last)
		}
	})
}

func TestFindMaxRateBelowTheStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		best, err := FindMaxRate(t.Context(), Search{Start: 1000, Step: time.Second, Bound: 5 * time.Millisecond, Wait: fakeWait, MaxInFlight: 1000},
			server(4*time.Millisecond)) // capacity 250 requests/s
		if err != nil {
			t.Fatal(err)
		}
		if best.Rate < 230 || best.Rate > 253 {
			t.Errorf("best %v requests/s, want about 250", best.Rate)
		}
	})
}

func TestFindMaxRateStopsAtTheMax(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := 0
		best, err := FindMaxRate(t.Context(), Search{Start: 100, MaxRate: 300, Step: 100 * time.Millisecond, Bound: 5 * time.Millisecond, Wait: fakeWait,
			Progress: func(Step) { n++ }}, sleeper(time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		if best.Rate != 300 || n != 3 {
			t.Errorf("best %v after %d steps, want 300 after 100, 200, 300", best.Rate, n)
		}
	})
}

func TestFindMaxRateNeverPasses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		best, err := FindMaxRate(t.Context(), Search{Start: 8, Step: time.Second, Bound: 5 * time.Millisecond, Wait: fakeWait}, sleeper(10*time.Millisecond))
		if err == nil || !strings.Contains(err.Error(), "no rate") || best.Result != nil {
			t.Errorf("best %+v, err %v; want no rate found", best, err)
		}
	})
}

func TestSearchValidate(t *testing.T) {
	err := Search{Start: 0, MaxRate: -1, Percentile: 101, Resolution: 2, MaxInFlight: -1}.Validate()
	for _, want := range []string{"start rate 0", "max rate -1", "step 0s", "percentile 101", "bound 0s", "resolution 2", "max in flight -1"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want it to mention %q", err, want)
		}
	}
}
