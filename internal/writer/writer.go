// Package writer is the persistence writer: a Kafka consumer group member
// that decodes persistence records, coalesces them per entity (newest value
// of each feature wins), writes the online store and only then commits the
// records' offsets.
//
// Guarantees:
//
//   - Nothing acknowledged is lost: an offset is committed only after every
//     record before it is in the store or in the dead-letter topic. A crash
//     at any point redelivers the uncommitted records, and since store
//     writes are newest-wins by observed-at, writing them again changes
//     nothing.
//   - A poison record never blocks a partition: a record that cannot be
//     decoded, holds a value of the wrong type for its feature, or is
//     rejected by the store as unwritable goes to the dead-letter topic with
//     the reason in its headers, and the partition moves on.
//   - A record naming a namespace or feature the registry does not know is
//     not poison: the writers' feature file is older than the query
//     servers'. The writer pauses that partition at that record (see
//     [Writer.Ready]) and resumes it from that record once [Writer.SetRegistry]
//     gives it a registry that knows the name. Other partitions go on.
//   - Store outages and throttling pause consumption: the batch is retried
//     with capped, jittered exponential backoff and nothing is committed
//     until it succeeds.
//   - A stopping writer never hangs: [Writer.Run] returns at most
//     DrainTimeout plus a few seconds after its context ends, whatever the
//     store or Kafka do, leaving an unfinished batch uncommitted.
package writer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/cairnfs/cairn/internal/bloom"
	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/lograte"
	"github.com/cairnfs/cairn/internal/queue"
	"github.com/cairnfs/cairn/internal/store"
)

// Store is the online store as the writer uses it.
type Store interface {
	// Write applies newest-wins writes; entities in one call are distinct.
	// Errors wrapping store.ErrRejected are not retried.
	Write(ctx context.Context, writes []store.EntityWrite) error
}

// leaveTimeout bounds leaving the consumer group at the end of Run, so that
// a writer stopped while Kafka is unreachable still exits.
const leaveTimeout = 5 * time.Second

// Config tunes the writer.
type Config struct {
	// MaxBatchRecords is the most records coalesced into one store write.
	// Default 1000.
	MaxBatchRecords int
	// MinBackoff is the first pause after a failed store write. Default 100ms.
	MinBackoff time.Duration
	// MaxBackoff caps the pause between attempts. Default 30s.
	MaxBackoff time.Duration
	// DrainTimeout is how long a stopping writer keeps trying to finish its
	// current batch before giving up on it (uncommitted, so redelivered).
	// Run returns at most DrainTimeout plus 5s (the bounded group leave)
	// after its context ends. Default 30s.
	DrainTimeout time.Duration
	// FilterLease and FilterGroupPrefix must match the query servers'
	// Bloom filter trackers (see package bloom): before writing a batch
	// the writer waits until every live tracker has read past it.
	// Defaults 10s and "cairn-bloom.".
	FilterLease       time.Duration
	FilterGroupPrefix string

	// InstanceID makes the writer a static member of its consumer group
	// (KIP-345): a writer restarted with the same id takes its partitions
	// back at once, without a rebalance and without waiting for the
	// session timeout. It must be stable across restarts and unique among
	// the writers of a group. A static member does not leave the group when
	// it stops: its partitions stay idle until it comes back or
	// SessionTimeout passes. A demotion to standby does remove it (see
	// [Writer.SetStoreWrites]). The process sets it from
	// CAIRN_WRITER_INSTANCE_ID, whose default is the host name. Default
	// empty: dynamic membership.
	InstanceID string
	// SessionTimeout is how long the group waits for a writer that stopped
	// heartbeating (killed, partitioned, or a static member gone for good)
	// before giving its partitions to the others. It must lie within the
	// brokers' group.min.session.timeout.ms and
	// group.max.session.timeout.ms (6s and 30m by default). Default 30s.
	SessionTimeout time.Duration
	// HealthWindow is how long store writes, or Kafka fetches, commits and
	// offset listings, may fail without a success in between before Health
	// reports the writer unhealthy. Default 15s.
	HealthWindow time.Duration
	// LagInterval is how often the lag of the owned partitions
	// (cairn_writer_lag_records) is read from Kafka; each reading is
	// bounded by the same duration. Default 5s.
	LagInterval time.Duration
	// StoreWrites is whether the writer starts active (a member of its
	// group, consuming and writing the store) or in standby (no member,
	// consuming and writing nothing until [Writer.SetStoreWrites] turns it
	// active): standby is for the
	// passive region of DynamoDB Global Tables (see [StoreWrites]). The
	// process sets it from CAIRN_WRITER_STORE_WRITES. Default active.
	StoreWrites StoreWrites
	// UpdateCacheSize is how many buckets of windowed features the writer
	// keeps, as it last wrote them, so that updating a hot bucket needs no
	// read first (see docs/aggregations.md). The process sets it from
	// DYNAMODB_AGGREGATE_UPDATE_CACHE_SIZE, whose default is 256. Default
	// 0: every update reads its bucket.
	UpdateCacheSize int
	// Now is the clock that tells events too old for any window. Default
	// time.Now.
	Now func() time.Time
}

