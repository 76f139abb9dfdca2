package metrics

import (
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type sink struct {
	mu      sync.Mutex
	records [][]byte
}

func (s *sink) Metric(v []byte) {
	s.mu.Lock()
	s.records = append(s.records, v)
	s.mu.Unlock()
}

// Concurrent queries are all counted, once, across intervals flushed while
// they run, and the sketch's quantiles are within its accuracy.
func TestAggregatorCountsConcurrentQueries(t *testing.T) {
	t.Parallel()
	a, err := NewAggregator(AggregatorConfig{Interval: time.Second}, nil, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	const workers, each = 8, 5000
	var wg sync.WaitGroup
	lat := make([][]float64, workers)
	for w := range workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for i := range each {
				d := time.Duration(r.ExpFloat64() * float64(2*time.Millisecond))
				lat[w] = append(lat[w], d.Seconds())
				code := ""
				if i%10 == 0 {
					code = "UPSTREAM_FAILED"
				}
				ns := "user"
				if i%2 == 1 {
					ns = "merchant"
				}
				a.Observe(ns, d, code)
			}
		})
	}
	var got []*Record
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	start := time.Unix(0, 0)
loop:
	for {
		select {
		case <-done:
			break loop
		default:
			if r := a.Flush(start); r != nil {
				got = append(got, r)
			}
		}
	}
	if r := a.Flush(start); r != nil {
		got = append(got, r)
	}
	sum := map[string]*Namespace{}
	for _, r := range got {
		for _, n := range r.Namespaces {
			s := sum[n.Name]
			if s == nil {
				s = &Namespace{Name: n.Name}
				sum[n.Name] = s
			}
			s.Queries += n.Queries
			for _, e := range n.Errors {
				if e.Code != "UPSTREAM_FAILED" {
					t.Errorf("error code %q, want UPSTREAM_FAILED", e.Code)
				}
				s.Errors = append(s.Errors, e)
			}
			s.Latency = mergeBuckets(s.Latency, n.Latency)
		}
	}
	for _, ns := range []string{"user", "merchant"} {
		s := sum[ns]
		if s == nil || s.Queries != workers*each/2 {
			t.Fatalf("%s: %+v, want %d queries", ns, s, workers*each/2)
		}
		var errs, inSketch uint64
		for _, e := range s.Errors {
			errs += e.Count
		}
		for _, b := range s.Latency {
			inSketch += b.Count
		}
		if want := uint64(workers * each / 10); ns == "user" && errs != want {
			t.Errorf("user: %d errors, want %d", errs, want)
		}
		if ns == "merchant" && errs != 0 {
			t.Errorf("merchant: %d errors, want 0", errs)
		}
		if inSketch != s.Queries {
			t.Errorf("%s: %d latencies in the sketch, want %d", ns, inSketch, s.Queries)
		}
	}
	// Quantiles of both namespaces together, against the exact ones.
	all := slices.Concat(lat...)
	slices.Sort(all)
	sk := Sketch(mergeBuckets(sum["user"].Latency, sum["merchant"].Latency))
	for _, q := range []float64{0.5, 0.95, 0.99} {
		got, err := sk.GetValueAtQuantile(q)
		if err != nil {
			t.Fatal(err)
		}
		want := all[int(q*float64(len(all)-1))]
		if math.Abs(got-want) > RelativeAccuracy*want*1.01 {
			t.Errorf("p%v = %v, want %v within %v%%", q*100, got, want, RelativeAccuracy*100)
		}
	}
}

