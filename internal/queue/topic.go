package queue

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TopicSpec is how `cairn topics create` makes topics. The defaults follow
// the production MSK configuration: 12 partitions, replication factor 3,
// min.insync.replicas 2, 168 hours of retention.
type TopicSpec struct {
	// Partitions per topic. Default 12.
	Partitions int32
	// ReplicationFactor of each partition. Default 3.
	ReplicationFactor int16
	// MinInsyncReplicas is min.insync.replicas: with acks=all a produce
	// succeeds only while this many replicas have it. Default 2.
	MinInsyncReplicas int
	// Retention is retention.ms: the replay window after a writer outage and
	// the main driver of broker storage. Default 168h.
	Retention time.Duration
	// Timeout bounds CreateTopics as a whole: brokers that refuse
	// connections or do not answer make it fail by then, naming the
	// cause. Default 15s.
	Timeout time.Duration
}

// EnsureDefaults fills zero fields with their defaults.
func (s *TopicSpec) EnsureDefaults() {
	if s.Partitions == 0 {
		s.Partitions = 12
	}
	if s.ReplicationFactor == 0 {
		s.ReplicationFactor = 3
	}
	if s.MinInsyncReplicas == 0 {
		s.MinInsyncReplicas = 2
	}
	if s.Retention == 0 {
		s.Retention = 168 * time.Hour
	}
	if s.Timeout == 0 {
		s.Timeout = 15 * time.Second
	}
}

// Validate reports every problem with s.
func (s *TopicSpec) Validate() error {
	var errs []error
	if s.Partitions < 1 {
		errs = append(errs, fmt.Errorf("topics: partitions %d: want at least 1", s.Partitions))
	}
	if s.ReplicationFactor < 1 {
		errs = append(errs, fmt.Errorf("topics: replication factor %d: want at least 1", s.ReplicationFactor))
	}
	if s.MinInsyncReplicas < 1 || s.MinInsyncReplicas > int(s.ReplicationFactor) {
		errs = append(errs, fmt.Errorf("topics: min.insync.replicas %d: want between 1 and the replication factor %d", s.MinInsyncReplicas, s.ReplicationFactor))
	}
	if s.Retention < time.Hour {
		errs = append(errs, fmt.Errorf("topics: retention %v: want at least 1h", s.Retention))
	}
	if s.Timeout < time.Second {
		errs = append(errs, fmt.Errorf("topics: timeout %v: want at least 1s", s.Timeout))
	}
	return errors.Join(errs...)
}

// TopicResult is what happened to one topic.
type TopicResult struct {
	Topic string
	// Created is false when the topic already existed; it is left as it is.
	Created bool
}

// CreateTopics creates the persistence, metrics and dead-letter topics of
// cfg with spec. Existing topics are reported and left unchanged, so the
// command is safe to run again. It returns within spec.Timeout (or when ctx
// ends): brokers that cannot be reached or do not answer make it fail with
// the last connection or request error seen.
func CreateTopics(ctx context.Context, cfg Config, spec TopicSpec) ([]TopicResult, error) {
	cfg.EnsureDefaults()
	spec.EnsureDefaults()
	if err := errors.Join(cfg.Validate(), spec.Validate()); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, spec.Timeout)
	defer cancel()
	// One round trip first, so that wrong credentials or TLS settings end
	// the command at once with their cause rather than at the timeout.
	if err := probe(ctx, cfg, min(spec.Timeout, ProbeTimeout)); err != nil {
		return nil, fmt.Errorf("topics: create %v: %w", []string{cfg.PersistTopic, cfg.MetricsTopic, cfg.DeadLetterTopic}, err)
	}
	var last lastBrokerError
	cl, err := kgo.NewClient(append(cfg.ClientOpts(), kgo.WithHooks(&last))...)
	if err != nil {
		return nil, fmt.Errorf("topics: connect: %w", err)
	}
	// Close cannot hang: this client neither produces nor joins a group,
	// and Close only shuts its connections.
	defer cl.Close()
	adm := kadm.NewClient(cl)
	retention := strconv.FormatInt(spec.Retention.Milliseconds(), 10)
	minISR := strconv.Itoa(spec.MinInsyncReplicas)
	configs := map[string]*string{"retention.ms": &retention, "min.insync.replicas": &minISR}
	topics := []string{cfg.PersistTopic, cfg.MetricsTopic, cfg.DeadLetterTopic}
	resp, err := adm.CreateTopics(ctx, spec.Partitions, spec.ReplicationFactor, configs, topics...)
	if err != nil {
		if ctx.Err() != nil {
			if _, cause := last.get(); cause != nil {
				return nil, fmt.Errorf("topics: create %v: brokers %v gave no answer within %v: %w (last error: %w)",
					topics, cfg.Brokers, spec.Timeout, err, cause)
			}
			return nil, fmt.Errorf("topics: create %v: brokers %v gave no answer within %v: %w",
				topics, cfg.Brokers, spec.Timeout, err)
		}
		return nil, fmt.Errorf("topics: create %v at brokers %v: %w", topics, cfg.Brokers, err)
	}
	var out []TopicResult
	var errs []error
	for _, t := range topics {
		r := resp[t]
		switch {
		case r.Err == nil:
			out = append(out, TopicResult{Topic: t, Created: true})
		case errors.Is(r.Err, kerr.TopicAlreadyExists):
			out = append(out, TopicResult{Topic: t})
		default:
			errs = append(errs, fmt.Errorf("topics: create %s: %w (%s)", t, r.Err, r.ErrMessage))
		}
	}
	return out, errors.Join(errs...)
}
