package cache

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the cache's collectors, labelled by namespace.
type metrics struct {
	hits         *prometheus.CounterVec
	negativeHits *prometheus.CounterVec
	misses       *prometheus.CounterVec
	evictions    *prometheus.CounterVec
	entries      *prometheus.GaugeVec
	absent       *prometheus.GaugeVec
	bytes        *prometheus.GaugeVec
}

func newMetrics() *metrics {
	ns := []string{"namespace"}
	return &metrics{
		hits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_cache_hits_total",
			Help: "Cells (one feature of one entity) answered from the cache, negative hits included.",
		}, ns),
		negativeHits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_cache_negative_hits_total",
			Help: "Cells answered from the cache as not stored (a cached absent entity or feature).",
		}, ns),
		misses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_cache_misses_total",
			Help: "Cells the cache could not answer, read from the store.",
		}, ns),
		evictions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_cache_evictions_total",
			Help: "Entities removed from the cache, by reason: size (least recently used, to stay within the bound in bytes or entities) or expired.",
		}, []string{"namespace", "reason"}),
		entries: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cairn_cache_entries",
			Help: "Entities in the cache, absent ones included.",
		}, ns),
		absent: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cairn_cache_absent_entries",
			Help: "Entities cached as absent from the store (negative entries), kept in at most an eighth of the namespace's bound.",
		}, ns),
		bytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cairn_cache_bytes",
			Help: "Estimated memory held by the cache's entities, in bytes.",
		}, ns),
	}
}

func (m *metrics) register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.hits, m.negativeHits, m.misses, m.evictions, m.entries, m.absent, m.bytes} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("cache: register metrics: %w", err)
		}
	}
	return nil
}

// spaceMetrics are one namespace's children of metrics, resolved once so
// that the read path does no label lookups.
type spaceMetrics struct {
	hits, negativeHits, misses    prometheus.Counter
	evictedSize, evictedExpired   prometheus.Counter
	entries, absentEntries, bytes prometheus.Gauge
}

func (m *metrics) space(name string) spaceMetrics {
	return spaceMetrics{
		hits:           m.hits.WithLabelValues(name),
		negativeHits:   m.negativeHits.WithLabelValues(name),
		misses:         m.misses.WithLabelValues(name),
		evictedSize:    m.evictions.WithLabelValues(name, "size"),
		evictedExpired: m.evictions.WithLabelValues(name, "expired"),
		entries:        m.entries.WithLabelValues(name),
		absentEntries:  m.absent.WithLabelValues(name),
		bytes:          m.bytes.WithLabelValues(name),
	}
}
