package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/cairnfs/cairn/internal/config"
	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/health"
	"github.com/cairnfs/cairn/internal/metrics"
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
	var st *sharedStore
	st, cfg.StoreProbe, cfg.StoreErr = storeProbe(env, f)
	if st != nil {
		defer st.close()
		// The metrics rollups, read from the store where the writers'
		// metrics consumers keep them.
		cfg.Rollups = rollupReader(env, st)
	}

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

// sharedStore opens the store once for the sections that read it (the
// probe and the rollups run concurrently, and an embedded store admits
// one opener), and closes it when the report is done.
type sharedStore struct {
	sc  node.StoreConfig
	log *slog.Logger

	mu   sync.Mutex
	st   node.Store
	took time.Duration
	err  error
}

// get opens the store on first use; later calls get the same store or
// the same error.
func (s *sharedStore) get(ctx context.Context) (node.Store, time.Duration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st == nil && s.err == nil {
		start := time.Now()
		st, err := node.OpenStore(ctx, s.sc, nil, s.log)
		s.took = time.Since(start)
		if err != nil {
			s.err = err // st may be a typed nil
		} else {
			s.st = st
		}
	}
	return s.st, s.took, s.err
}

func (s *sharedStore) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st != nil {
		s.st.Close()
	}
}

// storeProbe returns the store f names, unopened, and a probe that opens
// it and reads its reserved health key; or why it cannot.
func storeProbe(env *config.Env, f node.Flags) (*sharedStore, func(ctx context.Context) error, error) {
	sc, err := node.StoreFromEnv(env, f.Store)
	if err != nil {
		return nil, nil, fmt.Errorf("configuration: %w", oneLine(err))
	}
	// Status only looks: it never creates a table.
	sc.Dynamo.CreateTableIfNotExists, sc.CreateDynamoTable = false, false
	if f.Features == "" {
		return nil, nil, errors.New("no feature registry (--features or CAIRN_FEATURES): the store probe reads a feature of it")
	}
	reg, err := feature.Load(f.Features)
	if err != nil {
		return nil, nil, oneLine(err)
	}
	shared := &sharedStore{sc: sc, log: slog.New(slog.DiscardHandler)}
	return shared, func(ctx context.Context) error {
		st, took, err := shared.get(ctx)
		if err != nil {
			return fmt.Errorf("open: %w", err)
		}
		probe, err := health.StoreProbe(st, reg)
		if err != nil {
			return err
		}
		start := time.Now()
		if err := probe(ctx); err != nil {
			return fmt.Errorf("read of the health key after %v: %w", (took + time.Since(start)).Round(time.Millisecond), err)
		}
		return nil
	}, nil
}

// rollupReader reads the metrics rollups from the store, as the metrics
// consumers keep them (CAIRN_METRICS_RETENTION, and one item per minute
// and partition of the metrics topic, CAIRN_TOPIC_PARTITIONS). The fleet
// rows (store and Kafka counters) are left out: the report shows queries
// per namespace.
func rollupReader(env *config.Env, shared *sharedStore) status.Rollups {
	mc := metrics.ConsumerConfig{Retention: env.Duration("CAIRN_METRICS_RETENTION"), Partitions: env.Int("CAIRN_TOPIC_PARTITIONS")}
	return status.RollupsFunc(func(ctx context.Context, from, to time.Time) ([]status.Rollup, error) {
		st, _, err := shared.get(ctx)
		if err != nil {
			return nil, fmt.Errorf("open the store: %w", err)
		}
		rd, err := metrics.NewReader(st, mc)
		if err != nil {
			return nil, oneLine(err)
		}
		rs, err := rd.Range(ctx, from, to)
		if err != nil {
			return nil, err
		}
		var out []status.Rollup
		for i := range rs {
			r := &rs[i]
			if r.Namespace == "" {
				continue
			}
			var errs uint64
			for _, n := range r.Errors {
				errs += n
			}
			out = append(out, status.Rollup{Namespace: r.Namespace, Minute: r.Minute, Queries: int64(r.Queries), Errors: int64(errs),
				CacheHits: int64(r.CacheHits), BloomShortCircuits: int64(r.BloomSkipped),
				P50: r.P50().Seconds(), P99: r.P99().Seconds()})
		}
		return out, nil
	})
}

// oneLine joins the lines of a joined error, so that a section says it in
// one line.
func oneLine(err error) error {
	if err == nil || !strings.Contains(err.Error(), "\n") {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), "\n", "; "))
}