// EnsureDefaults fills zero fields with their defaults.
func (c *Config) EnsureDefaults() {
	if c.MaxBatchRecords == 0 {
		c.MaxBatchRecords = 1000
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = 100 * time.Millisecond
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = 30 * time.Second
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 30 * time.Second
	}
	if c.SessionTimeout == 0 {
		c.SessionTimeout = 30 * time.Second
	}
	if c.HealthWindow == 0 {
		c.HealthWindow = 15 * time.Second
	}
	if c.LagInterval == 0 {
		c.LagInterval = 5 * time.Second
	}
	if c.StoreWrites == "" {
		c.StoreWrites = StoreWritesActive
	}
}

// Validate reports every problem with c.
func (c *Config) Validate() error {
	var errs []error
	if c.MaxBatchRecords < 1 {
		errs = append(errs, fmt.Errorf("writer: max batch records %d: want at least 1", c.MaxBatchRecords))
	}
	if c.MinBackoff <= 0 || c.MaxBackoff < c.MinBackoff {
		errs = append(errs, fmt.Errorf("writer: backoff %v..%v: want 0 < min <= max", c.MinBackoff, c.MaxBackoff))
	}
	if c.DrainTimeout < 0 {
		errs = append(errs, fmt.Errorf("writer: drain timeout %v is negative", c.DrainTimeout))
	}
	if c.SessionTimeout < 6*time.Second || c.SessionTimeout > 30*time.Minute {
		errs = append(errs, fmt.Errorf("writer: session timeout %v: want 6s..30m (the brokers' default group.min/max.session.timeout.ms)", c.SessionTimeout))
	}
	if c.HealthWindow <= 0 {
		errs = append(errs, fmt.Errorf("writer: health window %v: want more than 0", c.HealthWindow))
	}
	if c.LagInterval <= 0 {
		errs = append(errs, fmt.Errorf("writer: lag interval %v: want more than 0", c.LagInterval))
	}
	if _, err := ParseStoreWrites(string(c.StoreWrites)); err != nil {
		errs = append(errs, err)
	}
	if c.UpdateCacheSize < 0 || c.UpdateCacheSize > 1<<24 {
		errs = append(errs, fmt.Errorf("writer: aggregate update cache size %d (DYNAMODB_AGGREGATE_UPDATE_CACHE_SIZE): want 0 (off) to %d", c.UpdateCacheSize, 1<<24))
	}
	return errors.Join(errs...)
}

// Writer consumes the persistence topic into the online store.
type Writer struct {
	cfg   Config
	qcfg  queue.Config
	store Store
	// agg folds events of windowed features into their buckets; nil when
	// the feature file declares none.
	agg *aggregator
	// cl is the consumer-group client: nil while the writer is no member
	// of its group (in standby). Run sets it, under mu.
	cl *kgo.Client
	// base is a client of the same cluster outside the group, and adm its
	// admin: offset listings (lag, the Kafka probe of Health) and the
	// Bloom barrier go through them, member or not.
	base *kgo.Client
	adm  *kadm.Client
	log  *slog.Logger
	m    metrics

	barrier *bloom.Barrier
	// gate is the switch between active and standby.
	gate gate
	// wasStandby is set while the writer has been in standby since it
	// last joined its group: the next join seeds the group's offsets
	// first. switchedAt is the failover time of the last cluster switch
	// made in standby; zero for none. Both are Run's alone.
	wasStandby bool
	switchedAt time.Time

	// switches hands Run the requests of SwitchTo; stopped is closed when
	// Run returns.
	switches chan switchRequest
	stopped  chan struct{}
	// rewind is how far before a switch's failover time the writer
	// starts partitions without a usable replicated offset.
	rewind time.Duration

	// storeHealth, kafkaHealth and deadLetterHealth track runs of
	// failures for Health.
	storeHealth, kafkaHealth, deadLetterHealth failing
	// Rate limits of the log lines a failing dependency repeats.
	storeLog, kafkaLog, fetchLog lograte.Limiter

	mu struct {
		sync.Mutex
		// reg is the feature registry records are checked against.
		reg *feature.Registry
		// paused holds the partitions stopped at a record naming
		// something reg does not know.
		paused map[int32]pausedAt
		// owned are the persistence topic's partitions assigned to this
		// writer.
		owned map[int32]bool
		// inflight is the timestamp of the oldest record of the batch
		// being written; zero between batches.
		inflight time.Time
	}
}

type metrics struct {
	records     *prometheus.CounterVec
	entities    prometheus.Counter
	storeErrors prometheus.Counter
	batch       prometheus.Histogram
	commits     *prometheus.CounterVec
	paused      prometheus.Gauge
	lagRecords  *prometheus.GaugeVec
	lagSeconds  prometheus.GaugeFunc
	storeWrites prometheus.Gauge
}

