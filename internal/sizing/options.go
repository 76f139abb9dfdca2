// Package sizing plans the capacity of a cairn deployment: the DynamoDB
// read and write units at steady state and at peak, a capacity mode with
// its reasoning, autoscaling bounds, the MSK storage each broker needs for
// the retention window, and the terraform.tfvars of the example modules.
//
// Item sizes are not estimated: they are the sizes of the items cairn's
// DynamoDB store writes for representative values of each feature type
// (see [Representative]), counted by DynamoDB's rules, and record sizes
// are those of cairn's own persistence-record encoding. docs/sizing.md
// states every rule and works three examples.
package sizing

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Options are the inputs of a plan. Start from [DefaultOptions]; each field
// is read from the flag (and the YAML key) its comment names.
type Options struct {
	// QPS is the steady online query rate, queries per second.
	// Flag --qps. Default: 0.
	QPS float64 `yaml:"qps"`
	// PeakQPS is the query rate at the daily peak; 0 means QPS.
	// Flag --peak-qps. Default: 0 (as QPS).
	PeakQPS float64 `yaml:"peak-qps"`
	// EntitiesPerQuery is the number of entities each query reads from
	// the online store. Flag --entities-per-query. Default: 1.
	EntitiesPerQuery float64 `yaml:"entities-per-query"`
	// PersistFraction is the fraction of queries, in [0, 1], whose results
	// are persisted to the online store. Flag --persist-fraction.
	// Default: 0.
	PersistFraction float64 `yaml:"persist-fraction"`
	// EntitiesPerPersistedQuery is the number of entities a persisted
	// query writes; 0 means EntitiesPerQuery.
	// Flag --entities-per-persisted-query. Default: 0 (as EntitiesPerQuery).
	EntitiesPerPersistedQuery float64 `yaml:"entities-per-persisted-query"`
	// UploadsPerSecond is the rate of POST /v1/upload_features requests,
	// taken as flat over the day. Flag --uploads-per-second. Default: 0.
	UploadsPerSecond float64 `yaml:"uploads-per-second"`
	// EntitiesPerUpload is the number of entities (rows) per upload.
	// Flag --entities-per-upload. Default: 1.
	EntitiesPerUpload float64 `yaml:"entities-per-upload"`
	// StrongReads prices reads as strongly consistent (cairn reads
	// eventually consistent, at half the price). Flag --strong-reads.
	// Default: false.
	StrongReads bool `yaml:"strong-reads"`
	// BulkTransactions prices the writers' bulk writes as transactions, two
	// write units per 1 KB, as DYNAMODB_CHECK_TS_FOR_BULK_WRITES does.
	// Flag --bulk-transactions. Default: true (that knob's default; cairn
	// size takes the knob's effective value).
	BulkTransactions bool `yaml:"bulk-transactions"`
	// Retention is the Kafka retention window, in whole hours.
	// Flag --retention. Default: 168h.
	Retention time.Duration `yaml:"-"`
	// ReplicationFactor is the Kafka topics' replication factor.
	// Flag --replication-factor. Default: 3.
	ReplicationFactor int `yaml:"replication-factor"`
	// BrokersCount is the number of MSK brokers.
	// Flag --brokers-count. Default: 3.
	BrokersCount int `yaml:"brokers-count"`
	// Features is the path of the feature registry. Flag --features.
	// Default: CAIRN_FEATURES.
	Features string `yaml:"features"`
	// Namespace is the namespace whose item is sized; empty means the one
	// with the largest item. Flag --namespace. Default: empty.
	Namespace string `yaml:"namespace"`
	// KeyBytes is the length of a representative string primary key.
	// Flag --key-bytes. Default: 16.
	KeyBytes int `yaml:"key-bytes"`
	// StringBytes is the length of a representative string value, and of
	// each string in a list or JSON object. Flag --string-bytes. Default: 16.
	StringBytes int `yaml:"string-bytes"`
	// BytesBytes is the length of a representative bytes value.
	// Flag --bytes-bytes. Default: 32.
	BytesBytes int `yaml:"bytes-bytes"`
	// ListLength is the number of elements of a representative list, and
	// of fields of a representative JSON object. Flag --list-length.
	// Default: 4.
	ListLength int `yaml:"list-length"`
	// RecordSize is the bytes one entity adds to the persistence topic,
	// Kafka's overhead included; 0 means computed from cairn's record
	// encoding of the sized item's representative values.
	// Flag --record-size. Default: 0 (computed).
	RecordSize int `yaml:"record-size"`
	// QueryServers is the number of query server processes (cairn
	// serve), each sending one metrics record per interval.
	// Flag --query-servers. Default: 3 (one per availability zone).
	QueryServers int `yaml:"query-servers"`
	// Namespaces is the number of namespaces each metrics record holds;
	// 0 means the registry's count. Flag --namespaces. Default: 0 (the
	// registry's count).
	Namespaces int `yaml:"namespaces"`
	// MetricsInterval is the query servers' metrics interval, a whole
	// divisor of a minute. Flag --metrics-interval. Default: 10s
	// (CAIRN_METRICS_INTERVAL's default; cairn size takes the knob's
	// effective value).
	MetricsInterval time.Duration `yaml:"metrics-interval"`
	// Headroom multiplies the Kafka storage the retention window needs.
	// Flag --headroom. Default: 1.5.
	Headroom float64 `yaml:"headroom"`
}

