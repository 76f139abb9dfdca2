package aggregate

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cairnfs/cairn/internal/feature"
)

// windowed returns the declaration of a windowed feature aggregating a
// feature of kind of.
func windowed(agg feature.Aggregation, of feature.Kind) *feature.Windowed {
	return &feature.Windowed{
		Aggregate: agg,
		Of:        &feature.Feature{FQN: "user.v", Name: "v", Type: feature.Type{Kind: of}},
		Windows:   []time.Duration{time.Hour},
		Bucket:    5 * time.Minute,
	}
}

func mustAdd(t testing.TB, s *State, v any) {
	t.Helper()
	if err := s.Add(v); err != nil {
		t.Fatal(err)
	}
}

// roundTrip encodes s, decodes it and checks the decoded state encodes
// the same.
func roundTrip(t testing.TB, s *State, w *feature.Windowed) *State {
	t.Helper()
	b := AppendState(nil, s)
	d, err := DecodeState(b, w)
	if err != nil {
		t.Fatalf("decode %x: %v", b, err)
	}
	if b2 := AppendState(nil, d); !bytes.Equal(b, b2) {
		t.Fatalf("re-encoded state differs:\n%x\n%x", b, b2)
	}
	return d
}

// TestSumsExact: many events, split over buckets and merged back, give
// the exact count and sum, for ints near the int64 range and for floats
// whose sums are exact in float64.
func TestSumsExact(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	const events, buckets = 100_000, 37
	wi, wf, wc := windowed(feature.AggSum, feature.KindInt), windowed(feature.AggSum, feature.KindFloat), windowed(feature.AggCount, feature.KindJSON)
	var bi, bf, bc [buckets]*State
	for i := range buckets {
		bi[i], bf[i], bc[i] = New(wi), New(wf), New(wc)
	}
	var wantI int64
	var wantF float64
	for range events {
		k := rng.IntN(buckets)
		// Large ints: a float64 sum of these would lose the low bits.
		vi := int64(1<<52) + rng.Int64N(1<<20) - rng.Int64N(1<<53)
		// Quarters below 2^20: every partial sum is exact in a float64.
		vf := float64(rng.IntN(1<<22)-1<<21) / 4
		wantI += vi
		wantF += vf
		mustAdd(t, bi[k], vi)
		mustAdd(t, bf[k], vf)
		mustAdd(t, bc[k], map[string]any{"any": "value"})
		mustAdd(t, bc[k], nil) // absent: not an event
	}
	ti, tf, tc := New(wi), New(wf), New(wc)
	for k := range buckets {
		for _, p := range []struct {
			into, from *State
			w          *feature.Windowed
		}{{ti, bi[k], wi}, {tf, bf[k], wf}, {tc, bc[k], wc}} {
			if err := p.into.Merge(roundTrip(t, p.from, p.w)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got := ti.Value(); got != wantI {
		t.Errorf("int sum %v, want %d", got, wantI)
	}
	if got := tf.Value(); got != wantF {
		t.Errorf("float sum %v, want %v", got, wantF)
	}
	if got := tc.Value(); got != int64(events) {
		t.Errorf("count %v, want %d", got, events)
	}
	if ti.Count() != events || tf.Count() != events {
		t.Errorf("counts %d %d, want %d", ti.Count(), tf.Count(), events)
	}
}

func TestMinMaxMean(t *testing.T) {
	t.Parallel()
	tests := []struct {
		agg    feature.Aggregation
		of     feature.Kind
		values []any
		want   any
	}{
		{feature.AggMin, feature.KindInt, []any{int64(5), int64(-3), nil, int64(9)}, int64(-3)},
		{feature.AggMax, feature.KindInt, []any{int64(5), int64(-3), int64(9)}, int64(9)},
		{feature.AggMax, feature.KindInt, []any{int64(-5), int64(-3)}, int64(-3)},
		{feature.AggMin, feature.KindFloat, []any{2.5, -0.5, 7.0}, -0.5},
		{feature.AggMax, feature.KindFloat, []any{-2.5, -0.5}, -0.5},
		{feature.AggMean, feature.KindInt, []any{int64(1), int64(2), int64(4)}, 7.0 / 3},
		{feature.AggMean, feature.KindFloat, []any{1.5, 2.5}, 2.0},
		{feature.AggMin, feature.KindInt, nil, nil},
		{feature.AggMax, feature.KindFloat, []any{nil}, nil},
		{feature.AggMean, feature.KindFloat, nil, nil},
		{feature.AggSum, feature.KindInt, nil, int64(0)},
		{feature.AggSum, feature.KindFloat, nil, 0.0},
		{feature.AggCount, feature.KindString, nil, int64(0)},
		{feature.AggApproxCountDistinct, feature.KindString, nil, int64(0)},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s of %v %v", tt.agg, tt.of, tt.values), func(t *testing.T) {
			w := windowed(tt.agg, tt.of)
			// Each value in a bucket of its own, merged: the same as one
			// bucket holding them all.
			one, merged := New(w), New(w)
			for _, v := range tt.values {
				mustAdd(t, one, v)
				b := New(w)
				mustAdd(t, b, v)
				if err := merged.Merge(roundTrip(t, b, w)); err != nil {
					t.Fatal(err)
				}
			}
			if got := roundTrip(t, one, w).Value(); got != tt.want {
				t.Errorf("Value() = %#v, want %#v", got, tt.want)
			}
			if got := merged.Value(); got != tt.want {
				t.Errorf("merged Value() = %#v, want %#v", got, tt.want)
			}
		})
	}
}

// TestMergeAssociative: (a+b)+c and a+(b+c) encode alike, for every
// aggregation.
func TestMergeAssociative(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	for _, c := range []struct {
		agg feature.Aggregation
		of  feature.Kind
		gen func() any
	}{
		{feature.AggCount, feature.KindBool, func() any { return rng.IntN(2) == 0 }},
		{feature.AggSum, feature.KindInt, func() any { return rng.Int64N(1000) - 500 }},
		{feature.AggSum, feature.KindFloat, func() any { return float64(rng.IntN(1000)) / 8 }},
		{feature.AggMin, feature.KindFloat, func() any { return rng.NormFloat64() }},
		{feature.AggMax, feature.KindInt, func() any { return rng.Int64() }},
		{feature.AggMean, feature.KindInt, func() any { return rng.Int64N(100) }},
		{feature.AggApproxCountDistinct, feature.KindInt, func() any { return rng.Int64N(50_000) }},
	} {
		w := windowed(c.agg, c.of)
		for _, n := range []int{0, 3, 10_000} {
			var parts [3]*State
			for i := range parts {
				parts[i] = New(w)
				for range n * (i + 1) {
					mustAdd(t, parts[i], c.gen())
				}
			}
			merge := func(x, y *State) *State {
				out := New(w)
				for _, s := range []*State{x, y} {
					if err := out.Merge(s); err != nil {
						t.Fatal(err)
					}
				}
				return out
			}
			left := merge(merge(parts[0], parts[1]), parts[2])
			right := merge(parts[0], merge(parts[1], parts[2]))
			if l, r := AppendState(nil, left), AppendState(nil, right); !bytes.Equal(l, r) {
				t.Errorf("%s of %v, %d events: (a+b)+c %x != a+(b+c) %x", c.agg, c.of, n, l[:min(len(l), 32)], r[:min(len(r), 32)])
			}
		}
	}
}

func TestAddErrorsLeaveStateUnchanged(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		w    *feature.Windowed
		prev any
		v    any
		want string
	}{
		{windowed(feature.AggSum, feature.KindInt), int64(math.MaxInt64 - 1), int64(2), "overflows int64"},
		{windowed(feature.AggMean, feature.KindInt), int64(math.MinInt64 + 1), int64(-2), "overflows int64"},
		{windowed(feature.AggSum, feature.KindInt), int64(1), 1.5, "want int64"},
		{windowed(feature.AggMin, feature.KindFloat), 1.0, int64(1), "want float64"},
		{windowed(feature.AggMax, feature.KindFloat), 1.0, math.NaN(), "NaN"},
		{windowed(feature.AggApproxCountDistinct, feature.KindString), "a", 1.5, "want int64, string"},
	} {
		s := New(c.w)
		mustAdd(t, s, c.prev)
		before := AppendState(nil, s)
		err := s.Add(c.v)
		if err == nil || !bytes.Contains([]byte(err.Error()), []byte(c.want)) {
			t.Errorf("%s: Add(%v) = %v, want an error with %q", c.w.Aggregate, c.v, err, c.want)
		}
		if !bytes.Equal(before, AppendState(nil, s)) {
			t.Errorf("%s: a failed Add changed the state", c.w.Aggregate)
		}
	}
	w := windowed(feature.AggSum, feature.KindInt)
	a, b := New(w), New(w)
	mustAdd(t, a, int64(math.MaxInt64))
	mustAdd(t, b, int64(1))
	if err := a.Merge(b); !errors.Is(err, ErrSumOverflow) || a.Value() != int64(math.MaxInt64) || a.Count() != 1 {
		t.Errorf("overflowing merge: %v, state %v/%d", err, a.Value(), a.Count())
	}
	if err := a.Merge(New(windowed(feature.AggSum, feature.KindFloat))); err == nil {
		t.Error("merging a float sum into an int sum succeeded")
	}
}

