package bench

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func ms(n ...int) Samples {
	s := make(Samples, len(n))
	for i, v := range n {
		s[i] = time.Duration(v) * time.Millisecond
	}
	return s
}

func TestPercentile(t *testing.T) {
	var thousand Samples
	for i := 1; i <= 1000; i++ {
		thousand = append(thousand, time.Duration(i)*time.Millisecond)
	}
	tests := []struct {
		s    Samples
		p    float64
		want time.Duration
	}{
		{nil, 50, 0},
		{ms(7), 50, 7 * time.Millisecond},
		{ms(7), 99.9, 7 * time.Millisecond},
		{ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{ms(1, 2, 3, 4), 51, 3 * time.Millisecond},
		{ms(1, 2, 3, 4), 100, 4 * time.Millisecond},
		{thousand, 50, 500 * time.Millisecond},
		{thousand, 90, 900 * time.Millisecond},
		{thousand, 99, 990 * time.Millisecond},
		{thousand, 99.9, 999 * time.Millisecond},
		{thousand, 0.01, time.Millisecond},
	}
	for _, tt := range tests {
		if got := tt.s.Percentile(tt.p); got != tt.want {
			t.Errorf("p%v of %d samples = %v, want %v", tt.p, len(tt.s), got, tt.want)
		}
	}
	if got := thousand.Summary(); got != (Summary{500 * time.Millisecond, 900 * time.Millisecond, 990 * time.Millisecond, 999 * time.Millisecond, time.Second}) {
		t.Errorf("summary %+v", got)
	}
}

func TestHistogram(t *testing.T) {
	var s Samples
	for range 18 {
		s = append(s, 300*time.Microsecond)
	}
	s = append(s, 150*time.Microsecond, 3*time.Millisecond)
	slices.Sort(s)
	want := "" +
		"   ≤ 200µs        1   5.0%   5.0% |###\n" +
		"   ≤ 500µs       18  90.0%  95.0% |########################################\n" +
		"     ≤ 1ms        0   0.0%  95.0% |\n" +
		"     ≤ 2ms        0   0.0%  95.0% |\n" +
		"     ≤ 5ms        1   5.0% 100.0% |###\n"
	if got := s.Histogram(); got != want {
		t.Errorf("histogram:\n%s\nwant:\n%s", got, want)
	}
	if got := (Samples{time.Hour}).Histogram(); !strings.HasPrefix(got, "   > 1m40s ") {
		t.Errorf("an hour lands in %q, want the last bucket", got)
	}
	if got := Samples(nil).Histogram(); got != "no samples\n" {
		t.Errorf("no samples: %q", got)
	}
}
