package cache_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairnfs/cairn/internal/api"
	"github.com/cairnfs/cairn/internal/cache"
	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/query"
	"github.com/cairnfs/cairn/internal/store"
	"github.com/cairnfs/cairn/internal/store/redis"
	"github.com/cairnfs/cairn/internal/testserver"
)

// BenchmarkQuery measures whole online queries (HTTP on loopback, JSON,
// query engine) of 1 and 100 entities × 10 features over a Valkey/Redis
// store, answered from a hot namespace cache and without one, side by side.
// It reports the median and p99 of per-query latency.
//
//	go test -run XXX -bench Query -benchtime 2000x ./internal/cache/
func BenchmarkQuery(b *testing.B) {
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var yaml strings.Builder
	yaml.WriteString("namespaces:\n  - name: user\n    primary_key: id\n    features:\n      id: string\n")
	var outputs []string
	for i := range 10 {
		fmt.Fprintf(&yaml, "      f%d: %s\n", i, []string{"int", "float", "string", "bool", "datetime"}[i%5])
		outputs = append(outputs, fmt.Sprintf(`"user.f%d"`, i))
	}
	reg, err := feature.Parse("bench.yaml", []byte(yaml.String()))
	if err != nil {
		b.Fatal(err)
	}
	ns, _ := reg.Namespace("user")
	cfg, err := redis.ParseURI(fmt.Sprintf("redis://%s/0?prefix=cairn-bench-%d:", testserver.Redis(b), time.Now().UnixNano()))
	if err != nil {
		b.Fatal(err)
	}
	st, err := redis.Open(ctx, cfg, nil, log)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	var ws []store.EntityWrite
	for k := range 100 {
		w := store.EntityWrite{Namespace: ns, Key: fmt.Sprintf("u%d", k)}
		for _, f := range ns.Features[1:] {
			var v any
			switch f.Type.Kind {
			case feature.KindInt:
				v = int64(k)
			case feature.KindFloat:
				v = float64(k) / 3
			case feature.KindString:
				v = fmt.Sprintf("value of %s for u%d", f.Name, k)
			case feature.KindBool:
				v = k%2 == 0
			case feature.KindDatetime:
				v = time.Unix(int64(k), 0).UTC()
			}
			w.Values = append(w.Values, store.Value{Feature: f, Value: v, ObservedAt: time.Unix(1, 0)})
		}
		ws = append(ws, w)
	}
	if err := st.Write(ctx, ws); err != nil {
		b.Fatal(err)
	}
	c, err := cache.New(st, cache.Config{Namespaces: []cache.NamespaceConfig{{Namespace: "user", TTL: time.Hour}}, CacheMisses: true, MaxBytes: cache.DefaultMaxBytes}, nil, log)
	if err != nil {
		b.Fatal(err)
	}
	for _, entities := range []int{1, 100} {
		keys := make([]string, entities)
		for i := range keys {
			keys[i] = fmt.Sprintf("%q", fmt.Sprintf("u%d", i))
		}
		body := fmt.Sprintf(`{"inputs": {"user.id": [%s]}, "outputs": [%s]}`, strings.Join(keys, ","), strings.Join(outputs, ","))
		for _, mode := range []struct {
			name string
			rd   query.Store
		}{{"cached", c}, {"uncached", st}} {
			b.Run(fmt.Sprintf("entities=%d/%s", entities, mode.name), func(b *testing.B) {
				srv, err := api.New(api.Config{}, reg, query.NewEngine(mode.rd, nil, nil), nil, nil, nil, log)
				if err != nil {
					b.Fatal(err)
				}
				hs := httptest.NewServer(srv.Handler())
				defer hs.Close()
				post := func() {
					resp, err := http.Post(hs.URL+"/v1/query/online", "application/json", strings.NewReader(body))
					if err != nil {
						b.Fatal(err)
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Fatalf("status %d", resp.StatusCode)
					}
				}
				post() // warm the cache and the connection
				lat := make([]time.Duration, 0, b.N)
				for b.Loop() {
					start := time.Now()
					post()
					lat = append(lat, time.Since(start))
				}
				slices.Sort(lat)
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			})
		}
	}
}
