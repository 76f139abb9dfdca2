package metrics

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Version is the first byte of every record this package writes.
const Version = 1

// Record is what a query server sends once per interval: its figures per
// namespace and its store and Kafka counters, for that interval only.
//
// Encoding (version 1): the version byte, then, unsigned integers as
// uvarints and signed ones as zig-zag varints, strings as a uvarint length
// and the bytes:
//
//	source string, start (µs since the Unix epoch, signed),
//	interval (µs), the six Fleet counters in field order,
//	the namespace count, then per namespace: name, queries, cache hits,
//	cache misses, Bloom short-circuits, the error count and per error its
//	code and count, the bucket count and per bucket its index (signed,
//	as the difference from the previous bucket's) and count.
type Record struct {
	// Source identifies the process: host, start time and a random number.
	Source string
	// Start is when the interval started; with Source it identifies the
	// record, so that a replay of it is recognised.
	Start time.Time
	// Interval is the interval's length.
	Interval time.Duration
	// Fleet holds the process's store and Kafka counters for the interval.
	Fleet Fleet
	// Namespaces holds the query figures per namespace, sorted by name.
	Namespaces []Namespace
}

// Fleet are a process's store and Kafka counters over a span of time.
type Fleet struct {
	// StoreRequests are online store requests (cairn_dynamo_requests_total,
	// cairn_redis_requests_total).
	StoreRequests uint64
	// StoreErrors are those that failed (outcome error).
	StoreErrors uint64
	// StoreThrottles are throttled attempts (cairn_dynamo_throttles_total).
	StoreThrottles uint64
	// StoreRaces are calls sent a second time by request racing
	// (cairn_hedge_started_total).
	StoreRaces uint64
	// KafkaMetricsDropped are metrics records dropped or failed
	// (cairn_queue_produced_records_total{role="metrics"}).
	KafkaMetricsDropped uint64
	// KafkaUploadsDropped are persistence records refused or failed
	// (cairn_queue_produced_records_total{role="persist"}).
	KafkaUploadsDropped uint64
}

func (f *Fleet) add(g Fleet) {
	f.StoreRequests += g.StoreRequests
	f.StoreErrors += g.StoreErrors
	f.StoreThrottles += g.StoreThrottles
	f.StoreRaces += g.StoreRaces
	f.KafkaMetricsDropped += g.KafkaMetricsDropped
	f.KafkaUploadsDropped += g.KafkaUploadsDropped
}

func (f *Fleet) fields() [6]*uint64 {
	return [6]*uint64{&f.StoreRequests, &f.StoreErrors, &f.StoreThrottles, &f.StoreRaces, &f.KafkaMetricsDropped, &f.KafkaUploadsDropped}
}

// Namespace is one namespace's query figures over a span of time.
type Namespace struct {
	Name string
	// Queries counts queries that read the namespace.
	Queries uint64
	// Errors counts the queries that failed for the namespace, by code.
	Errors []CodeCount
	// CacheHits and CacheMisses count cells (one feature of one entity)
	// answered by the cache, and read from the store past it.
	CacheHits, CacheMisses uint64
	// BloomSkipped counts entities answered absent by the Bloom filter
	// without a store read.
	BloomSkipped uint64
	// BloomLookups counts the Bloom filter's lookups, whatever their
	// answer: BloomSkipped/BloomLookups is its short-circuit ratio.
	BloomLookups uint64
	// Latency is the query latency sketch: counts by the index of
	// DDSketch's logarithmic mapping at RelativeAccuracy, in seconds.
	Latency []Bucket
}

// CodeCount is a count of one error code.
type CodeCount struct {
	Code  string
	Count uint64
}

// Bucket is a count of one latency sketch bucket.
type Bucket struct {
	Index int32
	Count uint64
}

func (r *Record) sort() {
	slices.SortFunc(r.Namespaces, func(a, b Namespace) int { return strings.Compare(a.Name, b.Name) })
}

// Append appends r's encoding to b.
func (r *Record) Append(b []byte) []byte {
	b = append(b, Version)
	return r.appendBody(b)
}

