package metrics

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/DataDog/sketches-go/ddsketch/mapping"
	"github.com/prometheus/client_golang/prometheus"
)

// RelativeAccuracy is the relative accuracy of every latency sketch: a
// quantile read from a sketch is within 1% of the true value.
const RelativeAccuracy = 0.01

// Latencies below minLatency count as minLatency, above maxLatency as
// maxLatency: the sketch's buckets cover 1 µs to 1000 s.
const (
	minLatency = 1e-6
	maxLatency = 1e3
)

// maxNamespaces bounds the namespaces an aggregator tracks; queries of
// more are counted under [OtherNamespace].
const maxNamespaces = 1024

// OtherNamespace collects queries of namespaces past the 1024th.
const OtherNamespace = "(other)"

// logMapping is the index mapping of every sketch, and minIndex and
// nBuckets the range of indices an aggregator counts.
var (
	logMapping, _ = mapping.NewLogarithmicMapping(RelativeAccuracy)
	minIndex      = logMapping.Index(minLatency)
	nBuckets      = logMapping.Index(maxLatency) - minIndex + 1
)

// Codes are the error codes counted per namespace: those of the query API
// (docs/api.md). A code not in the list is counted as OTHER.
var Codes = []string{
	"DEADLINE_EXCEEDED", "UPSTREAM_FAILED", "VALIDATION_FAILED", "PARSE_FAILED",
	"UNKNOWN_NAMESPACE", "UNKNOWN_FEATURE", "MISSING_PRIMARY_KEY", "REQUEST_TOO_LARGE",
	"REQUEST_TIMEOUT", "UNAUTHENTICATED", "UNAUTHORIZED", "INTERNAL_SERVER_ERROR", "OTHER",
}

func codeIndex(code string) int {
	for i, c := range Codes[:len(Codes)-1] {
		if c == code {
			return i
		}
	}
	return len(Codes) - 1
}

// nsCounters are one namespace's figures of the current interval.
type nsCounters struct {
	queries atomic.Uint64
	errors  [13]atomic.Uint64 // len(Codes)
	buckets []atomic.Uint64   // nBuckets, from minIndex
}

// Sender is where an aggregator sends its records: queue.Producer's
// Metric, which drops and counts a record the metrics topic cannot take.
type Sender interface {
	Metric(value []byte)
}

// AggregatorConfig configures an [Aggregator].
type AggregatorConfig struct {
	// Interval is how often the aggregator sends a record
	// (CAIRN_METRICS_INTERVAL). It must divide a minute. Default 10s.
	Interval time.Duration
}

// EnsureDefaults fills zero fields with their defaults.
func (c *AggregatorConfig) EnsureDefaults() {
	if c.Interval == 0 {
		c.Interval = 10 * time.Second
	}
}

// Validate reports every problem with c.
func (c *AggregatorConfig) Validate() error {
	if c.Interval < time.Second || time.Minute%c.Interval != 0 {
		return fmt.Errorf("metrics: interval %v (CAIRN_METRICS_INTERVAL): want a whole divisor of a minute of at least 1s (1s, 2s, 5s, 10s, 15s, 20s, 30s, 1m)", c.Interval)
	}
	return nil
}

// Aggregator counts a query server's queries per namespace and sends one
// [Record] per interval. Observe is safe for concurrent use.
type Aggregator struct {
	cfg      AggregatorConfig
	source   string
	sender   Sender
	gatherer prometheus.Gatherer
	log      *slog.Logger

	// spaces maps a namespace to its counters; it is replaced, never
	// changed, under mu.
	spaces atomic.Pointer[map[string]*nsCounters]
	mu     sync.Mutex

	// deltas turns the gatherer's counters into per-interval figures;
	// used by flush only.
	deltas deltas
	sent   prometheus.Counter
}

