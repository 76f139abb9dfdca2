package resolver

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cairnfs/cairn/internal/feature"
)

// A Set sends keys in batches of batch_size, at most max_concurrency calls
// of a resolver at once, and counts what it did.
func TestSetBatchesAndBoundsCalls(t *testing.T) {
	var calls, inFlight, most atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		calls.Add(1)
		var req struct{ Keys []string }
		_ = json.NewDecoder(r.Body).Decode(&req)
		if len(req.Keys) > 3 {
			http.Error(w, "batch too large", http.StatusBadRequest)
			return
		}
		time.Sleep(50 * time.Millisecond)
		rows := []map[string]any{}
		for _, k := range req.Keys {
			rows = append(rows, map[string]any{"key": k, "values": map[string]any{"score": len(k)}})
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"rows": rows})
	}))
	defer srv.Close()
	reg, err := feature.Parse("t.yaml", []byte(`namespaces:
  - name: user
    primary_key: id
    features: {id: string, score: {type: int, max_staleness: 1h}}
    resolvers:
      - {name: s, kind: http, url: "${URL}", outputs: [score], batch_size: 3, max_concurrency: 2}
`))
	if err != nil {
		t.Fatal(err)
	}
	prom := prometheus.NewRegistry()
	set, err := New(context.Background(), reg, Config{Getenv: func(string) string { return srv.URL }}, prom, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	ns, _ := reg.Namespace("user")
	keys := []string{"a", "bb", "ccc", "dddd", "e", "ff", "g", "hh", "i", "jj"}
	rows := set.Resolve(context.Background(), ns.Resolvers[0], keys, nil)
	for i, r := range rows {
		if r.Err != nil || len(r.Values) != 1 || r.Values[0] != int64(len(keys[i])) {
			t.Errorf("key %s: %+v", keys[i], r)
		}
	}
	if calls.Load() != 4 || most.Load() > 2 {
		t.Errorf("10 keys, batch_size 3, max_concurrency 2: %d calls, %d at once; want 4 calls, at most 2 at once", calls.Load(), most.Load())
	}
	if n := testutil.ToFloat64(set.m.calls.WithLabelValues("user.s", "ok")); n != 4 {
		t.Errorf("cairn_resolver_calls_total{outcome=ok} %v, want 4", n)
	}
	if n := testutil.ToFloat64(set.m.keys.WithLabelValues("user.s")); n != 10 {
		t.Errorf("cairn_resolver_keys_total %v, want 10", n)
	}
}

// A server refuses to start with a resolver it cannot build; `cairn dev`
// (Lenient) starts, and the resolver's keys fail saying why.
func TestSetLenient(t *testing.T) {
	reg, err := feature.Parse("t.yaml", []byte(`namespaces:
  - name: user
    primary_key: id
    features: {id: string, plan: {type: string, max_staleness: 1h}, shout: string}
    resolvers:
      - {name: accounts, kind: sql, dsn: "${NO_SUCH_DSN}", query: "SELECT id, plan FROM a WHERE id = ANY($1)", outputs: [plan]}
`))
	if err != nil {
		t.Fatal(err)
	}
	none := func(string) string { return "" }
	if _, err := New(context.Background(), reg, Config{Getenv: none}, nil, nil); err == nil || !strings.Contains(err.Error(), "NO_SUCH_DSN") {
		t.Fatalf("strict: %v, want an error naming NO_SUCH_DSN", err)
	}
	set, err := New(context.Background(), reg, Config{Getenv: none, Lenient: true}, nil, nil)
	if err != nil {
		t.Fatalf("lenient: %v", err)
	}
	ns, _ := reg.Namespace("user")
	if len(set.Order()) != 1 {
		t.Errorf("order %v, want the resolver not built", set.Order())
	}
	rows := set.Resolve(context.Background(), ns.Resolvers[0], []string{"u1"}, nil)
	if rows[0].Err == nil || !strings.Contains(rows[0].Err.Error(), "NO_SUCH_DSN") {
		t.Errorf("lenient resolve: %+v, want an error naming NO_SUCH_DSN", rows[0])
	}
}
