package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/lograte"
	"github.com/cairnfs/cairn/internal/queue"
	"github.com/cairnfs/cairn/internal/store"
)

// Store is the online store as the consumer uses it.
type Store interface {
	Read(ctx context.Context, ns *feature.Namespace, keys []string, feats []*feature.Feature) ([]store.Row, error)
	Write(ctx context.Context, writes []store.EntityWrite) error
}

// ConsumerConfig configures a [Consumer] and a [Reader].
type ConsumerConfig struct {
	// Group is the consumer group of the metrics consumers
	// (CAIRN_METRICS_GROUP). Default "cairn-metrics".
	Group string
	// Retention is how long rollups are kept (CAIRN_METRICS_RETENTION):
	// the maximum staleness of StoreNamespace. Default 24h.
	Retention time.Duration
	// Partitions is the metrics topic's partition count
	// (CAIRN_TOPIC_PARTITIONS): a reader reads one item per minute and
	// partition. Default 12.
	Partitions int
	// MaxBackoff caps the wait between two tries of a failed store
	// write. Default 5s.
	MaxBackoff time.Duration
}

// EnsureDefaults fills zero fields with their defaults.
func (c *ConsumerConfig) EnsureDefaults() {
	if c.Group == "" {
		c.Group = "cairn-metrics"
	}
	if c.Retention == 0 {
		c.Retention = 24 * time.Hour
	}
	if c.Partitions == 0 {
		c.Partitions = 12
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = 5 * time.Second
	}
}

// prepare fills c's defaults, checks it, and returns the rollups' key
// space for its retention: what a consumer and a reader both start from.
func (c *ConsumerConfig) prepare() (rollupSpace, error) {
	c.EnsureDefaults()
	if err := c.Validate(); err != nil {
		return rollupSpace{}, err
	}
	return newRollupSpace(c.Retention)
}

// Validate reports every problem with c.
func (c *ConsumerConfig) Validate() error {
	var errs []error
	if c.Retention < time.Hour {
		errs = append(errs, fmt.Errorf("metrics: retention %v (CAIRN_METRICS_RETENTION): want at least 1h", c.Retention))
	}
	if c.Partitions < 1 || c.Partitions > 10000 {
		errs = append(errs, fmt.Errorf("metrics: partitions %d (CAIRN_TOPIC_PARTITIONS): want 1 to 10000", c.Partitions))
	}
	if c.MaxBackoff < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("metrics: max backoff %v: want at least 10ms", c.MaxBackoff))
	}
	return errors.Join(errs...)
}

// Consumer reads the metrics topic and keeps the per-minute rollups in
// the online store. Records that do not decode are counted and skipped;
// a store that fails is retried, holding the partitions' offsets back.
type Consumer struct {
	cfg ConsumerConfig
	// opts make the group client; cl is it, nil while the consumer is no
	// member of its group (in standby). Run's alone.
	opts  []kgo.Opt
	cl    *kgo.Client
	st    Store
	space rollupSpace
	log   *slog.Logger
	topic string

	fetchLog lograte.Limiter

	// mu guards written.
	mu sync.Mutex
	// written holds the items this consumer last wrote, encoded, for the
	// partitions it owns: it merges into them rather than into a read
	// that DynamoDB may answer from before its own last write (reads are
	// eventually consistent). Forgotten when a partition is revoked or
	// lost, and after cacheMinutes.
	written map[string][]byte // by item key
	records *prometheus.CounterVec
	writes  *prometheus.CounterVec
	// active, if set, holds consumption while it reports false.
	active func() bool
}

// NewConsumer returns a consumer of qcfg's metrics topic writing st.
func NewConsumer(qcfg queue.Config, cfg ConsumerConfig, st Store, reg prometheus.Registerer, log *slog.Logger) (*Consumer, error) {
	space, err := cfg.prepare()
	if err != nil {
		return nil, err
	}
	c := &Consumer{cfg: cfg, st: st, space: space, log: log, topic: qcfg.MetricsTopic, written: map[string][]byte{},
		fetchLog: lograte.Limiter{Interval: 10 * time.Second},
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_metrics_consumed_records_total",
			Help: "Metrics records consumed, by outcome: merged, replayed (already in the rollup: skipped), corrupt (did not decode: skipped), too_old (past the retention: skipped).",
		}, []string{"outcome"}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_metrics_rollup_writes_total",
			Help: "Rollup writes to the online store, by outcome (ok, error: retried).",
		}, []string{"outcome"}),
	}
	for _, o := range []string{"merged", "replayed", "corrupt", "too_old"} {
		c.records.WithLabelValues(o)
	}
	if reg != nil {
		for _, col := range []prometheus.Collector{c.records, c.writes} {
			if err := reg.Register(col); err != nil {
				return nil, fmt.Errorf("metrics: register: %w", err)
			}
		}
	}
	c.opts = append(qcfg.ClientOpts(),
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(qcfg.MetricsTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		// A partition never moves while its batch is half written.
		// Hazard: Close waits for a rebalance that an un-allowed poll
		// blocks forever, so Run ends with AllowRebalance and
		// CloseAllowingRebalance.
		kgo.BlockRebalanceOnPoll(),
		// With autocommit off and each batch committed before the next
		// poll allows a rebalance, there is nothing to commit on revoke:
		// only the items written are forgotten.
		kgo.OnPartitionsRevoked(c.forget),
		kgo.OnPartitionsLost(c.forget),
	)
	// The client, which joins the group when made, is made by Run, and
	// only while FollowActive lets it.
	return c, nil
}

