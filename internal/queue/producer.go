package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ErrTooLarge is returned for a record over Config.MaxRecordBytes.
var ErrTooLarge = errors.New("queue: record too large")

// Producer publishes records from query servers: persistence records, which
// callers wait on, and query metrics, which they do not.
type Producer struct {
	cfg Config
	cl  *kgo.Client
	log *slog.Logger

	produced *prometheus.CounterVec
	latency  prometheus.Histogram
}

// NewProducer connects a producer. Records are acknowledged by all in-sync
// replicas (acks=all) and produced idempotently, so a retried batch is never
// duplicated in the log.
func NewProducer(cfg Config, reg prometheus.Registerer, log *slog.Logger) (*Producer, error) {
	cfg.EnsureDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	opts := append(cfg.ClientOpts(),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerBatchMaxBytes(int32(cfg.MaxRecordBytes)+512),
		kgo.RecordDeliveryTimeout(cfg.ProduceTimeout),
		kgo.ProducerLinger(0),
		kgo.MaxBufferedRecords(10_000),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("queue: new producer: %w", err)
	}
	p := &Producer{
		cfg: cfg, cl: cl, log: log,
		produced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_queue_produced_records_total",
			Help: "Records handed to Kafka, by topic role and outcome (ok, error, dropped).",
		}, []string{"role", "outcome"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "cairn_queue_persist_ack_seconds",
			Help:    "Time from producing a persistence record to its acknowledgement by all in-sync replicas.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
	}
	if reg != nil {
		reg.MustRegister(p.produced, p.latency)
	}
	return p, nil
}

// Persist produces r to the persistence topic and returns once every
// in-sync replica has it, or with an error; on error the record may or may
// not have been written, which is harmless because writes are newest-wins.
func (p *Producer) Persist(ctx context.Context, key []byte, r *Record) error {
	value, err := AppendRecord(nil, r)
	if err != nil {
		return err
	}
	if len(value) > p.cfg.MaxRecordBytes {
		return fmt.Errorf("%w: %d bytes encoded, limit %d", ErrTooLarge, len(value), p.cfg.MaxRecordBytes)
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.ProduceTimeout)
	defer cancel()
	start := time.Now()
	err = p.cl.ProduceSync(ctx, &kgo.Record{Topic: p.cfg.PersistTopic, Key: key, Value: value}).FirstErr()
	if err != nil {
		p.produced.WithLabelValues("persist", "error").Inc()
		return fmt.Errorf("queue: produce to %s: %w", p.cfg.PersistTopic, err)
	}
	p.latency.Observe(time.Since(start).Seconds())
	p.produced.WithLabelValues("persist", "ok").Inc()
	return nil
}

// Metric hands a query metric to Kafka without waiting. When the producer's
// buffer is full (Kafka slow or down) the metric is dropped and counted: a
// query never waits on Kafka.
func (p *Producer) Metric(value []byte) {
	p.cl.TryProduce(context.Background(), &kgo.Record{Topic: p.cfg.MetricsTopic, Value: value}, func(_ *kgo.Record, err error) {
		switch {
		case err == nil:
			p.produced.WithLabelValues("metrics", "ok").Inc()
		case errors.Is(err, kgo.ErrMaxBuffered):
			p.produced.WithLabelValues("metrics", "dropped").Inc()
		default:
			p.produced.WithLabelValues("metrics", "error").Inc()
		}
	})
}

// Close flushes buffered records for at most the produce timeout, then
// closes the connection.
func (p *Producer) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.ProduceTimeout)
	defer cancel()
	if err := p.cl.Flush(ctx); err != nil {
		p.log.Warn("queue: flush at close", "err", err)
	}
	p.cl.Close()
}
