package metrics_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/cairnfs/cairn/internal/api"
	"github.com/cairnfs/cairn/internal/cache"
	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/metrics"
	"github.com/cairnfs/cairn/internal/query"
	"github.com/cairnfs/cairn/internal/queue"
	"github.com/cairnfs/cairn/internal/store/embedded"
	"github.com/cairnfs/cairn/internal/store/redis"
	"github.com/cairnfs/cairn/internal/testserver"
)

// rwStore is what the test needs of a store.
type rwStore interface {
	metrics.Store
	query.Store
}

func TestQueryReachesTheRollupEmbedded(t *testing.T) {
	t.Parallel()
	st, err := embedded.Open(t.TempDir(), embedded.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	testQueryReachesTheRollup(t, st, prometheus.NewRegistry(), false)
}

// With Redis, the fleet row has the store's requests, from the store's
// own counters.
func TestQueryReachesTheRollupRedis(t *testing.T) {
	t.Parallel()
	prom := prometheus.NewRegistry()
	cfg := redis.DefaultConfig()
	cfg.Addr = testserver.Redis(t)
	cfg.KeyPrefix = fmt.Sprintf("cairn-metrics-e2e:%d:", time.Now().UnixNano())
	st, err := redis.Open(context.Background(), cfg, prom, quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	testQueryReachesTheRollup(t, st, prom, true)
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// testQueryReachesTheRollup sends queries through the API, with the user
// namespace cached, and finds them in the per-minute rollup: through the
// aggregator, the producer's metrics client, Kafka, the consumer and the
// store, read back by a Reader.
func testQueryReachesTheRollup(t *testing.T, st rwStore, prom *prometheus.Registry, storeCounts bool) {
	log := quiet
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	qcfg := queue.Config{Brokers: c.ListenAddrs()}
	qcfg.EnsureDefaults()
	if _, err := queue.CreateTopics(ctx, qcfg, queue.TopicSpec{Partitions: 3, ReplicationFactor: 1, MinInsyncReplicas: 1}); err != nil {
		t.Fatal(err)
	}
	reg, err := feature.Load("../../examples/features.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ccache := cache.DefaultConfig()
	ccache.Namespaces = []cache.NamespaceConfig{{Namespace: "user", TTL: time.Minute}}
	cached, err := cache.New(st, ccache, prom, log)
	if err != nil {
		t.Fatal(err)
	}
	prod, err := queue.NewProducer(qcfg, prom, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	agg, err := metrics.NewAggregator(metrics.AggregatorConfig{Interval: time.Second}, prod, prom, prom, log)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := api.New(api.Config{QueryMetrics: agg}, reg, query.NewEngine(cached, prom, nil), prod, prom, prom, log)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, stopServer := context.WithCancel(ctx)
	defer stopServer()
	go func() { _ = srv.Run(sctx, ln) }()
	aggDone := make(chan error, 1)
	actx, stopAgg := context.WithCancel(ctx)
	go func() { aggDone <- agg.Run(actx) }()

	ccfg := metrics.ConsumerConfig{Partitions: 3}
	cons, err := metrics.NewConsumer(qcfg, ccfg, st, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	cctx, stopCons := context.WithCancel(ctx)
	consDone := make(chan error, 1)
	go func() { consDone <- cons.Run(cctx) }()
	defer func() { stopCons(); <-consDone }()

	from := time.Now()
	const queries = 5
	for range queries {
		resp, err := http.Post("http://"+ln.Addr().String()+"/v1/query/online", "application/json",
			strings.NewReader(`{"inputs": {"user.id": "u1"}, "outputs": ["user.age"]}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("query: %d", resp.StatusCode)
		}
	}
	stopAgg() // sends the interval in progress
	if err := <-aggDone; err != nil {
		t.Fatal(err)
	}

	rd, err := metrics.NewReader(st, ccfg)
	if err != nil {
		t.Fatal(err)
	}
	for {
		rollups, err := rd.Range(ctx, from.Add(-time.Minute), time.Now().Add(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		var got, hits, misses, requests uint64
		for _, r := range rollups {
			requests += r.Fleet.StoreRequests
			if r.Namespace == "user" {
				got += r.Queries
				hits += r.CacheHits
				misses += r.CacheMisses
				if r.P99() <= 0 {
					t.Errorf("minute %v: p99 %v, want a latency", r.Minute, r.P99())
				}
			}
		}
		if got == queries {
			// One cell read from the store, then cached (as absent).
			if hits != queries-1 || misses != 1 {
				t.Errorf("cache hits %d, misses %d; want %d and 1", hits, misses, queries-1)
			}
			if storeCounts && requests == 0 {
				t.Error("no store request in the fleet rows")
			}
			return
		}
		if got > queries || ctx.Err() != nil {
			t.Fatalf("user queries in the rollups: %d, want %d (%+v)", got, queries, rollups)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