func TestWatermarks(t *testing.T) {
	t.Parallel()
	w := windowed(feature.AggCount, feature.KindFloat)
	s := New(w)
	if s.Seen(0, 0) {
		t.Fatal("an empty state has seen offset 0")
	}
	// The writer's loop: skip a seen record, else fold its events and
	// mark it.
	fold := func(s *State, partition int32, offset int64, events int) {
		if s.Seen(partition, offset) {
			return
		}
		for range events {
			mustAdd(t, s, 1.0)
		}
		s.Mark(partition, offset)
	}
	fold(s, 0, 10, 3) // one record, three rows
	fold(s, 1, 4, 1)
	fold(s, 0, 11, 1)
	s = roundTrip(t, s, w)
	// Replay of partition 0 from offset 9 and of partition 1 from 4.
	fold(s, 0, 10, 3)
	fold(s, 0, 11, 1)
	fold(s, 1, 4, 1)
	fold(s, 0, 12, 2)
	fold(s, 2, 0, 1)
	if got := s.Value(); got != int64(8) {
		t.Fatalf("count %v after a replay, want 8", got)
	}
	for _, c := range []struct {
		p    int32
		o    int64
		seen bool
	}{{0, 12, true}, {0, 13, false}, {1, 3, true}, {1, 5, false}, {2, 0, true}, {3, 0, false}} {
		if s.Seen(c.p, c.o) != c.seen {
			t.Errorf("Seen(%d, %d) = %v, want %v", c.p, c.o, !c.seen, c.seen)
		}
	}
	s.Mark(0, 5) // an older mark never lowers a watermark
	if !s.Seen(0, 12) {
		t.Error("Mark lowered a watermark")
	}
}
