package bench

import (
	"context"
	"encoding/json"
	"io"
	"math"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// A histogram of 100 values: 90 under 1µs, 9 in [1µs, 1ms), 1 of 1ms or
// more (unbounded).
func testHist() Hist {
	return Hist{Buckets: []float64{-math.MaxFloat64, 1e-6, 1e-3, math.MaxFloat64}, Counts: []uint64{90, 9, 1}}
}

func TestHistQuantile(t *testing.T) {
	h := testHist()
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{
		{0.5, time.Microsecond},   // the first bucket's upper bound
		{0.9, time.Microsecond},   // the 90th value is still in it
		{0.95, time.Millisecond},  // the second
		{0.99, time.Millisecond},  // the 99th value
		{0.999, time.Millisecond}, // the last, unbounded: its lower bound
		{1, time.Millisecond},
	} {
		if got, ok := h.quantile(tc.q); !ok || got != tc.want {
			t.Errorf("quantile(%v) = %v, %v; want %v", tc.q, got, ok, tc.want)
		}
	}
	if _, ok := (Hist{}).quantile(0.99); ok {
		t.Error("quantile of an empty histogram: ok")
	}
	if n := h.above(time.Millisecond); n != 1 {
		t.Errorf("above(1ms) = %d, want 1", n)
	}
	if got := quantiles(h, 0.99, 1); got != "1000 / 1000" {
		t.Errorf("quantiles = %q", got)
	}
	if got := quantiles(Hist{}, 0.99); got != "n/a" {
		t.Errorf("quantiles of nothing = %q, want n/a", got)
	}
}

// The statistics of a span are the difference of two readings, and
// those of a path the sum over its spans.
func TestRuntimeStatsSubAdd(t *testing.T) {
	before := RuntimeStats{Sched: testHist(), GCPauses: testHist(), GCCycles: 3}
	after := RuntimeStats{Sched: testHist(), GCPauses: testHist(), GCCycles: 5}
	after.Sched.Counts = []uint64{95, 9, 4}
	d := after.sub(before)
	if d.GCCycles != 2 || d.Sched.total() != 8 || d.Sched.above(time.Millisecond) != 3 || d.GCPauses.total() != 0 {
		t.Errorf("after − before = %+v", d)
	}
	var sum RuntimeStats
	sum.add(d)
	sum.add(d)
	if sum.GCCycles != 4 || sum.Sched.total() != 16 {
		t.Errorf("sum of two spans = %+v", sum)
	}
	// A first reading without buckets counts as empty.
	if d := after.sub(RuntimeStats{}); d.Sched.total() != 108 {
		t.Errorf("after − nothing: %d values, want 108", d.Sched.total())
	}
}

// This process's own statistics: the runtime has the metrics, and a
// collection shows as a cycle.
func TestReadRuntime(t *testing.T) {
	before := ReadRuntime()
	runtime.GC()
	d := ReadRuntime().sub(before)
	if d.GCCycles < 1 {
		t.Errorf("%d GC cycles across runtime.GC()", d.GCCycles)
	}
	if len(before.Sched.Counts) == 0 || len(before.GCPauses.Counts) == 0 {
		t.Errorf("no histograms: %d sched buckets, %d GC pause buckets (renamed metrics?)", len(before.Sched.Counts), len(before.GCPauses.Counts))
	}
	if d.GCPauses.total() == 0 {
		t.Error("no GC pause across runtime.GC()")
	}
}

// ServeParent answers each request with statistics that parse, ignores
// other lines, and returns once its input closes.
func TestServeParent(t *testing.T) {
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- ServeParent(context.Background(), inR, outW) }()
	buf := make([]byte, 1<<20)
	for range 2 {
		if _, err := io.WriteString(inW, "something else\n"+runtimeRequest+"\n"); err != nil {
			t.Fatal(err)
		}
		var line strings.Builder
		for !strings.HasSuffix(line.String(), "\n") {
			n, err := outR.Read(buf)
			if err != nil {
				t.Fatal(err)
			}
			line.Write(buf[:n])
		}
		s, err := parseRuntimeAnswer(line.String())
		if err != nil {
			t.Fatal(err)
		}
		if s.Sched.total() == 0 && len(s.Sched.Counts) == 0 {
			t.Errorf("answer without the scheduling histogram: %.200s", line.String())
		}
	}
	inW.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("ServeParent: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ServeParent did not return once its input closed")
	}
}

func TestParseRuntimeAnswer(t *testing.T) {
	good, _ := json.Marshal(RuntimeStats{Sched: testHist(), GCCycles: 7})
	s, err := parseRuntimeAnswer(runtimeAnswer + string(good) + "\n")
	if err != nil || s.GCCycles != 7 || s.Sched.total() != 100 {
		t.Errorf("parse = %+v, %v", s, err)
	}
	for _, bad := range []string{"", "listening 127.0.0.1:1\n", runtimeAnswer + "{", runtimeAnswer + `{"sched":{"buckets":[0],"counts":[1,2]}}`} {
		if _, err := parseRuntimeAnswer(bad); err == nil {
			t.Errorf("parse %q: no error", bad)
		}
	}
}

// The parent parses what its query server process writes: never a
// panic, and what parses can be summarized.
func FuzzParseRuntimeAnswer(f *testing.F) {
	good, _ := json.Marshal(RuntimeStats{Sched: testHist(), GCPauses: testHist(), GCCycles: 7})
	f.Add(runtimeAnswer + string(good))
	f.Add(runtimeAnswer + `{"sched":{"buckets":[1,0],"counts":[5]}}`)
	f.Add(runtimeAnswer + `{"gc_pauses":{"buckets":[],"counts":[]}}`)
	f.Fuzz(func(t *testing.T, line string) {
		s, err := parseRuntimeAnswer(line)
		if err != nil {
			return
		}
		var sum RuntimeStats
		sum.add(s.sub(s))
		sum.add(s)
		_ = quantiles(sum.Sched, 0.99, 0.999, 1)
		_ = quantiles(sum.GCPauses, 0.99, 1)
		_ = sum.Sched.above(time.Millisecond)
	})
}

// The kernel's run-queue wait of this process grows while it has more
// threads wanting a CPU than there are CPUs, and a process that does not
// exist has none.
func TestRunQueueWait(t *testing.T) {
	before, ok := runQueueWait(0)
	if !ok {
		t.Skip("no /proc/self/task/*/schedstat here")
	}
	if d, ok := runQueueWait(os.Getpid()); !ok || d < before {
		t.Fatalf("by pid: %v %v, want at least %v", d, ok, before)
	}
	// Twice as many spinning threads as CPUs, each with a P of its own:
	// half of them wait for the kernel.
	n := 2 * runtime.NumCPU()
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(n))
	stop := time.Now().Add(300 * time.Millisecond)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			for time.Now().Before(stop) {
			}
		}()
	}
	wg.Wait()
	after, ok := runQueueWait(0)
	if !ok || after-before < 50*time.Millisecond {
		t.Errorf("run-queue wait grew by %v (%v) over 300 ms of %d threads spinning on %d CPUs, want 50 ms or more", after-before, ok, n, runtime.NumCPU())
	}
	if _, ok := runQueueWait(1 << 30); ok {
		t.Error("a process that does not exist has a run-queue wait")
	}
}
