package ui

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// storeMetrics registers metrics named and labelled as the store, query,
// cache, Bloom, hedge, queue and writer packages name theirs.
type storeMetrics struct {
	requests, throttles, reads, hits, misses, lookups, produced *prometheus.CounterVec
	races                                                       prometheus.Counter
	duration                                                    *prometheus.HistogramVec
	lag                                                         *prometheus.GaugeVec
}

func newStoreMetrics(reg prometheus.Registerer) *storeMetrics {
	m := &storeMetrics{
		requests:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cairn_dynamo_requests_total"}, []string{"operation", "outcome"}),
		throttles: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cairn_dynamo_throttles_total"}, []string{"operation"}),
		reads:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cairn_query_namespace_reads_total"}, []string{"namespace", "outcome"}),
		hits:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cairn_cache_hits_total"}, []string{"namespace"}),
		misses:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cairn_cache_misses_total"}, []string{"namespace"}),
		lookups:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cairn_bloom_lookups_total"}, []string{"namespace", "answer"}),
		produced:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cairn_queue_produced_records_total"}, []string{"role", "outcome"}),
		races:     prometheus.NewCounter(prometheus.CounterOpts{Name: "cairn_hedge_started_total", ConstLabels: prometheus.Labels{"name": "dynamo"}}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "cairn_dynamo_request_duration_seconds",
			Buckets: []float64{0.001, 0.002, 0.004, 0.008}}, []string{"operation"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "cairn_writer_lag_records"}, []string{"partition"}),
	}
	reg.MustRegister(m.requests, m.throttles, m.reads, m.hits, m.misses, m.lookups, m.produced, m.races, m.duration, m.lag)
	return m
}

