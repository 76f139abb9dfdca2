package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairnfs/cairn/internal/bench"
	"github.com/cairnfs/cairn/internal/config"
	"github.com/cairnfs/cairn/internal/node"
	"github.com/cairnfs/cairn/internal/store/redis"
)

// benchUsage explains `cairn bench`; the flags follow it.
const benchUsage = `Usage: cairn bench --store URI [flags]

Measures online queries through the whole HTTP path, side by side with the
physical floor of the same store, under an open-loop load at a constant rate.

It declares one namespace, "bench", of --features features of mixed plain
types, writes --pool entities into the store, starts the query server on
127.0.0.1 (the store read directly: no cache, no Bloom filter) and drives,
in interleaved slices, so that both see the same machine load:

  (a) POST /v1/query/online asking --entities entities (distinct, drawn from
      the pool) for every feature;
  (b) for a Redis or Valkey store, the bare round trip the store makes,
      the same command per entity (HGETALL when every feature is asked,
      HMGET otherwise), pipelined, on the same kind of connection (the
      store's read connections; go-redis for a cluster), its replies read
      without decoding. Other stores have no floor.

Requests fall due at a constant rate whether or not earlier ones have been
answered, and latency runs from when each fell due, so a stall is counted
in full. The query server runs in a process of its own (cairn bench-server,
or in this one with --in-process); the load generator and the floor's
client run in this one, on the same CPUs. The report (Markdown) goes to standard output, progress to
standard error.

Latency percentiles below 10 ms are set as much by the machine (the
scheduler, the collector, the load generator on the same CPUs) as by the
server. So every path answered by a query server process also reports
that process's CPU per query, from its own accounting: utime + stime in
/proc/PID/stat, read before and after each of the path's slices, summed
over them and divided by their queries. And every report says, per path,
where its tail may come from: how long goroutines waited for a CPU
(runtime/metrics /sched/latencies:seconds), the collector's cycles and
pauses (/gc/cycles/total:gc-cycles, /sched/pauses/total/gc:seconds), of
the server process answering the path (asked over its standard input
between slices) and of the load generator, over the path's own slices.
--pin and --server-procs test a remedy: the load generator and the
servers pinned to different CPUs, the servers' GOMAXPROCS.

With --security, two more query servers are measured beside (a): (c)
requiring an API key, (d) serving HTTPS. With --resolvers, two more whose
last 10 features are computed on every query (max_staleness 0s) instead of
read from the store: (e) by an http resolver calling a service the bench
serves on 127.0.0.1, (f) by a sql resolver querying table
cairn_bench_resolved, which the bench creates (or replaces) in the
PostgreSQL --pg-dsn names, one row per entity of the pool. With --formats,
two more paths ask (a)'s server for the same queries in other answer forms:
(g) columnar JSON ("format": "columnar"), (h) Arrow (Accept:
application/vnd.apache.arrow.stream); the report adds, per form, the
server's CPU per query over that form's own slices, the answers' median
size and the Content-Type the server answered with. With --metrics, one
more: (i) the queries of (a) on a second query server process, the same
but for Kafka: a broker (the one cairn dev embeds) started in this
process for the run, with the topics cairn dev creates, receives its
query metrics, one record per CAIRN_METRICS_INTERVAL, so that its
aggregator and producer run as in cairn serve; the report gives (a)'s
and (i)'s server CPU per query, their difference, and the records the
broker received and the queries they count. With --relay, one more: (r)
the floor's read, made by a bare HTTP relay in a process of its own
(cairn bench-server --relay: a fasthttp handler making (b)'s read, no
query engine); (a) against (r) is cairn's work in the query server, (r)
against (b) the process hop over HTTP.

A Redis URI without a prefix parameter gets a fresh prefix, whose keys are
deleted afterwards; with one, the keys are left. Embedded and DynamoDB
stores keep what was written.

Flags:
`

