package query

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/resolver"
	"github.com/cairnfs/cairn/internal/store"
)

// Sink takes the values queries computed, to persist them: one call per
// entity, with every feature its resolvers computed whose declared maximum
// staleness is not 0. It must not block: a query server hands results to
// Kafka without waiting for it.
type Sink interface {
	Computed(ns *feature.Namespace, key string, feats []*feature.Feature, values []any, at time.Time)
}

// CachePutter is a read path that keeps values (package cache): computed
// values enter it at once, so that the server does not compute them again
// before they are persisted.
type CachePutter interface {
	Put(ns *feature.Namespace, key string, feats []*feature.Feature, values []any, at time.Time)
}

// UseResolvers makes the engine compute, with set's resolvers, the
// features the store cannot answer fresh, and hand what it computed to
// sink (nil: nothing is persisted) from Publish. Call it before the first
// query.
func (e *Engine) UseResolvers(set *resolver.Set, sink Sink) {
	e.resolvers, e.sink = set, sink
}

// Publish hands what req's resolvers computed to the sink and to the
// cache. A query server calls it once the answer is written.
func (e *Engine) Publish(req *Request) {
	if len(req.computed) == 0 {
		return
	}
	putter, _ := e.store.(CachePutter)
	for _, c := range req.computed {
		if putter != nil {
			putter.Put(c.ns, c.key, c.feats, c.values, c.at)
		}
		if e.sink != nil {
			e.sink.Computed(c.ns, c.key, c.feats, c.values, c.at)
		}
	}
	e.rm.published.Add(float64(len(req.computed)))
	req.computed = nil
}

// computedEntity is what a query computed for one entity, to persist.
type computedEntity struct {
	ns     *feature.Namespace
	key    string
	feats  []*feature.Feature
	values []any
	at     time.Time
}

// withInputs returns feats followed by the features the expressions
// computing them read, transitively, each once.
func (e *Engine) withInputs(feats []*feature.Feature) []*feature.Feature {
	for i := 0; i < len(feats); i++ {
		r := feats[i].Resolver
		if r == nil {
			continue
		}
		for _, in := range e.resolvers.Inputs(r) {
			if in != in.Namespace.PrimaryKey && !slices.Contains(feats, in) {
				feats = append(feats, in)
			}
		}
	}
	return feats
}

// resolution is what one namespace's resolvers computed for a query.
type resolution struct {
	feats []*feature.Feature
	// rows holds, per resolver run, its answer per key index (keys
	// repeated in the query share their row).
	rows map[*feature.Resolver][]resolver.Row
	// need holds, per resolver run, the key indexes it computed.
	need map[*feature.Resolver][]bool
	at   time.Time
}

// fill answers fld, the output of key index i, from what was computed,
// and reports whether it did (false: the store's cell answers it).
// covers reports whether row i of output f is the resolution's, computed
// or failed, rather than the store's.
func (rs *resolution) covers(f *feature.Feature, i int) bool {
	r := f.Resolver
	return r != nil && rs.need[r][i]
}

func (rs *resolution) fill(fld *Field, i int) bool {
	r := fld.Feature.Resolver
	if r == nil || !rs.need[r][i] {
		return false
	}
	row := rs.rows[r][i]
	fld.Resolver = r
	if row.Err != nil {
		fld.Err = row.Err
		return true
	}
	if row.Values != nil {
		if v := row.Values[slices.Index(r.Outputs, fld.Feature)]; v != nil {
			fld.Value, fld.ObservedAt = v, rs.at
		}
	}
	return true
}

