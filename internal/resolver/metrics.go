package resolver

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are a Set's collectors, labelled by the resolver's FQN
// (namespace.name, a bounded set from the feature file).
type metrics struct {
	calls     *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	slotWait  *prometheus.HistogramVec
	inFlight  *prometheus.GaugeVec
	keys      *prometheus.CounterVec
	keyErrors *prometheus.CounterVec
	shared    *prometheus.CounterVec
}

func newMetrics() *metrics {
	r := []string{"resolver"}
	return &metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_resolver_calls_total",
			Help: "Calls of a resolver (one batch of keys; for an expression, one evaluation of a batch), by resolver and outcome: ok, error, timeout.",
		}, []string{"resolver", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cairn_resolver_call_seconds",
			Help:    "Duration of a resolver's calls, from the request sent to the answer checked, by resolver.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
		}, r),
		slotWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cairn_resolver_slot_wait_seconds",
			Help:    "Time a call waited for one of its resolver's max_concurrency slots, by resolver.",
			Buckets: prometheus.ExponentialBuckets(0.00001, 4, 10),
		}, r),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cairn_resolver_calls_in_flight",
			Help: "Calls of a resolver in flight, at most its max_concurrency, by resolver.",
		}, r),
		keys: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_resolver_keys_total",
			Help: "Keys sent to a resolver, by resolver.",
		}, r),
		keyErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_resolver_key_errors_total",
			Help: "Keys a resolver's call answered with an error of their own (an expression that could not be evaluated for them), by resolver.",
		}, r),
		shared: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_resolver_shared_keys_total",
			Help: "Keys a query did not send because a call in flight for another query was computing them (it waited for that call), by resolver.",
		}, r),
	}
}

func (m *metrics) register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.calls, m.duration, m.slotWait, m.inFlight, m.keys, m.keyErrors, m.shared} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("resolver: register metrics: %w", err)
		}
	}
	return nil
}