// registerBenchFlags defines the flags of `cairn bench` on o, with o's
// values as their defaults.
func registerBenchFlags(fs *flag.FlagSet, o *bench.Options, env *config.Env) {
	o.Store = env.String("CAIRN_ONLINE_STORE")
	fs.Var(uriFlag{&o.Store}, "store", "online store URI (CAIRN_ONLINE_STORE)")
	fs.IntVar(&o.Entities, "entities", o.Entities, "entities per query")
	fs.IntVar(&o.Features, "features", o.Features, "features per entity")
	fs.IntVar(&o.Ask, "ask", o.Ask, "features each query asks for, the first of the namespace (0: all of them)")
	fs.IntVar(&o.Pool, "pool", o.Pool, "entities written, from which each query draws its entities")
	fs.Float64Var(&o.Rate, "rate", o.Rate, "queries per second; with --find-max-p99, the search's first rate")
	fs.DurationVar(&o.Duration, "duration", o.Duration, "measuring time of each path, in slices of --slice")
	fs.DurationVar(&o.Slice, "slice", o.Slice, "length of one slice; the paths alternate slice by slice")
	fs.DurationVar(&o.Warmup, "warmup", o.Warmup, "unmeasured run of each path before the first slice")
	fs.IntVar(&o.MaxInFlight, "max-in-flight", o.MaxInFlight, "most requests outstanding at once, per path")
	fs.DurationVar(&o.FindMaxP99, "find-max-p99", o.FindMaxP99, "first search the highest rate at which (a) keeps p99 within this bound, then measure both paths at it")
	fs.DurationVar(&o.SearchStep, "search-step", o.SearchStep, "length of each run of the search")
	fs.Float64Var(&o.MaxRate, "max-rate", o.MaxRate, "highest rate the search tries")
	fs.StringVar(&o.CPUProfile, "cpuprofile", o.CPUProfile, "write a CPU profile of the query server (with --in-process, of this whole process) to this file")
	fs.StringVar(&o.Trace, "trace", o.Trace, "write the query server's execution trace (with --in-process, this whole process's) to this file; `go tool trace -pprof=sched FILE` says where goroutines waited for a thread (tens of MB for a run of seconds)")
	fs.StringVar(&o.MemProfile, "memprofile", o.MemProfile, "write a heap profile (allocations and memory in use) to this file when the runs end")
	fs.BoolVar(&o.InProcess, "in-process", o.InProcess, "run the query server in this process, beside the load generator, instead of in a process of its own")
	fs.BoolVar(&o.Security, "security", o.Security, "also measure, side by side, a query server requiring an API key (c) and one serving HTTPS (d), each in a process of its own")
	fs.BoolVar(&o.Resolvers, "resolvers", o.Resolvers, "also measure, side by side, the last 10 features computed on every query by an http resolver (e) and by a sql resolver (f), each in a query server process of its own; needs --pg-dsn")
	fs.BoolVar(&o.Formats, "formats", o.Formats, "also measure, side by side on the same query server, the columnar JSON (g) and Arrow (h) answers of the same queries, with the server CPU per query and the size of each form; not with --security or --resolvers")
	fs.BoolVar(&o.Metrics, "metrics", o.Metrics, "also measure, side by side, (i): a second query server process as (a)'s but sending its query metrics, aggregated as `cairn serve` does, to a Kafka broker started in this process for the run; the report gives both servers' CPU per query and the metrics records the broker received")
	fs.BoolVar(&o.Relay, "relay", o.Relay, "also measure, side by side, (r): the floor's read (b) made by a bare HTTP relay in a process of its own, to tell the process hop from cairn's work in (a); needs a single Redis or Valkey server, not with --in-process")
	fs.IntVar(&o.ServerProcs, "server-procs", o.ServerProcs, "GOMAXPROCS of the query server processes (0: Go's default; with --pin, the CPUs they are pinned to)")
	fs.BoolVar(&o.Pin, "pin", o.Pin, "for the rounds, pin this process (load generator, floor client, broker) to the first CPU it may use, with GOMAXPROCS 1, and the query server processes to the others (Linux)")
	fs.StringVar(&o.PGDSN, "pg-dsn", o.PGDSN, "with --resolvers, the PostgreSQL the sql resolver queries (postgres://user:pass@host:port/db); the bench creates or replaces table "+bench.ResolvedTable+" in it")
	fs.StringVar(&o.LogLevel, "log-level", o.LogLevel, "log level: debug, info, warn, error")
}

