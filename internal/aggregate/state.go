// Package aggregate holds the pure logic of windowed features: the state
// of one bucket (State) and its binary encoding, the HyperLogLog sketch of
// approx_count_distinct, and the window math that picks the buckets a
// query merges (Window) and when a bucket may expire.
//
// A windowed feature (feature.Windowed) aggregates the events of another
// feature: each uploaded value of it is one event at its observed-at time.
// The persistence writer folds each event into the State of the bucket
// holding its time, stores the encoded state, and records in the state
// the highest Kafka offset of each partition folded in, so that replaying
// the topic does not count an event twice. A query decodes the states of
// the buckets covering a window, merges them and serves Value.
//
// docs/aggregations.md documents the encoding, the sketch's size and
// error, and how partial buckets at a window's edges are counted.
package aggregate

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/cairnfs/cairn/internal/feature"
)

// ErrSumOverflow is returned when an int sum would leave the range of an
// int64; the state is left unchanged.
var ErrSumOverflow = errors.New("aggregate: int sum overflows int64")

// State is one bucket's aggregation of the events of one windowed
// feature. Only the fields its aggregation needs are kept: the event
// count always; the sum for sum and mean (exact for an int feature); the
// least or greatest value for min and max; a HyperLogLog sketch for
// approx_count_distinct. A State is not safe for concurrent use.
type State struct {
	agg   feature.Aggregation
	float bool // the aggregated feature is a float (sum, min, max, mean)

	count int64
	sumI  int64
	sumF  float64
	// ext is the min (AggMin) or the max (AggMax) when count > 0.
	extI int64
	extF float64
	hll  sketch

	// applied maps a Kafka partition to the highest offset folded in.
	applied map[int32]int64
}

// New returns the empty state of a bucket of the windowed feature w.
func New(w *feature.Windowed) *State {
	s := &State{agg: w.Aggregate}
	switch w.Aggregate {
	case feature.AggSum, feature.AggMin, feature.AggMax, feature.AggMean:
		s.float = w.Of.Type.Kind == feature.KindFloat
	}
	return s
}

// Count returns the number of events folded into the state.
func (s *State) Count() int64 { return s.count }

// Add folds one event of value v into the state. v is canonical for the
// aggregated feature's type (package feature): int64 or float64 for sum,
// min, max and mean; int64, string, bool, time.Time or []byte for
// approx_count_distinct; anything for count. A nil value is absent, not
// an event: it is ignored by every aggregation, count included. A float
// NaN, a value of the wrong type, and an int sum leaving the int64 range
// (ErrSumOverflow) are errors, and leave the state unchanged.
func (s *State) Add(v any) error {
	if v == nil {
		return nil
	}
	switch s.agg {
	case feature.AggCount:
	case feature.AggApproxCountDistinct:
		h, err := hashValue(v)
		if err != nil {
			return err
		}
		s.hll.insertHash(h)
	case feature.AggSum, feature.AggMean, feature.AggMin, feature.AggMax:
		if err := s.addNumber(v); err != nil {
			return err
		}
	default:
		return fmt.Errorf("aggregate: unknown aggregation %d", s.agg)
	}
	s.count++
	return nil
}

func (s *State) addNumber(v any) error {
	if s.float {
		f, ok := v.(float64)
		if !ok {
			return fmt.Errorf("aggregate: %s of a float feature: value of type %T, want float64", s.agg, v)
		}
		if math.IsNaN(f) {
			return fmt.Errorf("aggregate: %s of a float feature: NaN is not a value", s.agg)
		}
		s.foldFloat(f, f)
		return nil
	}
	i, ok := v.(int64)
	if !ok {
		return fmt.Errorf("aggregate: %s of an int feature: value of type %T, want int64", s.agg, v)
	}
	return s.foldInt(i, i)
}

// foldFloat folds events of sum sum and least or greatest value ext into
// a float state; s.count is not yet updated.
func (s *State) foldFloat(sum, ext float64) {
	switch s.agg {
	case feature.AggSum, feature.AggMean:
		s.sumF += sum
	case feature.AggMin:
		if s.count == 0 || ext < s.extF {
			s.extF = ext
		}
	case feature.AggMax:
		if s.count == 0 || ext > s.extF {
			s.extF = ext
		}
	}
}

