package writer

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairnfs/cairn/internal/aggregate"
	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/lograte"
	"github.com/cairnfs/cairn/internal/store"
)

// maxBucketRounds bounds the read–modify–write rounds of one bucket update
// that lose a race to another writer, before the batch is retried whole.
const maxBucketRounds = 16

// event is one value of an aggregated feature, folded into a bucket: its
// record's partition and offset identify it, so that a replayed record is
// not counted twice (see aggregate.State.Seen).
type event struct {
	partition int32
	offset    int64
	value     any
}

// bucketUpdate is the events of one batch falling into one bucket.
type bucketUpdate struct {
	key    store.BucketKey
	events []event
}

// cachedBucket is a bucket's state as this writer last wrote it: the next
// update of a hot bucket starts from it instead of reading it back. A
// writer that lost a race to another learns it from the version check
// and drops the entry.
type cachedBucket struct {
	state   *aggregate.State
	version int64
}

// aggregator folds the events of windowed features into their buckets.
type aggregator struct {
	reg     *feature.Registry
	buckets store.BucketStore
	// cache holds recently updated buckets; nil when
	// DYNAMODB_AGGREGATE_UPDATE_CACHE_SIZE is 0.
	cache  *lru.Cache[string, cachedBucket]
	now    func() time.Time
	log    *slog.Logger
	errLog lograte.Limiter

	hits, misses, evictions, conflicts, late prometheus.Counter
	updates, refused, reset                  prometheus.Counter
}

func newAggregator(bs store.BucketStore, size int, now func() time.Time, promReg prometheus.Registerer, log *slog.Logger) (*aggregator, error) {
	a := &aggregator{buckets: bs, now: now, log: log, errLog: lograte.Limiter{Interval: time.Minute},
		hits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_dynamo_num_update_cache_hits_total",
			Help: "Bucket updates of windowed features that started from the writer's aggregate update cache instead of reading the bucket (DYNAMODB_AGGREGATE_UPDATE_CACHE_SIZE).",
		}),
		misses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_dynamo_num_update_cache_misses_total",
			Help: "Bucket updates of windowed features that read the bucket from the store first: not in the aggregate update cache, or dropped from it after losing a race to another writer.",
		}),
		evictions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_dynamo_num_update_cache_evictions_total",
			Help: "Buckets evicted from the aggregate update cache to make room (least recently updated first).",
		}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_writer_bucket_conflicts_total",
			Help: "Bucket updates refused by the store's version check because another writer updated the bucket first; the bucket is read again and the update redone.",
		}),
		late: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_writer_bucket_events_expired_total",
			Help: "Events of windowed features observed so long ago that no window reaches their bucket any more: not stored.",
		}),
		updates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_writer_bucket_updates_total",
			Help: "Buckets of windowed features written (one conditional write each).",
		}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_writer_bucket_events_refused_total",
			Help: "Events a bucket could not take (an int sum leaving the int64 range): skipped, so that they never hold up their partition.",
		}),
		reset: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_writer_buckets_reset_total",
			Help: "Stored buckets whose state could not be decoded (damaged): replaced by a new state holding this batch's events.",
		}),
	}
	if size > 0 {
		c, err := lru.New[string, cachedBucket](size)
		if err != nil {
			return nil, err
		}
		a.cache = c
	}
	if promReg != nil {
		for _, c := range []prometheus.Collector{a.hits, a.misses, a.evictions, a.conflicts, a.late, a.updates, a.refused, a.reset} {
			if err := promReg.Register(c); err != nil {
				return nil, fmt.Errorf("writer: register metrics: %w", err)
			}
		}
	}
	return a, nil
}

// collect returns the bucket updates of the events in a batch's decoded
// records: each uploaded value of a feature some windowed feature
// aggregates is an event of each such windowed feature, whether or not
// another value of the same entity and feature is newer (every row of a
// columnar upload counts). Values in query-result records, computed by
// resolvers and computed again at will, are not events.
func (a *aggregator) collect(reg *feature.Registry, recs []decoded) []*bucketUpdate {
	now := a.now()
	var out []*bucketUpdate
	byKey := map[string]*bucketUpdate{}
	for _, d := range recs {
		if !d.upload {
			continue
		}
		for _, ew := range d.writes {
			for _, v := range ew.Values {
				for _, wf := range reg.WindowedOver(v.Feature) {
					w := wf.Window
					start := aggregate.BucketStart(v.ObservedAt, w.Bucket)
					if !aggregate.Expires(start, w.Longest()).After(now) {
						a.late.Inc()
						continue
					}
					k := store.BucketKey{Namespace: ew.Namespace, Key: ew.Key, Feature: wf, Start: start}
					id := bucketID(k)
					u := byKey[id]
					if u == nil {
						u = &bucketUpdate{key: k}
						byKey[id] = u
						out = append(out, u)
					}
					u.events = append(u.events, event{partition: d.rec.Partition, offset: d.rec.Offset, value: v.Value})
				}
			}
		}
	}
	return out
}

