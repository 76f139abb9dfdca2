package writer

import (
	"context"
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairnfs/cairn/internal/aggregate"
	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/query"
	"github.com/cairnfs/cairn/internal/store"
)

// cpuTime is the process's user and system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkHotBucket folds 1,000 events into one hot bucket, one update
// per event (a stream of small batches of one entity), with the update
// cache sized 256 and 0, and reports the store requests per 1,000 events:
// bucket reads (cache misses) and conditional writes, from the
// aggregator's own counts.
//
//	go test -run '^$' -bench BenchmarkHotBucket -benchtime 3x ./internal/writer
func BenchmarkHotBucket(b *testing.B) {
	for _, name := range []string{"redis", "dynamo"} {
		for _, size := range []int{256, 0} {
			b.Run(fmt.Sprintf("%s/cache=%d", name, size), func(b *testing.B) {
				st := benchStore(b, name)
				reg, err := feature.Parse("bench.yaml", []byte(windowedYAML))
				if err != nil {
					b.Fatal(err)
				}
				ns, _ := reg.Namespace("user")
				count, _ := reg.Lookup("user.txn_count")
				now := time.Now()
				var reads, writes float64
				offset := int64(0)
				b.ResetTimer()
				for i := range b.N {
					a, err := newAggregator(st.(store.BucketStore), size, func() time.Time { return now }, prometheus.NewRegistry(), quiet())
					if err != nil {
						b.Fatal(err)
					}
					key := store.BucketKey{Namespace: ns, Key: fmt.Sprintf("hot-%d-%d", i, time.Now().UnixNano()), Feature: count,
						Start: aggregate.BucketStart(now, count.Window.Bucket)}
					for range 1000 {
						offset++
						u := &bucketUpdate{key: key, events: []event{{partition: 0, offset: offset, value: 1.0}}}
						if err := a.apply(context.Background(), []*bucketUpdate{u}, 1); err != nil {
							b.Fatal(err)
						}
					}
					reads += testutilValue(a.misses)
					writes += testutilValue(a.updates) + testutilValue(a.conflicts)
				}
				b.ReportMetric((reads+writes)/float64(b.N), "store-requests/1000-events")
				b.ReportMetric(reads/float64(b.N), "reads/1000-events")
			})
		}
	}
}

// BenchmarkWindowRead answers a 7-day window of 1-hour buckets (168
// buckets, all stored) through the query engine: one read of the buckets
// and their merge. It reports the median and p99 latency and the CPU per
// query of this process (the store's own CPU is not in it).
//
//	go test -run '^$' -bench BenchmarkWindowRead -benchtime 2000x ./internal/writer
func BenchmarkWindowRead(b *testing.B) {
	const weekYAML = `
namespaces:
  - name: user
    primary_key: id
    features:
      id: string
      amount: float
      txn_count: {aggregate: count, of: amount, windows: [1d, 7d], bucket: 1h}
`
	for _, name := range []string{"redis", "dynamo"} {
		b.Run(name, func(b *testing.B) {
			st := benchStore(b, name)
			reg, err := feature.Parse("bench.yaml", []byte(weekYAML))
			if err != nil {
				b.Fatal(err)
			}
			ns, _ := reg.Namespace("user")
			base, _ := reg.Lookup("user.txn_count")
			week, _ := reg.Lookup("user.txn_count__604800__")
			bs := st.(store.BucketStore)
			now := time.Now()
			key := fmt.Sprintf("week-%d", time.Now().UnixNano())
			from, to := aggregate.Window(now, 7*24*time.Hour, time.Hour)
			n := 0
			for s := from; !s.After(to); s = s.Add(time.Hour) {
				state := aggregate.New(base.Window)
				for range 5 {
					if err := state.Add(1.0); err != nil {
						b.Fatal(err)
					}
				}
				ok, err := bs.PutBucket(context.Background(), store.BucketKey{Namespace: ns, Key: key, Feature: base, Start: s},
					aggregate.AppendState(nil, state), 0, aggregate.Expires(s, base.Window.Longest()))
				if err != nil || !ok {
					b.Fatalf("put bucket: %v %v", ok, err)
				}
				n++
			}
			eng := query.NewEngine(st.(query.Store), nil, nil)
			eng.UseBuckets(bs)
			req := &query.Request{Keys: map[*feature.Namespace][]string{ns: {key}}, Outputs: []*feature.Feature{week}}
			lat := make([]time.Duration, 0, b.N)
			cpu0 := cpuTime(b)
			b.ResetTimer()
			for range b.N {
				start := time.Now()
				fields := eng.Query(context.Background(), req)
				lat = append(lat, time.Since(start))
				if fields[0].Err != nil || fields[0].Value != int64(5*n) {
					b.Fatalf("week count %v (%v), want %d", fields[0].Value, fields[0].Err, 5*n)
				}
			}
			b.StopTimer()
			cpu := cpuTime(b) - cpu0
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/op")
			b.ReportMetric(float64(n), "buckets")
		})
	}
}

// benchStore opens the named store for b.
func benchStore(b *testing.B, name string) Store { return bucketStores()[name](b) }
