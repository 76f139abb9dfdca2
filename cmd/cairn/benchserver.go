package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairnfs/cairn/internal/bench"
	"github.com/cairnfs/cairn/internal/config"
	"github.com/cairnfs/cairn/internal/node"
)

// `cairn bench` runs its query server in a process of its own, as
// `cairn bench-server`, which serves the benchmark's namespace from the
// store until its standard input closes (see package bench for the
// protocol between the two).

// benchServerChild is set in the child's environment: a test binary, which
// has no `bench-server` command of its own, runs the command when it sees
// it (TestMain).
const benchServerChild = bench.ServerChildEnv

// runBenchServer is `cairn bench-server`: the query server of a benchmark,
// started by `cairn bench`. It announces its address when it serves,
// answers requests for its runtime statistics, and stops when its
// standard input closes.
func runBenchServer(ctx context.Context, args []string, env *config.Env, stdout, stderr io.Writer) error {
	fs := newFlagSet(bench.ServerCommand, stderr)
	var store, logLevel, cpuProfile, memProfile, traceFile, resolver, brokers string
	var features, ask int
	var relay bool
	fs.StringVar(&store, "store", "", "online store URI")
	fs.BoolVar(&relay, "relay", false, "serve path (r) instead of a query server: a bare HTTP relay making the floor's Redis reads (see package bench)")
	fs.IntVar(&ask, "ask", 0, "with --relay, the features each read asks for, the first of the namespace (0: all of them)")
	fs.IntVar(&features, "features", 50, "features of namespace bench")
	fs.StringVar(&logLevel, "log-level", "warn", "log level")
	fs.StringVar(&resolver, "resolver", "", "compute the last 10 features on every query with a resolver of this kind: http (calling $"+bench.ResolverURLEnv+") or sql (on the PostgreSQL $"+bench.ResolverDSNEnv+" names); none by default")
	// Not CAIRN_KAFKA_BROKERS: only the server of path (i) has Kafka.
	fs.StringVar(&brokers, "brokers", "", "send query metrics, aggregated as `cairn serve` does, to the Kafka brokers listed (comma-separated); none by default")
	fs.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the server to this file")
	fs.StringVar(&memProfile, "memprofile", "", "write a heap profile of the server to this file when it stops")
	fs.StringVar(&traceFile, "trace", "", "write the server's execution trace to this file, from its start to its stop")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if relay {
		// The knobs are read as the query server reads them: the same
		// Redis connections, the same heap floor.
		cfg, err := loadBenchServer(env, store, features, bench.NoResolver, "")
		if err != nil {
			return err
		}
		return bench.RunRelay(ctx, bench.RelayConfig{Redis: cfg.Store.Redis, Features: features, Ask: ask, GCHeapFloor: cfg.GCHeapFloor}, os.Stdin, stdout)
	}
	log, err := newLogger(stderr, logLevel)
	if err != nil {
		return err
	}
	cfg, err := loadBenchServer(env, store, features, resolver, brokers)
	if err != nil {
		return err
	}
	if cpuProfile != "" {
		stop, err := bench.StartCPUProfile(cpuProfile)
		if err != nil {
			return fmt.Errorf("bench-server: %w", err)
		}
		defer stop()
	}
	if traceFile != "" {
		stop, err := bench.StartTrace(traceFile)
		if err != nil {
			return fmt.Errorf("bench-server: %w", err)
		}
		defer stop()
	}
	if memProfile != "" {
		defer func() {
			if err := bench.WriteHeapProfile(memProfile); err != nil {
				fmt.Fprintln(stderr, err)
			}
		}()
	}
	// The parent asks for our runtime statistics on our standard input,
	// and closes it to stop us.
	parent := node.Component{Name: "standard input", Run: func(ctx context.Context) error {
		if err := bench.ServeParent(ctx, os.Stdin, stdout); err != nil {
			if ctx.Err() != nil {
				return nil // interrupted
			}
			return err
		}
		return node.ErrStop
	}}
	var announceErr error
	err = node.Run(ctx, cfg, node.Options{Log: log, Metrics: prometheus.NewRegistry(), Components: []node.Component{parent},
		OnListen: func(addr string) { announceErr = bench.Announce(stdout, addr) }})
	return errors.Join(err, announceErr)
}
