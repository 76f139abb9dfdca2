package redis

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/store"
)

// benchFeatures is the number of features of the benchmark namespace.
const benchFeatures = 50

// benchRegistry declares namespace bench: 50 features of typical types.
func benchRegistry(b *testing.B) *feature.Registry {
	var y strings.Builder
	y.WriteString("namespaces:\n- name: bench\n  primary_key: id\n  features:\n    id: string\n")
	types := []string{"int", "float", "string", "bool", "list[string]", "vector[8]", "datetime", "float", "int", "string"}
	for i := range benchFeatures {
		fmt.Fprintf(&y, "    f%02d: '%s'\n", i, types[i%len(types)])
	}
	r, err := feature.Parse("bench", []byte(y.String()))
	if err != nil {
		b.Fatal(err)
	}
	return r
}

func benchValue(t feature.Type, i int) any {
	switch t.Kind {
	case feature.KindInt:
		return int64(i * 1000)
	case feature.KindFloat:
		return float64(i) / 3
	case feature.KindString:
		return fmt.Sprintf("value of entity %d", i)
	case feature.KindBool:
		return i%2 == 0
	case feature.KindList:
		return []any{"red", "green", "blue"}
	case feature.KindVector:
		return []float32{1, 2, 3, 4, 5, 6, 7, float32(i)}
	case feature.KindDatetime:
		return time.Unix(int64(i), 0).UTC()
	}
	return nil
}

// benchSetup writes 1000 entities of 50 features and returns the store,
// the namespace, its 50 features and the entity keys.
func benchSetup(b *testing.B) (*Store, *feature.Namespace, []*feature.Feature, []string) {
	reg := benchRegistry(b)
	ns, _ := reg.Namespace("bench")
	var feats []*feature.Feature
	for _, f := range ns.Features {
		if f != ns.PrimaryKey {
			feats = append(feats, f)
		}
	}
	s := openT(b, uniquePrefix(b))
	keys := make([]string, 1000)
	ws := make([]store.EntityWrite, len(keys))
	ts := time.Now()
	for i := range keys {
		keys[i] = fmt.Sprintf("entity-%04d", i)
		ws[i] = store.EntityWrite{Namespace: ns, Key: keys[i]}
		for _, f := range feats {
			ws[i].Values = append(ws[i].Values, store.Value{Feature: f, Value: benchValue(f.Type, i), ObservedAt: ts})
		}
	}
	for i := 0; i < len(ws); i += 100 {
		if err := s.Write(context.Background(), ws[i:i+100]); err != nil {
			b.Fatal(err)
		}
	}
	return s, ns, feats, keys
}

