package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairnfs/cairn/internal/bench"
	"github.com/cairnfs/cairn/internal/config"
	"github.com/cairnfs/cairn/internal/gcfloor"
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
// started by `cairn bench`. It announces its address when it serves and
// stops when its standard input closes.
func runBenchServer(ctx context.Context, args []string, env *config.Env, stdout, stderr io.Writer) error {
	fs := newFlagSet(bench.ServerCommand, stderr)
	var store, logLevel, cpuProfile, memProfile string
	var features int
	fs.StringVar(&store, "store", "", "online store URI")
	fs.IntVar(&features, "features", 50, "features of namespace bench")
	fs.StringVar(&logLevel, "log-level", "warn", "log level")
	fs.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the server to this file")
	fs.StringVar(&memProfile, "memprofile", "", "write a heap profile of the server to this file when it stops")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log, err := newLogger(stderr, logLevel)
	if err != nil {
		return err
	}
	reg, err := bench.Registry(features)
	if err != nil {
		return err
	}
	floor, err := gcHeapFloor(env)
	if err != nil {
		return err
	}
	prom := prometheus.NewRegistry()
	defer gcfloor.Start(floor, prom).Stop()
	st, err := openStore(ctx, store, env, false, prom, log)
	if err != nil {
		return err
	}
	defer st.Close()
	addr, stop, err := startBenchServer(bench.ServerSpec{Registry: reg, Store: st, Metrics: prom}, log)
	if err != nil {
		return err
	}
	defer stop()
	if cpuProfile != "" {
		stop, err := bench.StartCPUProfile(cpuProfile)
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
	if err := bench.Announce(stdout, addr); err != nil {
		return err
	}
	_ = bench.WaitForParent(ctx, os.Stdin)
	return nil
}