// foldInt is foldFloat for an int state.
func (s *State) foldInt(sum, ext int64) error {
	switch s.agg {
	case feature.AggSum, feature.AggMean:
		t := s.sumI + sum
		if (t > s.sumI) != (sum > 0) {
			return ErrSumOverflow
		}
		s.sumI = t
	case feature.AggMin:
		if s.count == 0 || ext < s.extI {
			s.extI = ext
		}
	case feature.AggMax:
		if s.count == 0 || ext > s.extI {
			s.extI = ext
		}
	}
	return nil
}

// hashValue hashes a canonical value for the sketch: strings and bytes by
// their bytes, ints by their 8 little-endian bytes, bools as one byte,
// datetimes by their Unix microseconds.
func hashValue(v any) (uint64, error) {
	var b [8]byte
	le := func(u uint64) []byte {
		for i := range b {
			b[i] = byte(u >> (8 * i))
		}
		return b[:]
	}
	switch x := v.(type) {
	case string:
		return xxhash.Sum64String(x), nil
	case []byte:
		return xxhash.Sum64(x), nil
	case int64:
		return xxhash.Sum64(le(uint64(x))), nil
	case bool:
		if x {
			return xxhash.Sum64([]byte{1}), nil
		}
		return xxhash.Sum64([]byte{0}), nil
	case time.Time:
		return xxhash.Sum64(le(uint64(x.UnixMicro()))), nil
	}
	return 0, fmt.Errorf("aggregate: approx_count_distinct: value of type %T, want int64, string, bool, time.Time or []byte", v)
}

// Seen reports whether the record at offset of partition was already
// folded into the state: offset is at most the partition's watermark.
// Events of one partition reach a bucket in offset order, so a record
// replayed after a restart or a rebalance is recognized by its identity
// (partition, offset) alone.
func (s *State) Seen(partition int32, offset int64) bool {
	w, ok := s.applied[partition]
	return ok && offset <= w
}

// Mark records that the record at offset of partition has been folded
// in. Every event of a record (each row of a columnar upload) is added
// before the record is marked: Seen is checked once per record and
// bucket, never per event.
func (s *State) Mark(partition int32, offset int64) {
	if s.applied == nil {
		s.applied = make(map[int32]int64)
	}
	if w, ok := s.applied[partition]; !ok || offset > w {
		s.applied[partition] = offset
	}
}

// Merge folds the events of o into s, to read a window spanning several
// buckets: counts and sums add, the least or greatest value is kept, and
// sketches merge register by register. Watermarks are not merged: they
// belong to one stored bucket. o must be a state of the same windowed
// feature; an int sum leaving the int64 range is ErrSumOverflow, and s is
// then unchanged.
func (s *State) Merge(o *State) error {
	if o.agg != s.agg || o.float != s.float {
		return fmt.Errorf("aggregate: merge a %s state into a %s state", o.agg, s.agg)
	}
	if o.count == 0 {
		return nil
	}
	switch {
	case s.agg == feature.AggApproxCountDistinct:
		s.hll.merge(&o.hll)
	case s.agg == feature.AggCount:
	case s.float:
		s.foldFloat(o.sumF, o.extF)
	default:
		if err := s.foldInt(o.sumI, o.extI); err != nil {
			return err
		}
	}
	s.count += o.count
	return nil
}

// Value returns the windowed feature's value over the events folded in,
// canonical for its type: int64 for count and approx_count_distinct;
// the aggregated feature's type for sum, min and max; float64 for mean.
// An empty state gives 0 for count, sum and approx_count_distinct, and
// nil (absent) for min, max and mean.
func (s *State) Value() any {
	switch s.agg {
	case feature.AggCount:
		return s.count
	case feature.AggApproxCountDistinct:
		// Capped: a sketch with every register saturated estimates +Inf.
		return int64(min(math.Round(s.hll.estimate()), math.MaxInt64/2))
	case feature.AggSum:
		if s.float {
			return s.sumF
		}
		return s.sumI
	}
	if s.count == 0 {
		return nil
	}
	switch {
	case s.agg == feature.AggMean && s.float:
		return s.sumF / float64(s.count)
	case s.agg == feature.AggMean:
		return float64(s.sumI) / float64(s.count)
	case s.float:
		return s.extF
	}
	return s.extI
}