// FollowActive makes the consumer no member of its group while active
// reports false, checked before each poll and at least every second: it
// leaves the group (after committing the batch it merged) when active
// turns false, consumes nothing meanwhile, and joins again when it turns
// true, from the group's committed offsets. It is the writers' standby
// switch (CAIRN_WRITER_STORE_WRITES): in the standby region of a DynamoDB
// global table the active region's consumers keep the rollups, a second
// writer of the same items would race replication, and a member that does
// not poll would stall the partitions the group gives it. Call it before
// Run.
func (c *Consumer) FollowActive(active func() bool) { c.active = active }

// standbyPoll is how often a consumer in standby checks its switch.
const standbyPoll = time.Second

// Run consumes until ctx ends.
func (c *Consumer) Run(ctx context.Context) error {
	defer func() {
		if c.cl != nil {
			c.leave()
		}
	}()
	for {
		if c.active != nil && !c.active() {
			if c.cl != nil {
				c.leave()
				c.log.Info("metrics: standby: left the consumer group", "group", c.cfg.Group)
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(standbyPoll):
				continue
			}
		}
		if c.cl == nil {
			cl, err := kgo.NewClient(c.opts...)
			if err != nil {
				return fmt.Errorf("metrics: new consumer: %w", err)
			}
			c.cl = cl
			c.log.Info("metrics: active: joined the consumer group", "group", c.cfg.Group)
		}
		pollCtx, cancel := ctx, context.CancelFunc(func() {})
		if c.active != nil {
			// The switch is checked at least every standbyPoll.
			pollCtx, cancel = context.WithTimeout(ctx, standbyPoll)
		}
		fetches := c.cl.PollRecords(pollCtx, 10_000)
		cancel()
		if fetches.IsClientClosed() || ctx.Err() != nil {
			return nil
		}
		fetches.EachError(func(topic string, p int32, err error) {
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
				return
			}
			if ok, n := c.fetchLog.Allow(time.Now()); ok {
				c.log.Warn("metrics: fetch", "topic", topic, "partition", p, "err", err, "suppressed", n)
			}
		})
		if recs := fetches.Records(); len(recs) > 0 {
			if err := c.process(ctx, recs); err != nil {
				return nil // ctx ended: the batch is redelivered, harmlessly
			}
			if err := c.cl.CommitRecords(ctx, recs...); err != nil && ctx.Err() == nil {
				c.log.Warn("metrics: commit failed; the records will be consumed again and skipped as replays", "err", err)
			}
		}
		c.cl.AllowRebalance()
	}
}

// leave leaves the group, bounded, and closes the client: every batch is
// committed before the poll that follows it, so nothing is left to commit.
func (c *Consumer) leave() {
	c.cl.AllowRebalance()
	lctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if err := c.cl.LeaveGroupContext(lctx); err != nil {
		c.log.Warn("metrics: leaving the consumer group failed", "err", err)
	}
	cancel()
	c.cl.CloseAllowingRebalance()
	c.cl = nil
	// The partitions' next owner may change their items.
	c.mu.Lock()
	clear(c.written)
	c.mu.Unlock()
}

type slot struct {
	minute    time.Time
	partition int32
}

// cacheMinutes is how long the items written are remembered.
const cacheMinutes = 10

// forget drops the items written of partitions this consumer no longer
// owns: their next owner may change them.
func (c *Consumer) forget(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ps := range lost {
		for k := range c.written {
			if s, _ := parseItemKey(k); slices.Contains(ps, s.partition) {
				delete(c.written, k)
			}
		}
	}
}

