// Package query executes online queries against the online store: it reads
// the requested features of the requested entities, one store read per
// namespace, concurrently, and applies each feature's maximum staleness.
//
// A query's deadline is its context's: the engine passes the context down to
// every read, so that the store's retries, backoff and request racing stop
// at it, and a read that failed because the deadline passed is reported as a
// [*DeadlineError].
package query

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/resolver"
	"github.com/cairnfs/cairn/internal/store"
)

// Store is the online store as queries use it.
type Store interface {
	// Read returns one row per key, each with cells aligned with feats.
	Read(ctx context.Context, ns *feature.Namespace, keys []string, feats []*feature.Feature) ([]store.Row, error)
}

// RowsStore is a Store that can fill rows the caller owns (see
// store.ResetRows): the engine then reuses one query's rows for the next.
type RowsStore interface {
	ReadInto(ctx context.Context, ns *feature.Namespace, keys []string, feats []*feature.Feature, rows []store.Row) ([]store.Row, error)
}

// Request is a validated online query.
type Request struct {
	// Keys holds, per namespace queried, the canonical primary keys.
	Keys map[*feature.Namespace][]string
	// Outputs are the features to answer, in the order asked.
	Outputs []*feature.Feature
	// Staleness replaces a feature's declared maximum staleness for this
	// query: feature.Infinite (no bound), feature.Recompute (serve no
	// stored value) or a positive duration.
	Staleness map[*feature.Feature]feature.Staleness

	// computed holds what the query's resolvers computed, for Publish.
	computed []computedEntity
}

// Field is the answer for one output of one entity.
type Field struct {
	Feature *feature.Feature
	Key     string
	// Value is nil when no fresh value is stored.
	Value any
	// ObservedAt is zero when Value is absent.
	ObservedAt time.Time
	// Err is set when the store could not be read; Value is then nil. It
	// is a *DeadlineError when the query's deadline passed first.
	Err error
	// CacheHit reports that the answer came from the query server's cache.
	CacheHit bool
	// Resolver is the resolver that computed Value (or failed to, with
	// Err a *resolver.Error); nil when the answer is the store's.
	Resolver *feature.Resolver
}

// DeadlineError is a read cut short because the query's context ended (its
// deadline passed) before the store answered.
type DeadlineError struct {
	// Namespace is the namespace whose read was cut short.
	Namespace string
	// Err is what the store returned when it gave up.
	Err error
}

func (e *DeadlineError) Error() string {
	return fmt.Sprintf("query: read of %s not done by the query's deadline: %v", e.Namespace, e.Err)
}

// Unwrap returns the store's error.
func (e *DeadlineError) Unwrap() error { return e.Err }

// Engine runs queries.
type Engine struct {
	store Store
	now   func() time.Time

	// resolvers compute what the store cannot answer; nil without any.
	resolvers *resolver.Set
	// buckets serves windowed features; nil without.
	buckets store.BucketStore
	sink    Sink
	rm      *resolveMetrics

	reads   *prometheus.CounterVec
	latency *prometheus.HistogramVec
	stale   prometheus.Counter
}

// NewEngine returns an engine reading st. now is the clock used for
// staleness (time.Now when nil).
func NewEngine(st Store, reg prometheus.Registerer, now func() time.Time) *Engine {
	if now == nil {
		now = time.Now
	}
	e := &Engine{
		store: st, now: now,
		reads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_query_namespace_reads_total",
			Help: "Reads of one namespace's entities by a query, through the cache and Bloom filter when configured (store requests are counted by the store's own metrics), by namespace and outcome (ok, error, deadline_exceeded).",
		}, []string{"namespace", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cairn_query_namespace_read_seconds",
			Help:    "Latency of one query's read of one namespace's entities, through the cache and Bloom filter when configured, by namespace.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
		}, []string{"namespace"}),
		stale: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_query_stale_values_total",
			Help: "Stored values not served because they were older than their maximum staleness.",
		}),
	}
	e.rm = newResolveMetrics()
	if reg != nil {
		reg.MustRegister(e.reads, e.latency, e.stale)
		e.rm.register(reg)
	}
	return e
}

// Query answers req. Fields come grouped by namespace (in the order the
// outputs first name them), then by key, then in output order. A store
// failure fails the fields of that namespace only. Reads stop when ctx
// ends: give it the query's deadline.
func (e *Engine) Query(ctx context.Context, req *Request) []Field {
	return e.QueryInto(ctx, req, nil)
}

// rowsPool holds rows for stores that fill rows the caller owns.
var rowsPool = sync.Pool{New: func() any { return new([]store.Row) }}

// maxPooledCells bounds the rows kept for the next query.
const maxPooledCells = 1 << 16

