// Package queue is cairn's Kafka persistence queue: the connection settings
// shared by producers and consumers, the producer used by query servers,
// topic creation, the record encoding (record.go) and the embedded broker of
// `cairn dev`.
//
// Kafka is never on the query path: only uploads wait for it (an upload is
// accepted once its record is acknowledged by every in-sync replica), and
// query metrics are handed to it without waiting.
package queue

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// Config holds the settings every Kafka client of cairn shares.
type Config struct {
	// Brokers are the bootstrap servers. Required.
	Brokers []string
	// TLS connects over TLS with the system roots. Default false.
	TLS bool
	// SASLMechanism is SCRAM-SHA-512 (the default), SCRAM-SHA-256 or PLAIN;
	// used only when SASLUser is set.
	SASLMechanism string
	// SASLUser and SASLPassword authenticate the client; empty user disables SASL.
	SASLUser, SASLPassword string

	// PersistTopic carries uploads and cacheable query results. Default cairn.persist.
	PersistTopic string
	// MetricsTopic carries per-query metrics. Default cairn.metrics.
	MetricsTopic string
	// DeadLetterTopic receives records the writer cannot decode or store.
	// Default cairn.persist.dlq.
	DeadLetterTopic string
	// WriterGroup is the persistence writers' consumer group. Default cairn-writer.
	WriterGroup string

	// ProduceTimeout bounds how long an upload waits for acknowledgement:
	// Persist returns within it whatever the brokers do. It is also how long
	// a persistence record may wait in the producer before it is failed, and
	// how long Close flushes. Default 10s.
	ProduceTimeout time.Duration
	// MaxRecordBytes is the largest record produced; it must not exceed the
	// brokers' message.max.bytes. Default 1,000,000.
	MaxRecordBytes int

	// PersistBufferRecords bounds the persistence records waiting in the
	// producer for acknowledgement; an upload that finds the buffer full
	// fails at once instead of waiting. Default 10,000.
	PersistBufferRecords int
	// PersistBufferBytes bounds the bytes of those records; at least
	// MaxRecordBytes. Default 64 MiB.
	PersistBufferBytes int
	// MetricsBufferRecords bounds the query metrics waiting in the metrics
	// producer, which has a client and buffer of its own so that a slow
	// metrics topic never delays uploads; a metric that finds the buffer
	// full is dropped and counted. Default 1,000.
	MetricsBufferRecords int
	// MetricsDeliveryTimeout is how long a query metric may wait for Kafka
	// before it is dropped and counted. Default 5s.
	MetricsDeliveryTimeout time.Duration
}

// EnsureDefaults fills zero fields with their defaults.
func (c *Config) EnsureDefaults() {
	if c.SASLMechanism == "" {
		c.SASLMechanism = "SCRAM-SHA-512"
	}
	if c.PersistTopic == "" {
		c.PersistTopic = "cairn.persist"
	}
	if c.MetricsTopic == "" {
		c.MetricsTopic = "cairn.metrics"
	}
	if c.DeadLetterTopic == "" {
		c.DeadLetterTopic = "cairn.persist.dlq"
	}
	if c.WriterGroup == "" {
		c.WriterGroup = "cairn-writer"
	}
	if c.ProduceTimeout == 0 {
		c.ProduceTimeout = 10 * time.Second
	}
	if c.MaxRecordBytes == 0 {
		c.MaxRecordBytes = 1_000_000
	}
	if c.PersistBufferRecords == 0 {
		c.PersistBufferRecords = 10_000
	}
	if c.PersistBufferBytes == 0 {
		c.PersistBufferBytes = 64 << 20
	}
	if c.MetricsBufferRecords == 0 {
		c.MetricsBufferRecords = 1_000
	}
	if c.MetricsDeliveryTimeout == 0 {
		c.MetricsDeliveryTimeout = 5 * time.Second
	}
}

// Validate reports every problem with c.
func (c *Config) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("queue: no Kafka brokers configured (CAIRN_KAFKA_BROKERS or --brokers)"))
	}
	switch strings.ToUpper(c.SASLMechanism) {
	case "SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN":
	default:
		errs = append(errs, fmt.Errorf("queue: SASL mechanism %q: want SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN", c.SASLMechanism))
	}
	if c.SASLUser != "" && c.SASLPassword == "" {
		errs = append(errs, errors.New("queue: SASL user set without a password"))
	}
	for name, topic := range map[string]string{"persist": c.PersistTopic, "metrics": c.MetricsTopic, "dead-letter": c.DeadLetterTopic} {
		if topic == "" {
			errs = append(errs, fmt.Errorf("queue: %s topic name is empty", name))
		}
	}
	if c.ProduceTimeout < time.Second {
		errs = append(errs, fmt.Errorf("queue: produce timeout %v: want at least 1s", c.ProduceTimeout))
	}
	if c.MaxRecordBytes < 1024 {
		errs = append(errs, fmt.Errorf("queue: max record bytes %d is below 1024", c.MaxRecordBytes))
	}
	if c.PersistBufferRecords < 1 {
		errs = append(errs, fmt.Errorf("queue: persist buffer records %d: want at least 1", c.PersistBufferRecords))
	}
	if c.PersistBufferBytes < c.MaxRecordBytes {
		errs = append(errs, fmt.Errorf("queue: persist buffer bytes %d: want at least the max record bytes %d", c.PersistBufferBytes, c.MaxRecordBytes))
	}
	if c.MetricsBufferRecords < 1 {
		errs = append(errs, fmt.Errorf("queue: metrics buffer records %d: want at least 1", c.MetricsBufferRecords))
	}
	if c.MetricsDeliveryTimeout < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("queue: metrics delivery timeout %v: want at least 100ms", c.MetricsDeliveryTimeout))
	}
	return errors.Join(errs...)
}

// ClientOpts returns the connection options shared by every client: seed
// brokers, TLS and SASL.
func (c *Config) ClientOpts() []kgo.Opt {
	opts := []kgo.Opt{kgo.SeedBrokers(c.Brokers...), kgo.ClientID("cairn")}
	if c.TLS {
		opts = append(opts, kgo.DialTLSConfig(&tls.Config{MinVersion: tls.VersionTLS12}))
	}
	if c.SASLUser != "" {
		switch strings.ToUpper(c.SASLMechanism) {
		case "SCRAM-SHA-256":
			opts = append(opts, kgo.SASL(scram.Auth{User: c.SASLUser, Pass: c.SASLPassword}.AsSha256Mechanism()))
		case "PLAIN":
			opts = append(opts, kgo.SASL(plain.Auth{User: c.SASLUser, Pass: c.SASLPassword}.AsMechanism()))
		default:
			opts = append(opts, kgo.SASL(scram.Auth{User: c.SASLUser, Pass: c.SASLPassword}.AsSha512Mechanism()))
		}
	}
	return opts
}

// EntityKey is the Kafka record key of a record holding one entity, so that
// writes of one entity stay in one partition and in order.
func EntityKey(namespace, key string) []byte {
	return []byte(namespace + "\x00" + key)
}