func (r *Record) appendBody(b []byte) []byte {
	b = appendString(b, r.Source)
	b = binary.AppendVarint(b, r.Start.UnixMicro())
	b = binary.AppendUvarint(b, uint64(r.Interval/time.Microsecond))
	for _, f := range r.Fleet.fields() {
		b = binary.AppendUvarint(b, *f)
	}
	b = binary.AppendUvarint(b, uint64(len(r.Namespaces)))
	for i := range r.Namespaces {
		n := &r.Namespaces[i]
		b = appendString(b, n.Name)
		for _, v := range []uint64{n.Queries, n.CacheHits, n.CacheMisses, n.BloomSkipped, n.BloomLookups} {
			b = binary.AppendUvarint(b, v)
		}
		b = binary.AppendUvarint(b, uint64(len(n.Errors)))
		for _, e := range n.Errors {
			b = appendString(b, e.Code)
			b = binary.AppendUvarint(b, e.Count)
		}
		b = binary.AppendUvarint(b, uint64(len(n.Latency)))
		prev := int64(0)
		for _, k := range n.Latency {
			b = binary.AppendVarint(b, int64(k.Index)-prev)
			b = binary.AppendUvarint(b, k.Count)
			prev = int64(k.Index)
		}
	}
	return b
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// ErrCorrupt is wrapped by the errors of Decode and of rollup items that
// do not decode.
var ErrCorrupt = errors.New("metrics: corrupt record")

// maxLatencyIndex bounds the bucket indices a decoder accepts: sketches
// of latencies from 1e-9 s to 1e9 s.
const maxLatencyIndex = 2100

// Decode decodes a record written by Append.
func Decode(b []byte) (*Record, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrCorrupt)
	}
	if b[0] != Version {
		return nil, fmt.Errorf("%w: version %d, want %d", ErrCorrupt, b[0], Version)
	}
	d := decoder{b: b[1:]}
	r := d.body()
	if d.err == nil && len(d.b) > 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
	if d.err != nil {
		return nil, d.err
	}
	return r, nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
	}
	d.b = nil
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("%s: bad uvarint", what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint(what string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("%s: bad varint", what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a count of items each at least min bytes long.
func (d *decoder) count(what string, min int) int {
	n := d.uvarint(what)
	if n > uint64(len(d.b)/min) {
		d.fail("%s: %d items in %d bytes", what, n, len(d.b))
		return 0
	}
	return int(n)
}

func (d *decoder) string(what string) string {
	n := d.uvarint(what)
	if n > uint64(len(d.b)) {
		d.fail("%s: length %d over the %d bytes left", what, n, len(d.b))
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) body() *Record {
	r := &Record{}
	r.Source = d.string("source")
	start := d.varint("start")
	if start < -1<<53 || start > 1<<53 {
		d.fail("start %d µs out of range", start)
	}
	r.Start = time.UnixMicro(start).UTC()
	iv := d.uvarint("interval")
	if iv > uint64(24*time.Hour/time.Microsecond) {
		d.fail("interval %d µs: over a day", iv)
	}
	r.Interval = time.Duration(iv) * time.Microsecond
	for _, f := range r.Fleet.fields() {
		*f = d.uvarint("fleet counter")
	}
	nns := d.count("namespaces", 8)
	if nns > 0 {
		r.Namespaces = make([]Namespace, nns)
	}
	for i := range r.Namespaces {
		n := &r.Namespaces[i]
		n.Name = d.string("namespace")
		if i > 0 && n.Name <= r.Namespaces[i-1].Name {
			d.fail("namespace %q after %q: want sorted, distinct names", n.Name, r.Namespaces[i-1].Name)
		}
		n.Queries = d.uvarint("queries")
		n.CacheHits = d.uvarint("cache hits")
		n.CacheMisses = d.uvarint("cache misses")
		n.BloomSkipped = d.uvarint("bloom")
		n.BloomLookups = d.uvarint("bloom lookups")
		if ne := d.count("errors", 2); ne > 0 {
			n.Errors = make([]CodeCount, ne)
			for j := range n.Errors {
				n.Errors[j] = CodeCount{Code: d.string("error code"), Count: d.uvarint("error count")}
			}
		}
		if nb := d.count("buckets", 2); nb > 0 {
			n.Latency = make([]Bucket, nb)
			prev := int64(0)
			for j := range n.Latency {
				idx := prev + d.varint("bucket index")
				if (j > 0 && idx <= prev) || idx < -maxLatencyIndex || idx > maxLatencyIndex {
					d.fail("bucket index %d: want increasing indices within ±%d", idx, maxLatencyIndex)
				}
				n.Latency[j] = Bucket{Index: int32(idx), Count: d.uvarint("bucket count")}
				prev = idx
			}
		}
		if d.err != nil {
			break
		}
	}
	return r
}
