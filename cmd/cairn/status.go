package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/cairnfs/cairn/internal/config"
	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/health"
	"github.com/cairnfs/cairn/internal/node"
	"github.com/cairnfs/cairn/internal/status"
)

// runStatus is `cairn status`: the writers' group and lag, the dead
// letters, the topics against their expected settings, the store's
// reachability and the last minute's metrics rollup, each section printed
// whatever happened to the others. It exits non-zero when a section could
// not be collected (the store unreachable counts).
func runStatus(ctx context.Context, args []string, env *config.Env, stdout, stderr io.Writer) error {
	fs := newFlagSet("status", stderr)
	var f node.Flags
	fs.StringVar(&f.Brokers, "brokers", env.String("CAIRN_KAFKA_BROKERS"), "comma-separated Kafka brokers (CAIRN_KAFKA_BROKERS)")
	f.Store = env.String("CAIRN_ONLINE_STORE")
	fs.Var(uriFlag{&f.Store}, "store", "online store URI (CAIRN_ONLINE_STORE)")
	fs.StringVar(&f.Features, "features", env.String("CAIRN_FEATURES"), "feature registry YAML (CAIRN_FEATURES); the store probe reads one of its features")
	timeout := fs.Duration("timeout", env.Duration("CAIRN_STATUS_TIMEOUT"), "how long to wait for Kafka, the store and the rollups (CAIRN_STATUS_TIMEOUT)")
	asJSON := fs.Bool("json", false, "print the report as JSON, for scripts")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := env.Err(); err != nil {
		return err
	}
	cfg := status.Config{Timeout: *timeout}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("--timeout %v: want at least 100ms", *timeout)
	}

	// Kafka and the expected topic settings, as `cairn topics create`
	// reads them. A problem is reported by the Kafka sections alone.
	f.Topics.Partitions = int32(env.Int("CAIRN_TOPIC_PARTITIONS"))
	f.Topics.ReplicationFactor = int16(env.Int("CAIRN_TOPIC_REPLICATION_FACTOR"))
	f.Topics.MinInsyncReplicas = env.Int("CAIRN_TOPIC_MIN_INSYNC_REPLICAS")
	f.Topics.Retention = env.Duration("CAIRN_TOPIC_RETENTION")
	kcfg, err := node.Load(node.Topics, env, f)
	if err != nil {
		cfg.QueueErr = fmt.Errorf("configuration: %w", oneLine(err))
	} else {
		cfg.Queue, cfg.Expected = kcfg.Queue, kcfg.Topics
	}
	cfg.Queue.WriterGroup = env.String("CAIRN_KAFKA_WRITER_GROUP")
	cfg.Queue.PersistTopic = env.String("CAIRN_KAFKA_PERSIST_TOPIC")
	cfg.Queue.MetricsTopic = env.String("CAIRN_KAFKA_METRICS_TOPIC")
	cfg.Queue.DeadLetterTopic = env.String("CAIRN_KAFKA_DEAD_LETTER_TOPIC")

	// The store, opened as `cairn serve` opens it and probed as its
	// health probe does: a read of the reserved key.
	cfg.Store = config.RedactURI(f.Store)
	cfg.StoreProbe, cfg.StoreErr = storeProbe(env, f)

	// The metrics rollups: none until a reader of them is wired here.
	cfg.Rollups = nil

	r, err := status.Collect(ctx, cfg)
	if err != nil {
		return err
	}
	if *asJSON {
		err = r.WriteJSON(stdout)
	} else {
		err = r.WriteText(stdout)
	}
	if err != nil {
		return err
	}
	if failed := r.Failed(); len(failed) > 0 {
		return fmt.Errorf("status: %s: see the report", strings.Join(failed, ", "))
	}
	return nil
}

// storeProbe returns a probe that opens the store f names, reads its
// reserved health key and closes it, or why it cannot.
func storeProbe(env *config.Env, f node.Flags) (func(ctx context.Context) error, error) {
	sc, err := node.StoreFromEnv(env, f.Store)
	if err != nil {
		return nil, fmt.Errorf("configuration: %w", oneLine(err))
	}
	// Status only looks: it never creates a table.
	sc.Dynamo.CreateTableIfNotExists, sc.CreateDynamoTable = false, false
	if f.Features == "" {
		return nil, errors.New("no feature registry (--features or CAIRN_FEATURES): the store probe reads a feature of it")
	}
	reg, err := feature.Load(f.Features)
	if err != nil {
		return nil, oneLine(err)
	}
	log := slog.New(slog.DiscardHandler)
	return func(ctx context.Context) error {
		start := time.Now()
		st, err := node.OpenStore(ctx, sc, nil, log)
		if err != nil {
			return fmt.Errorf("open: %w", err)
		}
		defer st.Close()
		probe, err := health.StoreProbe(st, reg)
		if err != nil {
			return err
		}
		if err := probe(ctx); err != nil {
			return fmt.Errorf("read of the health key after %v: %w", time.Since(start).Round(time.Millisecond), err)
		}
		return nil
	}, nil
}

// oneLine joins the lines of a joined error, so that a section says it in
// one line.
func oneLine(err error) error {
	if err == nil || !strings.Contains(err.Error(), "\n") {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), "\n", "; "))
}
