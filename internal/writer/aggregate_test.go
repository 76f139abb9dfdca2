package writer

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/cairnfs/cairn/internal/aggregate"
	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/query"
	"github.com/cairnfs/cairn/internal/queue"
	"github.com/cairnfs/cairn/internal/store"
	"github.com/cairnfs/cairn/internal/store/dynamo"
	"github.com/cairnfs/cairn/internal/store/embedded"
	"github.com/cairnfs/cairn/internal/store/redis"
	"github.com/cairnfs/cairn/internal/testserver"
)

const windowedYAML = `
namespaces:
  - name: user
    primary_key: id
    features:
      id: string
      amount: float
      qty: int
      merchant_id: string
      txn_count: {aggregate: count, of: amount, windows: [1h, 1d], bucket: 5m}
      txn_total: {aggregate: sum, of: qty, windows: [1h, 1d], bucket: 5m}
      merchants: {aggregate: approx_count_distinct, of: merchant_id, windows: [1d], bucket: 1h}
`

var aggSeq atomic.Int64

// bucketStores opens each store for t: embedded, redis-server, moto.
func bucketStores() map[string]func(t testing.TB) Store {
	return map[string]func(t testing.TB) Store{
		"embedded": func(t testing.TB) Store {
			st, err := embedded.Open(t.TempDir(), embedded.Options{Logger: quiet()})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return st
		},
		"redis": func(t testing.TB) Store {
			cfg := redis.DefaultConfig()
			cfg.Addr = testserver.Redis(t)
			cfg.KeyPrefix = fmt.Sprintf("cairn-agg-test:%d:%d:", time.Now().UnixNano(), aggSeq.Add(1))
			st, err := redis.Open(context.Background(), cfg, nil, quiet())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return st
		},
		"dynamo": func(t testing.TB) Store {
			cfg := dynamo.DefaultConfig()
			cfg.Table = fmt.Sprintf("cairn-agg-%d-%d", time.Now().UnixNano(), aggSeq.Add(1))
			cfg.Region = "us-east-1"
			cfg.Endpoint = testserver.Moto(t)
			cfg.MaxRetries = 3
			cfg.CreateTableIfNotExists = true
			st, err := dynamo.Open(context.Background(), cfg, nil, quiet())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return st
		},
	}
}

// aggEnv is a broker, a store and the windowed registry.
type aggEnv struct {
	t      *testing.T
	qcfg   queue.Config
	reg    *feature.Registry
	st     Store
	client *kgo.Client
}

func newAggEnv(t *testing.T, st Store) *aggEnv {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	qcfg := queue.Config{Brokers: c.ListenAddrs(), WriterGroup: "agg-writers"}
	qcfg.EnsureDefaults()
	if _, err := queue.CreateTopics(context.Background(), qcfg, queue.TopicSpec{Partitions: 3, ReplicationFactor: 1, MinInsyncReplicas: 1}); err != nil {
		t.Fatal(err)
	}
	reg, err := feature.Parse("test.yaml", []byte(windowedYAML))
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(qcfg.ClientOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return &aggEnv{t: t, qcfg: qcfg, reg: reg, st: st, client: cl}
}

// produce sends one record per rows entry, each with its own record key
// (so records spread over the partitions, and writers share the entity's
// buckets): rows[i] is the rows of one columnar upload of entity "hot".
func (e *aggEnv) produce(rows [][]queue.Value) {
	e.t.Helper()
	for i, vals := range rows {
		rec := &queue.Record{Kind: queue.KindUpload}
		for _, v := range vals {
			rec.Entities = append(rec.Entities, queue.Entity{Namespace: "user", Key: "hot", Values: []queue.Value{v}})
		}
		b, err := queue.AppendRecord(nil, rec)
		if err != nil {
			e.t.Fatal(err)
		}
		r := &kgo.Record{Topic: e.qcfg.PersistTopic, Key: []byte(fmt.Sprintf("r%d", i)), Value: b}
		if err := e.client.ProduceSync(context.Background(), r).FirstErr(); err != nil {
			e.t.Fatal(err)
		}
	}
}

// run starts a writer of group with the given update cache size; the
// returned stop ends it.
func (e *aggEnv) run(group string, cacheSize int, prom *prometheus.Registry) (stop func()) {
	e.t.Helper()
	q := e.qcfg
	q.WriterGroup = group
	var reg prometheus.Registerer
	if prom != nil {
		reg = prom
	}
	w, err := New(q, Config{MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, UpdateCacheSize: cacheSize}, e.reg, e.st, reg, quiet())
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			e.t.Errorf("writer.Run: %v", err)
		}
	}
}

