package bench

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// Samples are durations sorted in ascending order.
type Samples []time.Duration

// Percentile returns the p-th percentile (0 < p ≤ 100) by the nearest-rank
// method: the smallest sample that at least p percent of the samples do
// not exceed. It returns 0 for no samples.
func (s Samples) Percentile(p float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	// The epsilon keeps 99.9% of 1000 at rank 999 despite float rounding.
	rank := int(math.Ceil(p/100*float64(len(s)) - 1e-9))
	return s[min(max(rank, 1), len(s))-1]
}

// Max returns the largest sample, 0 for none.
func (s Samples) Max() time.Duration {
	if len(s) == 0 {
		return 0
	}
	return s[len(s)-1]
}

// Summary is the usual digest of a latency distribution.
type Summary struct {
	P50, P90, P99, P999, Max time.Duration
}

// Summary returns the 50th, 90th, 99th and 99.9th percentiles and the
// maximum of s.
func (s Samples) Summary() Summary {
	return Summary{
		P50:  s.Percentile(50),
		P90:  s.Percentile(90),
		P99:  s.Percentile(99),
		P999: s.Percentile(99.9),
		Max:  s.Max(),
	}
}

// histogramBounds are the upper bounds of the histogram's buckets: 1, 2
// and 5 times each power of ten, from 10µs to 100s; a last bucket takes
// whatever is longer.
var histogramBounds = func() []time.Duration {
	var b []time.Duration
	for d := 10 * time.Microsecond; d <= 100*time.Second; d *= 10 {
		b = append(b, d, 2*d, 5*d)
	}
	return b[:len(b)-2] // up to 100s
}()

// histogramWidth is the length of the longest bar.
const histogramWidth = 40

// Histogram returns the distribution of s as text, one line per bucket
// from the first bucket holding a sample to the last: the bucket's upper
// bound, its count, its share and the cumulative share of the samples,
// and a bar proportional to its count.
//
//	≤ 200µs       12   0.6%   0.6% |#
//	≤ 500µs     1810  90.5%  91.1% |########################################
//	  ≤ 1ms      178   8.9% 100.0% |####
func (s Samples) Histogram() string {
	if len(s) == 0 {
		return "no samples\n"
	}
	counts := make([]int, len(histogramBounds)+1)
	b := 0
	for _, d := range s { // sorted: the bucket only moves up
		for b < len(histogramBounds) && d > histogramBounds[b] {
			b++
		}
		counts[b]++
	}
	first, last, most := -1, 0, 0
	for i, c := range counts {
		if c == 0 {
			continue
		}
		if first < 0 {
			first = i
		}
		last = i
		most = max(most, c)
	}
	var out strings.Builder
	cum := 0
	for i := first; i <= last; i++ {
		label := "> " + histogramBounds[len(histogramBounds)-1].String()
		if i < len(histogramBounds) {
			label = "≤ " + histogramBounds[i].String()
		}
		cum += counts[i]
		bar := (counts[i]*histogramWidth + most - 1) / most
		fmt.Fprintf(&out, "%10s %8d %5.1f%% %5.1f%% |%s\n", label, counts[i],
			100*float64(counts[i])/float64(len(s)), 100*float64(cum)/float64(len(s)), strings.Repeat("#", bar))
	}
	return out.String()
}