// QueryInto is Query, appending the fields to out[:0], which it reuses
// when large enough.
func (e *Engine) QueryInto(ctx context.Context, req *Request, out []Field) []Field {
	type group struct {
		ns    *feature.Namespace
		feats []*feature.Feature // outputs, primary key excluded
		outs  []*feature.Feature // outputs in request order
		rows  []store.Row
		err   error
		// pooled holds rows to give back to rowsPool once read.
		pooled *[]store.Row
	}
	var groups []*group
	byNS := map[*feature.Namespace]*group{}
	for _, f := range req.Outputs {
		g := byNS[f.Namespace]
		if g == nil {
			// Most queries name one namespace: its slices are sized for
			// every output at once.
			g = &group{ns: f.Namespace,
				outs:  make([]*feature.Feature, 0, len(req.Outputs)),
				feats: make([]*feature.Feature, 0, len(req.Outputs))}
			byNS[f.Namespace] = g
			groups = append(groups, g)
		}
		g.outs = append(g.outs, f)
		if f != f.Namespace.PrimaryKey && f.WindowOf == nil {
			g.feats = append(g.feats, f)
		}
	}
	if e.resolvers != nil {
		for _, g := range groups {
			// The inputs of the expressions computing outputs are read
			// too, after the outputs (which keep their indexes).
			g.feats = e.withInputs(g.feats)
		}
	}
	read := func(g *group) {
		keys := req.Keys[g.ns]
		start := time.Now()
		if rs, ok := e.store.(RowsStore); ok {
			g.pooled = rowsPool.Get().(*[]store.Row)
			g.rows, g.err = rs.ReadInto(ctx, g.ns, keys, g.feats, *g.pooled)
		} else {
			g.rows, g.err = e.store.Read(ctx, g.ns, keys, g.feats)
		}
		if g.err == nil && len(g.rows) != len(keys) {
			g.err = fmt.Errorf("store answered %d rows for %d keys", len(g.rows), len(keys))
		}
		e.latency.WithLabelValues(g.ns.Name).Observe(time.Since(start).Seconds())
		outcome := "ok"
		switch {
		case g.err == nil:
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			// Whatever the store says (a cancelled retry, a cut
			// connection), the deadline is why it gave up.
			g.err = &DeadlineError{Namespace: g.ns.Name, Err: g.err}
			outcome = "deadline_exceeded"
		default:
			outcome = "error"
		}
		e.reads.WithLabelValues(g.ns.Name, outcome).Inc()
	}
	var reads []*group
	nout := 0
	for _, g := range groups {
		nout += len(req.Keys[g.ns]) * len(g.outs)
		if len(g.feats) > 0 && len(req.Keys[g.ns]) > 0 {
			reads = append(reads, g)
		}
	}
	// The last read runs on this goroutine: a query of one namespace, the
	// usual case, starts none (nor grows a new one's stack through the
	// store client's calls).
	var wg sync.WaitGroup
	for i, g := range reads {
		if i == len(reads)-1 {
			read(g)
			break
		}
		wg.Go(func() { read(g) })
	}
	wg.Wait()

	now := e.now()
	// Windowed outputs are answered from their buckets.
	var wins [][]map[*feature.Feature]windowAnswer
	for i, g := range groups {
		if len(req.Keys[g.ns]) > 0 && hasWindowed(g.outs) {
			if wins == nil {
				wins = make([][]map[*feature.Feature]windowAnswer, len(groups))
			}
			wins[i] = e.readWindows(ctx, g.ns, req.Keys[g.ns], g.outs, now)
		}
	}
	var res []*resolution
	if e.resolvers != nil {
		res = make([]*resolution, len(groups))
		for i, g := range groups {
			if g.err == nil && len(req.Keys[g.ns]) > 0 {
				res[i] = e.resolve(ctx, req, g.ns, g.feats, g.rows, now)
			}
		}
	}
	if cap(out) < nout {
		out = make([]Field, 0, nout)
	}
	out = out[:0]
	for gi, g := range groups {
		var rs *resolution
		if res != nil {
			rs = res[gi]
		}
		for i, key := range req.Keys[g.ns] {
			j := 0 // index into g.feats, which follows g.outs minus the key
			for _, f := range g.outs {
				fld := Field{Feature: f, Key: key}
				switch {
				case f == g.ns.PrimaryKey:
					fld.Value = pkValue(f, key)
				case f.WindowOf != nil:
					a := wins[gi][i][f]
					fld.Value, fld.Err = a.value, a.err
				case rs != nil && rs.fill(&fld, i):
					j++
				case g.err != nil:
					fld.Err = g.err
					j++
				default:
					c := g.rows[i].Cells[j]
					j++
					fld.CacheHit = c.CacheHit
					if !c.Found || c.Value == nil {
						break
					}
					if !e.fresh(req, f, c, now) {
						e.stale.Inc()
						break
					}
					fld.Value, fld.ObservedAt = c.Value, c.ObservedAt
				}
				out = append(out, fld)
			}
		}
		if g.pooled != nil {
			putRows(g.pooled, g.rows)
		}
	}
	return out
}

// putRows gives rows, whose values have been copied out, back to rowsPool
// in p, unless they are too large to keep. They are not cleared: the next
// read clears them (store.ResetRows).
func putRows(p *[]store.Row, rows []store.Row) {
	if rows == nil {
		rows = *p // the read failed: keep what the pool had
	}
	cells := 0
	for i := range rows {
		cells += cap(rows[i].Cells)
	}
	if cells > maxPooledCells {
		return
	}
	*p = rows
	rowsPool.Put(p)
}

// maxAge returns how old a stored value of f may be in this query: the
// query's own bound, else the feature's (feature.Feature.MaxAge).
func maxAge(req *Request, f *feature.Feature) (time.Duration, bool) {
	if s, ok := req.Staleness[f]; ok {
		switch {
		case s == feature.Infinite:
			return 0, false
		case s == feature.Recompute:
			return 0, true
		}
		return time.Duration(s), true
	}
	return f.MaxAge()
}

// fresh reports whether cell c of f, stored or cached, may be served at
// now.
func (e *Engine) fresh(req *Request, f *feature.Feature, c store.Cell, now time.Time) bool {
	d, bounded := maxAge(req, f)
	return !bounded || d > 0 && now.Sub(c.ObservedAt) <= d
}

func hasWindowed(fs []*feature.Feature) bool {
	for _, f := range fs {
		if f.WindowOf != nil {
			return true
		}
	}
	return false
}

func pkValue(f *feature.Feature, key string) any {
	return feature.KeyJSON(f.Type, key)
}