// resolve runs the resolvers of the features in feats (outputs first,
// then expressions' inputs) whose cells in rows are absent or stale,
// for the keys whose cells are. Resolvers without inputs run
// concurrently; then expressions, in dependency order, on this
// goroutine.
func (e *Engine) resolve(ctx context.Context, req *Request, ns *feature.Namespace, feats []*feature.Feature,
	rows []store.Row, now time.Time) *resolution {
	keys := req.Keys[ns]
	usable := func(j, i int) bool {
		c := rows[i].Cells[j]
		return c.Found && c.Value != nil && e.fresh(req, feats[j], c, now)
	}
	var rs *resolution
	mark := func(r *feature.Resolver, i int) bool {
		if rs == nil {
			rs = &resolution{feats: feats, rows: map[*feature.Resolver][]resolver.Row{}, need: map[*feature.Resolver][]bool{}}
		}
		n := rs.need[r]
		if n == nil {
			n = make([]bool, len(keys))
			rs.need[r] = n
		}
		if n[i] {
			return false
		}
		n[i] = true
		return true
	}
	// The outputs asked for; then, dependents before what they depend
	// on, the inputs of the expressions that will run.
	for j, f := range feats {
		if f.Resolver == nil || !isOutput(req, f) {
			continue
		}
		for i := range keys {
			if !usable(j, i) {
				mark(f.Resolver, i)
			}
		}
	}
	if rs == nil {
		return nil
	}
	order := e.resolvers.Order()
	for k := len(order) - 1; k >= 0; k-- {
		r := order[k]
		need := rs.need[r]
		if need == nil {
			continue
		}
		for _, in := range e.resolvers.Inputs(r) {
			if in.Resolver == nil {
				continue
			}
			j := slices.Index(feats, in)
			for i, n := range need {
				if n && (j < 0 || !usable(j, i)) {
					mark(in.Resolver, i)
				}
			}
		}
	}
	// One call per resolver for the distinct keys that need it.
	distinct := func(need []bool) (ks []string, idx []int, at map[string]int) {
		at = make(map[string]int, len(keys))
		for i, n := range need {
			if !n {
				continue
			}
			if _, dup := at[keys[i]]; dup {
				continue
			}
			at[keys[i]] = len(ks)
			ks = append(ks, keys[i])
			idx = append(idx, i)
		}
		return ks, idx, at
	}
	spread := func(r *feature.Resolver, got []resolver.Row, at map[string]int) {
		all := make([]resolver.Row, len(keys))
		for i, n := range rs.need[r] {
			if n {
				all[i] = got[at[keys[i]]]
			}
		}
		rs.rows[r] = all
	}
	start := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, r := range order {
		if rs.need[r] == nil || e.resolvers.Inputs(r) != nil {
			continue
		}
		wg.Go(func() {
			ks, _, at := distinct(rs.need[r])
			got := e.resolvers.Resolve(ctx, r, ks, nil)
			mu.Lock()
			spread(r, got, at)
			mu.Unlock()
		})
	}
	wg.Wait()
	for _, r := range order {
		ins := e.resolvers.Inputs(r)
		if rs.need[r] == nil || ins == nil {
			continue
		}
		ks, idx, at := distinct(rs.need[r])
		inputs := make([][]any, len(ks))
		failed := make([]error, len(ks))
		for k, i := range idx {
			vals := make([]any, len(ins))
			for m, in := range ins {
				switch {
				case in == ns.PrimaryKey:
					vals[m] = pkCanonical(in, keys[i])
				case in.Resolver != nil && rs.need[in.Resolver] != nil && rs.need[in.Resolver][i]:
					row := rs.rows[in.Resolver][i]
					if row.Err != nil {
						failed[k] = row.Err
					} else if row.Values != nil {
						vals[m] = row.Values[slices.Index(in.Resolver.Outputs, in)]
					}
				default:
					if j := slices.Index(feats, in); j >= 0 && usable(j, i) {
						vals[m] = rows[i].Cells[j].Value
					}
				}
			}
			inputs[k] = vals
		}
		got := e.resolvers.Resolve(ctx, r, ks, inputs)
		for k, err := range failed {
			if err != nil {
				got[k] = resolver.Row{Err: &resolver.Error{Resolver: r, Err: inputError{err}}}
			}
		}
		spread(r, got, at)
	}
	e.rm.duration.Observe(time.Since(start).Seconds())
	rs.at = feature.CanonicalTime(e.now())
	req.computed = append(req.computed, rs.toPersist(ns, keys, order)...)
	return rs
}

// inputError is an expression not evaluated because an input failed.
type inputError struct{ err error }

func (e inputError) Error() string { return "an input could not be computed: " + e.err.Error() }
func (e inputError) Unwrap() error { return e.err }

// isOutput reports whether f is among the query's outputs.
func isOutput(req *Request, f *feature.Feature) bool { return slices.Contains(req.Outputs, f) }

// toPersist returns, per distinct key, the values computed for it whose
// features declare a maximum staleness other than 0: one entity each, so
// that the writers make one write per resolved entity.
func (rs *resolution) toPersist(ns *feature.Namespace, keys []string, order []*feature.Resolver) []computedEntity {
	var out []computedEntity
	seen := map[string]bool{}
	for i, key := range keys {
		if seen[key] {
			continue
		}
		seen[key] = true
		var c *computedEntity
		for _, r := range order {
			if need := rs.need[r]; need == nil || !need[i] {
				continue
			}
			row := rs.rows[r][i]
			if row.Err != nil || row.Values == nil {
				continue
			}
			for j, f := range r.Outputs {
				if d, bounded := f.MaxAge(); bounded && d == 0 || row.Values[j] == nil {
					continue
				}
				if c == nil {
					out = append(out, computedEntity{ns: ns, key: key, at: rs.at})
					c = &out[len(out)-1]
				}
				c.feats = append(c.feats, f)
				c.values = append(c.values, row.Values[j])
			}
		}
	}
	return out
}

// pkCanonical returns a primary key as an expression reads it: the
// canonical value of its type.
func pkCanonical(f *feature.Feature, key string) any {
	if v, ok := feature.KeyJSON(f.Type, key).(int64); ok {
		return v
	}
	return key
}

// resolveMetrics are the engine's metrics of resolution.
type resolveMetrics struct {
	duration  prometheus.Histogram
	published prometheus.Counter
}

func newResolveMetrics() *resolveMetrics {
	return &resolveMetrics{
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "cairn_query_resolve_seconds",
			Help:    "Time a query spent computing, with resolvers, the features of one namespace the store could not answer fresh.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
		}),
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_query_results_published_total",
			Help: "Entities whose computed values a query handed to persistence (as one query-result record each) and to the cache.",
		}),
	}
}

func (m *resolveMetrics) register(reg prometheus.Registerer) {
	reg.MustRegister(m.duration, m.published)
}
