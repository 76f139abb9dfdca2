package aggregate

import (
	"bytes"
	"math"
	"strconv"
	"testing"

	"github.com/cairnfs/cairn/internal/feature"
)

// TestSketchError: over many seeds of 100,000 distinct values, the
// relative error's RMS is within the sketch's standard error 1.04/√m,
// and no seed is off by more than 4 standard errors.
func TestSketchError(t *testing.T) {
	t.Parallel()
	seeds := 200
	if testing.Short() {
		seeds = 40
	}
	const distinct = 100_000
	stdErr := 1.04 / math.Sqrt(SketchRegisters)
	w := windowed(feature.AggApproxCountDistinct, feature.KindInt)
	var sumSq, worst float64
	for seed := range seeds {
		s := New(w)
		for i := range int64(distinct) {
			v := int64(seed)<<40 | i
			mustAdd(t, s, v)
			if i%10 == 0 { // duplicates never count
				mustAdd(t, s, v)
			}
		}
		got := s.Value().(int64)
		e := (float64(got) - distinct) / distinct
		sumSq += e * e
		worst = max(worst, math.Abs(e))
	}
	rms := math.Sqrt(sumSq / float64(seeds))
	t.Logf("%d seeds of %d distinct values: RMS relative error %.4f%%, worst %.4f%%, standard error %.4f%%", seeds, distinct, 100*rms, 100*worst, 100*stdErr)
	// The RMS of n samples scatters around the standard error by about
	// 1/√(2n) of it; allow 15% over it (3 sigma at 200 seeds).
	if rms > 1.15*stdErr {
		t.Errorf("RMS relative error %.4f, want within 1.04/√m = %.4f", rms, stdErr)
	}
	if worst > 4*stdErr {
		t.Errorf("worst relative error %.4f, want within 4 standard errors (%.4f)", worst, 4*stdErr)
	}
}

// TestSketchSmallSets: few distinct values, the common case of a bucket,
// are counted almost exactly, in every kind the sketch takes.
func TestSketchSmallSets(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 2, 10, 100, 1000, 5000} {
		for _, c := range []struct {
			kind feature.Kind
			v    func(i int) any
		}{
			{feature.KindInt, func(i int) any { return int64(i) }},
			{feature.KindBytes, func(i int) any { return []byte(strconv.Itoa(i)) }},
			{feature.KindDatetime, func(i int) any { return epoch.Add(timeMicro(i)) }},
		} {
			w := windowed(feature.AggApproxCountDistinct, c.kind)
			s := New(w)
			for i := range n {
				mustAdd(t, s, c.v(i))
				mustAdd(t, s, c.v(i))
			}
			got := float64(roundTrip(t, s, w).Value().(int64))
			if math.Abs(got-float64(n)) > max(1, 0.02*float64(n)) {
				t.Errorf("%v: %d distinct values estimated %v", c.kind, n, got)
			}
		}
	}
	w := windowed(feature.AggApproxCountDistinct, feature.KindBool)
	s := New(w)
	for i := range 100 {
		mustAdd(t, s, i%2 == 0)
	}
	if got := s.Value(); got != int64(2) {
		t.Errorf("bools: %v distinct, want 2", got)
	}
}

// TestSketchUnion: merging the sketches of two sets gives the sketch of
// their union, register for register, across the sparse and dense forms.
func TestSketchUnion(t *testing.T) {
	t.Parallel()
	w := windowed(feature.AggApproxCountDistinct, feature.KindInt)
	for _, n := range []int{100, 3000, 50_000} {
		a, b, union := New(w), New(w), New(w)
		for i := range n {
			mustAdd(t, a, int64(i))
			mustAdd(t, b, int64(i+n/2))
			mustAdd(t, union, int64(i))
			mustAdd(t, union, int64(i+n/2))
		}
		merged := New(w)
		for _, s := range []*State{a, b} {
			if err := merged.Merge(roundTrip(t, s, w)); err != nil {
				t.Fatal(err)
			}
		}
		// Counts differ (events, not values); compare the sketches.
		merged.count = union.count
		if !bytes.Equal(AppendState(nil, merged), AppendState(nil, union)) {
			t.Errorf("%d values: merged sketches differ from the sketch of the union", n)
		}
		got, want := float64(merged.Value().(int64)), 1.5*float64(n)
		if math.Abs(got-want)/want > 0.05 {
			t.Errorf("%d values: union of %v estimated %v", n, want, got)
		}
	}
}

// TestSketchSizes pins the encoded sizes docs/aggregations.md gives.
func TestSketchSizes(t *testing.T) {
	t.Parallel()
	w := windowed(feature.AggApproxCountDistinct, feature.KindInt)
	s := New(w)
	if got := len(AppendState(nil, s)); got != 7 {
		t.Errorf("empty sketch state: %d bytes, want 7", got)
	}
	mustAdd(t, s, int64(1))
	if got := len(AppendState(nil, s)); got != 10 {
		t.Errorf("one value: %d bytes, want 10", got)
	}
	for i := range 20_000 {
		mustAdd(t, s, int64(i))
	}
	// version, aggregation, flags, count (3 bytes), no watermarks, form,
	// 12,288 bytes of registers.
	if got, want := len(AppendState(nil, s)), 3+3+1+1+sketchDenseBytes; got != want {
		t.Errorf("dense sketch state: %d bytes, want %d", got, want)
	}
}

// TestSketchSaturated: a sketch with every register at its largest value
// (read from a store, say) estimates a large finite count, not +Inf
// converted to a negative int.
func TestSketchSaturated(t *testing.T) {
	t.Parallel()
	w := windowed(feature.AggApproxCountDistinct, feature.KindInt)
	s := New(w)
	mustAdd(t, s, int64(1))
	s.hll.sparse, s.hll.dense = nil, bytes.Repeat([]byte{sketchMaxRank}, SketchRegisters)
	if got := roundTrip(t, s, w).Value().(int64); got < 1<<60 {
		t.Fatalf("saturated sketch estimates %d", got)
	}
}
