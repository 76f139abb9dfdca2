package embedded

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/store"
	"github.com/cairnfs/cairn/internal/store/storetest"
)

// benchEntity is a typical entity: a handful of scalars, a list and an
// embedding.
func benchEntity(b *testing.B, ns *feature.Namespace, key string, ts time.Time) store.EntityWrite {
	vals := map[string]any{
		"age": int64(42), "score": 0.5, "name": "name of " + key, "active": true,
		"tags": []any{"a", "b", "c"}, "embedding": []float32{1, 2, 3, 4, 5, 6, 7, 8},
		"seen": ts,
	}
	w := store.EntityWrite{Namespace: ns, Key: key}
	for name, v := range vals {
		f, ok := ns.Feature(name)
		if !ok {
			b.Fatalf("no feature %s", name)
		}
		w.Values = append(w.Values, store.Value{Feature: f, Value: v, ObservedAt: ts})
	}
	return w
}

func openBench(b *testing.B) *Store {
	s, err := Open(b.TempDir(), testOptions())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}

// BenchmarkWrite measures a Write call of 16 entities, synced to disk.
func BenchmarkWrite(b *testing.B) {
	s := openBench(b)
	ns, _ := storetest.Registry().Namespace("user")
	ctx := context.Background()
	ts := time.Now()
	const batch = 16
	i := 0
	for b.Loop() {
		ws := make([]store.EntityWrite, batch)
		for j := range ws {
			ws[j] = benchEntity(b, ns, fmt.Sprintf("u%d", (i*batch+j)%4096), ts.Add(time.Duration(i)*time.Microsecond))
		}
		if err := s.Write(ctx, ws); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkRead measures reading 3 features of 10 entities, one absent.
func BenchmarkRead(b *testing.B) {
	s := openBench(b)
	ns, _ := storetest.Registry().Namespace("user")
	ctx := context.Background()
	var ws []store.EntityWrite
	for i := range 1000 {
		ws = append(ws, benchEntity(b, ns, fmt.Sprintf("u%d", i), time.Now()))
	}
	if err := s.Write(ctx, ws); err != nil {
		b.Fatal(err)
	}
	keys := []string{"u1", "u20", "u300", "u999", "absent", "u5", "u6", "u7", "u8", "u9"}
	var feats []*feature.Feature
	for _, name := range []string{"age", "name", "embedding"} {
		f, _ := ns.Feature(name)
		feats = append(feats, f)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Read(ctx, ns, keys, feats); err != nil {
			b.Fatal(err)
		}
	}
}