// NewAggregator returns an aggregator sending to sender. gatherer, when
// not nil, is read once per interval for the cache, Bloom, store and Kafka
// counters; reg receives the aggregator's own metric.
func NewAggregator(cfg AggregatorConfig, sender Sender, gatherer prometheus.Gatherer, reg prometheus.Registerer, log *slog.Logger) (*Aggregator, error) {
	cfg.EnsureDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &Aggregator{cfg: cfg, source: NewSource(time.Now()), sender: sender, gatherer: gatherer, log: log,
		sent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_metrics_records_sent_total",
			Help: "Interval records of query metrics handed to the metrics topic (one per interval with queries or store activity).",
		})}
	m := map[string]*nsCounters{}
	a.spaces.Store(&m)
	if reg != nil {
		if err := reg.Register(a.sent); err != nil {
			return nil, fmt.Errorf("metrics: register: %w", err)
		}
	}
	return a, nil
}

// NewSource returns a process identity: the host name, the start time and
// a random number, so that two processes never share one.
func NewSource(start time.Time) string {
	host, _ := os.Hostname()
	var r [4]byte
	_, _ = rand.Read(r[:])
	return fmt.Sprintf("%s/%d/%08x", host, start.UnixMicro(), binary.BigEndian.Uint32(r[:]))
}

// Source returns the identity the aggregator's records carry.
func (a *Aggregator) Source() string { return a.source }

// Observe counts one query of namespace ns that took took; code is the
// query's error code for that namespace ("" when it succeeded). It
// neither allocates nor blocks, but the first time it meets a namespace.
func (a *Aggregator) Observe(ns string, took time.Duration, code string) {
	c := (*a.spaces.Load())[ns]
	if c == nil {
		c = a.add(ns)
	}
	c.queries.Add(1)
	if code != "" {
		c.errors[codeIndex(code)].Add(1)
	}
	c.buckets[bucket(took.Seconds())].Add(1)
}

func bucket(s float64) int {
	s = math.Min(math.Max(s, minLatency), maxLatency)
	return logMapping.Index(s) - minIndex
}

// add returns ns's counters, adding them under the lock.
func (a *Aggregator) add(ns string) *nsCounters {
	a.mu.Lock()
	defer a.mu.Unlock()
	old := *a.spaces.Load()
	if c := old[ns]; c != nil {
		return c
	}
	if len(old) >= maxNamespaces {
		if c := old[OtherNamespace]; c != nil {
			return c
		}
		ns = OtherNamespace
	}
	m := make(map[string]*nsCounters, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	c := &nsCounters{buckets: make([]atomic.Uint64, nBuckets)}
	m[ns] = c
	a.spaces.Store(&m)
	return c
}

// Run sends a record at the end of every interval, aligned with the wall
// clock, until ctx ends; then it sends the last, partial, one.
func (a *Aggregator) Run(ctx context.Context) error {
	start := time.Now().Truncate(a.cfg.Interval)
	for {
		next := start.Add(a.cfg.Interval)
		t := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			t.Stop()
			a.send(a.Flush(start))
			return nil
		case <-t.C:
		}
		a.send(a.Flush(start))
		start = next
	}
}

func (a *Aggregator) send(r *Record) {
	if r == nil || a.sender == nil {
		return
	}
	a.sender.Metric(r.Append(nil))
	a.sent.Inc()
}

// Flush ends the interval that started at start: it returns its record,
// or nil when nothing happened in it, and zeroes the counters. Queries
// observed while it runs count in this interval or the next, never in
// both nor in neither.
func (a *Aggregator) Flush(start time.Time) *Record {
	r := &Record{Source: a.source, Start: start, Interval: a.cfg.Interval}
	for ns, c := range *a.spaces.Load() {
		q := c.queries.Swap(0)
		var n Namespace
		n.Name, n.Queries = ns, q
		for i := range c.errors {
			if e := c.errors[i].Swap(0); e > 0 {
				n.Errors = append(n.Errors, CodeCount{Code: Codes[i], Count: e})
			}
		}
		for i := range c.buckets {
			if b := c.buckets[i].Swap(0); b > 0 {
				n.Latency = append(n.Latency, Bucket{Index: int32(i + minIndex), Count: b})
			}
		}
		if q > 0 || len(n.Latency) > 0 {
			r.Namespaces = append(r.Namespaces, n)
		}
	}
	if a.gatherer != nil {
		a.deltas.read(a.gatherer, r, a.log)
	}
	r.sort()
	if len(r.Namespaces) == 0 && r.Fleet == (Fleet{}) {
		return nil
	}
	return r
}
