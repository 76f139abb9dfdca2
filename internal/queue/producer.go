package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/cairnfs/cairn/internal/lograte"
)

// ErrTooLarge is returned for a record over Config.MaxRecordBytes.
var ErrTooLarge = errors.New("queue: record too large")

// ErrTimeout is returned by Persist when Kafka has not acknowledged the
// record within Config.ProduceTimeout. The record may still be written
// later, which is harmless: writes are newest-wins by observed-at.
var ErrTimeout = errors.New("queue: produce timed out")

// HealthWindow is how long a failed persistence record keeps
// [Producer.Health] failing when no record has been acknowledged since.
const HealthWindow = time.Minute

// logInterval is the least time between two log lines about failing
// records of one role: a broker outage fails every upload, and the log gets
// one line per interval with the count of those it did not report.
const logInterval = 10 * time.Second

// probeLogInterval is the least time between two lines of a failing
// [Producer.Probe]: the failure is a state, reported by /healthz, and
// logged as a reminder rather than per probe.
const probeLogInterval = time.Minute

// Producer publishes records from query servers: persistence records, which
// callers wait on, and query metrics, which they do not. Each has a Kafka
// client of its own, so that neither can hold up the other: a metrics topic
// that is slow or gone fills only the metrics buffer.
//
// Its methods are safe for concurrent use.
type Producer struct {
	// cur is the clients of the active cluster, replaced by SwitchTo.
	cur atomic.Pointer[clients]
	log *slog.Logger

	produced *prometheus.CounterVec
	latency  prometheus.Histogram

	persistLog, metricsLog, resultsLog, probeLog lograte.Limiter

	// failing is nil while persistence records are acknowledged; it is
	// replaced, never modified, under failMu.
	failing atomic.Pointer[HealthError]
	failMu  sync.Mutex

	// switchMu serializes SwitchTo and Close.
	switchMu sync.Mutex
}

// clients are a producer's three Kafka clients of one cluster.
type clients struct {
	cfg     Config
	persist *kgo.Client
	metrics *kgo.Client
	results *kgo.Client
	// watch keeps why the brokers last failed the persistence client
	// (wrong credentials, untrusted certificate, ...): a timed-out
	// upload's answer names it.
	watch *BrokerWatch
}

// NewProducer connects a producer: two Kafka clients, one for persistence
// records and one for query metrics. No connection is made before the
// first record.
//
// Persistence records are acknowledged by all in-sync replicas (acks=all)
// and are not produced idempotently (see docs/queue.md): an upload is
// answered within cfg.ProduceTimeout, and one answered with an error may or
// may not have been written, which newest-wins writes make harmless.
//
// Query metrics are acknowledged by the partition leader only and are
// dropped, and counted, when they find the metrics buffer full or wait for
// Kafka longer than cfg.MetricsDeliveryTimeout.
func NewProducer(cfg Config, reg prometheus.Registerer, log *slog.Logger) (*Producer, error) {
	cfg.EnsureDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cs, err := newClients(cfg)
	if err != nil {
		return nil, err
	}
	p := &Producer{
		log:        log,
		persistLog: lograte.Limiter{Interval: logInterval},
		metricsLog: lograte.Limiter{Interval: logInterval},
		resultsLog: lograte.Limiter{Interval: logInterval},
		probeLog:   lograte.Limiter{Interval: probeLogInterval},
		produced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_queue_produced_records_total",
			Help: "Records produced, by role (persist: uploads; results: query results, to the persistence topic; metrics) and outcome: ok (acknowledged), error (failed or not acknowledged in time), dropped (refused by a full producer buffer).",
		}, []string{"role", "outcome"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "cairn_queue_persist_ack_seconds",
			Help:    "Time from producing a persistence record to its acknowledgement by all in-sync replicas.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
	}
	p.cur.Store(cs)
	for _, role := range []string{"persist", "metrics", "results"} {
		for _, outcome := range []string{"ok", "error", "dropped"} {
			p.produced.WithLabelValues(role, outcome)
		}
	}
	if reg != nil {
		if err := errors.Join(reg.Register(p.produced), reg.Register(p.latency)); err != nil {
			cs.persist.Close()
			cs.metrics.Close()
			cs.results.Close()
			return nil, fmt.Errorf("queue: register metrics: %w", err)
		}
	}
	return p, nil
}

