package metrics

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/cairnfs/cairn/internal/queue"
	"github.com/cairnfs/cairn/internal/store/dynamo"
	"github.com/cairnfs/cairn/internal/store/embedded"
	"github.com/cairnfs/cairn/internal/store/redis"
	"github.com/cairnfs/cairn/internal/testserver"
)

func TestMain(m *testing.M) { os.Exit(testserver.Run(m)) }

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

var seq atomic.Int64

func TestConsumerEmbedded(t *testing.T) {
	t.Parallel()
	st, err := embedded.Open(t.TempDir(), embedded.Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	testConsumer(t, st)
}

func TestConsumerRedis(t *testing.T) {
	t.Parallel()
	cfg := redis.DefaultConfig()
	cfg.Addr = testserver.Redis(t)
	cfg.KeyPrefix = fmt.Sprintf("cairn-metrics-test:%d:%d:", time.Now().UnixNano(), seq.Add(1))
	st, err := redis.Open(context.Background(), cfg, nil, quiet())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	testConsumer(t, st)
}

func TestConsumerDynamo(t *testing.T) {
	t.Parallel()
	cfg := dynamo.DefaultConfig()
	cfg.Table = fmt.Sprintf("cairn-metrics-%d-%d", time.Now().UnixNano(), seq.Add(1))
	cfg.Region = "us-east-1"
	cfg.Endpoint = testserver.Moto(t)
	cfg.MaxRetries = 3
	cfg.CreateTableIfNotExists = true
	st, err := dynamo.Open(context.Background(), cfg, nil, quiet())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	testConsumer(t, st)
}

// testConsumer sends the records of two query servers and a poison record
// through kfake, rolls them up into st, then replays every record (a
// consumer of a new group reads the topic from its start, and the records
// are produced again): the rollups must not change.
func testConsumer(t *testing.T, st Store) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	qcfg := queue.Config{Brokers: c.ListenAddrs()}
	qcfg.EnsureDefaults()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := queue.CreateTopics(ctx, qcfg, queue.TopicSpec{Partitions: 2, ReplicationFactor: 1, MinInsyncReplicas: 1}); err != nil {
		t.Fatal(err)
	}
	prod, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)

	minute := time.Now().UTC().Truncate(time.Minute).Add(-5 * time.Minute)
	var sent [][]byte
	for _, src := range []string{"host-a/1/00000001", "host-b/2/00000002"} {
		for i := range 6 { // a minute of 10s intervals
			r := &Record{Source: src, Start: minute.Add(time.Duration(i) * 10 * time.Second), Interval: 10 * time.Second,
				Fleet: Fleet{StoreRequests: 100, StoreThrottles: 1, KafkaMetricsDropped: 2},
				Namespaces: []Namespace{{Name: "user", Queries: 10, CacheHits: 5, CacheMisses: 5, BloomSkipped: 1, BloomLookups: 4,
					Errors:  []CodeCount{{"UPSTREAM_FAILED", 1}},
					Latency: []Bucket{{Index: bucketOf(time.Millisecond), Count: 9}, {Index: bucketOf(100 * time.Millisecond), Count: 1}}}}}
			sent = append(sent, r.Append(nil))
		}
	}
	sent = append(sent[:3], append([][]byte{[]byte(`{"query_id":"old json metric"}`)}, sent[3:]...)...)
	produce := func() {
		// A record replayed is replayed on its partition: re-consumed,
		// or re-sent by a producer retry.
		for i, v := range sent {
			if err := prod.ProduceSync(ctx, &kgo.Record{Topic: qcfg.MetricsTopic, Value: v, Partition: int32(i % 2)}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	produce()

	ccfg := ConsumerConfig{Partitions: 2, Group: "m1"}
	run := func(cfg ConsumerConfig) *Consumer {
		cons, err := NewConsumer(qcfg, cfg, st, nil, quiet())
		if err != nil {
			t.Fatal(err)
		}
		cctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- cons.Run(cctx) }()
		t.Cleanup(func() {
			stop()
			if err := <-done; err != nil {
				t.Error(err)
			}
		})
		return cons
	}
	waitFor := func(cons *Consumer, outcome string, n float64) {
		t.Helper()
		for testutil.ToFloat64(cons.records.WithLabelValues(outcome)) < n {
			if ctx.Err() != nil {
				t.Fatalf("%s records: %v, want %v (merged %v)", outcome, testutil.ToFloat64(cons.records.WithLabelValues(outcome)), n, testutil.ToFloat64(cons.records.WithLabelValues("merged")))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	c1 := run(ccfg)
	waitFor(c1, "merged", 12)
	waitFor(c1, "corrupt", 1)

	rd, err := NewReader(st, ccfg)
	if err != nil {
		t.Fatal(err)
	}
	first, err := rd.Range(ctx, minute.Add(-time.Minute), minute.Add(2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != 2 {
		t.Fatalf("rollups %+v, want a fleet row and a user row", first)
	}
	fleet, user := first[0], first[1]
	if want := (Fleet{StoreRequests: 1200, StoreThrottles: 12, KafkaMetricsDropped: 24}); fleet.Namespace != "" || !fleet.Minute.Equal(minute) || fleet.Fleet != want {
		t.Errorf("fleet row %+v, want minute %v and %+v", fleet, minute, want)
	}
	if user.Namespace != "user" || user.Queries != 120 || user.CacheHits != 60 || user.CacheMisses != 60 || user.BloomSkipped != 12 || user.BloomLookups != 48 ||
		!reflect.DeepEqual(user.Errors, map[string]uint64{"UPSTREAM_FAILED": 12}) {
		t.Errorf("user row %+v, want 120 queries, 60 hits, 60 misses, 12 skipped, 12 UPSTREAM_FAILED", user)
	}
	if p50, p99 := user.P50(), user.P99(); !near(p50, time.Millisecond) || !near(p99, 100*time.Millisecond) {
		t.Errorf("p50 %v p99 %v, want 1ms and 100ms within 1%%", p50, p99)
	}

	// Replays: the same records again, and a consumer of another group
	// reading every record from the start.
	produce()
	waitFor(c1, "replayed", 12)
	c2 := run(ConsumerConfig{Partitions: 2, Group: "m2"})
	waitFor(c2, "replayed", 24)
	again, err := rd.Range(ctx, minute.Add(-time.Minute), minute.Add(2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if !sameRollups(first, again) {
		t.Errorf("after replays: %+v\nwant %+v", again, first)
	}
	if m := testutil.ToFloat64(c2.records.WithLabelValues("merged")); m != 0 {
		t.Errorf("the second group merged %v records, want 0", m)
	}
}

func bucketOf(d time.Duration) int32 { return int32(bucket(d.Seconds()) + minIndex) }

func near(got, want time.Duration) bool {
	diff := float64(got - want)
	return diff <= RelativeAccuracy*float64(want) && -diff <= RelativeAccuracy*float64(want)
}

func sameRollups(a, b []Rollup) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if !x.Minute.Equal(y.Minute) || x.Namespace != y.Namespace || x.Queries != y.Queries || x.Fleet != y.Fleet ||
			x.CacheHits != y.CacheHits || x.CacheMisses != y.CacheMisses || x.BloomSkipped != y.BloomSkipped || x.BloomLookups != y.BloomLookups ||
			!reflect.DeepEqual(x.Errors, y.Errors) || x.P50() != y.P50() || x.P99() != y.P99() {
			return false
		}
		if x.Latency != nil && x.Latency.GetCount() != y.Latency.GetCount() {
			return false
		}
	}
	return true
}

// What broke: a consumer following the writers' standby switch joined its
// group at start and did not poll, so the partitions the group gave it
// stalled. In standby it is no member; switched on it joins and consumes
// everything, switched off it leaves at once.
func TestConsumerFollowsActive(t *testing.T) {
	t.Parallel()
	st, err := embedded.Open(t.TempDir(), embedded.Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	qcfg := queue.Config{Brokers: c.ListenAddrs()}
	qcfg.EnsureDefaults()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := queue.CreateTopics(ctx, qcfg, queue.TopicSpec{Partitions: 1, ReplicationFactor: 1, MinInsyncReplicas: 1}); err != nil {
		t.Fatal(err)
	}
	prod, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	r := &Record{Source: "host-a/1/00000001", Start: time.Now().UTC().Truncate(time.Minute).Add(-time.Minute), Interval: 10 * time.Second,
		Namespaces: []Namespace{{Name: "user", Queries: 1}}}
	if err := prod.ProduceSync(ctx, &kgo.Record{Topic: qcfg.MetricsTopic, Value: r.Append(nil)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cfg := ConsumerConfig{Partitions: 1}
	cons, err := NewConsumer(qcfg, cfg, st, nil, quiet())
	if err != nil {
		t.Fatal(err)
	}
	var active atomic.Bool
	cons.FollowActive(active.Load)
	cctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- cons.Run(cctx) }()
	t.Cleanup(func() { stop(); <-done })
	cfg.EnsureDefaults()
	members := func() int {
		d, err := kadm.NewClient(prod).DescribeGroups(ctx, cfg.Group)
		if err != nil {
			t.Fatal(err)
		}
		return len(d[cfg.Group].Members)
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for !cond() {
			if ctx.Err() != nil {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	time.Sleep(3 * standbyPoll)
	if n := testutil.ToFloat64(cons.records.WithLabelValues("merged")); n != 0 {
		t.Fatalf("a consumer in standby merged %v records", n)
	}
	if n := members(); n != 0 {
		t.Fatalf("a consumer in standby is one of %d members of its group", n)
	}
	active.Store(true)
	waitFor("the record merged once the consumer was switched on", func() bool {
		return testutil.ToFloat64(cons.records.WithLabelValues("merged")) >= 1
	})
	if n := members(); n != 1 {
		t.Errorf("an active consumer: %d members of its group, want 1", n)
	}
	active.Store(false)
	start := time.Now()
	waitFor("the consumer switched off to leave its group", func() bool { return members() == 0 })
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("leaving took %v", took)
	}
}
