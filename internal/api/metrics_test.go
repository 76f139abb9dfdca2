package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/cairnfs/cairn/internal/metrics"
	"github.com/cairnfs/cairn/internal/queue"
)

// Queries through the server are counted per namespace in the interval's
// metrics record, rejected ones under metrics.RejectedNamespace with their code.
func TestQueriesReachTheMetricsRecord(t *testing.T) {
	t.Parallel()
	agg, err := metrics.NewAggregator(metrics.AggregatorConfig{}, nil, nil, nil, quiet())
	if err != nil {
		t.Fatal(err)
	}
	url, _ := runServer(t, Config{QueryMetrics: agg})
	for range 3 {
		if code, _, out := do(t, http.MethodPost, url+"/v1/query/online",
			`{"inputs": {"user.id": "u1", "merchant.id": 7}, "outputs": ["user.age", "merchant.name"]}`); code != http.StatusOK {
			t.Fatalf("query: %d %v", code, out)
		}
	}
	if code, _, _ := do(t, http.MethodPost, url+"/v1/query/online", `{"inputs": {"user.id": "u1"}, "outputs": ["user.nope"]}`); code != http.StatusBadRequest {
		t.Fatalf("bad query answered %d, want 400", code)
	}
	r := agg.Flush(time.Now())
	if r == nil {
		t.Fatal("no record after four queries")
	}
	got := map[string]metrics.Namespace{}
	for _, n := range r.Namespaces {
		got[n.Name] = n
	}
	for _, ns := range []string{"user", "merchant"} {
		if n := got[ns]; n.Queries != 3 || len(n.Errors) != 0 || len(n.Latency) == 0 {
			t.Errorf("%s: %+v, want 3 queries, no errors, latencies", ns, n)
		}
	}
	if n := got[metrics.RejectedNamespace]; n.Queries != 1 || len(n.Errors) != 1 || n.Errors[0].Code != CodeUnknownFeature {
		t.Errorf("rejected queries: %+v, want 1 of code %s", n, CodeUnknownFeature)
	}
}

// With Kafka gone, queries counted for the metrics topic are answered as
// fast as without it, and the aggregator's sends do not block it either.
func TestQueriesWithMetricsTopicDown(t *testing.T) {
	t.Parallel()
	l := httptest.NewServer(http.NotFoundHandler())
	dead := l.Listener.Addr().String() // a port nothing listens on
	l.Close()
	prod, err := queue.NewProducer(queue.Config{Brokers: []string{dead}, ProduceTimeout: time.Second}, nil, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	agg, err := metrics.NewAggregator(metrics.AggregatorConfig{Interval: time.Second}, prod, nil, nil, quiet())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- agg.Run(ctx) }()
	url, _ := runServer(t, Config{QueryMetrics: agg})
	deadline := time.Now().Add(2500 * time.Millisecond) // two intervals' sends at least
	for time.Now().Before(deadline) {
		start := time.Now()
		if code, _, out := do(t, http.MethodPost, url+"/v1/query/online", `{"inputs": {"user.id": "u1"}, "outputs": ["user.age"]}`); code != http.StatusOK {
			t.Fatalf("query: %d %v", code, out)
		}
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Fatalf("query took %v with the metrics topic down", d)
		}
		time.Sleep(50 * time.Millisecond)
	}
	start := time.Now()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("the aggregator took %v to stop with the metrics topic down", d)
	}
}
