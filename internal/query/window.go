package query

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cairnfs/cairn/internal/aggregate"
	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/store"
)

// UseBuckets makes the engine answer windowed features (wire names such
// as user.txn_count__86400__) from the buckets in bs. Without it, they
// answer an error. Call it before the first query.
func (e *Engine) UseBuckets(bs store.BucketStore) { e.buckets = bs }

// windowAnswer is the value of one windowed output for one key, or why
// there is none.
type windowAnswer struct {
	value any
	err   error
}

// readWindows answers the windowed outputs of one namespace for keys: per
// key and base windowed feature, one read of the buckets the longest
// window asked for covers; each window merges its own. It returns, per key
// index, the answers by output.
func (e *Engine) readWindows(ctx context.Context, ns *feature.Namespace, keys []string, outs []*feature.Feature, now time.Time) []map[*feature.Feature]windowAnswer {
	// The windows asked of each base feature.
	bases := map[*feature.Feature][]*feature.Feature{}
	var order []*feature.Feature
	for _, f := range outs {
		if f.WindowOf == nil {
			continue
		}
		if _, ok := bases[f.WindowOf]; !ok {
			order = append(order, f.WindowOf)
		}
		bases[f.WindowOf] = append(bases[f.WindowOf], f)
	}
	res := make([]map[*feature.Feature]windowAnswer, len(keys))
	for i := range res {
		res[i] = make(map[*feature.Feature]windowAnswer, len(outs))
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, key := range keys {
		for _, base := range order {
			wins := bases[base]
			wg.Go(func() {
				ans := e.windows(ctx, ns, key, base, wins, now)
				mu.Lock()
				for f, a := range ans {
					res[i][f] = a
				}
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	return res
}

// windows reads one entity's buckets of base and answers each of wins.
func (e *Engine) windows(ctx context.Context, ns *feature.Namespace, key string, base *feature.Feature, wins []*feature.Feature, now time.Time) map[*feature.Feature]windowAnswer {
	out := make(map[*feature.Feature]windowAnswer, len(wins))
	fail := func(err error) map[*feature.Feature]windowAnswer {
		for _, f := range wins {
			out[f] = windowAnswer{err: err}
		}
		return out
	}
	if e.buckets == nil {
		return fail(fmt.Errorf("windowed features are not served by this server's store"))
	}
	w := base.Window
	var longest time.Duration
	for _, f := range wins {
		longest = max(longest, f.WindowLength)
	}
	from, to := aggregate.Window(now, longest, w.Bucket)
	start := time.Now()
	buckets, err := e.buckets.ReadBuckets(ctx, ns, key, base, from, to)
	e.latency.WithLabelValues(ns.Name).Observe(time.Since(start).Seconds())
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = &DeadlineError{Namespace: ns.Name, Err: err}
		}
		return fail(err)
	}
	states := make([]*aggregate.State, len(buckets))
	for i, b := range buckets {
		if states[i], err = aggregate.DecodeState(b.State, w); err != nil {
			return fail(fmt.Errorf("bucket at %s: %w", b.Start.Format(time.RFC3339), err))
		}
	}
	for _, f := range wins {
		fromW, toW := aggregate.Window(now, f.WindowLength, w.Bucket)
		sum := aggregate.New(w)
		var merr error
		for i, b := range buckets {
			if !b.Start.Before(fromW) && !b.Start.After(toW) {
				if err := sum.Merge(states[i]); err != nil && merr == nil {
					merr = err
				}
			}
		}
		if merr != nil {
			out[f] = windowAnswer{err: merr}
			continue
		}
		out[f] = windowAnswer{value: sum.Value()}
	}
	return out
}