// New makes a writer of the cluster qcfg names. It joins the writers'
// consumer group when Run starts, if it is active (see [StoreWrites]).
func New(qcfg queue.Config, cfg Config, reg *feature.Registry, st Store, promReg prometheus.Registerer, log *slog.Logger) (*Writer, error) {
	qcfg.EnsureDefaults()
	cfg.EnsureDefaults()
	if err := errors.Join(qcfg.Validate(), cfg.Validate()); err != nil {
		return nil, err
	}
	w := &Writer{cfg: cfg, qcfg: qcfg, store: st, log: log}
	w.mu.reg = reg
	w.mu.paused = map[int32]pausedAt{}
	w.mu.owned = map[int32]bool{}
	w.storeLog.Interval, w.kafkaLog.Interval, w.fetchLog.Interval = logEvery, logEvery, logEvery
	base, err := kgo.NewClient(qcfg.ClientOpts()...)
	if err != nil {
		return nil, fmt.Errorf("writer: new client: %w", err)
	}
	w.base = base
	w.adm = kadm.NewClient(base)
	w.barrier = bloom.NewBarrier(w.adm, qcfg.PersistTopic, cfg.FilterGroupPrefix, cfg.FilterLease, promReg, log)
	w.switches, w.stopped = make(chan switchRequest), make(chan struct{})
	w.m = metrics{
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_writer_records_total",
			Help: "Persistence records consumed, by outcome (written, dead_lettered).",
		}, []string{"outcome"}),
		entities: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_writer_entities_written_total",
			Help: "Entities written to the online store after coalescing.",
		}),
		storeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_writer_store_retries_total",
			Help: "Store writes that failed and were retried after a backoff.",
		}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "cairn_writer_batch_seconds",
			Help:    "Time to write one polled batch, from poll to commit.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
		commits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_writer_commits_total",
			Help: "Offset commits, by outcome (ok, error). A failed commit only means redelivery.",
		}, []string{"outcome"}),
		paused: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cairn_writer_paused_partitions",
			Help: "Partitions paused at a record naming a namespace or feature this writer's registry does not know; reload the feature file to resume.",
		}),
		lagRecords: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cairn_writer_lag_records",
			Help: "Per partition owned by this writer: the partition's end offset minus the group's committed offset.",
		}, []string{"partition"}),
		lagSeconds: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "cairn_writer_lag_seconds",
			Help: "Age of the oldest record polled but not yet written (in the batch in hand or at a paused partition); 0 when caught up.",
		}, w.lagSeconds),
		storeWrites: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cairn_writer_store_writes_active",
			Help: "1 while this writer consumes and writes the online store, 0 while it is in standby (CAIRN_WRITER_STORE_WRITES).",
		}),
	}
	w.gate.active = w.m.storeWrites
	w.m.storeWrites.Set(1)
	w.gate.set(cfg.StoreWrites != StoreWritesStandby)
	// Started in standby: the first join, whenever it comes, seeds.
	w.wasStandby = cfg.StoreWrites == StoreWritesStandby
	if promReg != nil {
		promReg.MustRegister(w.m.records, w.m.entities, w.m.storeErrors, w.m.batch, w.m.commits,
			w.m.paused, w.m.lagRecords, w.m.lagSeconds, w.m.storeWrites)
	}
	if hasWindowed(reg) {
		bs, ok := st.(store.BucketStore)
		if !ok {
			base.Close()
			return nil, errors.New("writer: the feature file declares windowed features, and this online store cannot keep their buckets")
		}
		now := cfg.Now
		if now == nil {
			now = time.Now
		}
		if w.agg, err = newAggregator(bs, cfg.UpdateCacheSize, now, promReg, log); err != nil {
			base.Close()
			return nil, err
		}
	}
	return w, nil
}

// hasWindowed reports whether reg declares a windowed feature.
func hasWindowed(reg *feature.Registry) bool {
	if reg == nil {
		return false
	}
	for _, ns := range reg.Namespaces() {
		for _, f := range ns.Features {
			if f.Windowed() {
				return true
			}
		}
	}
	return false
}