// process merges recs into their rollup items and writes the items that
// changed; it returns an error only when ctx ends first.
func (c *Consumer) process(ctx context.Context, recs []*kgo.Record) error {
	decoded := make(map[slot][]*Record)
	var order []slot
	oldest := time.Now().Add(-c.cfg.Retention)
	for _, kr := range recs {
		r, err := Decode(kr.Value)
		if err != nil {
			c.records.WithLabelValues("corrupt").Inc()
			if ok, n := c.fetchLog.Allow(time.Now()); ok {
				c.log.Warn("metrics: skipped a record that does not decode", "partition", kr.Partition, "offset", kr.Offset, "err", err, "suppressed", n)
			}
			continue
		}
		s := slot{minute: r.Start.Truncate(time.Minute), partition: kr.Partition}
		if s.minute.Before(oldest) {
			c.records.WithLabelValues("too_old").Inc()
			continue
		}
		if _, ok := decoded[s]; !ok {
			order = append(order, s)
		}
		decoded[s] = append(decoded[s], r)
	}
	if len(order) == 0 {
		return nil
	}
	keys := make([]string, len(order))
	for i, s := range order {
		keys[i] = itemKey(s.minute, s.partition)
	}
	feats := []*feature.Feature{c.space.rollup}
	var writes []store.EntityWrite
	var merged, replayed int
	err := c.retry(ctx, func() error {
		merged, replayed = 0, 0
		stored := make([][]byte, len(order))
		var read []string
		var readIdx []int
		c.mu.Lock()
		for i, k := range keys {
			if b, ok := c.written[k]; ok {
				stored[i] = b
			} else {
				read, readIdx = append(read, keys[i]), append(readIdx, i)
			}
		}
		c.mu.Unlock()
		if len(read) > 0 {
			rows, err := c.st.Read(ctx, c.space.ns, read, feats)
			if err != nil {
				return fmt.Errorf("read %d rollups: %w", len(read), err)
			}
			for j, i := range readIdx {
				if cell := rows[j].Cells[0]; cell.Found && cell.Value != nil {
					stored[i] = cell.Value.([]byte)
				}
			}
		}
		writes = writes[:0]
		for i, s := range order {
			it := &item{}
			if stored[i] != nil {
				if got, err := decodeItem(stored[i]); err == nil {
					it = got
				} else {
					c.log.Error("metrics: a stored rollup does not decode; starting it again", "key", keys[i], "err", err)
				}
			}
			n := 0
			for _, r := range decoded[s] {
				if it.merge(r) {
					n++
				}
			}
			merged, replayed = merged+n, replayed+len(decoded[s])-n
			if n == 0 {
				continue
			}
			it.sum.Start, it.sum.Interval = s.minute, time.Minute
			writes = append(writes, store.EntityWrite{Namespace: c.space.ns, Key: keys[i], Values: []store.Value{{
				Feature: c.space.rollup, Value: it.append(nil),
				// The merged set only grows: a larger one is newer, so
				// a late write of a smaller one (a consumer that lost
				// the partition) never replaces it.
				ObservedAt: s.minute.Add(time.Duration(len(it.hashes)) * time.Microsecond),
			}}})
		}
		if len(writes) == 0 {
			return nil
		}
		if err := c.st.Write(ctx, writes); err != nil {
			return fmt.Errorf("write %d rollups: %w", len(writes), err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	c.remember(writes)
	c.records.WithLabelValues("merged").Add(float64(merged))
	c.records.WithLabelValues("replayed").Add(float64(replayed))
	return nil
}

// remember keeps the items written, and forgets those past cacheMinutes.
func (c *Consumer) remember(writes []store.EntityWrite) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, w := range writes {
		c.written[w.Key] = w.Values[0].Value.([]byte)
	}
	oldest := time.Now().Add(-cacheMinutes * time.Minute)
	for k := range c.written {
		if s, _ := parseItemKey(k); s.minute.Before(oldest) {
			delete(c.written, k)
		}
	}
}

// retry runs f until it succeeds or ctx ends, with capped, jittered,
// exponential backoff.
func (c *Consumer) retry(ctx context.Context, f func() error) error {
	backoff := 50 * time.Millisecond
	for {
		err := f()
		if err == nil {
			c.writes.WithLabelValues("ok").Inc()
			return nil
		}
		c.writes.WithLabelValues("error").Inc()
		c.log.Warn("metrics: rollup write failed; retrying", "err", err, "backoff", backoff)
		t := time.NewTimer(backoff/2 + rand.N(backoff/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		backoff = min(2*backoff, c.cfg.MaxBackoff)
	}
}
