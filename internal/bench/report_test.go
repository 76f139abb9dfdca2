package bench

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// result is a round of count answers, all of latency d, over a second.
func result(count int, d time.Duration) *Result {
	r := &Result{Load: Load{Rate: float64(count), Duration: time.Second}, Count: count, Elapsed: time.Second}
	for range count {
		r.Latency = append(r.Latency, d)
		r.Lag = append(r.Lag, 0)
	}
	return r
}

// The report gives, per path, the median over rounds of each figure, and
// the ratio of (a) to (b).
func TestPrintReport(t *testing.T) {
	o := DefaultOptions()
	o.Store, o.Entities, o.Features, o.Ask, o.Slice = "redis://u:secret@127.0.0.1:6379/0", 3, 12, 5, time.Second
	ms := time.Millisecond
	b := &setup{
		uri: o.Store, ownPrefix: true, floor: &redisFloor{},
		paths: []*path{
			{name: "(a)", label: "(a) HTTP", rounds: []*Result{result(100, 3*ms), result(100, 4*ms), result(100, 9*ms)}},
			{name: "(b)", label: "(b) floor", rounds: []*Result{result(100, 1*ms), result(100, 2*ms), result(100, 1*ms)}},
		},
	}
	b.server = &serverProcess{} // its CPU is read per slice, below
	for range 3 {
		b.paths[0].cpu.add(100, 125, true, true, 1000)
	}
	var out bytes.Buffer
	printReport(&out, o, b, 100)
	report := out.String()
	for _, want := range []string{
		"### 3 × 5 of 12 at 100 q/s",
		"redis://u:xxxxx@127.0.0.1:6379/0", // the password redacted
		"for the first 5 of 12 features",
		"3 rounds of 1s per path",
		"| (a) HTTP | 100 | 0 | 4.000 | 4.000 | 4.000 | 4.000 | 4.000 | 0.000 | 250 |",  // medians; 3 slices of 25 ticks (0.25 s) for 1000 queries each
		"| (b) floor | 100 | 0 | 1.000 | 1.000 | 1.000 | 1.000 | 1.000 | 0.000 | n/a |", // no server of its own
		"(a)/(b): p50 **4.00×**, p99 **4.00×**; the server adds 3.000 ms at p50",
		"| (a) HTTP | 100 | 0 | 4.000 | 9.000 | 9.000 | 9.000 | 9.000 | 0.000 | 250 |", // pooled
		"Server CPU per query is the query server process's own accounting",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	if strings.Contains(report, "secret") {
		t.Errorf("report shows the password:\n%s", report)
	}

	b.floor, b.paths = nil, b.paths[:1]
	out.Reset()
	printReport(&out, o, b, 100)
	if !strings.Contains(out.String(), "(b) skipped") {
		t.Errorf("report without a floor lacks the note:\n%s", out.String())
	}
}

func TestMedianDuration(t *testing.T) {
	for _, tc := range []struct {
		in   []time.Duration
		want time.Duration
	}{
		{nil, 0},
		{[]time.Duration{5}, 5},
		{[]time.Duration{9, 1, 5}, 5},
		{[]time.Duration{9, 1, 5, 3}, 4},
	} {
		if got := medianDuration(tc.in); got != tc.want {
			t.Errorf("medianDuration(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
