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
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Config holds the settings every Kafka client of cairn shares.
type Config struct {
	// Brokers are the bootstrap servers. Required.
	Brokers []string
	// TLS connects over TLS, trusting the system roots unless TLSCAFile is
	// set. Default false.
	TLS bool
	// TLSCAFile is a PEM bundle of the CAs that sign the brokers'
	// certificates, trusted instead of the system roots (a private CA).
	// Requires TLS. Default none.
	TLSCAFile string
	// TLSCertFile and TLSKeyFile are a PEM client certificate and its key,
	// presented to brokers that ask for one (mutual TLS): both or neither.
	// Requires TLS. Default none.
	TLSCertFile, TLSKeyFile string

	// SASLMechanism is SCRAM-SHA-512 (the default), SCRAM-SHA-256, PLAIN
	// or AWS_MSK_IAM. The first three are used only when SASLUser is set;
	// AWS_MSK_IAM takes its credentials from the AWS SDK's default chain
	// and no user.
	SASLMechanism string
	// SASLUser and SASLPassword authenticate the client; empty user disables
	// SASL (except AWS_MSK_IAM).
	SASLUser, SASLPassword string
	// SASLPasswordFile holds the password instead of SASLPassword (a
	// mounted secret); one trailing newline is ignored. Default none.
	SASLPasswordFile string
	// SASLPlainWithoutTLS allows PLAIN over a plaintext connection, which
	// sends the password in the clear: development only. Default false.
	SASLPlainWithoutTLS bool

	// files is what ReadFiles read; nil until it has.
	files *files

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
	// ResultsBufferRecords bounds the query-result records (values
	// resolvers computed) waiting in the results producer, which has a
	// client and buffer of its own so that results never take the
	// uploads' room; a result that finds the buffer full is dropped and
	// counted. Default 10,000.
	ResultsBufferRecords int
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
	if c.ResultsBufferRecords == 0 {
		c.ResultsBufferRecords = 10_000
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
	errs = append(errs, c.validateSecurity()...)
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
	if c.ResultsBufferRecords < 1 {
		errs = append(errs, fmt.Errorf("queue: results buffer records %d: want at least 1", c.ResultsBufferRecords))
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
// brokers, TLS and SASL. Call it after ReadFiles: without it, TLS trusts the
// system roots and presents no certificate, and SASL has only SASLPassword.
func (c *Config) ClientOpts() []kgo.Opt {
	opts := []kgo.Opt{kgo.SeedBrokers(c.Brokers...), kgo.ClientID("cairn"),
		// No KIP-714 client telemetry: cairn exports its own client
		// metrics, and a client closing against a broker that does not
		// answer would otherwise wait up to a second for its last push,
		// in every failover switch and every shutdown.
		kgo.DisableClientMetrics()}
	if c.TLS {
		// kgo sets ServerName from each broker's host when it is empty,
		// so one config verifies every broker.
		opts = append(opts, kgo.DialTLSConfig(c.tlsConfig()))
	}
	if m := c.mechanism(); m != nil {
		opts = append(opts, kgo.SASL(m))
	}
	return opts
}

// EntityKey is the Kafka record key of a record holding one entity, so that
// writes of one entity stay in one partition and in order.
func EntityKey(namespace, key string) []byte {
	return []byte(namespace + "\x00" + key)
}