func runBench(ctx context.Context, args []string, env *config.Env, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench", stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), benchUsage)
		fs.PrintDefaults()
	}
	o := bench.DefaultOptions()
	registerBenchFlags(fs, &o, env)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bench: unexpected arguments %q", fs.Args())
	}
	// Progress, logs and the server process's logs share stderr.
	stderr = &lockedWriter{w: stderr}
	o.Stdout, o.Stderr = stdout, stderr
	var log *slog.Logger // set once the flags are checked, before any use
	o.OpenStore = func(ctx context.Context, uri string, reg prometheus.Registerer) (bench.Store, error) {
		sc, err := node.StoreFromEnv(env, uri)
		if err != nil {
			return nil, err
		}
		if _, set := env.Value("DYNAMODB_CREATE_TABLES_IF_NOT_EXISTS"); !set {
			sc.CreateDynamoTable = true // the benchmark writes its own entities
		}
		return node.OpenStore(ctx, sc, reg, log)
	}
	o.RedisConfig = func(uri string) (redis.Config, error) {
		sc, err := node.StoreFromEnv(env, uri)
		return sc.Redis, err
	}
	o.StartServer = func(ctx context.Context, spec bench.ServerSpec) (string, func() error, error) {
		return startBenchServer(ctx, env, o.Store, spec, log)
	}
	// The server process reads the knobs from its environment: it gets
	// those set for this command, whatever their source.
	for _, k := range config.Knobs {
		if v, set := env.Value(k.Name); set {
			o.ServerEnv = append(o.ServerEnv, k.Name+"="+v)
		}
	}
	// Flags and knobs are checked before anything is opened.
	cfg, err := loadBenchServer(env, o.Store, o.Features, bench.NoResolver, "")
	if err := errors.Join(o.Validate(), err); err != nil {
		return err
	}
	if log, err = newLogger(stderr, o.LogLevel); err != nil {
		return err
	}
	o.GCHeapFloor = cfg.GCHeapFloor
	// The topics of --metrics are named by the knobs, as in production.
	o.Kafka.PersistTopic, o.Kafka.MetricsTopic, o.Kafka.DeadLetterTopic = env.String("CAIRN_KAFKA_PERSIST_TOPIC"),
		env.String("CAIRN_KAFKA_METRICS_TOPIC"), env.String("CAIRN_KAFKA_DEAD_LETTER_TOPIC")
	o.MetricsInterval = env.Duration("CAIRN_METRICS_INTERVAL")
	return bench.MeasureQueries(ctx, o)
}

// loadBenchServer reads and checks the configuration of the benchmark's
// query server, whose registry computes the last features with a
// resolver of kind resolver (bench.RegistryWith), or none, and which
// sends its query metrics to the Kafka brokers listed, if any.
func loadBenchServer(env *config.Env, storeURI string, features int, resolver, brokers string) (*node.Config, error) {
	reg, err := bench.RegistryWith(features, resolver)
	if err != nil {
		return nil, err
	}
	return node.Load(node.BenchServer, env, node.Flags{Store: storeURI, Registry: reg, Addr: "127.0.0.1:0", Brokers: brokers})
}

// startBenchServer starts a query server in this process (--in-process)
// that reads spec's store directly (no cache, no Bloom filter), on a
// loopback port. The store stays the benchmark's to close, and the heap
// floor its own.
func startBenchServer(ctx context.Context, env *config.Env, storeURI string, spec bench.ServerSpec, log *slog.Logger) (addr string, stop func() error, _ error) {
	cfg, err := node.Load(node.BenchServer, env, node.Flags{Store: storeURI, Registry: spec.Registry, Addr: "127.0.0.1:0"})
	if err != nil {
		return "", nil, err
	}
	cfg.GCHeapFloor = 0
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	addrs := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- node.Run(ctx, cfg, node.Options{Log: log, Store: spec.Store, Metrics: prometheus.NewRegistry(), OnListen: func(a string) { addrs <- a }})
	}()
	select {
	case a := <-addrs:
		return a, func() error { cancel(); return <-done }, nil
	case err := <-done:
		cancel()
		return "", nil, fmt.Errorf("query server: %w", err)
	}
}

// lockedWriter serializes writes to w.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
