package metrics

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/DataDog/sketches-go/ddsketch"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/store"
)

// RejectedNamespace holds the queries rejected before their namespaces
// were known (a malformed request, an unknown feature).
const RejectedNamespace = "(rejected)"

// Rollup is one minute's figures, of one namespace, or of the fleet (all
// query servers) when Namespace is empty.
type Rollup struct {
	// Minute is the minute's start.
	Minute time.Time
	// Namespace is the namespace, RejectedNamespace, or "" for the fleet
	// row, which holds Fleet only.
	Namespace string

	// Queries counts queries that read the namespace.
	Queries uint64
	// Errors counts failed queries by error code.
	Errors map[string]uint64
	// CacheHits and CacheMisses count cells answered by the cache and
	// read past it.
	CacheHits, CacheMisses uint64
	// BloomSkipped counts entities the Bloom filter answered absent
	// without a store read.
	BloomSkipped uint64
	// BloomLookups counts the Bloom filter's lookups.
	BloomLookups uint64
	// Latency is the sketch of query latencies in seconds (relative
	// accuracy RelativeAccuracy); nil on fleet rows.
	Latency *ddsketch.DDSketch

	// Fleet holds the store and Kafka counters of every query server.
	Fleet Fleet
}

// Quantile returns the latency quantile q (0 to 1), or 0 without queries.
func (r *Rollup) Quantile(q float64) time.Duration {
	if r.Latency == nil || r.Latency.IsEmpty() {
		return 0
	}
	v, err := r.Latency.GetValueAtQuantile(q)
	if err != nil {
		return 0
	}
	return time.Duration(v * float64(time.Second))
}

// P50 returns the median latency.
func (r *Rollup) P50() time.Duration { return r.Quantile(0.5) }

// P95 returns the 95th percentile latency.
func (r *Rollup) P95() time.Duration { return r.Quantile(0.95) }

// P99 returns the 99th percentile latency.
func (r *Rollup) P99() time.Duration { return r.Quantile(0.99) }

// Reader reads the rollups the consumers keep.
type Reader struct {
	st         ReadStore
	space      rollupSpace
	partitions int
	retention  time.Duration
}

// ReadStore is the online store as a Reader uses it.
type ReadStore interface {
	Read(ctx context.Context, ns *feature.Namespace, keys []string, feats []*feature.Feature) ([]store.Row, error)
}

// NewReader returns a reader of the rollups kept in st by consumers
// configured as cfg (its Retention and Partitions).
func NewReader(st ReadStore, cfg ConsumerConfig) (*Reader, error) {
	space, err := cfg.prepare()
	if err != nil {
		return nil, err
	}
	return &Reader{st: st, space: space, partitions: cfg.Partitions, retention: cfg.Retention}, nil
}

// maxReadKeys bounds the keys of one store read.
const maxReadKeys = 1000

// Range returns the rollups of the minutes starting in [from, to), at
// most the retention back: for each minute, its fleet row first, then a
// row per namespace, sorted by name. Minutes without records have no rows.
func (rd *Reader) Range(ctx context.Context, from, to time.Time) ([]Rollup, error) {
	if oldest := time.Now().Add(-rd.retention).Truncate(time.Minute); from.Before(oldest) {
		from = oldest
	}
	from = from.UTC().Truncate(time.Minute)
	if !from.Before(to) {
		return nil, nil
	}
	var keys []string
	var minutes []time.Time
	for m := from; m.Before(to); m = m.Add(time.Minute) {
		for p := range rd.partitions {
			keys = append(keys, itemKey(m, int32(p)))
			minutes = append(minutes, m)
		}
	}
	feats := []*feature.Feature{rd.space.rollup}
	sums := map[time.Time]*item{}
	for len(keys) > 0 {
		n := min(len(keys), maxReadKeys)
		rows, err := rd.st.Read(ctx, rd.space.ns, keys[:n], feats)
		if err != nil {
			return nil, fmt.Errorf("metrics: read %d rollup items: %w", n, err)
		}
		for i, row := range rows {
			c := row.Cells[0]
			if !c.Found || c.Value == nil {
				continue
			}
			it, err := decodeItem(c.Value.([]byte))
			if err != nil {
				return nil, fmt.Errorf("metrics: rollup item %s: %w", keys[i], err)
			}
			s := sums[minutes[i]]
			if s == nil {
				s = &item{}
				sums[minutes[i]] = s
			}
			// Items of different partitions hold different records:
			// their sum is added as one record of its own.
			it.sum.Source, it.sum.Start = keys[i], minutes[i]
			s.merge(&it.sum)
		}
		keys, minutes = keys[n:], minutes[n:]
	}
	var out []Rollup
	for m, s := range sums {
		out = append(out, Rollup{Minute: m, Fleet: s.sum.Fleet})
		for _, n := range s.sum.Namespaces {
			r := Rollup{Minute: m, Namespace: n.Name, Queries: n.Queries, CacheHits: n.CacheHits,
				CacheMisses: n.CacheMisses, BloomSkipped: n.BloomSkipped, BloomLookups: n.BloomLookups, Latency: Sketch(n.Latency)}
			if len(n.Errors) > 0 {
				r.Errors = make(map[string]uint64, len(n.Errors))
				for _, e := range n.Errors {
					r.Errors[e.Code] = e.Count
				}
			}
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b Rollup) int {
		if c := a.Minute.Compare(b.Minute); c != 0 {
			return c
		}
		return strings.Compare(a.Namespace, b.Namespace)
	})
	return out, nil
}