func TestProcessSourceRates(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m := newStoreMetrics(reg)
	s, err := NewProcessSource(ProcessConfig{Interval: 5 * time.Second}, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	// What happened before the first sample is not in any point.
	m.requests.WithLabelValues("BatchGetItem", "ok").Add(1000)
	t0 := time.Unix(1_700_000_000, 0)
	s.sample(t0)
	if ps, _ := s.Points(context.Background(), time.Time{}); len(ps) != 0 {
		t.Fatalf("one sample gave %d points, want none", len(ps))
	}

	m.requests.WithLabelValues("BatchGetItem", "ok").Add(40)
	m.requests.WithLabelValues("BatchGetItem", "throttled").Add(5)
	m.requests.WithLabelValues("GetItem", "error").Add(5)
	m.requests.WithLabelValues("TransactWriteItems", "condition_failed").Add(50) // not an error
	m.throttles.WithLabelValues("BatchGetItem").Add(20)
	m.throttles.WithLabelValues("GetItem").Add(5)
	m.races.Add(10)
	m.produced.WithLabelValues("metrics", "dropped").Add(15)
	m.produced.WithLabelValues("metrics", "ok").Add(100)
	m.reads.WithLabelValues("user", "ok").Add(50)
	m.hits.WithLabelValues("user").Add(30)
	m.misses.WithLabelValues("user").Add(10)
	m.lookups.WithLabelValues("user", "absent").Add(1)
	m.lookups.WithLabelValues("user", "maybe_present").Add(3)
	m.reads.WithLabelValues("txn", "ok").Add(5) // no cache, no filter
	m.lag.WithLabelValues("3").Set(42)
	// 100 observations: 50 in (0, 1ms], 40 in (1, 2ms], 10 in (4, 8ms].
	for i := range 100 {
		v := 0.0005
		switch {
		case i >= 90:
			v = 0.006
		case i >= 50:
			v = 0.0015
		}
		m.duration.WithLabelValues("BatchGetItem").Observe(v)
	}
	s.sample(t0.Add(5 * time.Second))

	ps, err := s.Points(context.Background(), time.Time{})
	if err != nil || len(ps) != 1 {
		t.Fatalf("points = %d, %v; want 1", len(ps), err)
	}
	p := ps[0]
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"requests/s", p.StoreRequestsPerSec, 100.0 / 5},
		{"errors/s", p.StoreErrorsPerSec, 10.0 / 5},
		{"throttles/s", p.StoreThrottlesPerSec, 25.0 / 5},
		{"races/s", p.RacesPerSec, 10.0 / 5},
		{"drops/s", p.KafkaDropsPerSec, 15.0 / 5},
		{"p50", p.LatencyP50, 0.001},
		{"p95", p.LatencyP95, 0.004 + 0.004*0.5},
		{"p99", p.LatencyP99, 0.004 + 0.004*0.9},
		{"user queries/s", p.Namespaces["user"].QueriesPerSec, 10},
		{"user cache hit ratio", p.Namespaces["user"].CacheHitRatio, 0.75},
		{"user bloom ratio", p.Namespaces["user"].BloomShortCircuitRatio, 0.25},
		{"txn queries/s", p.Namespaces["txn"].QueriesPerSec, 1},
	} {
		if math.Abs(c.got-c.want) > 1e-9 {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if p.Span != 5*time.Second || !p.At.Equal(t0.Add(5*time.Second)) {
		t.Errorf("span %v at %v, want 5s at %v", p.Span, p.At, t0.Add(5*time.Second))
	}
	if p.LatencyOf != "DynamoDB requests" {
		t.Errorf("latency of %q, want DynamoDB requests", p.LatencyOf)
	}
	if r := p.Namespaces["txn"].CacheHitRatio; !math.IsNaN(r) {
		t.Errorf("txn cache hit ratio = %v without a cache, want NaN", r)
	}
	if p.WriterLag[3] != 42 || len(p.WriterLag) != 1 {
		t.Errorf("writer lag = %v, want partition 3 at 42", p.WriterLag)
	}

	// A quiet interval: rates 0, latency not measured.
	s.sample(t0.Add(10 * time.Second))
	ps, _ = s.Points(context.Background(), t0.Add(5*time.Second))
	if len(ps) != 1 || ps[0].StoreRequestsPerSec != 0 || !math.IsNaN(ps[0].LatencyP99) {
		t.Fatalf("quiet interval: %+v, want one point with no requests and no latency", ps)
	}
}

func TestProcessSourceKeepsWindow(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m := newStoreMetrics(reg)
	s, err := NewProcessSource(ProcessConfig{Interval: time.Second, Window: 3 * time.Second}, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1_700_000_000, 0)
	for i := range 6 {
		m.requests.WithLabelValues("GetItem", "ok").Add(float64(i))
		s.sample(t0.Add(time.Duration(i) * time.Second))
	}
	ps, _ := s.Points(context.Background(), time.Time{})
	var got []float64
	for _, p := range ps {
		got = append(got, p.StoreRequestsPerSec)
	}
	if want := []float64{3, 4, 5}; !slicesEqual(got, want) {
		t.Fatalf("kept rates %v, want the last three, oldest first: %v", got, want)
	}
}

func slicesEqual(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestProcessConfigValidate(t *testing.T) {
	t.Parallel()
	c := ProcessConfig{Interval: time.Millisecond, Window: -time.Second}
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "CAIRN_UI_SAMPLE_INTERVAL") || !strings.Contains(err.Error(), "window") {
		t.Fatalf("Validate() = %v, want both the interval and the window named", err)
	}
	c = ProcessConfig{}
	c.EnsureDefaults()
	if err := c.Validate(); err != nil || c.Interval != 5*time.Second || c.Window != time.Hour {
		t.Fatalf("defaults %+v: %v", c, err)
	}
}

// The source reads metrics by name: each name it reads must still be
// exported somewhere in cairn's code, or a chart goes silently flat.
func TestReadMetricsExist(t *testing.T) {
	t.Parallel()
	var src strings.Builder
	root := filepath.Join("..", "..")
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || path == ".") {
			return nil
		}
		if d.IsDir() && filepath.Base(path) == "ui" {
			return filepath.SkipDir
		}
		if strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			src.Write(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	code := src.String()
	names := []string{"cairn_dynamo_requests_total", "cairn_redis_requests_total", "cairn_dynamo_throttles_total",
		"cairn_hedge_started_total", "cairn_queue_produced_records_total", "cairn_query_namespace_reads_total",
		"cairn_cache_hits_total", "cairn_cache_misses_total", "cairn_bloom_lookups_total", "cairn_writer_lag_records"}
	for _, lf := range latencyFamilies {
		names = append(names, lf.name)
	}
	for _, n := range names {
		if !strings.Contains(code, `"`+n+`"`) {
			t.Errorf("metric %s is read for /ui but no package exports it", n)
		}
	}
}

func TestQuantile(t *testing.T) {
	t.Parallel()
	h := histogram{bounds: []float64{1, 2, 4}, counts: []float64{0, 10, 10}, total: 20}
	for _, c := range []struct{ q, want float64 }{
		{0, 1}, {0.25, 1.5}, {0.5, 2},
		// Half the observations are past the last bound: answered as it.
		{0.75, 4}, {1, 4},
	} {
		if got := h.quantile(c.q); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("quantile(%v) = %v, want %v", c.q, got, c.want)
		}
	}
	if got := (histogram{bounds: []float64{1}, counts: []float64{0}}).quantile(0.5); !math.IsNaN(got) {
		t.Errorf("empty histogram: %v, want NaN", got)
	}
}