// newClient returns the writer's consumer-group client of the cluster qcfg
// names.
func (w *Writer) newClient(qcfg queue.Config) (*kgo.Client, error) {
	opts := append(qcfg.ClientOpts(),
		kgo.ConsumerGroup(qcfg.WriterGroup),
		kgo.ConsumeTopics(qcfg.PersistTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		// Rebalances wait until the polled batch is written and committed,
		// so a partition never moves while its records are half done.
		// Hazard: Close waits for a rebalance that an un-allowed poll
		// blocks forever, so Run always ends with AllowRebalance and
		// CloseAllowingRebalance (see close).
		kgo.BlockRebalanceOnPoll(),
		kgo.SessionTimeout(w.cfg.SessionTimeout),
		// The revoke and lost callbacks only forget per-partition state:
		// with autocommit off, every batch is committed before the poll
		// that follows it allows a rebalance, so there is nothing left to
		// commit on revoke.
		kgo.OnPartitionsAssigned(w.assigned),
		kgo.OnPartitionsRevoked(w.revoked),
		kgo.OnPartitionsLost(w.revoked),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// The dead-letter topic is written by this client.
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerBatchMaxBytes(int32(qcfg.MaxRecordBytes)+4096),
	)
	if w.cfg.InstanceID != "" {
		// A static member sends no LeaveGroup on Close: its partitions
		// wait SessionTimeout for it (docs/queue.md, static membership).
		// A demotion to standby removes it explicitly (see leave).
		opts = append(opts, kgo.InstanceID(w.cfg.InstanceID))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("writer: new consumer: %w", err)
	}
	return cl, nil
}

// Run consumes until ctx is done, then finishes the batch in hand (for at
// most DrainTimeout), commits it, leaves the group (a dynamic member) and
// closes the client. It returns at most DrainTimeout plus 5s after ctx
// ends, whatever the store and Kafka do; a batch not finished by then is
// left uncommitted for the partitions' next owner.
//
// While the writer is in standby Run is no member of the group: it joins
// when the writer turns active and leaves when it turns standby (see
// [Writer.SetStoreWrites]).
func (w *Writer) Run(ctx context.Context) error {
	// Work on a batch continues past ctx's end so that a shutdown finishes
	// it; drainCtx ends DrainTimeout after ctx.
	drainCtx, cancelDrain := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelDrain()
	defer close(w.stopped)
	stop := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(w.cfg.DrainTimeout, cancelDrain)
		context.AfterFunc(drainCtx, func() { t.Stop() })
	})
	defer stop()

	lagCtx, stopLag := context.WithCancel(ctx)
	lagDone := make(chan struct{})
	go func() {
		defer close(lagDone)
		w.refreshLag(lagCtx)
	}()
	defer w.close(stopLag, lagDone)

	for attempt := 0; ; {
		active, changed := w.gate.state()
		if !active {
			// A standby writer is no member of its group (see
			// StoreWrites); it still switches cluster when asked.
			w.wasStandby = true
			if w.cl != nil {
				w.leave()
			}
			select {
			case <-changed:
			case r := <-w.switches:
				r.done <- w.switchStandby(r)
			case <-ctx.Done():
				return nil
			}
			continue
		}
		if w.cl == nil {
			if err := w.join(ctx); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				w.kafkaHealth.fail(time.Now())
				d := Backoff(attempt, w.cfg.MinBackoff, w.cfg.MaxBackoff)
				attempt++
				if ok, n := w.kafkaLog.Allow(time.Now()); ok {
					w.log.Warn("writer: joining the consumer group failed; retrying", "group", w.qcfg.WriterGroup, "retry_in", d, "err", err, "suppressed", n)
				}
				select {
				case <-changed:
				case r := <-w.switches:
					// Not a member yet: as in standby.
					r.done <- w.switchStandby(r)
				case <-ctx.Done():
					return nil
				case <-time.After(d):
				}
				continue
			}
			attempt = 0
		}
		// A switch of cluster, or a demotion, interrupts the poll (and
		// only the poll): a batch in hand is written and committed
		// first, unless the writer was demoted.
		pollCtx, cancelPoll := context.WithCancel(ctx)
		polled, reqc := make(chan struct{}), make(chan switchRequest, 1)
		go func() {
			defer close(reqc)
			select {
			case r := <-w.switches:
				reqc <- r
				cancelPoll()
			case <-changed:
				cancelPoll()
			case <-polled:
			}
		}()
		fetches := w.cl.PollRecords(pollCtx, w.cfg.MaxBatchRecords)
		close(polled)
		req := <-reqc // the zero request: none
		cancelPoll()
		if fetches.IsClientClosed() {
			return nil
		}
		fetches.EachError(func(topic string, p int32, err error) {
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) && pollCtx.Err() != nil {
				return
			}
			w.kafkaHealth.fail(time.Now())
			if ok, n := w.fetchLog.Allow(time.Now()); ok {
				w.log.Warn("writer: fetch", "topic", topic, "partition", p, "err", err, "suppressed", n)
			}
		})
		demoted := false
		if records := fetches.Records(); len(records) > 0 {
			start := time.Now()
			// A demotion stops the batch where it is: the demoted
			// region writes nothing more.
			procCtx, cancelProc := context.WithCancel(drainCtx)
			go func() {
				select {
				case <-changed:
					cancelProc()
				case <-procCtx.Done():
				}
			}()
			done, err := w.process(procCtx, records)
			cancelProc()
			switch {
			case err != nil && !w.gate.isActive():
				// Nothing of the batch is committed: what it wrote
				// before the demotion is written again, harmlessly
				// (newest-wins), by the partitions' next owner.
				w.log.Info("writer: turned standby with a batch in hand; it is left uncommitted for the partitions' next owner", "records", len(records))
				w.setInflight(time.Time{})
				demoted = true
			case err != nil:
				// Only a cancelled drain gets here: leave the batch
				// uncommitted for whoever owns the partitions next.
				w.log.Warn("writer: batch abandoned at shutdown; it will be redelivered", "records", len(records), "err", err)
				return nil
			default:
				// Written: committed, demoted or not.
				if len(done) > 0 {
					w.commit(drainCtx, done)
				}
				w.setInflight(time.Time{})
				w.m.batch.Observe(time.Since(start).Seconds())
			}
		}
		w.cl.AllowRebalance()
		if demoted {
			// Leave even if turned active again meanwhile: the client's
			// fetch positions are past the abandoned batch, and a commit
			// after them would mark it committed. The join after starts
			// from the committed offsets.
			w.wasStandby = true
			w.leave()
		}
		if ctx.Err() != nil {
			if req.done != nil {
				req.done <- ctx.Err()
			}
			return nil
		}
		if req.done == nil {
			continue
		}
		if w.cl == nil || !w.gate.isActive() {
			if w.cl != nil {
				w.wasStandby = true
				w.leave()
			}
			req.done <- w.switchStandby(req)
			continue
		}
		req.done <- w.switchCluster(req)
	}
}

// joinTimeout bounds the seeding of the group's offsets before a join.
const joinTimeout = 30 * time.Second

