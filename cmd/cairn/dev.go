package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/cairnfs/cairn/internal/config"
	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/queue"
)

func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("cairn "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// runDev runs the whole path in one process: an embedded Kafka-protocol
// broker and an embedded store under --data-dir, the query server and the
// persistence writer. --store swaps in a real store.
func runDev(ctx context.Context, args []string, env *config.Env, stderr io.Writer) error {
	fs := newFlagSet("dev", stderr)
	var c common
	c.register(fs, env, true)
	dataDir := fs.String("data-dir", env.String("CAIRN_DATA_DIR"), "directory of the embedded broker and store (CAIRN_DATA_DIR)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log, err := newLogger(stderr, c.logLevel)
	if err != nil {
		return err
	}
	reg, err := feature.Load(c.features)
	if err := joinDistinct(err, preflight(env, c.store, true, true)); err != nil {
		return err
	}
	if err := os.MkdirAll(*dataDir, 0o755); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}

	brokers := splitList(c.brokers)
	if len(brokers) == 0 {
		b, err := queue.StartBroker(*dataDir)
		if err != nil {
			return err
		}
		defer b.Close() // last: after the writer has committed
		brokers = b.Addrs()
		log.Info("embedded broker started", "addrs", brokers, "dir", filepath.Join(*dataDir, "kafka"))
	}
	qcfg, err := queueConfig(env, brokers)
	if err != nil {
		return err
	}
	// One broker: replication factor 1. Topics that exist are kept.
	spec := queue.TopicSpec{ReplicationFactor: 1, MinInsyncReplicas: 1, Partitions: int32(env.Int("CAIRN_TOPIC_PARTITIONS")),
		Retention: env.Duration("CAIRN_TOPIC_RETENTION")}
	if err := env.Err(); err != nil {
		return err
	}
	if _, err := queue.CreateTopics(ctx, qcfg, spec); err != nil {
		return err
	}

	uri := c.store
	if uri == "" {
		uri = "embedded://" + filepath.ToSlash(mustAbs(filepath.Join(*dataDir, "store")))
	}
	prom := newRegistry()
	st, err := openStore(ctx, uri, env, true, prom, log)
	if err != nil {
		return err
	}
	log.Info("online store opened", "uri", uri)
	return runRoles(ctx, roles{addr: c.addr, reg: reg, store: st, qcfg: qcfg, serve: true, write: true, env: env, prom: prom, log: log,
		onListen: func(addr string) {
			fmt.Fprintf(stderr, "\ncairn dev is ready: http://%s  (upload: POST /v1/upload_features, query: POST /v1/query/online; Ctrl-C stops)\n\n", addr)
		}})
}

func mustAbs(p string) string {
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return p
}