// windows queries the windowed features of "hot" at now.
func (e *aggEnv) windows(now time.Time, fqns ...string) map[string]any {
	e.t.Helper()
	eng := query.NewEngine(e.st.(query.Store), nil, func() time.Time { return now })
	eng.UseBuckets(e.st.(store.BucketStore))
	ns, _ := e.reg.Namespace("user")
	req := &query.Request{Keys: map[*feature.Namespace][]string{ns: {"hot"}}}
	for _, fqn := range fqns {
		f, ok := e.reg.Lookup(fqn)
		if !ok {
			e.t.Fatalf("no feature %s", fqn)
		}
		req.Outputs = append(req.Outputs, f)
	}
	out := map[string]any{}
	for _, f := range eng.Query(context.Background(), req) {
		if f.Err != nil {
			e.t.Fatalf("%s: %v", f.Feature.FQN, f.Err)
		}
		out[f.Feature.FQN] = f.Value
	}
	return out
}

// Two writers (one with the update cache, one without) fold events of one
// hot bucket from three partitions: every event is counted exactly once,
// every row of a columnar upload counts, sums are exact, and replaying
// the topic from its start changes nothing.
func TestAggregateHotBucketAcrossStores(t *testing.T) {
	for name, open := range bucketStores() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newAggEnv(t, open(t))
			at := time.Now().Add(-time.Minute)
			const records = 120
			var rows [][]queue.Value
			wantQty := int64(0)
			for i := range records {
				vals := []queue.Value{
					{FQN: "user.amount", Value: 0.5, ObservedAt: at},
					{FQN: "user.qty", Value: int64(i), ObservedAt: at},
					{FQN: "user.merchant_id", Value: fmt.Sprintf("m%d", i%40), ObservedAt: at},
				}
				wantQty += int64(i)
				if i%10 == 0 {
					// A columnar upload naming the entity three times:
					// three events.
					vals = append(vals, queue.Value{FQN: "user.amount", Value: 1.5, ObservedAt: at}, queue.Value{FQN: "user.amount", Value: 2.5, ObservedAt: at})
				}
				rows = append(rows, vals)
			}
			wantCount := int64(records + 2*records/10)
			prom := prometheus.NewRegistry()
			stopA := e.run("agg", 256, prom)
			stopB := e.run("agg", 0, nil)
			e.produce(rows)
			deadline := time.Now().Add(30 * time.Second)
			for {
				got := e.windows(time.Now(), "user.txn_count__3600__")
				if got["user.txn_count__3600__"] == wantCount {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("txn_count over 1h: %v, want %d", got, wantCount)
				}
				time.Sleep(50 * time.Millisecond)
			}
			stopA()
			stopB()
			got := e.windows(time.Now(), "user.txn_count__3600__", "user.txn_count__86400__", "user.txn_total__3600__", "user.merchants__86400__")
			if got["user.txn_count__86400__"] != wantCount || got["user.txn_total__3600__"] != wantQty {
				t.Errorf("after both writers: %v; want count %d, qty sum %d", got, wantCount, wantQty)
			}
			if m := got["user.merchants__86400__"].(int64); m < 38 || m > 42 {
				t.Errorf("distinct merchants %d, want about 40", m)
			}

			// Replay: a writer of a new group reads the topic from its
			// start; every record is recognized by its partition and
			// offset.
			replay := prometheus.NewRegistry()
			stopC := e.run("agg-replay", 256, replay)
			for deadline := time.Now().Add(30 * time.Second); gathered(t, replay, "cairn_writer_records_total") < records; time.Sleep(50 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("the replaying writer wrote %v records of %d", gathered(t, replay, "cairn_writer_records_total"), records)
				}
			}
			stopC()
			if n := gathered(t, replay, "cairn_writer_bucket_updates_total"); n != 0 {
				t.Errorf("the replay wrote %v buckets, want none", n)
			}
			if again := e.windows(time.Now(), "user.txn_count__86400__", "user.txn_total__3600__"); again["user.txn_count__86400__"] != wantCount || again["user.txn_total__3600__"] != wantQty {
				t.Errorf("after replaying the topic: %v; want count %d, qty sum %d", again, wantCount, wantQty)
			}
		})
	}
}