// FuzzQuantile checks, on any cumulative histogram, that quantiles are
// finite, within the bounds, and never decrease with q.
func FuzzQuantile(f *testing.F) {
	f.Add(uint8(1), uint8(2), uint8(3), uint8(4), 0.3, 0.9)
	f.Add(uint8(0), uint8(0), uint8(0), uint8(9), 0.0, 1.0)
	f.Fuzz(func(t *testing.T, c0, c1, c2, inf uint8, q1, q2 float64) {
		if math.IsNaN(q1) || math.IsNaN(q2) {
			return
		}
		counts := []float64{float64(c0), float64(c0) + float64(c1), float64(c0) + float64(c1) + float64(c2)}
		h := histogram{bounds: []float64{0.001, 0.01, 0.1}, counts: counts, total: counts[2] + float64(inf)}
		if h.total == 0 {
			return
		}
		if q1 > q2 {
			q1, q2 = q2, q1
		}
		a, b := h.quantile(q1), h.quantile(q2)
		if math.IsNaN(a) || math.IsNaN(b) || a < 0 || b > 0.1+1e-12 || a > b+1e-12 {
			t.Fatalf("%+v: quantile(%v) = %v, quantile(%v) = %v", h, q1, a, q2, b)
		}
	})
}

// Run samples at once, then every Interval, until its context ends.
func TestProcessSourceRunSamplesEveryInterval(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		reg := prometheus.NewRegistry()
		m := newStoreMetrics(reg)
		s, err := NewProcessSource(ProcessConfig{Interval: 5 * time.Second}, reg, nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		for range 3 {
			synctest.Wait()
			m.throttles.WithLabelValues("GetItem").Add(10)
			time.Sleep(5 * time.Second)
		}
		synctest.Wait()
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run: %v", err)
		}
		ps, _ := s.Points(context.Background(), time.Time{})
		if len(ps) != 3 {
			t.Fatalf("%d points after 15 s at 5 s, want 3", len(ps))
		}
		for _, p := range ps {
			if p.Span != 5*time.Second || p.StoreThrottlesPerSec != 2 {
				t.Errorf("point %v over %v: %v throttles/s, want 2 over 5s", p.At, p.Span, p.StoreThrottlesPerSec)
			}
		}
	})
}
