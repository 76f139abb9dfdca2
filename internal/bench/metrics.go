package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/cairnfs/cairn/internal/metrics"
	"github.com/cairnfs/cairn/internal/queue"
)

// With Options.Metrics the measurement adds path (i): the same queries as
// (a) on a second query server process, configured exactly as (a)'s but
// for Kafka, so that its query metrics run as in `cairn serve`: an
// aggregator counts every query in-process and sends one record per
// CAIRN_METRICS_INTERVAL to the metrics topic, through the producer.
//
// The broker is the one `cairn dev` embeds (queue.StartBroker: kfake,
// its log on disk, fsynced on every produce), run in this process, under
// a temporary directory, with the topics `cairn dev` creates. Its CPU
// is this process's, not the query server's: (i)'s server CPU per query
// is what the query metrics cost the server (aggregating and producing),
// not what the broker costs.
//
// When the rounds end, (i)'s server is stopped first, which sends the
// last, partial, interval's record, and the records on the metrics topic
// are read back and decoded: the report gives their number, the run's
// intervals, and the queries they counted, the proof that the aggregator
// ran.

// metricsVariant returns variant (i): (a)'s query server with Kafka.
func metricsVariant(brokers []string, interval time.Duration) serverVariant {
	// The knobs naming how to reach a production cluster do not apply
	// to the run's own broker.
	env := append(plainEnv[:len(plainEnv):len(plainEnv)], "CAIRN_KAFKA_TLS=false", "CAIRN_KAFKA_SASL_USERNAME=", "CAIRN_KAFKA_SASL_PASSWORD_FILE=",
		"CAIRN_KAFKA_SECONDARY_BROKERS=", "CAIRN_KAFKA_TLS_CA_FILE=", "CAIRN_KAFKA_TLS_CERT_FILE=", "CAIRN_KAFKA_TLS_KEY_FILE=")
	args := []string{"--brokers", strings.Join(brokers, ",")}
	return serverVariant{name: "(i)", label: fmt.Sprintf("(i) as (a), with query metrics (one record per %v to Kafka)", interval), env: env, args: args}
}

// metricsBroker is the Kafka broker of Options.Metrics.
type metricsBroker struct {
	broker *queue.Broker
	dir    string
	// cfg is the run's Kafka configuration: the topics' names, on the
	// broker.
	cfg queue.Config
}

// startMetricsBroker starts the broker in a temporary directory and
// creates the topics of topics (their names) on it, as `cairn dev` does.
func startMetricsBroker(ctx context.Context, topics queue.Config) (*metricsBroker, error) {
	dir, err := os.MkdirTemp("", "cairn-bench-kafka-")
	if err != nil {
		return nil, fmt.Errorf("bench: --metrics: %w", err)
	}
	br, err := queue.StartBroker(dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("bench: --metrics: %w", err)
	}
	m := &metricsBroker{broker: br, dir: dir}
	m.cfg = queue.Config{Brokers: br.Addrs(), PersistTopic: topics.PersistTopic, MetricsTopic: topics.MetricsTopic, DeadLetterTopic: topics.DeadLetterTopic}
	m.cfg.EnsureDefaults()
	// As `cairn dev`: one broker, replication factor 1.
	spec := queue.TopicSpec{ReplicationFactor: 1, MinInsyncReplicas: 1}
	spec.EnsureDefaults()
	if _, err := queue.CreateTopics(ctx, m.cfg, spec); err != nil {
		m.close()
		return nil, fmt.Errorf("bench: --metrics: %w", err)
	}
	return m, nil
}

func (m *metricsBroker) close() {
	m.broker.Close()
	os.RemoveAll(m.dir)
}

// metricsSeen is what the metrics topic holds at the end of a run.
type metricsSeen struct {
	// records is the number of records on the topic; queries, the
	// queries of namespace [Namespace] they count.
	records int64
	queries uint64
	// intervals are the distinct interval starts of the records.
	intervals int
	err       error
}

// read reads every record of the metrics topic and decodes it.
func (m *metricsBroker) read(ctx context.Context) metricsSeen {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(m.cfg.Brokers...), kgo.ConsumeTopics(m.cfg.MetricsTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return metricsSeen{err: err}
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, m.cfg.MetricsTopic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return metricsSeen{err: fmt.Errorf("end offsets of %s: %w", m.cfg.MetricsTopic, err)}
	}
	var s metricsSeen
	var want int64
	ends.Each(func(o kadm.ListedOffset) { want += o.Offset })
	starts := map[time.Time]bool{}
	for s.records < want {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			s.err = fmt.Errorf("read %d of the %d records of %s: %w", s.records, want, m.cfg.MetricsTopic, err)
			break
		}
		var errs []error
		fs.EachError(func(_ string, _ int32, err error) { errs = append(errs, err) })
		if len(errs) > 0 {
			s.err = errors.Join(errs...)
			break
		}
		fs.EachRecord(func(r *kgo.Record) {
			s.records++
			rec, err := metrics.Decode(r.Value)
			if err != nil {
				s.err = fmt.Errorf("record at offset %d: %w", r.Offset, err)
				return
			}
			starts[rec.Start] = true
			for _, ns := range rec.Namespaces {
				if ns.Name == Namespace {
					s.queries += ns.Queries
				}
			}
		})
	}
	s.intervals = len(starts)
	return s
}
