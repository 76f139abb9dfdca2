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
//     decoded, names a feature the registry does not have, or is rejected by
//     the store as unwritable goes to the dead-letter topic with the reason in
//     its headers, and the partition moves on.
//   - Store outages and throttling pause consumption: the batch is retried
//     with capped, jittered exponential backoff and nothing is committed
//     until it succeeds.
package writer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/cairnfs/cairn/internal/bloom"
	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/queue"
	"github.com/cairnfs/cairn/internal/store"
)

// Store is the online store as the writer uses it.
type Store interface {
	// Write applies newest-wins writes; entities in one call are distinct.
	// Errors wrapping store.ErrRejected are not retried.
	Write(ctx context.Context, writes []store.EntityWrite) error
}

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
	// Default 30s.
	DrainTimeout time.Duration
	// FilterLease and FilterGroupPrefix must match the query servers'
	// Bloom filter trackers (see package bloom): before writing a batch
	// the writer waits until every live tracker has read past it.
	// Defaults 10s and "cairn-bloom.".
	FilterLease       time.Duration
	FilterGroupPrefix string
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
	return errors.Join(errs...)
}

// Writer consumes the persistence topic into the online store.
type Writer struct {
	cfg   Config
	qcfg  queue.Config
	reg   *feature.Registry
	store Store
	cl    *kgo.Client
	log   *slog.Logger
	m     metrics

	barrier *bloom.Barrier
}

type metrics struct {
	records     *prometheus.CounterVec
	entities    prometheus.Counter
	storeErrors prometheus.Counter
	batch       prometheus.Histogram
	commits     *prometheus.CounterVec
}

// New joins the writers' consumer group. Consumption starts with Run.
func New(qcfg queue.Config, cfg Config, reg *feature.Registry, st Store, promReg prometheus.Registerer, log *slog.Logger) (*Writer, error) {
	qcfg.EnsureDefaults()
	cfg.EnsureDefaults()
	if err := errors.Join(qcfg.Validate(), cfg.Validate()); err != nil {
		return nil, err
	}
	opts := append(qcfg.ClientOpts(),
		kgo.ConsumerGroup(qcfg.WriterGroup),
		kgo.ConsumeTopics(qcfg.PersistTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		// Rebalances wait until the polled batch is written and committed,
		// so a partition never moves while its records are half done.
		kgo.BlockRebalanceOnPoll(),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// The dead-letter topic is written by this client.
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerBatchMaxBytes(int32(qcfg.MaxRecordBytes)+4096),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("writer: new consumer: %w", err)
	}
	w := &Writer{cfg: cfg, qcfg: qcfg, reg: reg, store: st, cl: cl, log: log,
		barrier: bloom.NewBarrier(kadm.NewClient(cl), qcfg.PersistTopic, cfg.FilterGroupPrefix, cfg.FilterLease, promReg, log)}
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
	}
	if promReg != nil {
		promReg.MustRegister(w.m.records, w.m.entities, w.m.storeErrors, w.m.batch, w.m.commits)
	}
	return w, nil
}

// Run consumes until ctx is done, then finishes the batch in hand (for at
// most DrainTimeout), commits it, leaves the group and closes the client.
func (w *Writer) Run(ctx context.Context) error {
	// Work on a batch continues past ctx's end so that a shutdown finishes
	// it; drainCtx ends DrainTimeout after ctx.
	drainCtx, cancelDrain := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelDrain()
	stop := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(w.cfg.DrainTimeout, cancelDrain)
		context.AfterFunc(drainCtx, func() { t.Stop() })
	})
	defer stop()
	defer w.cl.Close() // leaves the group

	for {
		fetches := w.cl.PollRecords(ctx, w.cfg.MaxBatchRecords)
		if fetches.IsClientClosed() {
			return nil
		}
		fetches.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				w.log.Warn("writer: fetch", "topic", topic, "partition", p, "err", err)
			}
		})
		records := fetches.Records()
		if len(records) > 0 {
			start := time.Now()
			if err := w.process(drainCtx, records); err != nil {
				// Only a cancelled drain gets here: leave the batch
				// uncommitted for whoever owns the partitions next.
				w.log.Warn("writer: batch abandoned at shutdown; it will be redelivered", "records", len(records), "err", err)
				return nil
			}
			w.commit(drainCtx, records)
			w.m.batch.Observe(time.Since(start).Seconds())
		}
		w.cl.AllowRebalance()
		if ctx.Err() != nil {
			return nil
		}
	}
}

