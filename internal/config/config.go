// Package config is the only reader of cairn's environment. Every knob is a
// row of one table, Knobs, with its name, default and meaning; `cairn config`
// prints the table with the effective value of each knob and where it came
// from. The DynamoDB knobs keep their established DYNAMODB_* names; every
// other knob is CAIRN_*.
package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Knob is one configuration setting read from the environment.
type Knob struct {
	Name    string
	Default string
	Doc     string
	// Secret knobs are redacted when printed.
	Secret bool
}

// Knobs lists every environment variable cairn reads.
var Knobs = []Knob{
	{Name: "CAIRN_ONLINE_STORE", Doc: "Online store URI: embedded:///dir, dynamodb:///table?region=R[&endpoint=URL], redis://host:port/db. `cairn dev` defaults to an embedded store under its data directory."},
	{Name: "CAIRN_FEATURES", Default: "examples/features.yaml", Doc: "Path of the feature registry (YAML)."},
	{Name: "CAIRN_ADDR", Default: "127.0.0.1:8080", Doc: "HTTP listen address of the query server."},
	{Name: "CAIRN_DATA_DIR", Default: "./cairn-data", Doc: "`cairn dev` only: directory of the embedded broker and store."},
	{Name: "CAIRN_MAX_BODY_BYTES", Default: "1048576", Doc: "Largest accepted HTTP request body, in bytes."},
	{Name: "CAIRN_SHUTDOWN_TIMEOUT", Default: "30s", Doc: "How long a stopping process waits for in-flight requests and writer batches."},

	{Name: "CAIRN_KAFKA_BROKERS", Doc: "Comma-separated Kafka bootstrap servers. Required by serve, write and topics."},
	{Name: "CAIRN_KAFKA_TLS", Default: "false", Doc: "Connect to Kafka over TLS (MSK: true)."},
	{Name: "CAIRN_KAFKA_SASL_MECHANISM", Default: "SCRAM-SHA-512", Doc: "SASL mechanism used when a SASL user is set: SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN."},
	{Name: "CAIRN_KAFKA_SASL_USERNAME", Doc: "SASL user; empty disables SASL."},
	{Name: "CAIRN_KAFKA_SASL_PASSWORD", Doc: "SASL password.", Secret: true},
	{Name: "CAIRN_KAFKA_PERSIST_TOPIC", Default: "cairn.persist", Doc: "Topic of uploads and cacheable query results."},
	{Name: "CAIRN_KAFKA_METRICS_TOPIC", Default: "cairn.metrics", Doc: "Topic of per-query metrics."},
	{Name: "CAIRN_KAFKA_DEAD_LETTER_TOPIC", Default: "cairn.persist.dlq", Doc: "Topic where the writer sets aside records it cannot decode or store."},
	{Name: "CAIRN_KAFKA_WRITER_GROUP", Default: "cairn-writer", Doc: "Consumer group of the persistence writers."},
	{Name: "CAIRN_KAFKA_MAX_RECORD_BYTES", Default: "1000000", Doc: "Largest record produced; keep it under the brokers' message.max.bytes (1048588 by default). An upload is one record, accepted whole or not at all, so a larger upload is refused with REQUEST_TOO_LARGE."},
	{Name: "CAIRN_KAFKA_PRODUCE_TIMEOUT", Default: "10s", Doc: "How long an upload waits for Kafka to acknowledge its record before answering 503."},
	{Name: "CAIRN_TOPIC_PARTITIONS", Default: "12", Doc: "`cairn topics create`: partitions per topic."},
	{Name: "CAIRN_TOPIC_REPLICATION_FACTOR", Default: "3", Doc: "`cairn topics create`: replication factor."},
	{Name: "CAIRN_TOPIC_MIN_INSYNC_REPLICAS", Default: "2", Doc: "`cairn topics create`: min.insync.replicas (acks=all needs this many replicas)."},
	{Name: "CAIRN_TOPIC_RETENTION", Default: "168h", Doc: "`cairn topics create`: retention, the replay window after a writer outage; the main driver of broker storage."},

	{Name: "CAIRN_WRITER_MAX_BATCH_RECORDS", Default: "1000", Doc: "Most records the writer coalesces into one store write."},
	{Name: "CAIRN_WRITER_MAX_BACKOFF", Default: "30s", Doc: "Longest pause between the writer's attempts at a failing store write."},

	{Name: "DYNAMODB_MAX_RETRIES", Default: "12", Doc: "Retries of throttled or transient DynamoDB errors per request."},
	{Name: "DYNAMODB_WARMUP_FQN_MAPPING", Default: "true", Doc: "Load the whole feature-name to short-id mapping at start; false loads each on first use."},
	{Name: "DYNAMODB_CREATE_TABLES_IF_NOT_EXISTS", Default: "false", Doc: "Create the table at start when it is missing (production tables come from Terraform)."},
}

// Env is a view of the environment through the knob table.
type Env struct {
	lookup func(string) (string, bool)
	errs   []error
}

// FromOS reads the process environment.
func FromOS() *Env { return &Env{lookup: os.LookupEnv} }

// FromMap reads a fixed map, for tests.
func FromMap(m map[string]string) *Env {
	return &Env{lookup: func(k string) (string, bool) { v, ok := m[k]; return v, ok }}
}

func knob(name string) Knob {
	for _, k := range Knobs {
		if k.Name == name {
			return k
		}
	}
	panic("config: unknown knob " + name) // a programming error caught by every test that loads config
}

// Value returns the effective value of a knob and whether it came from the
// environment.
func (e *Env) Value(name string) (string, bool) {
	k := knob(name)
	if v, ok := e.lookup(name); ok && v != "" {
		return v, true
	}
	return k.Default, false
}

// String returns a knob's effective value.
func (e *Env) String(name string) string { v, _ := e.Value(name); return v }

// Int returns a knob as an integer, recording an error if it is not one.
func (e *Env) Int(name string) int {
	v := e.String(name)
	n, err := strconv.Atoi(v)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s=%q: want an integer", name, v))
	}
	return n
}

// Bool returns a knob as a boolean, recording an error if it is not one.
func (e *Env) Bool(name string) bool {
	v := e.String(name)
	b, err := strconv.ParseBool(v)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s=%q: want true or false", name, v))
	}
	return b
}

// Duration returns a knob as a duration, recording an error if it is not one.
func (e *Env) Duration(name string) time.Duration {
	v := e.String(name)
	d, err := time.ParseDuration(v)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s=%q: want a duration such as 10s", name, v))
	}
	return d
}

// List returns a comma-separated knob as its non-empty elements.
func (e *Env) List(name string) []string {
	var out []string
	for _, s := range strings.Split(e.String(name), ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// Err joins every problem met while reading knobs.
func (e *Env) Err() error { return errors.Join(e.errs...) }

// Print writes every knob with its effective value and source, secrets
// redacted.
func (e *Env) Print(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tVALUE\tSOURCE\tMEANING")
	for _, k := range Knobs {
		v, fromEnv := e.Value(k.Name)
		src := "default"
		if fromEnv {
			src = "environment"
		}
		switch {
		case k.Secret && v != "":
			v = "<redacted>"
		case v == "":
			v = "(unset)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", k.Name, v, src, k.Doc)
	}
	return tw.Flush()
}
