package sizing

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/DataDog/sketches-go/ddsketch/mapping"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/metrics"
)

// The representative metrics record (see [Options.MetricsRecord]).
const (
	// RepresentativeHost is the host part of the record's source: an EC2
	// private DNS name, 41 bytes.
	RepresentativeHost = "ip-10-0-128-12.eu-west-1.compute.internal"
	// RepresentativeLatencyMin and RepresentativeLatencyMax bound the
	// latencies of the representative record, in seconds: queries spread
	// over a tenfold range, 2 ms to 20 ms, one bucket of the sketch's
	// logarithmic mapping per 2% step.
	RepresentativeLatencyMin = 0.002
	RepresentativeLatencyMax = 0.020
)

// RepresentativeErrorCodes are the distinct error codes of each
// namespace in the representative record, one error each: the two a query
// meets when the store is slow or failing.
var RepresentativeErrorCodes = []string{"DEADLINE_EXCEEDED", "UPSTREAM_FAILED"}

// MaxMetricsNamespaces is the most namespaces one metrics record holds:
// a query server counts queries of namespaces past its 1,024th under one
// more, "(other)".
const MaxMetricsNamespaces = 1024 + 1

// metricsNamespaces returns the namespaces one metrics record holds:
// Namespaces, or else the registry's count.
func (o *Options) metricsNamespaces(reg *feature.Registry) int {
	if o.Namespaces > 0 {
		return o.Namespaces
	}
	return min(len(reg.Namespaces()), MaxMetricsNamespaces)
}

// queriesPerInterval returns the queries one query server answers in one
// interval at the steady rate, rounded up: every one of them is taken to
// read every namespace, an upper bound.
func (o *Options) queriesPerInterval() uint64 {
	return uint64(math.Ceil(round6(o.QPS * o.MetricsInterval.Seconds() / float64(o.QueryServers))))
}

// MetricsRecord returns the representative metrics record of the
// workload: what one query server sends per interval (CAIRN_METRICS_INTERVAL)
// at the steady rate, over nss namespaces named after the registry's
// (cycled, with a number, when nss is larger), sorted as query servers
// send them. Each namespace holds every
// query of the interval, as many cache hits, misses and Bloom lookups as
// entities read and a tenth of that short-circuited, one error of each of
// [RepresentativeErrorCodes], and the latencies spread evenly over the
// sketch buckets from [RepresentativeLatencyMin] to
// [RepresentativeLatencyMax] (fewer buckets when there are fewer
// queries). The fleet counters hold a store request per query and one
// error, throttle and race.
func (o *Options) MetricsRecord(reg *feature.Registry, nss int) *metrics.Record {
	q := o.queriesPerInterval()
	cells := uint64(math.Ceil(round6(float64(q) * o.EntitiesPerQuery)))
	start := RepresentativeTime.Truncate(o.MetricsInterval)
	r := &metrics.Record{
		Source:   RepresentativeHost + "/" + strconv.FormatInt(RepresentativeTime.UnixMicro(), 10) + "/0123abcd",
		Start:    start,
		Interval: o.MetricsInterval,
		Fleet: metrics.Fleet{
			StoreRequests: q, StoreErrors: 1, StoreThrottles: 1, StoreRaces: 1,
		},
	}
	names := reg.Namespaces()
	for i := range nss {
		name := "namespace"
		if len(names) > 0 {
			name = names[i%len(names)].Name
		}
		if len(names) == 0 || i >= len(names) {
			name += "-" + strconv.Itoa(i)
		}
		ns := metrics.Namespace{
			Name: name, Queries: q,
			CacheHits: cells, CacheMisses: cells, BloomLookups: cells, BloomSkipped: cells / 10,
			Latency: latencyBuckets(q),
		}
		for _, c := range RepresentativeErrorCodes {
			ns.Errors = append(ns.Errors, metrics.CodeCount{Code: c, Count: 1})
		}
		r.Namespaces = append(r.Namespaces, ns)
	}
	// Query servers send namespaces sorted by name, and Decode insists.
	slices.SortFunc(r.Namespaces, func(a, b metrics.Namespace) int { return strings.Compare(a.Name, b.Name) })
	return r
}

// latencyBuckets spreads q latencies evenly over the sketch buckets from
// RepresentativeLatencyMin to RepresentativeLatencyMax, the first buckets
// taking the remainder; with fewer latencies than buckets, one per bucket.
func latencyBuckets(q uint64) []metrics.Bucket {
	m, err := mapping.NewLogarithmicMapping(metrics.RelativeAccuracy)
	if err != nil || q == 0 {
		return nil
	}
	lo, hi := m.Index(RepresentativeLatencyMin), m.Index(RepresentativeLatencyMax)
	n := min(uint64(hi-lo+1), q)
	out := make([]metrics.Bucket, n)
	for i := range out {
		c := q / n
		if uint64(i) < q%n {
			c++
		}
		out[i] = metrics.Bucket{Index: int32(lo + i), Count: c}
	}
	return out
}

// Metrics is the metrics topic's share of the Kafka plan.
type Metrics struct {
	// Namespaces is the number of namespaces in each record.
	Namespaces int `json:"namespaces"`
	// QueriesPerInterval is the queries of one query server in one
	// interval, per namespace.
	QueriesPerInterval uint64 `json:"queries_per_interval"`
	// LatencyBuckets is the number of latency buckets per namespace.
	LatencyBuckets int `json:"latency_buckets"`
	// RecordBytes is the size of the representative record, measured by
	// encoding it with metrics.Record.Append.
	RecordBytes int `json:"record_bytes"`
	// BytesPerSecond is what the query servers send the metrics topic:
	// per server, one record and its Kafka framing per interval.
	BytesPerSecond float64 `json:"bytes_per_second"`
}

// metricsPlan plans the metrics topic: with no queries, query servers send
// nothing.
func (o *Options) metricsPlan(reg *feature.Registry) Metrics {
	m := Metrics{Namespaces: o.metricsNamespaces(reg), QueriesPerInterval: o.queriesPerInterval()}
	if m.QueriesPerInterval == 0 {
		return m
	}
	r := o.MetricsRecord(reg, m.Namespaces)
	if len(r.Namespaces) > 0 {
		m.LatencyBuckets = len(r.Namespaces[0].Latency)
	}
	m.RecordBytes = len(r.Append(nil))
	m.BytesPerSecond = round6(float64(o.QueryServers) * float64(m.RecordBytes+KafkaRecordOverhead) / o.MetricsInterval.Seconds())
	return m
}

// DefaultMetricsInterval is CAIRN_METRICS_INTERVAL's default.
const DefaultMetricsInterval = 10 * time.Second