// newClients creates the two clients of a producer against cfg's cluster.
func newClients(cfg Config) (*clients, error) {
	watch := &BrokerWatch{}
	persist, err := kgo.NewClient(append(cfg.ClientOpts(),
		kgo.WithHooks(watch),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		// Idempotence is off. Correctness does not need it: a record
		// written twice, or out of order, changes nothing, since the
		// writer keeps the value with the newest observed-at. And an
		// idempotent producer never fails a record that is in flight
		// (RecordDeliveryTimeout and RecordRetries are enforced only
		// when safe for sequence numbers), so a hung broker held
		// records, and the buffer, for as long as it hung. Without it,
		// the delivery timeout below fails records at the latest when
		// the connection's read deadline (ProduceRequestTimeout plus
		// RequestTimeoutOverhead) kills the request.
		kgo.DisableIdempotentWrite(),
		// Without idempotence kgo allows one produce request in flight
		// per broker; since neither order nor duplicates matter (above),
		// keep the five the idempotent producer had, so that uploads do
		// not queue behind each other's acknowledgements.
		kgo.MaxProduceRequestsInflightPerBroker(5),
		kgo.ProducerBatchMaxBytes(int32(cfg.MaxRecordBytes)+512),
		kgo.ProducerLinger(0),
		kgo.RecordDeliveryTimeout(cfg.ProduceTimeout),
		kgo.ProduceRequestTimeout(cfg.ProduceTimeout),
		// MaxBufferedRecords and MaxBufferedBytes make Produce block
		// every producer of the client once reached; Persist uses
		// TryProduce, which fails at once with ErrMaxBuffered instead.
		kgo.MaxBufferedRecords(cfg.PersistBufferRecords),
		kgo.MaxBufferedBytes(cfg.PersistBufferBytes),
	)...)
	if err != nil {
		return nil, fmt.Errorf("queue: new persistence producer: %w", err)
	}
	metrics, err := kgo.NewClient(append(cfg.ClientOpts(),
		// Metrics are best effort: the leader's acknowledgement is
		// enough, which needs idempotence off, and keeps metrics
		// flowing while the in-sync replicas are fewer than
		// min.insync.replicas.
		kgo.RequiredAcks(kgo.LeaderAck()),
		kgo.DisableIdempotentWrite(),
		kgo.RecordDeliveryTimeout(cfg.MetricsDeliveryTimeout),
		kgo.ProduceRequestTimeout(cfg.MetricsDeliveryTimeout),
		// Metric uses TryProduce, so a full buffer drops the metric
		// instead of blocking the query that produced it.
		kgo.MaxBufferedRecords(cfg.MetricsBufferRecords),
	)...)
	if err != nil {
		persist.Close()
		return nil, fmt.Errorf("queue: new metrics producer: %w", err)
	}
	results, err := kgo.NewClient(append(cfg.ClientOpts(),
		// Query results go to the persistence topic, acknowledged like
		// uploads; nobody waits for them, and one lost is computed
		// again at the next query. Idempotence is off for the reasons
		// given for the persistence client.
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.DisableIdempotentWrite(),
		kgo.MaxProduceRequestsInflightPerBroker(5),
		kgo.ProducerBatchMaxBytes(int32(cfg.MaxRecordBytes)+512),
		kgo.RecordDeliveryTimeout(cfg.ProduceTimeout),
		kgo.ProduceRequestTimeout(cfg.ProduceTimeout),
		// PersistResult uses TryProduce: a full buffer drops the result
		// instead of blocking the query that computed it.
		kgo.MaxBufferedRecords(cfg.ResultsBufferRecords),
	)...)
	if err != nil {
		persist.Close()
		metrics.Close()
		return nil, fmt.Errorf("queue: new query-result producer: %w", err)
	}
	return &clients{cfg: cfg, persist: persist, metrics: metrics, results: results, watch: watch}, nil
}

