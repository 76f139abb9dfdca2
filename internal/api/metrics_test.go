package api

import (
	"net/http"
	"testing"
	"time"

	"github.com/cairnfs/cairn/internal/metrics"
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