// Defaults of the Options fields that are not zero.
const (
	DefaultEntitiesPerQuery  = 1
	DefaultEntitiesPerUpload = 1
	DefaultRetention         = 168 * time.Hour
	DefaultReplicationFactor = 3
	DefaultBrokersCount      = 3
	DefaultKeyBytes          = 16
	DefaultStringBytes       = 16
	DefaultBytesBytes        = 32
	DefaultListLength        = 4
	DefaultQueryServers      = 3
	DefaultHeadroom          = 1.5
)

// Bounds of the MSK settings a plan prints, as deploy/terraform's msk
// module validates them.
const (
	// MinBrokersCount is the fewest brokers the msk module takes: with 3, a
	// topic of replication factor 3 keeps min.insync.replicas = 2 with one
	// broker down.
	MinBrokersCount = 3
	// MaxBrokerVolumeGiB is MSK's largest EBS volume per broker, GiB.
	MaxBrokerVolumeGiB = 16384
)

// DefaultOptions returns the Options with every default filled in.
func DefaultOptions() Options {
	return Options{
		EntitiesPerQuery:  DefaultEntitiesPerQuery,
		EntitiesPerUpload: DefaultEntitiesPerUpload,
		BulkTransactions:  true,
		Retention:         DefaultRetention,
		ReplicationFactor: DefaultReplicationFactor,
		BrokersCount:      DefaultBrokersCount,
		KeyBytes:          DefaultKeyBytes,
		StringBytes:       DefaultStringBytes,
		BytesBytes:        DefaultBytesBytes,
		ListLength:        DefaultListLength,
		QueryServers:      DefaultQueryServers,
		MetricsInterval:   DefaultMetricsInterval,
		Headroom:          DefaultHeadroom,
	}
}

// Bounds keeping the arithmetic exact in float64 and the inputs plausible.
const (
	maxRate      = 1e9     // queries, uploads or entities per second
	maxPerCall   = 1e6     // entities per query or upload
	maxBytes     = 1 << 20 // representative sizes, and record bytes
	maxListLen   = 10000
	maxBrokers   = 1000
	maxServers   = 100000
	maxRetention = 10 * 365 * 24 * time.Hour
	maxHeadroom  = 100
)