// join makes the writer a member of its group. After a standby, the
// group's committed offsets are seeded first, as at a cluster switch (see
// [Writer.SetRewind]).
func (w *Writer) join(ctx context.Context) error {
	if w.wasStandby {
		anchor, keepOlder := time.Now(), true
		if !w.switchedAt.IsZero() {
			anchor, keepOlder = w.switchedAt, false
		}
		from := anchor.Add(-w.rewindOrDefault())
		sctx, cancel := context.WithTimeout(ctx, joinTimeout)
		seeded, err := seedOffsets(sctx, w.qcfg, from, keepOlder)
		cancel()
		if err != nil {
			return err
		}
		if len(seeded) > 0 {
			w.log.Info("writer: seeded the group's offsets before joining", "group", w.qcfg.WriterGroup,
				"topic", w.qcfg.PersistTopic, "partitions", seeded, "from", from)
		}
	}
	cl, err := w.newClient(w.qcfg)
	if err != nil {
		return err
	}
	w.mu.Lock()
	w.cl = cl
	w.mu.Unlock()
	w.wasStandby, w.switchedAt = false, time.Time{}
	w.log.Info("writer: joined the consumer group", "group", w.qcfg.WriterGroup, "topic", w.qcfg.PersistTopic, "instance_id", w.cfg.InstanceID)
	return nil
}

// leave ends the writer's membership of its group at a demotion to
// standby: the batches written are committed already (Run commits each
// before the next poll), so closing the client loses nothing. A static
// member is removed from the group by its instance id as well, since
// franz-go sends no LeaveGroup for one: otherwise its partitions would
// wait SessionTimeout for it. The partitions it owned keep no lag series.
func (w *Writer) leave() {
	w.closeClient(w.cl)
	if id := w.cfg.InstanceID; id != "" {
		ctx, cancel := context.WithTimeout(context.Background(), leaveTimeout)
		resp, err := w.adm.LeaveGroup(ctx, kadm.LeaveGroup(w.qcfg.WriterGroup).InstanceIDs(id).Reason("cairn writer turned standby"))
		cancel()
		if err == nil {
			err = resp.Error()
		}
		if err != nil && !errors.Is(err, kerr.UnknownMemberID) {
			w.log.Warn("writer: removing the static member from the consumer group failed; its partitions wait for the session timeout",
				"instance_id", id, "err", err)
		}
	}
	w.mu.Lock()
	w.cl = nil
	for p := range w.mu.owned {
		w.m.lagRecords.DeleteLabelValues(partitionLabel(p))
	}
	clear(w.mu.owned)
	clear(w.mu.paused)
	w.m.paused.Set(0)
	w.mu.Unlock()
	w.setInflight(time.Time{})
	w.log.Info("writer: left the consumer group (standby)", "group", w.qcfg.WriterGroup, "instance_id", w.cfg.InstanceID)
}

// close stops the lag readings and closes the clients without hanging.
func (w *Writer) close(stopLag func(), lagDone <-chan struct{}) {
	stopLag()
	<-lagDone
	if w.cl != nil {
		w.closeClient(w.cl)
	}
	w.base.Close()
}

// closeClient leaves the group and closes cl, bounded (see close).
func (w *Writer) closeClient(cl *kgo.Client) {
	// BlockRebalanceOnPoll: a poll not followed by AllowRebalance (an
	// abandoned batch) would block the leave, and Close with it, forever.
	cl.AllowRebalance()
	// Close waits for the group to be left, which, for a dynamic member,
	// takes a LeaveGroup answered by the coordinator: bounded here, as
	// franz-go's Close documents, so that Kafka being down cannot hang
	// the stop. A static member sends no LeaveGroup.
	ctx, cancel := context.WithTimeout(context.Background(), leaveTimeout)
	if err := cl.LeaveGroupContext(ctx); err != nil {
		w.log.Warn("writer: leaving the consumer group failed; the group waits for the session timeout", "err", err)
	}
	cancel()
	cl.CloseAllowingRebalance()
}

func (w *Writer) commit(ctx context.Context, records []*kgo.Record) {
	if err := w.cl.CommitRecords(ctx, records...); err != nil {
		w.m.commits.WithLabelValues("error").Inc()
		if ctx.Err() == nil {
			w.kafkaHealth.fail(time.Now())
		}
		w.log.Warn("writer: commit failed; the batch will be redelivered and rewritten harmlessly", "records", len(records), "err", err)
		return
	}
	w.kafkaHealth.ok()
	w.m.commits.WithLabelValues("ok").Inc()
}

// decoded is a record ready to write.
type decoded struct {
	rec    *kgo.Record
	writes []store.EntityWrite
	// upload is set for uploaded values, whose values of aggregated
	// features are events of windowed features.
	upload bool
}