func (w *Writer) commit(ctx context.Context, records []*kgo.Record) {
	if err := w.cl.CommitRecords(ctx, records...); err != nil {
		w.m.commits.WithLabelValues("error").Inc()
		w.log.Warn("writer: commit failed; the batch will be redelivered and rewritten harmlessly", "records", len(records), "err", err)
		return
	}
	w.m.commits.WithLabelValues("ok").Inc()
}

// decoded is a record ready to write.
type decoded struct {
	rec    *kgo.Record
	writes []store.EntityWrite
}

// process writes a batch: dead-letters what cannot be decoded, coalesces the
// rest and writes it. It returns only once everything is durable, or with
// ctx's error.
func (w *Writer) process(ctx context.Context, records []*kgo.Record) error {
	var good []decoded
	for _, r := range records {
		writes, err := w.decode(r.Value)
		if err != nil {
			if err := w.deadLetter(ctx, r, err); err != nil {
				return err
			}
			continue
		}
		good = append(good, decoded{rec: r, writes: writes})
	}
	if len(good) == 0 {
		return nil
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
		return err
	}
	var all []store.EntityWrite
	for _, d := range good {
		all = append(all, d.writes...)
	}
	err := w.write(ctx, store.Coalesce(all))
	if err == nil {
		w.m.records.WithLabelValues("written").Add(float64(len(good)))
		return nil
	}
	if !errors.Is(err, store.ErrRejected) {
		return err
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
				return err
			}
		default:
			return err
		}
	}
	return nil
}

// write retries a store write until it succeeds, is rejected, or ctx ends.
func (w *Writer) write(ctx context.Context, writes []store.EntityWrite) error {
	for attempt := 0; ; attempt++ {
		err := w.store.Write(ctx, writes)
		if err == nil {
			w.m.entities.Add(float64(len(writes)))
			return nil
		}
		if errors.Is(err, store.ErrRejected) {
			return err
		}
		w.m.storeErrors.Inc()
		d := Backoff(attempt, w.cfg.MinBackoff, w.cfg.MaxBackoff)
		w.log.Warn("writer: store write failed; pausing", "entities", len(writes), "attempt", attempt+1, "retry_in", d, "err", err)
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
// the registry.
func (w *Writer) decode(value []byte) ([]store.EntityWrite, error) {
	rec, err := queue.DecodeRecord(value)
	if err != nil {
		return nil, err
	}
	out := make([]store.EntityWrite, 0, len(rec.Entities))
	for _, e := range rec.Entities {
		ns, ok := w.reg.Namespace(e.Namespace)
		if !ok {
			return nil, fmt.Errorf("unknown namespace %q", e.Namespace)
		}
		ew := store.EntityWrite{Namespace: ns, Key: e.Key, Values: make([]store.Value, 0, len(e.Values))}
		for _, v := range e.Values {
			f, ok := w.reg.Lookup(v.FQN)
			if !ok || f.Namespace != ns {
				return nil, fmt.Errorf("unknown feature %q in namespace %q", v.FQN, e.Namespace)
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
			w.m.records.WithLabelValues("dead_lettered").Inc()
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		d := Backoff(attempt, w.cfg.MinBackoff, w.cfg.MaxBackoff)
		w.log.Warn("writer: dead-letter produce failed; retrying", "retry_in", d, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
		}
	}
}