// Validate reports every problem with o at once, each naming its flag.
func (o *Options) Validate() error {
	var errs []error
	bad := func(flag, format string, args ...any) {
		errs = append(errs, fmt.Errorf("--%s: %s", flag, fmt.Sprintf(format, args...)))
	}
	num := func(flag string, v, lo, hi float64) {
		if math.IsNaN(v) || v < lo || v > hi {
			bad(flag, "want a number from %s to %s, got %s", fmtNum(lo), fmtNum(hi), fmtNum(v))
		}
	}
	integer := func(flag string, v, lo, hi int) {
		if v < lo || v > hi {
			bad(flag, "want a whole number from %d to %d, got %d", lo, hi, v)
		}
	}
	num("qps", o.QPS, 0, maxRate)
	num("peak-qps", o.PeakQPS, 0, maxRate)
	if o.PeakQPS != 0 && o.PeakQPS < o.QPS {
		bad("peak-qps", "the peak (%s) is below the steady rate --qps (%s)", fmtNum(o.PeakQPS), fmtNum(o.QPS))
	}
	num("entities-per-query", o.EntitiesPerQuery, 0, maxPerCall)
	num("persist-fraction", o.PersistFraction, 0, 1)
	num("entities-per-persisted-query", o.EntitiesPerPersistedQuery, 0, maxPerCall)
	num("uploads-per-second", o.UploadsPerSecond, 0, maxRate)
	num("entities-per-upload", o.EntitiesPerUpload, 0, maxPerCall)
	if o.QPS == 0 && o.PeakQPS == 0 && o.UploadsPerSecond == 0 {
		bad("qps", "no queries and no uploads (--uploads-per-second): nothing to size")
	}
	switch {
	case o.Retention < time.Hour || o.Retention > maxRetention:
		bad("retention", "want a duration from 1h to %dh, got %s", int(maxRetention/time.Hour), o.Retention)
	case o.Retention%time.Hour != 0:
		bad("retention", "want whole hours (log.retention.hours), got %s", o.Retention)
	}
	integer("brokers-count", o.BrokersCount, MinBrokersCount, maxBrokers)
	integer("replication-factor", o.ReplicationFactor, 1, maxBrokers)
	if o.ReplicationFactor > o.BrokersCount && o.BrokersCount >= 1 {
		bad("replication-factor", "%d replicas need at least as many brokers, --brokers-count is %d", o.ReplicationFactor, o.BrokersCount)
	}
	if o.Features == "" {
		bad("features", "want the feature registry file (or CAIRN_FEATURES)")
	}
	integer("key-bytes", o.KeyBytes, 1, 1024)
	integer("string-bytes", o.StringBytes, 0, maxBytes)
	integer("bytes-bytes", o.BytesBytes, 0, maxBytes)
	integer("list-length", o.ListLength, 0, maxListLen)
	integer("record-size", o.RecordSize, 0, maxBytes)
	integer("query-servers", o.QueryServers, 1, maxServers)
	integer("namespaces", o.Namespaces, 0, MaxMetricsNamespaces)
	if o.MetricsInterval < time.Second || time.Minute%o.MetricsInterval != 0 {
		bad("metrics-interval", "want a whole divisor of a minute of at least 1s (1s, 2s, 5s, 10s, 15s, 20s, 30s, 1m), got %s", o.MetricsInterval)
	}
	num("headroom", o.Headroom, 1, maxHeadroom)
	return errors.Join(errs...)
}

// peakQPS returns the peak query rate, PeakQPS or else QPS.
func (o *Options) peakQPS() float64 {
	if o.PeakQPS == 0 {
		return o.QPS
	}
	return o.PeakQPS
}

// entitiesPerPersistedQuery returns EntitiesPerPersistedQuery, or else
// EntitiesPerQuery.
func (o *Options) entitiesPerPersistedQuery() float64 {
	if o.EntitiesPerPersistedQuery == 0 {
		return o.EntitiesPerQuery
	}
	return o.EntitiesPerPersistedQuery
}

// ParseRetention parses a retention window: a Go duration such as 168h or
// 24h, or a whole number of days such as 7d.
func ParseRetention(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 0 || n > int(maxRetention/(24*time.Hour)) {
			return 0, fmt.Errorf("retention %q: want a duration such as 168h or a number of days such as 7d", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("retention %q: want a duration such as 168h or a number of days such as 7d", s)
	}
	return d, nil
}

// DecodeYAML sets the fields of o that the YAML document data names, keyed
// by flag name without the dashes (qps, peak-qps, retention, ...); the
// others keep their values. Unknown keys are errors. It does not validate
// the result: see [Options.Validate].
func DecodeYAML(data []byte, o *Options) error {
	// The document decodes onto a copy, so that o is untouched on error.
	type plain Options
	doc := struct {
		Opts      plain   `yaml:",inline"`
		Retention *string `yaml:"retention"`
	}{Opts: plain(*o)}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // an empty file sets nothing
		}
		return fmt.Errorf("sizing: %w", err)
	}
	out := Options(doc.Opts)
	if doc.Retention != nil {
		d, err := ParseRetention(*doc.Retention)
		if err != nil {
			return fmt.Errorf("sizing: %w", err)
		}
		out.Retention = d
	}
	*o = out
	return nil
}

// fmtNum formats a number as the plan prints it: no exponent, no trailing
// zeros.
func fmtNum(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