// process writes a batch: dead-letters what cannot be decoded, pauses the
// partitions of records naming what the registry does not know, coalesces
// the rest and writes it. It returns the records to commit (every record
// but those at or after a pause, in their partitions) once they are all
// durable, or ctx's error.
func (w *Writer) process(ctx context.Context, records []*kgo.Record) ([]*kgo.Record, error) {
	oldest := records[0].Timestamp
	for _, r := range records {
		if r.Timestamp.Before(oldest) {
			oldest = r.Timestamp
		}
	}
	w.setInflight(oldest)

	// Partitions paused by an earlier batch stay stopped: franz-go drops
	// their buffered records, and this guards against any left over (they
	// are at or after the paused record, so fetched again on resume).
	reg, stopped := w.snapshot()
	var done []*kgo.Record
	var good []decoded
	for _, r := range records {
		if stopped[r.Partition] {
			continue
		}
		writes, kind, err := decode(reg, r.Value)
		var unknown *UnknownFeatureError
		switch {
		case errors.As(err, &unknown):
			stopped[r.Partition] = true
			w.pause(r, unknown)
			continue
		case err != nil:
			if err := w.deadLetter(ctx, r, err); err != nil {
				return nil, err
			}
		default:
			good = append(good, decoded{rec: r, writes: writes, upload: kind == queue.KindUpload})
		}
		done = append(done, r)
	}
	if len(good) == 0 {
		return done, nil
	}
	// Every live query server's Bloom filter must hold these keys before
	// the store does.
	ends := map[int32]int64{}
	for _, d := range good {
		if end := d.rec.Offset + 1; end > ends[d.rec.Partition] {
			ends[d.rec.Partition] = end
		}
	}
	if err := w.barrier.Wait(ctx, ends); err != nil {
		return nil, err
	}
	var all []store.EntityWrite
	for _, d := range good {
		all = append(all, d.writes...)
	}
	// Events of windowed features go to their buckets first: a batch
	// whose buckets fail is retried whole, and the buckets already
	// updated skip the records they hold (aggregate.State.Seen).
	if w.agg != nil {
		if ups := w.agg.collect(reg, good); len(ups) > 0 {
			if err := w.aggregate(ctx, ups); err != nil {
				return nil, err
			}
		}
	}
	err := w.write(ctx, store.Coalesce(all))
	if err == nil {
		w.m.records.WithLabelValues("written").Add(float64(len(good)))
		return done, nil
	}
	if !errors.Is(err, store.ErrRejected) {
		return nil, err
	}
	// Some entity can never be written. Find the records holding it by
	// writing record by record; the rest are written as usual.
	for _, d := range good {
		err := w.write(ctx, store.Coalesce(d.writes))
		switch {
		case err == nil:
			w.m.records.WithLabelValues("written").Inc()
		case errors.Is(err, store.ErrRejected):
			if err := w.deadLetter(ctx, d.rec, err); err != nil {
				return nil, err
			}
		default:
			return nil, err
		}
	}
	return done, nil
}

// aggregate folds a batch's events into their buckets, retrying with
// backoff until every bucket is written or ctx ends.
func (w *Writer) aggregate(ctx context.Context, ups []*bucketUpdate) error {
	return w.untilStored(ctx, "bucket update", "buckets", len(ups), func() error {
		return w.agg.apply(ctx, ups, aggregateParallelism)
	})
}

// aggregateParallelism bounds the bucket updates of a batch in flight at
// once.
const aggregateParallelism = 16

// write retries a store write until it succeeds, is rejected, or ctx ends.
func (w *Writer) write(ctx context.Context, writes []store.EntityWrite) error {
	return w.untilStored(ctx, "store write", "entities", len(writes), func() error {
		err := w.store.Write(ctx, writes)
		if err == nil {
			w.m.entities.Add(float64(len(writes)))
		}
		return err
	})
}