// bucketID is a bucket's cache key.
func bucketID(k store.BucketKey) string {
	return k.Namespace.Name + "\x00" + k.Key + "\x00" + k.Feature.FQN + "\x00" + strconv.FormatInt(k.Start.Unix(), 10)
}

// apply folds each update into its bucket, concurrently up to par buckets
// at once, and returns the first error (the batch is then retried whole:
// buckets already updated skip the events they hold).
func (a *aggregator) apply(ctx context.Context, ups []*bucketUpdate, par int) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	sem := make(chan struct{}, max(1, par))
	for _, u := range ups {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return ctx.Err()
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := a.update(ctx, u); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return first
}

// update folds u's events into its bucket: from the cached state when the
// writer holds it, else from the stored one; then a write conditional on
// the version it started from. A lost race drops the cached state and
// starts again from the store's. Every event of a record is added before
// the record is marked seen (aggregate.State.Mark).
func (a *aggregator) update(ctx context.Context, u *bucketUpdate) error {
	w := u.key.Feature.Window
	id := bucketID(u.key)
	expireAt := aggregate.Expires(u.key.Start, w.Longest())
	for round := 0; round < maxBucketRounds; round++ {
		var (
			st  *aggregate.State
			ver int64
		)
		if c, ok := a.cacheGet(id); ok {
			// The cached state is changed in place: on any failure
			// below, the entry is dropped.
			a.hits.Inc()
			st, ver = c.state, c.version
		} else {
			a.misses.Inc()
			b, err := a.buckets.GetBucket(ctx, u.key)
			if err != nil {
				return fmt.Errorf("read bucket %s of %s %s at %s: %w", u.key.Feature.FQN, u.key.Namespace.Name, u.key.Key, u.key.Start.Format(time.RFC3339), err)
			}
			ver = b.Version
			st = aggregate.New(w)
			if b.Version != 0 {
				if st, err = aggregate.DecodeState(b.State, w); err != nil {
					a.reset.Inc()
					if ok, n := a.errLog.Allow(time.Now()); ok {
						a.log.Error("writer: a stored bucket cannot be decoded; it is replaced", "feature", u.key.Feature.FQN,
							"namespace", u.key.Namespace.Name, "key", u.key.Key, "start", u.key.Start, "err", err, "suppressed", n)
					}
					st = aggregate.New(w)
				}
			}
		}
		marks := map[int32]int64{}
		for _, e := range u.events {
			if st.Seen(e.partition, e.offset) {
				continue // a replayed record: counted already
			}
			if m, ok := marks[e.partition]; !ok || e.offset > m {
				marks[e.partition] = e.offset
			}
			if err := st.Add(e.value); err != nil {
				a.refused.Inc()
				if ok, n := a.errLog.Allow(time.Now()); ok {
					a.log.Warn("writer: an event is refused by its bucket; skipped", "feature", u.key.Feature.FQN, "err", err, "suppressed", n)
				}
				continue
			}
		}
		if len(marks) == 0 {
			return nil
		}
		for p, o := range marks {
			st.Mark(p, o)
		}
		ok, err := a.buckets.PutBucket(ctx, u.key, aggregate.AppendState(nil, st), ver, expireAt)
		if err != nil {
			a.cacheDrop(id)
			return fmt.Errorf("write bucket %s of %s %s: %w", u.key.Feature.FQN, u.key.Namespace.Name, u.key.Key, err)
		}
		if ok {
			a.updates.Inc()
			a.cachePut(id, cachedBucket{state: st, version: ver + 1})
			return nil
		}
		a.conflicts.Inc()
		a.cacheDrop(id)
	}
	return fmt.Errorf("bucket %s of %s %s: still losing to other writers after %d rounds", u.key.Feature.FQN, u.key.Namespace.Name, u.key.Key, maxBucketRounds)
}

func (a *aggregator) cacheGet(id string) (cachedBucket, bool) {
	if a.cache == nil {
		return cachedBucket{}, false
	}
	return a.cache.Get(id)
}

func (a *aggregator) cachePut(id string, c cachedBucket) {
	if a.cache != nil && a.cache.Add(id, c) {
		a.evictions.Inc()
	}
}

func (a *aggregator) cacheDrop(id string) {
	if a.cache != nil {
		a.cache.Remove(id)
	}
}