// An interval's record carries the deltas of the process's store, Kafka,
// cache and Bloom counters, not their totals.
func TestAggregatorTakesCounterDeltas(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	req := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cairn_redis_requests_total"}, []string{"op", "outcome"})
	hits := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cairn_cache_hits_total"}, []string{"namespace"})
	produced := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cairn_queue_produced_records_total"}, []string{"role", "outcome"})
	reg.MustRegister(req, hits, produced)
	s := &sink{}
	a, err := NewAggregator(AggregatorConfig{}, s, reg, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.WithLabelValues("read", "ok").Add(10)
	req.WithLabelValues("read", "error").Add(2)
	hits.WithLabelValues("user").Add(7)
	produced.WithLabelValues("metrics", "dropped").Add(3)
	produced.WithLabelValues("persist", "ok").Add(30)
	a.Observe("user", time.Millisecond, "")
	r1 := a.Flush(time.Unix(600, 0))
	req.WithLabelValues("read", "ok").Add(1)
	r2 := a.Flush(time.Unix(610, 0))
	if r1 == nil || r2 == nil {
		t.Fatalf("records %v %v, want two", r1, r2)
	}
	want1 := Fleet{StoreRequests: 12, StoreErrors: 2, KafkaMetricsDropped: 3}
	if r1.Fleet != want1 {
		t.Errorf("first interval: %+v, want %+v", r1.Fleet, want1)
	}
	if len(r1.Namespaces) != 1 || r1.Namespaces[0].CacheHits != 7 || r1.Namespaces[0].Queries != 1 {
		t.Errorf("first interval: %+v, want user with 1 query and 7 cache hits", r1.Namespaces)
	}
	if want2 := (Fleet{StoreRequests: 1}); r2.Fleet != want2 || len(r2.Namespaces) != 0 {
		t.Errorf("second interval: %+v %+v, want %+v and no namespaces", r2.Fleet, r2.Namespaces, want2)
	}
	if r3 := a.Flush(time.Unix(620, 0)); r3 != nil {
		t.Errorf("an idle interval gave %+v, want no record", r3)
	}
}

func TestIntervalMustDivideAMinute(t *testing.T) {
	t.Parallel()
	for _, d := range []time.Duration{7 * time.Second, 90 * time.Second, 500 * time.Millisecond} {
		if _, err := NewAggregator(AggregatorConfig{Interval: d}, nil, nil, nil, nil); err == nil {
			t.Errorf("interval %v accepted", d)
		}
	}
}

// BenchmarkObserve is the per-query cost of metrics on the query path.
func BenchmarkObserve(b *testing.B) {
	a, err := NewAggregator(AggregatorConfig{}, nil, nil, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	a.Observe("user", time.Millisecond, "")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		d := 100 * time.Microsecond
		for pb.Next() {
			a.Observe("user", d, "")
			d += 7 * time.Microsecond
			if d > 50*time.Millisecond {
				d = 100 * time.Microsecond
			}
		}
	})
}

// Run sends one record per interval, its start aligned with the wall clock,
// and the interval in progress when it stops.
func TestRunSendsOneRecordPerInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &sink{}
		a, err := NewAggregator(AggregatorConfig{Interval: 10 * time.Second}, s, nil, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * time.Second) // start mid-interval
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- a.Run(ctx) }()
		for range 3 {
			a.Observe("user", time.Millisecond, "")
		}
		time.Sleep(7 * time.Second)
		synctest.Wait()
		time.Sleep(10 * time.Second) // an idle interval: no record
		synctest.Wait()
		a.Observe("user", time.Millisecond, "")
		a.Observe("user", time.Millisecond, "")
		time.Sleep(4 * time.Second)
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if len(s.records) != 2 {
			t.Fatalf("%d records, want 2", len(s.records))
		}
		epoch := time.Now().Add(-24 * time.Second).Truncate(time.Minute) // the bubble's start
		for i, want := range []struct {
			start   time.Duration
			queries uint64
		}{{0, 3}, {20 * time.Second, 2}} {
			r, err := Decode(s.records[i])
			if err != nil {
				t.Fatal(err)
			}
			if !r.Start.Equal(epoch.Add(want.start)) || len(r.Namespaces) != 1 || r.Namespaces[0].Queries != want.queries || r.Source != a.Source() {
				t.Errorf("record %d: %+v, want start %v with %d queries", i, r, epoch.Add(want.start), want.queries)
			}
		}
	})
}