// Persist produces r to the persistence topic and returns once every
// in-sync replica has it, or with an error within Config.ProduceTimeout,
// whatever the brokers do: ErrTimeout when they did not answer in time, the
// broker's or the client's error otherwise, ctx's error when ctx ends
// first. On error the record may or may not have been written, which is
// harmless because writes are newest-wins. A full producer buffer (Kafka
// slow or down for a while) fails the record at once.
func (p *Producer) Persist(ctx context.Context, key []byte, r *Record) error {
	c := p.cur.Load()
	value, err := AppendRecord(nil, r)
	if err != nil {
		return err
	}
	if len(value) > c.cfg.MaxRecordBytes {
		return fmt.Errorf("%w: %d bytes encoded, limit %d", ErrTooLarge, len(value), c.cfg.MaxRecordBytes)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	start := time.Now()
	done := make(chan error, 1)
	// The record gets a context of its own, not ctx: kgo fails a whole
	// batch by the context of its first record, so an upload whose
	// client went away would fail the uploads batched with it. The
	// record's life in the client is bounded by RecordDeliveryTimeout
	// instead; Persist's answer, by the timer below.
	c.persist.TryProduce(context.Background(), &kgo.Record{Topic: c.cfg.PersistTopic, Key: key, Value: value},
		func(_ *kgo.Record, err error) { done <- err }) // buffered: never blocks kgo's promise loop
	timer := time.NewTimer(c.cfg.ProduceTimeout)
	defer timer.Stop()
	if cause := c.watch.Err(); cause != nil && cause.Cause.fatal() {
		// Settings the brokers refuse (wrong credentials, an untrusted
		// certificate) fail every upload alike: answer at once, not at
		// the timeout. The record stays produced: it is the retry that
		// clears the cause once the brokers accept the settings again.
		err = cause
	} else {
		timedOut := func() error {
			err := fmt.Errorf("%w: %s did not acknowledge within %v", ErrTimeout, c.cfg.PersistTopic, c.cfg.ProduceTimeout)
			if cause := c.watch.Err(); cause != nil {
				err = fmt.Errorf("%w: %w", err, cause)
			}
			return err
		}
		select {
		case err = <-done:
			// kgo's delivery timeout is the produce timeout too: whichever
			// of it and the timer fires first, the answer is the same.
			if errors.Is(err, kgo.ErrRecordTimeout) {
				err = timedOut()
			}
		case <-timer.C:
			err = timedOut()
		case <-ctx.Done():
			p.produced.WithLabelValues("persist", "error").Inc()
			return fmt.Errorf("queue: produce to %s: %w", c.cfg.PersistTopic, context.Cause(ctx))
		}
	}
	if err != nil {
		outcome := "error"
		if errors.Is(err, kgo.ErrMaxBuffered) {
			outcome = "dropped"
		}
		p.produced.WithLabelValues("persist", outcome).Inc()
		if !errors.Is(err, ErrTimeout) {
			err = fmt.Errorf("queue: produce to %s: %w", c.cfg.PersistTopic, err)
		}
		p.fail(err)
		if ok, suppressed := p.persistLog.Allow(time.Now()); ok {
			p.log.Warn("queue: persistence record not acknowledged", "topic", c.cfg.PersistTopic, "err", err,
				"suppressed", suppressed)
		}
		return err
	}
	p.latency.Observe(time.Since(start).Seconds())
	p.produced.WithLabelValues("persist", "ok").Inc()
	if p.failing.Load() != nil {
		p.recovered()
	}
	return nil
}

// PersistResult hands a query-result record (values resolvers computed) to
// the persistence topic without waiting. When the results buffer is full
// (Kafka slow or down) or the record is too large, it is dropped and
// counted: a query never waits on Kafka, and results never take the
// uploads' buffer.
func (p *Producer) PersistResult(key []byte, r *Record) {
	c := p.cur.Load()
	value, err := AppendRecord(nil, r)
	if err == nil && len(value) > c.cfg.MaxRecordBytes {
		err = fmt.Errorf("%w: %d bytes encoded, limit %d", ErrTooLarge, len(value), c.cfg.MaxRecordBytes)
	}
	if err != nil {
		p.produced.WithLabelValues("results", "dropped").Inc()
		if ok, suppressed := p.resultsLog.Allow(time.Now()); ok {
			p.log.Warn("queue: query result dropped", "err", err, "suppressed", suppressed)
		}
		return
	}
	c.results.TryProduce(context.Background(), &kgo.Record{Topic: c.cfg.PersistTopic, Key: key, Value: value}, p.resultDone)
}

// resultDone counts the outcome of a query result. It runs in kgo's
// promise loop and must not block.
func (p *Producer) resultDone(_ *kgo.Record, err error) {
	if err == nil {
		p.produced.WithLabelValues("results", "ok").Inc()
		return
	}
	outcome := "error"
	if errors.Is(err, kgo.ErrMaxBuffered) {
		outcome = "dropped"
	}
	p.produced.WithLabelValues("results", outcome).Inc()
	if ok, suppressed := p.resultsLog.Allow(time.Now()); ok {
		p.log.Warn("queue: query result not persisted", "topic", p.cur.Load().cfg.PersistTopic, "err", err, "suppressed", suppressed)
	}
}

// Metric hands a query metric to Kafka without waiting. When the metrics
// buffer is full (the metrics topic slow or gone) the metric is dropped and
// counted: a query never waits on Kafka, and uploads never wait on metrics.
func (p *Producer) Metric(value []byte) {
	c := p.cur.Load()
	c.metrics.TryProduce(context.Background(), &kgo.Record{Topic: c.cfg.MetricsTopic, Value: value}, p.metricDone)
}

// metricDone counts the outcome of a metric. It runs in kgo's promise loop
// and must not block.
func (p *Producer) metricDone(_ *kgo.Record, err error) {
	c := p.cur.Load()
	if err == nil {
		p.produced.WithLabelValues("metrics", "ok").Inc()
		return
	}
	outcome := "error"
	if errors.Is(err, kgo.ErrMaxBuffered) {
		outcome = "dropped"
	}
	p.produced.WithLabelValues("metrics", outcome).Inc()
	if ok, suppressed := p.metricsLog.Allow(time.Now()); ok {
		p.log.Warn("queue: query metric dropped", "topic", c.cfg.MetricsTopic, "err", err, "suppressed", suppressed)
	}
}

// Probe asks the brokers for metadata through the persistence client, as
// an upload would reach them: the same connections, TLS and SASL. It
// returns nil when they answer and the latest persistence records were
// acknowledged (see Health); otherwise a *ConnectError naming the cause, or
// Health's error. Settings the brokers refuse (wrong credentials, an
// untrusted certificate) end the probe as soon as the client sees them,
// and from then on fail uploads at once with the cause.
//
// A query server runs it as a periodic health check, so that a bad setting
// shows in /healthz, and in the log once a minute, before the first upload.
func (p *Producer) Probe(ctx context.Context) error {
	err := p.probe(ctx)
	if err == nil {
		return p.Health()
	}
	if ok, suppressed := p.probeLog.Allow(time.Now()); ok {
		p.log.Warn("queue: Kafka does not answer the query server's producer", "err", err, "suppressed", suppressed,
			"interval", probeLogInterval)
	}
	return err
}

func (p *Producer) probe(ctx context.Context) error {
	cs := p.cur.Load()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	answer := make(chan error, 1)
	// kgo may hold a request on a connection until its read timeout
	// whatever ctx says; the probe waits only as long as ctx.
	go func() {
		_, err := kmsg.NewPtrMetadataRequest().RequestWith(ctx, cs.persist)
		answer <- err
	}()
	// kgo retries a connection the brokers close during SASL as it would
	// a network failure: the watch sees the cause before the request ends.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-answer:
			if err == nil {
				return nil
			}
			if c := cs.watch.Err(); c != nil {
				return &ConnectError{Cause: c.Cause, Brokers: cs.cfg.Brokers, Err: c.Err}
			}
			return &ConnectError{Cause: Classify(err), Brokers: cs.cfg.Brokers, Err: err}
		case <-tick.C:
			if c := cs.watch.Err(); c != nil && c.Cause.fatal() {
				return &ConnectError{Cause: c.Cause, Brokers: cs.cfg.Brokers, Err: c.Err}
			}
		case <-ctx.Done():
			if c := cs.watch.Err(); c != nil {
				return &ConnectError{Cause: c.Cause, Brokers: cs.cfg.Brokers, Err: c.Err}
			}
			return &ConnectError{Cause: CauseUnreachable, Brokers: cs.cfg.Brokers, Err: fmt.Errorf("no answer: %w", ctx.Err())}
		}
	}
}

