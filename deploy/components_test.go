package deploy

import (
	"context"
	"crypto/rand"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/cairnfs/cairn/internal/health"
	"github.com/cairnfs/cairn/internal/hedge"
	"github.com/cairnfs/cairn/internal/query"
	"github.com/cairnfs/cairn/internal/queue"
	"github.com/cairnfs/cairn/internal/store/dynamo"
	"github.com/cairnfs/cairn/internal/store/redis"
	"github.com/cairnfs/cairn/internal/testserver"
	"github.com/cairnfs/cairn/internal/writer"
)

// TestMain stops the servers the store tests start.
func TestMain(m *testing.M) { os.Exit(testserver.Run(m)) }

// registerStores opens a DynamoDB store on moto and a Redis store on
// redis-server with reg; opening them sends requests (DescribeTable,
// CreateTable, PING, SCRIPT LOAD), so their labelled metrics have series.
func registerStores(t *testing.T, reg *prometheus.Registry) {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	name := "cairn-deploy-" + rand.Text()[:8]

	dcfg := dynamo.DefaultConfig()
	dcfg.Table = name
	dcfg.Region = "us-east-1"
	dcfg.Endpoint = testserver.Moto(t)
	dcfg.MaxRetries = 1
	dcfg.CreateTableIfNotExists = true
	ds, err := dynamo.Open(t.Context(), dcfg, reg, log)
	if err != nil {
		t.Fatalf("dynamo: %v", err)
	}
	t.Cleanup(func() { ds.Close() })

	rcfg := redis.DefaultConfig()
	rcfg.Addr = testserver.Redis(t)
	rcfg.KeyPrefix = name + ":"
	rs, err := redis.Open(t.Context(), rcfg, reg, log)
	if err != nil {
		t.Fatalf("redis: %v", err)
	}
	t.Cleanup(func() { rs.Close() })
}

// registerComponents builds real components on reg, against an in-process
// Kafka broker where they need one, and stops them when the test ends. It
// does not run them: their metrics are registered at construction.
func registerComponents(t *testing.T, reg *prometheus.Registry) {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	qcfg := queue.Config{Brokers: cluster.ListenAddrs()}

	if _, err := hedge.New("dynamo_batch_get", hedge.Config{Wait: time.Millisecond, MaxInFlight: 1}, reg); err != nil {
		t.Fatalf("hedge: %v", err)
	}
	if _, err := health.New(health.Config{}, reg, log); err != nil {
		t.Fatalf("health: %v", err)
	}
	query.NewEngine(nil, reg, time.Now)
	p, err := queue.NewProducer(qcfg, reg, log)
	if err != nil {
		t.Fatalf("producer: %v", err)
	}
	t.Cleanup(p.Close)
	w, err := writer.New(qcfg, writer.Config{}, nil, nil, reg, log)
	if err != nil {
		t.Fatalf("writer: %v", err)
	}
	// Run with a done context closes the writer's client at once.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	t.Cleanup(func() { _ = w.Run(ctx) })
}
