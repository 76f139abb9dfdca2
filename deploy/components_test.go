package deploy

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/cairnfs/cairn/internal/health"
	"github.com/cairnfs/cairn/internal/hedge"
	"github.com/cairnfs/cairn/internal/query"
	"github.com/cairnfs/cairn/internal/queue"
	"github.com/cairnfs/cairn/internal/writer"
)

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