// HealthError is what [Producer.Health] reports while persistence records
// are failing.
type HealthError struct {
	// Since is when the first record failed after the last acknowledged one.
	Since time.Time
	// Last is when the latest record failed.
	Last time.Time
	// Failed counts the records failed since Since.
	Failed int64
	// Err is the latest failure.
	Err error
}

// Error implements error.
func (e *HealthError) Error() string {
	return fmt.Sprintf("queue: Kafka failing since %s (%d records): %v", e.Since.UTC().Format(time.RFC3339), e.Failed, e.Err)
}

// Unwrap returns the latest failure.
func (e *HealthError) Unwrap() error { return e.Err }

// Health reports whether Kafka acknowledges persistence records: nil when
// the latest record was acknowledged, or no record failed in the last
// HealthWindow; a *HealthError naming the latest failure otherwise. It
// makes no request and is cheap enough to call on every health check.
func (p *Producer) Health() error {
	h := p.failing.Load()
	if h == nil || time.Since(h.Last) >= HealthWindow {
		return nil
	}
	return h
}

// fail records a failed persistence record for Health.
func (p *Producer) fail(err error) {
	now := time.Now()
	p.failMu.Lock()
	defer p.failMu.Unlock()
	h := HealthError{Since: now, Last: now, Failed: 1, Err: err}
	if old := p.failing.Load(); old != nil && now.Sub(old.Last) < HealthWindow {
		h.Since, h.Failed = old.Since, old.Failed+1
	}
	p.failing.Store(&h)
}

