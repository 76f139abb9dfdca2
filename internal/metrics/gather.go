package metrics

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// deltas remembers the counters read at the end of the last interval, so
// that each interval's record carries what happened in it. A counter that
// went down (a collector re-registered) counts from zero again.
type deltas struct {
	last map[string]float64
}

// counter is one counter series of the gatherer a record takes: the
// family, a filter on its labels, and where its delta goes.
type counter struct {
	family string
	match  func(labels map[string]string) bool
	// fleet, when set, receives the delta; else ns does, per namespace.
	fleet func(f *Fleet) *uint64
	ns    func(n *Namespace) *uint64
}

func all(map[string]string) bool { return true }

func label(name string, values ...string) func(map[string]string) bool {
	return func(l map[string]string) bool {
		for _, v := range values {
			if l[name] == v {
				return true
			}
		}
		return false
	}
}

// counters are the series records take from the gatherer. Only the
// families of the store in use exist; the others add nothing.
var counters = []counter{
	{family: "cairn_dynamo_requests_total", match: all, fleet: func(f *Fleet) *uint64 { return &f.StoreRequests }},
	{family: "cairn_redis_requests_total", match: all, fleet: func(f *Fleet) *uint64 { return &f.StoreRequests }},
	{family: "cairn_dynamo_requests_total", match: label("outcome", "error"), fleet: func(f *Fleet) *uint64 { return &f.StoreErrors }},
	{family: "cairn_redis_requests_total", match: label("outcome", "error"), fleet: func(f *Fleet) *uint64 { return &f.StoreErrors }},
	{family: "cairn_dynamo_throttles_total", match: all, fleet: func(f *Fleet) *uint64 { return &f.StoreThrottles }},
	{family: "cairn_hedge_started_total", match: all, fleet: func(f *Fleet) *uint64 { return &f.StoreRaces }},
	{family: "cairn_queue_produced_records_total", match: func(l map[string]string) bool {
		return l["role"] == "metrics" && (l["outcome"] == "dropped" || l["outcome"] == "error")
	}, fleet: func(f *Fleet) *uint64 { return &f.KafkaMetricsDropped }},
	{family: "cairn_queue_produced_records_total", match: func(l map[string]string) bool {
		return l["role"] == "persist" && (l["outcome"] == "dropped" || l["outcome"] == "error")
	}, fleet: func(f *Fleet) *uint64 { return &f.KafkaUploadsDropped }},
	{family: "cairn_cache_hits_total", match: all, ns: func(n *Namespace) *uint64 { return &n.CacheHits }},
	{family: "cairn_cache_misses_total", match: all, ns: func(n *Namespace) *uint64 { return &n.CacheMisses }},
	{family: "cairn_bloom_reads_skipped_total", match: all, ns: func(n *Namespace) *uint64 { return &n.BloomSkipped }},
	{family: "cairn_bloom_lookups_total", match: all, ns: func(n *Namespace) *uint64 { return &n.BloomLookups }},
}

// read adds to r the deltas of the gatherer's counters since the last read.
func (d *deltas) read(g prometheus.Gatherer, r *Record, log *slog.Logger) {
	mfs, err := g.Gather()
	if err != nil && log != nil {
		// Gather returns what it could gather along with the error.
		log.Warn("metrics: gathering the process's counters", "err", err)
	}
	byName := make(map[string]*dto.MetricFamily, len(mfs))
	for _, mf := range mfs {
		byName[mf.GetName()] = mf
	}
	if d.last == nil {
		d.last = map[string]float64{}
	}
	now := make(map[string]float64, len(d.last))
	for ci, c := range counters {
		mf := byName[c.family]
		if mf == nil {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := make(map[string]string, len(m.GetLabel()))
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			if !c.match(labels) {
				continue
			}
			v := m.GetCounter().GetValue()
			key := seriesKey(ci, m)
			now[key] = v
			delta := v - d.last[key]
			if delta < 0 {
				delta = v
			}
			if delta <= 0 {
				continue
			}
			if c.fleet != nil {
				*c.fleet(&r.Fleet) += uint64(delta)
				continue
			}
			ns := labels["namespace"]
			*c.ns(r.namespace(ns)) += uint64(delta)
		}
	}
	d.last = now
}

func seriesKey(ci int, m *dto.Metric) string {
	b := []byte{byte(ci)}
	for _, lp := range m.GetLabel() {
		b = append(b, lp.GetName()...)
		b = append(b, 0)
		b = append(b, lp.GetValue()...)
		b = append(b, 0)
	}
	return string(b)
}

// namespace returns r's figures of ns, adding them when absent.
func (r *Record) namespace(ns string) *Namespace {
	for i := range r.Namespaces {
		if r.Namespaces[i].Name == ns {
			return &r.Namespaces[i]
		}
	}
	r.Namespaces = append(r.Namespaces, Namespace{Name: ns})
	return &r.Namespaces[len(r.Namespaces)-1]
}
