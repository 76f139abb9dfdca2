package cache_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairnfs/cairn/internal/cache"
	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/store"
	"github.com/cairnfs/cairn/internal/store/embedded"
	"github.com/cairnfs/cairn/internal/store/storetest"
)

// benchFeatures are the 10 features of a typical cached entity: scalars,
// strings, a list, an embedding and a small JSON object.
var benchFeatures = []string{"age", "score", "name", "active", "blob", "seen", "tags", "counts", "embedding", "profile"}

func benchValues(key string, ts time.Time) map[string]any {
	return map[string]any{
		"age": int64(42), "score": 0.5, "name": "name of " + key, "active": true,
		"blob": []byte("0123456789abcdef"), "seen": ts,
		"tags": []any{"a", "b", "c"}, "counts": []any{int64(1), int64(2)},
		"embedding": []float32{1, 2, 3, 4, 5, 6, 7, 8},
		"profile":   map[string]any{"plan": "pro"},
	}
}

// benchStore is an embedded store holding n entities u0..u<n-1>.
func benchStore(b *testing.B, n int) (*embedded.Store, *feature.Namespace) {
	st, err := embedded.Open(b.TempDir(), embedded.Options{Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	ns, _ := storetest.Registry().Namespace("user")
	ts := time.Now().UTC().Truncate(time.Microsecond)
	var ws []store.EntityWrite
	for i := range n {
		key := fmt.Sprint("u", i)
		w := store.EntityWrite{Namespace: ns, Key: key}
		for name, v := range benchValues(key, ts) {
			w.Values = append(w.Values, store.Value{Feature: featsOf(b, ns, name)[0], Value: v, ObservedAt: ts})
		}
		ws = append(ws, w)
	}
	if err := st.Write(context.Background(), ws); err != nil {
		b.Fatal(err)
	}
	return st, ns
}

func benchCache(b *testing.B, st cache.Store, clk *clock) *cache.Cache {
	cfg := cache.DefaultConfig()
	cfg.Namespaces = []cache.NamespaceConfig{{Namespace: "user", TTL: time.Hour, MaxEntries: 100_000}}
	if clk != nil {
		cfg.Now = clk.Now
	}
	c, err := cache.New(st, cfg, nil, quiet)
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// benchHit compares, for n entities and 3 features: a read answered by a
// warm cache (Read, and ReadInto reusing its rows), the same from several
// goroutines, and the uncached read of the embedded store.
func benchHit(b *testing.B, n int) {
	st, ns := benchStore(b, n)
	c := benchCache(b, st, nil)
	feats := featsOf(b, ns, "age", "name", "embedding")
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprint("u", i)
	}
	ctx := context.Background()
	rows, err := c.Read(ctx, ns, keys, feats)
	if err != nil {
		b.Fatal(err)
	}
	check := func(rows []store.Row) {
		if !rows[n-1].Cells[2].CacheHit {
			b.Fatal("not a cache hit")
		}
	}
	b.Run("cached", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			rows, err := c.Read(ctx, ns, keys, feats)
			if err != nil {
				b.Fatal(err)
			}
			check(rows)
		}
	})
	b.Run("cached-reuse", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if rows, err = c.ReadInto(ctx, ns, keys, feats, rows); err != nil {
				b.Fatal(err)
			}
			check(rows)
		}
	})
	b.Run("cached-parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			var rows []store.Row
			var err error
			for pb.Next() {
				if rows, err = c.ReadInto(ctx, ns, keys, feats, rows); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("uncached", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := st.Read(ctx, ns, keys, feats); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkHit1 is a hot-cache read of 1 entity, 3 features, side by side
// with the uncached read of the embedded store.
func BenchmarkHit1(b *testing.B) { benchHit(b, 1) }

// BenchmarkHit100 is a hot-cache read of 100 entities, 3 features each,
// side by side with the uncached read of the embedded store.
func BenchmarkHit100(b *testing.B) { benchHit(b, 100) }

// BenchmarkMiss1 is a read of 1 entity whose cached cells have all just
// expired: the cache's cost on top of the store read it makes.
func BenchmarkMiss1(b *testing.B) {
	st, ns := benchStore(b, 1)
	clk := &clock{}
	c := benchCache(b, st, clk)
	feats := featsOf(b, ns, "age", "name", "embedding")
	keys := []string{"u0"}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		clk.Advance(time.Hour)
		rows, err := c.Read(ctx, ns, keys, feats)
		if err != nil {
			b.Fatal(err)
		}
		if rows[0].Cells[0].CacheHit {
			b.Fatal("hit")
		}
	}
}

// BenchmarkMemoryPerEntity caches entities of 10 features (benchValues)
// and reports the heap they take, measured and as estimated by the
// cairn_cache_bytes gauge.
func BenchmarkMemoryPerEntity(b *testing.B) {
	const n = 20_000
	ns, _ := storetest.Registry().Namespace("user")
	feats := featsOf(b, ns, benchFeatures...)
	ts := time.Now().UTC().Truncate(time.Microsecond)
	src := &generated{feats: feats, ts: ts}
	for b.Loop() {
		cfg := cache.DefaultConfig()
		cfg.Namespaces = []cache.NamespaceConfig{{Namespace: "user", TTL: time.Hour}}
		reg := prometheus.NewRegistry()
		c, err := cache.New(src, cfg, reg, quiet)
		if err != nil {
			b.Fatal(err)
		}
		keys := make([]string, 100)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for i := 0; i < n; i += len(keys) {
			for j := range keys {
				keys[j] = fmt.Sprintf("user-%08d", i+j)
			}
			if _, err := c.Read(context.Background(), ns, keys, feats); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/entity")
		b.ReportMetric(metricValue(b, reg, "cairn_cache_bytes")/n, "estimated-B/entity")
		runtime.KeepAlive(c)
	}
}

// generated is a store answering every key with benchValues, freshly
// allocated, as a real store's decoder would.
type generated struct {
	feats []*feature.Feature
	ts    time.Time
}

func (g *generated) Read(_ context.Context, _ *feature.Namespace, keys []string, feats []*feature.Feature) ([]store.Row, error) {
	rows := make([]store.Row, len(keys))
	for i, k := range keys {
		vals := benchValues(k, g.ts)
		rows[i] = store.Row{Found: true, Cells: make([]store.Cell, len(feats))}
		for j, f := range feats {
			rows[i].Cells[j] = store.Cell{Found: true, Value: vals[f.Name], ObservedAt: g.ts}
		}
	}
	return rows, nil
}