// recovered records an acknowledged persistence record after failures.
func (p *Producer) recovered() {
	c := p.cur.Load()
	p.failMu.Lock()
	defer p.failMu.Unlock()
	if h := p.failing.Swap(nil); h != nil {
		p.log.Info("queue: Kafka acknowledges persistence records again", "topic", c.cfg.PersistTopic,
			"failing_since", h.Since, "failed", h.Failed)
	}
}

// SwitchGrace is how long a producer switching cluster lets the old
// cluster acknowledge the records it holds; those it has not acknowledged
// by then are failed (their uploads answer 503), never answered as
// accepted.
const SwitchGrace = 2 * time.Second

// SwitchTo moves the producer to the cluster cfg describes, as a
// [Participant] of [Failover]: records produced from its start go to new
// clients of that cluster; the old clients get at most SwitchGrace (less
// when ctx ends first) to have their records acknowledged, then are closed,
// failing the rest. An upload is answered 202 only with an acknowledgement, from
// one cluster or the other. On error the producer stays where it was.
func (p *Producer) SwitchTo(ctx context.Context, cfg Config, _ time.Time) error {
	cfg.EnsureDefaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	p.switchMu.Lock()
	defer p.switchMu.Unlock()
	cs, err := newClients(cfg)
	if err != nil {
		return err
	}
	old := p.cur.Swap(cs)
	p.closeClients(ctx, old, min(SwitchGrace, old.cfg.ProduceTimeout))
	return nil
}

// Close flushes buffered records for at most the produce timeout, then
// closes both clients; records still unacknowledged are failed. It returns
// within the produce timeout, whatever the brokers do: the clients send no
// client telemetry (KIP-714), whose last push a Close would otherwise wait
// up to a second for on a broker that does not answer.
func (p *Producer) Close() {
	p.switchMu.Lock()
	defer p.switchMu.Unlock()
	c := p.cur.Load()
	p.closeClients(context.Background(), c, c.cfg.ProduceTimeout)
}

// closeClients flushes c's records for at most grace, then closes its
// clients, failing what is left.
func (p *Producer) closeClients(ctx context.Context, c *clients, grace time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, grace)
	defer cancel()
	var wg sync.WaitGroup
	for _, c := range []struct {
		role string
		cl   *kgo.Client
	}{{"persist", c.persist}, {"metrics", c.metrics}, {"results", c.results}} {
		wg.Go(func() {
			if err := c.cl.Flush(ctx); err != nil {
				p.log.Warn("queue: records left unflushed at close", "role", c.role,
					"records", c.cl.BufferedProduceRecords(), "err", err)
			}
			c.cl.Close()
		})
	}
	wg.Wait()
}
