package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/cairnfs/cairn/internal/api"
	"github.com/cairnfs/cairn/internal/config"
	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/gcfloor"
	"github.com/cairnfs/cairn/internal/query"
	"github.com/cairnfs/cairn/internal/queue"
	"github.com/cairnfs/cairn/internal/writer"
)

func newRegistry() *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

// roles are the components a process runs; nil fields are not run.
type roles struct {
	addr     string
	reg      *feature.Registry
	store    onlineStore
	qcfg     queue.Config
	serve    bool
	write    bool
	env      *config.Env
	prom     *prometheus.Registry
	log      *slog.Logger
	onListen func(addr string)
}

// runRoles runs the query server and/or the writer until ctx ends, then
// shuts down in order: stop accepting HTTP and finish in-flight requests,
// flush the producer, let the writer finish and commit its batch, close the
// store. Whatever an upload was answered 202 for is in Kafka by then.
func runRoles(ctx context.Context, r roles) error {
	shutdownTimeout := r.env.Duration("CAIRN_SHUTDOWN_TIMEOUT")
	maxBody := int64(r.env.Int("CAIRN_MAX_BODY_BYTES"))
	wcfg := writer.Config{
		MaxBatchRecords: r.env.Int("CAIRN_WRITER_MAX_BATCH_RECORDS"),
		MaxBackoff:      r.env.Duration("CAIRN_WRITER_MAX_BACKOFF"),
		DrainTimeout:    shutdownTimeout,
		FilterLease:     r.env.Duration("CAIRN_BLOOM_LEASE"),
	}
	floor, err := gcHeapFloor(r.env)
	if err := errors.Join(err, r.env.Err()); err != nil {
		return err
	}
	defer gcfloor.Start(floor, r.prom).Stop()

	var (
		srv      *http.Server
		server   *api.Server
		producer *queue.Producer
		w        *writer.Writer
		ln       net.Listener
		rp       readPath
	)
	if r.serve {
		var err error
		if rp, err = buildReadPath(r.env, r.reg, r.store, r.qcfg, r.prom, r.log); err != nil {
			return err
		}
		if producer, err = queue.NewProducer(r.qcfg, r.prom, r.log); err != nil {
			return err
		}
		defer producer.Close()
		engine := query.NewEngine(rp.reader, r.prom, nil)
		server, err = api.New(api.Config{MaxBodyBytes: maxBody}, r.reg, engine, producer, r.prom, r.prom, r.log)
		if err != nil {
			return err
		}
		if ln, err = net.Listen("tcp", r.addr); err != nil {
			return fmt.Errorf("listen on %s: %w", r.addr, err)
		}
		srv = &http.Server{Handler: server.Handler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(r.log.Handler(), slog.LevelWarn)}
	}
	if r.write {
		var err error
		if w, err = writer.New(r.qcfg, wcfg, r.reg, r.store, r.prom, r.log); err != nil {
			return err
		}
	}

	writerCtx, stopWriter := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWriter()
	writerDone := make(chan error, 1)
	if w != nil {
		go func() { writerDone <- w.Run(writerCtx) }()
		r.log.Info("persistence writer started", "group", r.qcfg.WriterGroup, "topic", r.qcfg.PersistTopic)
	} else {
		writerDone <- nil
	}
	trackerCtx, stopTracker := context.WithCancel(context.WithoutCancel(ctx))
	defer stopTracker()
	trackerDone := make(chan error, 1)
	if rp.tracker != nil {
		go func() { trackerDone <- rp.tracker.Run(trackerCtx) }()
	} else {
		defer close(trackerDone)
	}
	httpDone := make(chan error, 1)
	if srv != nil {
		go func() { httpDone <- srv.Serve(ln) }()
		server.SetReady(true)
		r.log.Info("query server listening", "addr", ln.Addr().String())
		if r.onListen != nil {
			r.onListen(ln.Addr().String())
		}
	}

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-httpDone:
		runErr = fmt.Errorf("http server: %w", err)
	case err := <-writerDone:
		writerDone <- err
		if err != nil {
			runErr = fmt.Errorf("writer: %w", err)
		}
	case err := <-trackerDone:
		trackerDone <- err
		if err != nil {
			runErr = fmt.Errorf("bloom filter: %w", err)
		}
	}
	r.log.Info("shutting down")

	// 1. Stop accepting HTTP and finish in-flight requests.
	if srv != nil {
		server.SetReady(false)
		sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
			r.log.Warn("http shutdown", "err", err)
		}
		cancel()
	}
	// The Bloom filter tracker goes with the HTTP server: it deletes its
	// group so that writers stop waiting for it.
	stopTracker()
	if rp.tracker != nil {
		if err := <-trackerDone; err != nil && runErr == nil {
			runErr = fmt.Errorf("bloom filter: %w", err)
		}
	}
	// 2. Flush the producer (query metrics still buffered).
	if producer != nil {
		producer.Close()
		producer = nil
	}
	// 3. Let the writer finish its batch, commit, and leave the group.
	stopWriter()
	if err := <-writerDone; err != nil && runErr == nil {
		runErr = fmt.Errorf("writer: %w", err)
	}
	// 4. Close the store.
	if err := r.store.Close(); err != nil && runErr == nil {
		runErr = fmt.Errorf("close store: %w", err)
	}
	r.log.Info("stopped")
	return runErr
}

func runServe(ctx context.Context, args []string, env *config.Env, stderr io.Writer) error {
	return runProduction(ctx, "serve", args, env, stderr, true, false)
}

func runWrite(ctx context.Context, args []string, env *config.Env, stderr io.Writer) error {
	return runProduction(ctx, "write", args, env, stderr, false, true)
}

func runProduction(ctx context.Context, name string, args []string, env *config.Env, stderr io.Writer, serve, write bool) error {
	fs := newFlagSet(name, stderr)
	var c common
	c.register(fs, env, serve)
	if err := fs.Parse(args); err != nil {
		return err
	}
	log, err := newLogger(stderr, c.logLevel)
	if err != nil {
		return err
	}
	reg, regErr := feature.Load(c.features)
	qcfg, qErr := queueConfig(env, splitList(c.brokers))
	if err := joinDistinct(regErr, qErr, preflight(env, c.store, serve, write)); err != nil {
		return err
	}
	prom := newRegistry()
	st, err := openStore(ctx, c.store, env, false, prom, log)
	if err != nil {
		return err
	}
	return runRoles(ctx, roles{addr: c.addr, reg: reg, store: st, qcfg: qcfg, serve: serve, write: write, env: env, prom: prom, log: log})
}