// benchRead measures reading n entities × 50 features through Store.Read
// ("store") and the same commands sent with go-redis directly ("floor": the
// round trip and the raw replies read, nothing of the store's). On a
// shared machine the two drift apart with the load, so "interleaved"
// alternates them in one loop and reports the median and 99th percentile
// of each, and the store's median over the floor's.
func benchRead(b *testing.B, n int) {
	s, ns, feats, keys := benchSetup(b)
	ctx := context.Background()
	// The store reads into the rows of the read before, as the query
	// engine does (ReadInto).
	var rows []store.Row
	storeRead := func(i int) {
		k := keys[(i*n)%len(keys):][:n]
		var err error
		rows, err = s.ReadInto(ctx, ns, k, feats, rows)
		if err != nil {
			b.Fatal(err)
		}
		if !rows[0].Found || !rows[n-1].Cells[benchFeatures-1].Found {
			b.Fatal("entity not found")
		}
	}
	// The floor sends the commands the store sends, made once, on read
	// connections of its own (RawReads), and reads their replies without
	// decoding them. "go-redis" sends the same through go-redis, reading
	// raw replies, as the store's reads did before they had connections
	// of their own.
	sc := new(readScratch)
	sc.plan(s.ids.snapshot(), feats)
	whole := sc.wholeHash(ns)
	args := make([][]any, len(keys))
	full := make([]string, len(keys))
	var fields []string
	if !whole {
		for _, f := range sc.fields {
			fields = append(fields, f.(string))
		}
	}
	for i, k := range keys {
		full[i] = s.entityKey(ns.Name, k)
		args[i] = sc.command(full[i], whole)
	}
	raw, err := NewRawReads(s.cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Close()
	var found []bool
	floorRead := func(i int) {
		lo := (i * n) % len(keys)
		found, err = raw.Read(ctx, full[lo:lo+n], fields, found[:0])
		if err != nil || !found[0] || !found[n-1] {
			b.Fatal("entity not found", err)
		}
	}
	c := goredis.NewClient(&goredis.Options{Addr: s.cfg.Addr, PoolSize: s.cfg.PoolSize, PipelinePoolSize: -1})
	defer c.Close()
	goredisRead := func(i int) {
		lo := (i * n) % len(keys)
		if n == 1 {
			cmd := goredis.NewRawCmd(ctx, args[lo]...)
			if err := c.Process(ctx, cmd); err != nil || len(cmd.Val()) < 100 {
				b.Fatal("entity not found", err)
			}
			return
		}
		pipe := c.Pipeline()
		cmds := make([]*goredis.RawCmd, n)
		for j := range cmds {
			cmds[j] = goredis.NewRawCmd(ctx, args[lo+j]...)
			_ = pipe.Process(ctx, cmds[j])
		}
		if _, err := pipe.Exec(ctx); err != nil {
			b.Fatal(err)
		}
		if len(cmds[n-1].Val()) < 100 {
			b.Fatal("entity not found")
		}
	}
	loop := func(read func(int)) func(*testing.B) {
		return func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			cpu := processCPU()
			for b.Loop() {
				read(i)
				i++
			}
			// The process's own CPU time (garbage collection included,
			// redis-server's not) per read: on a shared machine it moves
			// less with the load than the time per read does.
			if cpu := processCPU() - cpu; cpu > 0 && i > 0 {
				b.ReportMetric(float64(cpu.Microseconds())/float64(i), "cpu-µs/op")
			}
		}
	}
	b.Run("store", loop(storeRead))
	b.Run("floor", loop(floorRead))
	b.Run("go-redis", loop(goredisRead))
	b.Run("interleaved", func(b *testing.B) {
		var st, fl []time.Duration
		i := 0
		for b.Loop() {
			first, second, a, z := storeRead, floorRead, &st, &fl
			if i%2 == 1 {
				first, second, a, z = floorRead, storeRead, &fl, &st
			}
			t0 := time.Now()
			first(i)
			t1 := time.Now()
			second(i)
			*a = append(*a, t1.Sub(t0))
			*z = append(*z, time.Since(t1))
			i++
		}
		if len(st) == 0 || len(fl) == 0 {
			return
		}
		slices.Sort(st)
		slices.Sort(fl)
		pct := func(d []time.Duration, p float64) float64 { return float64(d[int(p*float64(len(d)-1))].Microseconds()) }
		b.ReportMetric(pct(st, 0.5), "store-p50-µs")
		b.ReportMetric(pct(st, 0.99), "store-p99-µs")
		b.ReportMetric(pct(fl, 0.5), "floor-p50-µs")
		b.ReportMetric(pct(fl, 0.99), "floor-p99-µs")
		b.ReportMetric(float64(st[len(st)/2])/float64(fl[len(fl)/2]), "store/floor")
	})
}

// BenchmarkRead1x50 reads 1 entity × 50 features.
func BenchmarkRead1x50(b *testing.B) { benchRead(b, 1) }

// BenchmarkRead100x50 reads 100 entities × 50 features.
func BenchmarkRead100x50(b *testing.B) { benchRead(b, 100) }

// BenchmarkWrite16x50 writes 16 entities × 50 features, each newer than
// what is stored.
func BenchmarkWrite16x50(b *testing.B) {
	s, ns, feats, keys := benchSetup(b)
	ctx := context.Background()
	ts := time.Now()
	const batch = 16
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		ws := make([]store.EntityWrite, batch)
		for j := range ws {
			ws[j] = store.EntityWrite{Namespace: ns, Key: keys[(i*batch+j)%len(keys)]}
			at := ts.Add(time.Duration(i+1) * time.Microsecond)
			for _, f := range feats {
				ws[j].Values = append(ws[j].Values, store.Value{Feature: f, Value: benchValue(f.Type, i), ObservedAt: at})
			}
		}
		if err := s.Write(ctx, ws); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
