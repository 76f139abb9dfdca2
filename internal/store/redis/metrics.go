package redis

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Operations, for metric labels. Each is one round trip (a pipeline counts
// once), except write, which is one Write call: its round trip and, rarely,
// the ones repeating it after a script reload or a mapping change.
const (
	opPing        = "ping"
	opRead        = "read"
	opWrite       = "write"
	opLoadIDs     = "load_ids"
	opAssignIDs   = "assign_ids"
	opLoadScripts = "load_scripts"
)

// metrics are the store's Prometheus metrics.
type metrics struct {
	requests     *prometheus.CounterVec
	latency      *prometheus.HistogramVec
	reloads      prometheus.Counter
	generations  prometheus.Counter
	staleSkipped prometheus.Counter
	undecodable  prometheus.Counter
	rawFallbacks prometheus.Counter
	readDials    *prometheus.CounterVec
	readRetries  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_redis_requests_total",
			Help: "Redis requests by operation (read, write, ping, load_ids, assign_ids, load_scripts) and outcome (ok, error), counted after the client's retries.",
		}, []string{"op", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cairn_redis_request_duration_seconds",
			Help:    "Time of Redis requests by operation, retries included.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 16), // 50µs to 1.6s
		}, []string{"op"}),
		reloads: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_redis_script_reloads_total",
			Help: "Times the scripts were loaded again because the server no longer knew them (NOSCRIPT: a restart or a failover).",
		}),
		generations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_redis_mapping_generation_changes_total",
			Help: "Times this process found the feature-id mapping replaced by a new generation: the server lost it, and the entities written before with it.",
		}),
		staleSkipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_redis_stale_values_skipped_total",
			Help: "Feature values not written because the stored value has a newer observed-at.",
		}),
		undecodable: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_redis_undecodable_values_total",
			Help: "Stored values that did not decode as their feature's type, and entity keys holding something other than a hash, answered as not found.",
		}),
		rawFallbacks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_redis_read_fallbacks_total",
			Help: "Reads sent a second time, as commands the client parses and retries itself, because the server answered an error other than WRONGTYPE (a cluster's MOVED or ASK, LOADING, ...).",
		}),
		readDials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_redis_read_connection_dials_total",
			Help: "Read connections opened (outcome ok) or failed to open (error), authentication and database selection included.",
		}, []string{"outcome"}),
		readRetries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_redis_read_retries_total",
			Help: "Reads sent again on a new read connection after a network error or a timeout, or because the idle connection taken had been closed by the server.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range m.collectors() {
		if err := reg.Register(c); err != nil {
			m.unregister(reg)
			return nil, fmt.Errorf("redis: register metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.requests, m.latency, m.reloads, m.generations, m.staleSkipped, m.undecodable, m.rawFallbacks, m.readDials, m.readRetries}
}

// unregister removes the metrics from reg (after a failed Open, so that
// another attempt can register them again).
func (m *metrics) unregister(reg prometheus.Registerer) {
	if reg == nil {
		return
	}
	for _, c := range m.collectors() {
		reg.Unregister(c)
	}
}

// observe counts one request of operation op that started at start.
func (m *metrics) observe(op string, start time.Time, err error) {
	m.requests.WithLabelValues(op, outcome(err)).Inc()
	m.latency.WithLabelValues(op).Observe(time.Since(start).Seconds())
}

// outcome is the outcome label of err: ok or error.
func outcome(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}