// untilStored runs op, a store operation on n things (unit names them, what
// names the operation in the log), until it succeeds, is rejected
// (store.ErrRejected, returned), or ctx ends, pausing with Backoff between
// attempts. It returns errDemoted, without trying, once the writer is in
// standby: a demoted region writes nothing more.
func (w *Writer) untilStored(ctx context.Context, what, unit string, n int, op func() error) error {
	for attempt := 0; ; attempt++ {
		if err := w.gate.check(); err != nil {
			return err
		}
		err := op()
		if err == nil || errors.Is(err, store.ErrRejected) {
			// A rejection is an answer: the store is up.
			w.storeHealth.ok()
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		w.storeHealth.fail(time.Now())
		w.m.storeErrors.Inc()
		d := Backoff(attempt, w.cfg.MinBackoff, w.cfg.MaxBackoff)
		if ok, suppressed := w.storeLog.Allow(time.Now()); ok {
			w.log.Warn("writer: "+what+" failed; pausing", unit, n, "attempt", attempt+1, "retry_in", d, "err", err, "suppressed", suppressed)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
		}
	}
}

// Backoff returns the pause before retry attempt+1: full jitter over an
// exponential envelope, min·2^attempt capped at max.
func Backoff(attempt int, min, max time.Duration) time.Duration {
	env := max
	if attempt < 32 {
		if e := min << attempt; e > 0 && e < max {
			env = e
		}
	}
	return min/2 + rand.N(env-min/2+1)
}

// decode turns a record into store writes, checking every value against
// reg. A name reg does not know is reported as an *UnknownFeatureError.
func decode(reg *feature.Registry, value []byte) ([]store.EntityWrite, queue.Kind, error) {
	rec, err := queue.DecodeRecord(value)
	if err != nil {
		return nil, 0, err
	}
	writes, err := decodeEntities(reg, rec)
	return writes, rec.Kind, err
}

// decodeEntities checks every value of rec against reg. Values of windowed
// features are refused: the writers compute those.
func decodeEntities(reg *feature.Registry, rec *queue.Record) ([]store.EntityWrite, error) {
	out := make([]store.EntityWrite, 0, len(rec.Entities))
	for _, e := range rec.Entities {
		ns, ok := reg.Namespace(e.Namespace)
		if !ok {
			return nil, &UnknownFeatureError{Namespace: e.Namespace}
		}
		ew := store.EntityWrite{Namespace: ns, Key: e.Key, Values: make([]store.Value, 0, len(e.Values))}
		for _, v := range e.Values {
			f, ok := reg.Lookup(v.FQN)
			if !ok {
				return nil, &UnknownFeatureError{Namespace: e.Namespace, Feature: v.FQN}
			}
			if f.Namespace != ns {
				return nil, fmt.Errorf("feature %q is not in namespace %q", v.FQN, e.Namespace)
			}
			if f.Windowed() || f.WindowOf != nil {
				return nil, fmt.Errorf("feature %q is a windowed aggregation, computed by the writers: its values cannot be written", v.FQN)
			}
			if err := feature.Check(f.Type, v.Value); err != nil {
				return nil, fmt.Errorf("feature %q: %w", v.FQN, err)
			}
			ew.Values = append(ew.Values, store.Value{Feature: f, Value: v.Value, ObservedAt: v.ObservedAt})
		}
		if len(ew.Values) > 0 {
			out = append(out, ew)
		}
	}
	return out, nil
}

// deadLetter sets r aside on the dead-letter topic with the reason, retrying
// until Kafka acknowledges it: the record's offset is committed only after.
func (w *Writer) deadLetter(ctx context.Context, r *kgo.Record, reason error) error {
	dl := &kgo.Record{
		Topic: w.qcfg.DeadLetterTopic,
		Key:   r.Key,
		Value: r.Value,
		Headers: []kgo.RecordHeader{
			{Key: "cairn-error", Value: []byte(reason.Error())},
			{Key: "cairn-source-topic", Value: []byte(r.Topic)},
			{Key: "cairn-source-partition", Value: []byte(strconv.Itoa(int(r.Partition)))},
			{Key: "cairn-source-offset", Value: []byte(strconv.FormatInt(r.Offset, 10))},
		},
	}
	w.log.Error("writer: dead-lettering record", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "reason", reason)
	for attempt := 0; ; attempt++ {
		err := w.cl.ProduceSync(ctx, dl).FirstErr()
		if err == nil {
			w.deadLetterHealth.ok()
			w.m.records.WithLabelValues("dead_lettered").Inc()
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		w.deadLetterHealth.fail(time.Now())
		d := Backoff(attempt, w.cfg.MinBackoff, w.cfg.MaxBackoff)
		if ok, n := w.kafkaLog.Allow(time.Now()); ok {
			w.log.Warn("writer: dead-letter produce failed; retrying", "retry_in", d, "err", err, "suppressed", n)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
		}
	}
}

// switchRequest is a SwitchTo handed to Run.
type switchRequest struct {
	ctx  context.Context
	cfg  queue.Config
	at   time.Time
	done chan error
}

// SetRewind sets how far before a failover time the writer starts a
// partition without a usable committed offset (CAIRN_KAFKA_FAILOVER_REWIND);
// 0 keeps the default of 5m. Call it before Run. The rule:
//
//   - At a cluster switch while active, and at the activation of a writer
//     that switched cluster while in standby, the failover time is the
//     switch's: a partition whose committed offset is missing or before
//     the first record at or after it minus the rewind starts at that
//     record (see [SeedOffsets]); the replicated offsets lag the writes
//     of the region that made them.
//   - At the activation of a writer that did not switch cluster in
//     standby, the offsets the group has on its cluster are kept however
//     old (moving one forward could skip records no writer wrote); a
//     partition without one starts at the first record at or after the
//     activation minus the rewind.
//
// Either way a group with live members keeps its offsets: they are its
// members' own.
func (w *Writer) SetRewind(d time.Duration) { w.rewind = d }

// rewindOrDefault is the rewind, 5m when unset.
func (w *Writer) rewindOrDefault() time.Duration {
	if w.rewind <= 0 {
		return 5 * time.Minute
	}
	return w.rewind
}

// SwitchTo moves the writer to the cluster cfg describes, as a
// [queue.Participant]: Run finishes and commits the batch in hand, makes
// sure the group's committed offsets on the new cluster start no later than
// at minus the rewind (see [SeedOffsets]), leaves the group on the old
// cluster (bounded, as at a stop) and joins it on the new one. It returns
// once Run has switched, or with why not (the writer then stays on the old
// cluster), or with ctx's error. A writer in standby, no member of any
// group, only changes the cluster it will join when turned active, and
// seeds the offsets then, from at minus the rewind (see [Writer.SetRewind]).
//
// Records written again after a switch (the replicated offsets lag the
// writes, and the rewind replays) change nothing: store writes are
// newest-wins by observed-at.
func (w *Writer) SwitchTo(ctx context.Context, cfg queue.Config, at time.Time) error {
	cfg.EnsureDefaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	req := switchRequest{ctx: ctx, cfg: cfg, at: at, done: make(chan error, 1)}
	select {
	case w.switches <- req:
	case <-w.stopped:
		return errors.New("writer: stopped")
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-req.done:
		return err
	case <-w.stopped:
		return errors.New("writer: stopped before switching")
	case <-ctx.Done():
		// Run goes on with the switch; the next one sees where it ended.
		return ctx.Err()
	}
}

// switchCluster does a switch between two polls, the batch before it
// committed: the new cluster's offsets are seeded and its client made
// before the old client is closed, so that a failure leaves the writer
// consuming the old cluster.
func (w *Writer) switchCluster(req switchRequest) error {
	rewind := w.rewindOrDefault()
	seeded, err := SeedOffsets(req.ctx, req.cfg, req.at.Add(-rewind))
	if err != nil {
		return err
	}
	// A group client joins its group as soon as it is made: after the
	// seeding, whose commits an empty group only accepts.
	base, err := kgo.NewClient(req.cfg.ClientOpts()...)
	if err != nil {
		return fmt.Errorf("writer: new client: %w", err)
	}
	cl, err := w.newClient(req.cfg)
	if err != nil {
		base.Close()
		return err
	}
	w.log.Warn("writer: switching cluster", "brokers", req.cfg.Brokers, "topic", req.cfg.PersistTopic,
		"group", req.cfg.WriterGroup, "rewound_partitions", seeded, "rewind_to", req.at.Add(-rewind))
	// The old client's revoke callbacks run in its close and forget the
	// old topic's partitions: before the swap.
	w.closeClient(w.cl)
	w.swapCluster(req.cfg, cl, base)
	return nil
}

// switchStandby does a switch while the writer is no member of its group:
// it changes the cluster it will join, and remembers the failover time
// for the seeding at the join.
func (w *Writer) switchStandby(req switchRequest) error {
	base, err := kgo.NewClient(req.cfg.ClientOpts()...)
	if err != nil {
		return fmt.Errorf("writer: new client: %w", err)
	}
	w.log.Warn("writer: switching cluster in standby; the group is joined there when the writer turns active",
		"brokers", req.cfg.Brokers, "topic", req.cfg.PersistTopic, "group", req.cfg.WriterGroup, "failover_at", req.at)
	w.swapCluster(req.cfg, nil, base)
	w.switchedAt = req.at
	return nil
}

// swapCluster makes cfg's cluster the writer's, with group client cl (nil
// for none) and base client base, and closes the old base client.
func (w *Writer) swapCluster(cfg queue.Config, cl, base *kgo.Client) {
	adm := kadm.NewClient(base)
	w.mu.Lock()
	old := w.base
	w.cl, w.base, w.adm, w.qcfg = cl, base, adm, cfg
	w.mu.Unlock()
	w.barrier.SwitchTo(adm, cfg.PersistTopic)
	old.Close()
}

// SeedOffsets prepares the writers' group on the cluster cfg names for a
// switch to it: each partition of the persistence topic whose committed
// offset is missing, or before the first record at or after from, gets
// that record's offset committed (MSK Replicator copies the group's
// offsets, translated, but they may lag or be missing). Offsets at or
// after it are kept. It returns the partitions it committed. A group that
// already has members (another writer switched first, and seeded) keeps
// its offsets.
func SeedOffsets(ctx context.Context, cfg queue.Config, from time.Time) ([]int32, error) {
	return seedOffsets(ctx, cfg, from, false)
}

// seedOffsets is SeedOffsets; with keepOlder, a committed offset before
// from is kept too, and only partitions without one are seeded.
func seedOffsets(ctx context.Context, cfg queue.Config, from time.Time, keepOlder bool) ([]int32, error) {
	cl, err := kgo.NewClient(cfg.ClientOpts()...)
	if err != nil {
		return nil, fmt.Errorf("writer: seed offsets: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	topic := cfg.PersistTopic
	after, err := adm.ListOffsetsAfterMilli(ctx, from.UnixMilli(), topic)
	if err == nil {
		err = after.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("writer: seed offsets: list offsets of %s after %s: %w", topic, from.UTC().Format(time.RFC3339), err)
	}
	committed, err := adm.FetchOffsetsForTopics(ctx, cfg.WriterGroup, topic)
	if err == nil {
		err = committed.Error()
	}
	if errors.Is(err, kerr.GroupIDNotFound) {
		// Nothing replicated for the group (some brokers say so instead
		// of answering no offsets).
		committed, err = nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("writer: seed offsets: committed offsets of group %s: %w", cfg.WriterGroup, err)
	}
	set := kadm.Offsets{}
	var parts []int32
	after.Each(func(o kadm.ListedOffset) {
		if c, ok := committed.Lookup(topic, o.Partition); ok && (c.At >= o.Offset || keepOlder && c.At >= 0) {
			return
		}
		set.AddOffset(topic, o.Partition, o.Offset, -1)
		parts = append(parts, o.Partition)
	})
	if len(parts) == 0 {
		return nil, nil
	}
	resp, err := adm.CommitOffsets(ctx, cfg.WriterGroup, set)
	if err != nil {
		return nil, fmt.Errorf("writer: seed offsets: commit to group %s: %w", cfg.WriterGroup, err)
	}
	if err := resp.Error(); err != nil {
		if errors.Is(err, kerr.UnknownMemberID) || errors.Is(err, kerr.IllegalGeneration) || errors.Is(err, kerr.RebalanceInProgress) {
			return nil, nil // the group is live: its members seeded it
		}
		return nil, fmt.Errorf("writer: seed offsets: commit to group %s: %w", cfg.WriterGroup, err)
	}
	slices.Sort(parts)
	return parts, nil
}
