package ui

import (
	"context"
	"log/slog"
	"math"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/cairnfs/cairn/internal/metrics"
	"github.com/cairnfs/cairn/internal/queue"
	"github.com/cairnfs/cairn/internal/store/embedded"
)

// The fleet source draws what the writers' metrics consumers keep: records
// of two query servers for one minute, consumed from Kafka into a real
// store, make one point whose rates, ratios and latency are the two
// servers' summed; the writers' lag comes from Kafka through a LagReader.
func TestRollupSource(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	qcfg := queue.Config{Brokers: cluster.ListenAddrs()}
	qcfg.EnsureDefaults()
	if _, err := queue.CreateTopics(ctx, qcfg, queue.TopicSpec{Partitions: 2, ReplicationFactor: 1, MinInsyncReplicas: 1}); err != nil {
		t.Fatal(err)
	}
	st, err := embedded.Open(t.TempDir(), embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	mcfg := metrics.ConsumerConfig{Partitions: 2}
	cons, err := metrics.NewConsumer(qcfg, mcfg, st, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	cctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- cons.Run(cctx) }()
	defer func() { stop(); <-done }()

	cl, err := kgo.NewClient(kgo.SeedBrokers(qcfg.Brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	minute := time.Now().UTC().Truncate(time.Minute).Add(-2 * time.Minute)
	for i, src := range []string{"host-a/1/00000001", "host-b/2/00000002"} {
		r := &metrics.Record{Source: src, Start: minute, Interval: 10 * time.Second,
			Fleet: metrics.Fleet{StoreRequests: 600, StoreErrors: 6, StoreThrottles: 30, StoreRaces: 12, KafkaUploadsDropped: 3},
			Namespaces: []metrics.Namespace{{Name: "user", Queries: 120, CacheHits: 30, CacheMisses: 90, BloomSkipped: 5, BloomLookups: 20,
				Latency: []metrics.Bucket{{Index: bucketIndex(t, time.Duration(i+1)*time.Millisecond), Count: 100}}}}}
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: qcfg.MetricsTopic, Value: r.Append(nil)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	// Five uploads no writer has consumed: the persistence topic's lag.
	for range 5 {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: qcfg.PersistTopic, Partition: 0, Value: []byte("x")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	rd, err := metrics.NewReader(st, mcfg)
	if err != nil {
		t.Fatal(err)
	}
	lr, err := queue.NewLagReader(qcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer lr.Close()
	src := NewRollupSource(rd, lr.Lag, nil)
	var pts []Point
	for {
		if pts, err = src.Points(ctx, time.Time{}); err != nil {
			t.Fatal(err)
		}
		if len(pts) == 1 && pts[0].Namespaces["user"].QueriesPerSec == 4 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("points %+v; want one with both servers' queries", pts)
		}
		time.Sleep(100 * time.Millisecond)
	}
	p := pts[0]
	if !p.At.Equal(minute.Add(time.Minute)) || p.Span != time.Minute {
		t.Errorf("point at %v over %v, want at %v over 1m", p.At, p.Span, minute.Add(time.Minute))
	}
	for name, got := range map[string][2]float64{
		"store requests/s":  {p.StoreRequestsPerSec, 20},
		"store errors/s":    {p.StoreErrorsPerSec, 0.2},
		"store throttles/s": {p.StoreThrottlesPerSec, 1},
		"races/s":           {p.RacesPerSec, 0.4},
		"kafka drops/s":     {p.KafkaDropsPerSec, 0.1},
		"cache hit ratio":   {p.Namespaces["user"].CacheHitRatio, 0.25},
		"bloom ratio":       {p.Namespaces["user"].BloomShortCircuitRatio, 0.25},
	} {
		if math.Abs(got[0]-got[1]) > 1e-9 {
			t.Errorf("%s = %v, want %v", name, got[0], got[1])
		}
	}
	// Half the queries took 1 ms, half 2 ms: the merged sketch's p50 is
	// near 1 ms and its p99 near 2 ms (1% relative accuracy).
	if !near(p.LatencyP50, 0.001) || !near(p.LatencyP99, 0.002) || p.LatencyOf != "queries, all namespaces" {
		t.Errorf("latency p50 %v p99 %v of %q; want about 1ms and 2ms of queries", p.LatencyP50, p.LatencyP99, p.LatencyOf)
	}
	// The lag sampled now belongs to the current minute, which has no
	// point yet: this minute's point has none.
	if len(p.WriterLag) != 0 {
		t.Errorf("writer lag %v on a point of an earlier minute", p.WriterLag)
	}
	lag, err := lr.Lag(ctx)
	if err != nil || lag[0] != 5 || lag[1] != 0 {
		t.Errorf("Lag() = %v, %v; want partition 0: 5, partition 1: 0", lag, err)
	}
}

// The lag sampled during a minute is carried by that minute's point.
func TestRollupSourceLagOnItsMinute(t *testing.T) {
	minute := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	now := minute.Add(30 * time.Second)
	calls := 0
	src := NewRollupSource(rollupsOf{{Minute: minute, Namespace: "user", Queries: 60}}, func(context.Context) (map[int32]int64, error) {
		calls++
		return map[int32]int64{3: 7}, nil
	}, nil)
	src.now = func() time.Time { return now }
	for range 3 { // polls within lagEvery ask Kafka once
		if _, err := src.Points(context.Background(), time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	now = minute.Add(time.Minute + time.Second)
	pts, err := src.Points(context.Background(), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(pts) != 1 || pts[0].WriterLag[3] != 7 {
		t.Fatalf("points %+v, want one carrying the lag sampled in its minute", pts)
	}
	if calls != 2 {
		t.Errorf("Kafka asked %d times, want 2 (once per %v)", calls, lagEvery)
	}
}

// rollupsOf is a RollupReader of fixed rollups, for the lag's timing.
type rollupsOf []metrics.Rollup

func (r rollupsOf) Range(_ context.Context, from, to time.Time) ([]metrics.Rollup, error) {
	var out []metrics.Rollup
	for _, x := range r {
		if !x.Minute.Before(from) && x.Minute.Before(to) {
			out = append(out, x)
		}
	}
	return out, nil
}

func near(got, want float64) bool { return math.Abs(got-want) <= want*0.02 }

// bucketIndex is the sketch bucket of d, as query servers record it.
func bucketIndex(t *testing.T, d time.Duration) int32 {
	t.Helper()
	return int32(metrics.Sketch(nil).IndexMapping.Index(d.Seconds()))
}
