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
	a := e.Answer(ctx, req)
	defer a.Release()
	return a.Fields(nil)
}

// rowsPool holds rows for stores that fill rows the caller owns.
var rowsPool = sync.Pool{New: func() any { return new([]store.Row) }}

// maxPooledCells bounds the rows kept for the next query.
const maxPooledCells = 1 << 16

// Answer answers req as Query does, without making a Field of every value:
// the answer is the store's rows, seen through its Groups. Release it once
// it is written.
func (e *Engine) Answer(ctx context.Context, req *Request) *Answer {
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
	for _, g := range groups {
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
	a := &Answer{Groups: make([]Group, len(groups))}
	for gi, g := range groups {
		keys := req.Keys[g.ns]
		grp := &a.Groups[gi]
		*grp = Group{NS: g.ns, Keys: keys, Outs: g.outs, cols: make([]int, len(g.outs)),
			rows: g.rows, err: g.err, pooled: g.pooled}
		if wins != nil {
			grp.wins = wins[gi]
		}
		if res != nil {
			grp.res = res[gi]
		}
		// Outputs read from the store have a column of cells each, in
		// the order of g.feats, which follows g.outs minus the key and
		// the windowed outputs.
		j := 0
		for o, f := range g.outs {
			if f == g.ns.PrimaryKey || f.WindowOf != nil {
				grp.cols[o] = -1
				continue
			}
			grp.cols[o] = j
			j++
		}
		if g.err != nil {
			continue
		}
		// A stored value older than its bound is not served: its cell
		// is marked absent, once, here.
		for o, f := range g.outs {
			if _, bounded := maxAge(req, f); !bounded || grp.cols[o] < 0 {
				continue
			}
			for i := range keys {
				c := grp.cell(i, o)
				if c == nil || !c.Found || c.Value == nil || e.fresh(req, f, *c, now) {
					continue
				}
				e.stale.Inc()
				c.Found = false
			}
		}
	}
	return a
}

// Answer is a query's answer: a Group per namespace read, in the order the
// outputs first name them.
type Answer struct {
	Groups []Group
	// released guards against a second Release.
	released bool
}

// Group is the answer of one namespace: a row per key, in the order of
// Keys, of a value per output, in the order of Outs. Its values are the
// store's cells, the resolvers' results and the windows' aggregates as
// they were read, seen through Field, never copied out.
type Group struct {
	NS   *feature.Namespace
	Keys []string
	Outs []*feature.Feature
	// cols[o] is the cell column of output o in rows, -1 for the primary
	// key and windowed outputs.
	cols   []int
	rows   []store.Row
	err    error
	wins   []map[*feature.Feature]windowAnswer
	res    *resolution
	pooled *[]store.Row
	// fields, when set, are the group's fields made beforehand
	// (FieldsGroup), row by row.
	fields []Field
}

// cell returns the store's cell of output o for row i, nil for an output
// the store does not answer there (the primary key, a windowed output, a
// value a resolver computed or failed to compute).
func (g *Group) cell(i, o int) *store.Cell {
	j := g.cols[o]
	if j < 0 || g.err != nil || g.rows == nil {
		return nil
	}
	if g.res != nil && g.res.covers(g.Outs[o], i) {
		return nil
	}
	return &g.rows[i].Cells[j]
}

// Field returns the value of output o for row i. A store failure fails the
// fields of its namespace only.
func (g *Group) Field(i, o int) Field {
	if g.fields != nil {
		return g.fields[i*len(g.Outs)+o]
	}
	f := g.Outs[o]
	if c := g.storeCell(i, o); c != nil {
		if c.Found && c.Value != nil {
			return Field{Feature: f, Key: g.Keys[i], Value: c.Value, ObservedAt: c.ObservedAt, CacheHit: c.CacheHit}
		}
		return Field{Feature: f, Key: g.Keys[i], CacheHit: c.CacheHit}
	}
	fld := Field{Feature: f, Key: g.Keys[i]}
	switch {
	case f == g.NS.PrimaryKey:
		fld.Value = pkValue(f, fld.Key)
	case f.WindowOf != nil:
		a := g.wins[i][f]
		fld.Value, fld.Err = a.value, a.err
	case g.res != nil && g.res.fill(&fld, i):
	case g.err != nil:
		fld.Err = g.err
	default:
		c := &g.rows[i].Cells[g.cols[o]]
		fld.CacheHit = c.CacheHit
		if c.Found && c.Value != nil {
			fld.Value, fld.ObservedAt = c.Value, c.ObservedAt
		}
	}
	return fld
}

// Value returns the value of output o for row i and its observed-at, as
// Field does, without the rest of the field.
func (g *Group) Value(i, o int) (any, time.Time) {
	if c := g.storeCell(i, o); c != nil {
		if c.Found && c.Value != nil {
			return c.Value, c.ObservedAt
		}
		return nil, time.Time{}
	}
	f := g.Field(i, o)
	return f.Value, f.ObservedAt
}

// Column is output o of a group seen down its rows: Value reads row i as
// Group.Value does, straight from the store's cells or the group's fields
// when the output has them, without the per-value checks of Group.Value.
// Get one with Group.Column; it is valid as long as its answer is.
type Column struct {
	g *Group
	o int
	// j is the output's cell column in g.rows when every row of it is a
	// store cell; -1 otherwise.
	j int
	// fields are g.fields from output o on, a row every stride fields,
	// for a group made of fields; nil otherwise.
	fields []Field
	stride int
}

// Column returns output o of g, to be read row by row.
func (g *Group) Column(o int) Column {
	c := Column{g: g, o: o, j: -1}
	switch {
	case g.fields != nil:
		c.fields, c.stride = g.fields[o:], len(g.Outs)
	case g.res == nil && g.err == nil && g.cols[o] >= 0:
		c.j = g.cols[o]
	}
	return c
}

// Value returns the value of row i and its observed-at, as Group.Value
// does: nil and the zero time when no value is served.
func (c *Column) Value(i int) (any, time.Time) {
	if c.j >= 0 {
		cell := &c.g.rows[i].Cells[c.j]
		if cell.Found && cell.Value != nil {
			return cell.Value, cell.ObservedAt
		}
		return nil, time.Time{}
	}
	if c.fields != nil {
		f := &c.fields[i*c.stride]
		return f.Value, f.ObservedAt
	}
	return c.g.Value(i, c.o)
}

// storeCell is cell for a group without resolved outputs, the usual case,
// and nil for a group with.
func (g *Group) storeCell(i, o int) *store.Cell {
	if g.res != nil || g.err != nil || g.fields != nil {
		return nil
	}
	if j := g.cols[o]; j >= 0 {
		return &g.rows[i].Cells[j]
	}
	return nil
}

// MayFail reports whether some field of the group may carry an error:
// its store read failed, or it has resolved or windowed outputs. The
// fields of a group that may not need not be looked at for errors.
func (g *Group) MayFail() bool {
	return g.err != nil || g.res != nil || g.wins != nil || g.fields != nil
}

// FieldsGroup returns a group of ns whose fields are fields, laid out row
// by row (len(keys) × len(outs) of them): an answer made without an engine,
// for tests and tools.
func FieldsGroup(ns *feature.Namespace, keys []string, outs []*feature.Feature, fields []Field) Group {
	return Group{NS: ns, Keys: keys, Outs: outs, fields: fields}
}

// Fields appends the answer's fields to dst as Query lays them out:
// namespace by namespace, then key by key, then in output order.
func (a *Answer) Fields(dst []Field) []Field {
	for gi := range a.Groups {
		g := &a.Groups[gi]
		for i := range g.Keys {
			for o := range g.Outs {
				dst = append(dst, g.Field(i, o))
			}
		}
	}
	return dst
}

// Release gives the answer's rows back for the next queries. The answer
// must not be used after.
func (a *Answer) Release() {
	if a.released {
		return
	}
	a.released = true
	for gi := range a.Groups {
		if g := &a.Groups[gi]; g.pooled != nil {
			putRows(g.pooled, g.rows)
		}
	}
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
