package aggregate_test

import (
	"fmt"
	"time"

	"github.com/cairnfs/cairn/internal/aggregate"
	"github.com/cairnfs/cairn/internal/feature"
)

// A writer folds each record's events into the state of their bucket,
// skipping records it has already folded; a query merges the buckets of
// the window.
func Example() {
	reg, err := feature.Parse("features.yaml", []byte(`
namespaces:
  - name: user
    primary_key: id
    features:
      id: string
      amount: float
      txn_total: {aggregate: sum, of: amount, windows: [1h], bucket: 5m}
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	amount, _ := reg.Lookup("user.amount")
	total := reg.WindowedOver(amount)[0]
	w := total.Window

	stored := map[time.Time][]byte{} // the store: bucket start -> state
	t0 := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	type record struct {
		offset int64
		at     time.Duration
		values []float64 // the rows of one record
	}
	for _, r := range []record{{10, 1 * time.Minute, []float64{2.5, 4}}, {11, 7 * time.Minute, []float64{10}}, {10, 1 * time.Minute, []float64{2.5, 4}} /* replayed */} {
		start := aggregate.BucketStart(t0.Add(r.at), w.Bucket)
		s := aggregate.New(w)
		if b, ok := stored[start]; ok {
			if s, err = aggregate.DecodeState(b, w); err != nil {
				fmt.Println(err)
				return
			}
		}
		if s.Seen(0, r.offset) {
			continue
		}
		for _, v := range r.values {
			if err := s.Add(v); err != nil {
				fmt.Println(err)
				return
			}
		}
		s.Mark(0, r.offset)
		stored[start] = aggregate.AppendState(nil, s)
	}

	hour, _ := reg.Lookup("user.txn_total__3600__")
	now := t0.Add(10 * time.Minute)
	from, to := aggregate.Window(now, hour.WindowLength, w.Bucket)
	sum := aggregate.New(w)
	for _, start := range aggregate.Starts(from, to, w.Bucket) {
		if b, ok := stored[start]; ok {
			s, err := aggregate.DecodeState(b, w)
			if err != nil {
				fmt.Println(err)
				return
			}
			if err := sum.Merge(s); err != nil {
				fmt.Println(err)
				return
			}
		}
	}
	fmt.Println(hour.FQN, "=", sum.Value(), "over", sum.Count(), "events")
	// Output: user.txn_total__3600__ = 16.5 over 3 events
}