// gathered sums the samples of the metric family name in reg.
func gathered(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

// Windows slide with the clock: a bucket leaves a window once the window,
// counted in whole buckets ending with the one holding now, no longer
// reaches it; events no window reaches any more are not stored.
func TestAggregateWindowsSlide(t *testing.T) {
	// The next whole hour: the stores expire buckets by the real clock,
	// so the events must be recent enough to be kept.
	base := time.Now().UTC().Truncate(time.Hour).Add(time.Hour)
	for name, open := range bucketStores() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newAggEnv(t, open(t))
			var rows [][]queue.Value
			for _, ago := range []time.Duration{50 * time.Minute, 10 * time.Minute, 2 * time.Hour, 23 * time.Hour, 25 * time.Hour} {
				rows = append(rows, []queue.Value{{FQN: "user.amount", Value: 1.0, ObservedAt: base.Add(-ago)}})
			}
			prom := prometheus.NewRegistry()
			q := e.qcfg
			w, err := New(q, Config{MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, UpdateCacheSize: 16,
				Now: func() time.Time { return base }}, e.reg, e.st, prom, quiet())
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- w.Run(ctx) }()
			e.produce(rows)
			for deadline := time.Now().Add(30 * time.Second); gathered(t, prom, "cairn_writer_records_total") < float64(len(rows)); time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("the writer did not write the records")
				}
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if late := gathered(t, prom, "cairn_writer_bucket_events_expired_total"); late != 1 {
				t.Errorf("%v events past every window, want 1 (25h old for a longest window of 1d)", late)
			}
			for _, c := range []struct {
				after     time.Duration
				hour, day int64
			}{
				// Events at T−50m, T−10m, T−2h, T−23h (T = base).
				{time.Minute, 2, 4},                   // 1h: buckets T−55m..T; 1d: from T−23h55m
				{6 * time.Minute, 2, 4},               // 1h from T−50m: the T−50m event is in
				{11 * time.Minute, 1, 4},              // 1h from T−45m: it has left
				{51 * time.Minute, 0, 4},              // 1h from T−5m: both have left
				{time.Hour + time.Minute, 0, 3},       // 1d from T−22h55m: the T−23h event has left
				{22*time.Hour + 6*time.Minute, 0, 2},  // 1d from T−1h50m: the T−2h event has left
				{24*time.Hour + 11*time.Minute, 0, 0}, // 1d from T+15m: every event has left
			} {
				got := e.windows(base.Add(c.after), "user.txn_count__3600__", "user.txn_count__86400__")
				if got["user.txn_count__3600__"] != c.hour || got["user.txn_count__86400__"] != c.day {
					t.Errorf("at base+%v: %v, want 1h %d and 1d %d", c.after, got, c.hour, c.day)
				}
			}
		})
	}
}

// The update cache spares a hot bucket's reads: with it, one read for a
// run of updates; without it, one per update. A bucket changed behind the
// cache's back (another writer) is caught by the version check, read
// again, and nothing is lost.
func TestUpdateCache(t *testing.T) {
	for name, open := range bucketStores() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			st := open(t)
			reg, err := feature.Parse("test.yaml", []byte(windowedYAML))
			if err != nil {
				t.Fatal(err)
			}
			ns, _ := reg.Namespace("user")
			count, _ := reg.Lookup("user.txn_count")
			bs := st.(store.BucketStore)
			now := time.Now()
			key := store.BucketKey{Namespace: ns, Key: fmt.Sprintf("hot-%d", aggSeq.Add(1)), Feature: count, Start: aggregateStart(now, count)}
			run := func(size int, from int64, n int) *aggregator {
				prom := prometheus.NewRegistry()
				a, err := newAggregator(bs, size, func() time.Time { return now }, prom, quiet())
				if err != nil {
					t.Fatal(err)
				}
				for i := range n {
					u := &bucketUpdate{key: key, events: []event{{partition: 0, offset: from + int64(i), value: 1.0}}}
					if err := a.apply(context.Background(), []*bucketUpdate{u}, 1); err != nil {
						t.Fatal(err)
					}
				}
				return a
			}
			cached := run(256, 0, 50)
			if h, m := testutilValue(cached.hits), testutilValue(cached.misses); h != 49 || m != 1 {
				t.Errorf("cache 256, 50 updates: %v hits, %v misses (reads); want 49 and 1", h, m)
			}
			uncached := run(0, 50, 50)
			if h, m := testutilValue(uncached.hits), testutilValue(uncached.misses); h != 0 || m != 50 {
				t.Errorf("cache 0, 50 updates: %v hits, %v misses (reads); want 0 and 50", h, m)
			}
			// The first aggregator's cached state is stale now: its next
			// update loses the version check, reads, and counts right.
			u := &bucketUpdate{key: key, events: []event{{partition: 0, offset: 100, value: 1.0}}}
			if err := cached.apply(context.Background(), []*bucketUpdate{u}, 1); err != nil {
				t.Fatal(err)
			}
			if c := testutilValue(cached.conflicts); c != 1 {
				t.Errorf("stale cache entry: %v conflicts, want 1", c)
			}
			b, err := bs.GetBucket(context.Background(), key)
			if err != nil {
				t.Fatal(err)
			}
			s, err := aggregate.DecodeState(b.State, count.Window)
			if err != nil {
				t.Fatal(err)
			}
			if s.Value() != int64(101) {
				t.Errorf("bucket count %v after 101 events, want 101", s.Value())
			}
		})
	}
}

func aggregateStart(now time.Time, f *feature.Feature) time.Time {
	return aggregate.BucketStart(now, f.Window.Bucket)
}

func testutilValue(c prometheus.Counter) float64 { return testutil.ToFloat64(c) }
