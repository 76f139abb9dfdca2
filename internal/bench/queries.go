package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/gcfloor"
	"github.com/cairnfs/cairn/internal/queue"
	"github.com/cairnfs/cairn/internal/store"
	"github.com/cairnfs/cairn/internal/store/redis"
)

// Store is what a measurement needs of the online store it measures: it
// writes the entities through it, hands it to a query server started in
// this process (which reads it), and closes it.
type Store interface {
	Read(ctx context.Context, ns *feature.Namespace, keys []string, feats []*feature.Feature) ([]store.Row, error)
	Write(ctx context.Context, writes []store.EntityWrite) error
	Close() error
}

// ServerSpec is what a query server started in this process serves.
type ServerSpec struct {
	// Registry declares namespace [Namespace], the one queried.
	Registry *feature.Registry
	// Store is the store the measurement opened, to be read directly: no
	// cache, no Bloom filter. The server must not close it.
	Store Store
	// Metrics is the registry of this process's metrics.
	Metrics prometheus.Registerer
}

// Options configure [MeasureQueries], the measurement behind `cairn
// bench`. The fields that shape the run are the command's flags, and the
// problems [Options.Validate] reports name them; [DefaultOptions] returns
// the flags' defaults. The seams (OpenStore, RedisConfig, StartServer)
// supply what this package does not build: the command opens the store
// with the process's knobs and starts the query server.
type Options struct {
	// Store is the URI of the online store to measure (--store).
	// Required.
	Store string
	// Entities is the number of distinct entities each query asks for
	// (--entities), 1 to 10,000. Default: 1.
	Entities int
	// Features is the number of features of namespace bench (--features),
	// 1 to 1,000. Default: 50.
	Features int
	// Ask is the number of features each query asks for, the first of the
	// namespace (--ask); 0 asks for all of them. Default: 0.
	Ask int
	// Pool is the number of entities written, from which each query draws
	// its entities (--pool), Entities to 1,000,000. Default: 1,000.
	Pool int
	// Rate is the queries per second of each path (--rate); with
	// FindMaxP99, the search's first rate. Default: 2,000.
	Rate float64
	// Duration is the measuring time of each path (--duration), in slices
	// of Slice. Default: 10s.
	Duration time.Duration
	// Slice is the length of one slice (--slice): the paths alternate
	// slice by slice. Default: 1s.
	Slice time.Duration
	// Warmup is the unmeasured run of each path before the first slice
	// (--warmup); 0 for none. Default: 1s.
	Warmup time.Duration
	// MaxInFlight bounds the requests outstanding at once, per path
	// (--max-in-flight). Default: 64 ([DefaultMaxInFlight]).
	MaxInFlight int
	// FindMaxP99, when more than 0, first searches the highest rate at
	// which path (a) keeps p99 within it, then measures both paths at that
	// rate (--find-max-p99). Default: 0, no search.
	FindMaxP99 time.Duration
	// SearchStep is the length of each run of the search (--search-step).
	// Default: 2s.
	SearchStep time.Duration
	// MaxRate is the highest rate the search tries (--max-rate). Default:
	// 100,000.
	MaxRate float64
	// CPUProfile, when set, is the file the query server's CPU profile is
	// written to (with InProcess, this whole process's) (--cpuprofile).
	// Default: none.
	CPUProfile string
	// Trace, when set, is the file the query server's execution trace
	// (package runtime/trace) is written to, from its start to its stop
	// (with InProcess, this whole process's) (--trace). The scheduler's
	// view of every goroutine: `go tool trace -pprof=sched FILE` says
	// where goroutines waited, runnable, for a thread. Default: none.
	Trace string
	// MemProfile, when set, is the file a heap profile is written to when
	// the runs end (--memprofile). Default: none.
	MemProfile string
	// InProcess runs the query server in this process, through
	// StartServer, instead of in a process of its own (--in-process).
	// Default: false.
	InProcess bool
	// LogLevel is the log level of the query server process (--log-level).
	// Default: "warn".
	LogLevel string
	// Security adds two query server processes beside the plain one, one
	// requiring an API key and one serving HTTPS, measured side by side
	// with it (--security; see security.go). Not with InProcess. Default:
	// false.
	Security bool
	// Resolvers adds two query server processes beside the plain one,
	// computing the last 10 features of each query with an http resolver
	// (e) and with a sql resolver (f), measured side by side with it
	// (--resolvers; see resolvers.go). Needs PGDSN and at least 10
	// Features; not with InProcess nor Ask. Default: false.
	Resolvers bool
	// PGDSN is the PostgreSQL the sql resolver of Resolvers queries, in
	// which the measurement creates (or replaces) table
	// cairn_bench_resolved (--pg-dsn). Required with Resolvers. Default:
	// none.
	PGDSN string
	// Formats adds paths (g) and (h) on the plain query server: the same
	// queries asking for the columnar JSON answer and for the Arrow
	// answer, measured side by side with (a), with each path's server
	// CPU per query and answer size (--formats; see formats.go). Not with
	// Security nor Resolvers. Default: false.
	Formats bool
	// Metrics adds path (i): (a)'s queries on a second query server
	// process, with a Kafka broker started for the run, so that its
	// query metrics aggregator runs as in `cairn serve` (--metrics; see
	// metrics.go). Default: false.
	Metrics bool
	// Relay adds path (r): the floor's read, (b), made by a minimal HTTP
	// relay in a process of its own, so that (a) against (r) shows what
	// cairn's work in the query server adds, and (r) against (b) what the
	// extra process hop does (--relay; see relay.go). Needs a single
	// Redis or Valkey server (not a cluster); not with InProcess.
	// Default: false.
	Relay bool
	// Kafka names, with Metrics, the topics created on the run's broker
	// (PersistTopic, MetricsTopic, DeadLetterTopic: the
	// CAIRN_KAFKA_*_TOPIC knobs); its other fields are not used. Default:
	// the topics' default names.
	Kafka queue.Config
	// MetricsInterval is, with Metrics, the query server's interval of
	// query metrics (CAIRN_METRICS_INTERVAL), for the report. Default:
	// 10s.
	MetricsInterval time.Duration
	// ServerProcs, when more than 0, is the GOMAXPROCS of the query
	// server processes (--server-procs). Default: 0, Go's own (the CPUs
	// the process may use; with Pin, those of the servers).
	ServerProcs int
	// Pin restricts, for the rounds, this process (load generator, floor
	// client, broker) to the first CPU it may use and the query server
	// processes to the others, so that neither takes the other's CPU
	// (--pin; see pin.go). Linux only, needs 2 CPUs or more; not with
	// InProcess. Default: false.
	Pin bool

	// GCHeapFloor is the floor under the collector's heap goal, in bytes,
	// kept in this process during the run as a query server keeps it (see
	// package gcfloor; CAIRN_GC_HEAP_FLOOR_MIB). Default: 0, none.
	GCHeapFloor uint64

	// Executable is the cairn binary run as `cairn bench-server` when the
	// query server runs in a process of its own. Default: this process's
	// executable.
	Executable string
	// ServerEnv is added to the query server process's environment, after
	// this process's own: "NAME=value" for each knob set for this command,
	// whatever its source. Default: none.
	ServerEnv []string

	// Stdout receives the report (Markdown). Default: discarded.
	Stdout io.Writer
	// Stderr receives the progress lines and the query server process's
	// logs; it must be safe for concurrent use. Default: discarded.
	Stderr io.Writer

	// OpenStore opens the store uri names (Store, with a key prefix of the
	// measurement's own for Redis), registering its metrics with reg.
	// Required.
	OpenStore func(ctx context.Context, uri string, reg prometheus.Registerer) (Store, error)
	// RedisConfig returns the Redis store's configuration for uri, with
	// the process's knobs, for the floor's client. Required for a Redis
	// or Valkey store.
	RedisConfig func(uri string) (redis.Config, error)
	// StartServer starts a query server in this process serving spec on
	// a loopback address, and returns that address and a function that
	// stops it. Required with InProcess.
	StartServer func(ctx context.Context, spec ServerSpec) (addr string, stop func() error, err error)
}

// DefaultOptions returns the options of `cairn bench` given no flags; the
// store and the seams are left to be set.
func DefaultOptions() Options {
	return Options{
		Entities:    1,
		Features:    50,
		Pool:        1000,
		Rate:        2000,
		Duration:    10 * time.Second,
		Slice:       time.Second,
		Warmup:      time.Second,
		MaxInFlight: DefaultMaxInFlight,
		SearchStep:  2 * time.Second,
		MaxRate:     100_000,
		LogLevel:    "warn",
	}
}

// Validate reports every problem with o at once, each naming its flag.
func (o *Options) Validate() error {
	var errs []error
	if o.Store == "" {
		errs = append(errs, errors.New("--store is required: the online store to measure (embedded:///dir, dynamodb:///table?region=R or redis://host:port/db)"))
	}
	if o.Entities < 1 || o.Entities > 10_000 {
		errs = append(errs, fmt.Errorf("--entities %d: want 1 to 10000 (the query server's limit)", o.Entities))
	}
	if o.Features < 1 || o.Features > 1000 {
		errs = append(errs, fmt.Errorf("--features %d: want 1 to 1000", o.Features))
	}
	if o.Ask < 0 || o.Ask > o.Features {
		errs = append(errs, fmt.Errorf("--ask %d: want 0 (all) to --features (%d)", o.Ask, o.Features))
	}
	if o.Pool < o.Entities || o.Pool > 1_000_000 {
		errs = append(errs, fmt.Errorf("--pool %d: want at least --entities (%d) and at most 1000000", o.Pool, o.Entities))
	}
	if !(o.Rate > 0) {
		errs = append(errs, fmt.Errorf("--rate %v: want more than 0", o.Rate))
	}
	if o.Slice <= 0 {
		errs = append(errs, fmt.Errorf("--slice %v: want more than 0", o.Slice))
	}
	if o.Duration < o.Slice {
		errs = append(errs, fmt.Errorf("--duration %v: want at least one slice (%v)", o.Duration, o.Slice))
	}
	if o.Warmup < 0 {
		errs = append(errs, fmt.Errorf("--warmup %v: want 0 or more", o.Warmup))
	}
	if o.MaxInFlight < 1 {
		errs = append(errs, fmt.Errorf("--max-in-flight %d: want 1 or more", o.MaxInFlight))
	}
	if o.FindMaxP99 < 0 {
		errs = append(errs, fmt.Errorf("--find-max-p99 %v: want a positive bound (or 0 for no search)", o.FindMaxP99))
	}
	if o.FindMaxP99 > 0 && o.SearchStep <= 0 {
		errs = append(errs, fmt.Errorf("--search-step %v: want more than 0", o.SearchStep))
	}
	if o.FindMaxP99 > 0 && !(o.MaxRate >= o.Rate) {
		errs = append(errs, fmt.Errorf("--max-rate %v: want at least --rate (%v)", o.MaxRate, o.Rate))
	}
	if o.OpenStore == nil {
		errs = append(errs, errors.New("bench: no OpenStore"))
	}
	if o.Security && o.InProcess {
		errs = append(errs, errors.New("--security with --in-process: the query servers of --security run in processes of their own"))
	}
	if o.Resolvers {
		if o.PGDSN == "" {
			errs = append(errs, errors.New("--resolvers needs --pg-dsn: the PostgreSQL (postgres://user@host:port/db) that the sql resolver of (f) queries"))
		}
		if o.InProcess {
			errs = append(errs, errors.New("--resolvers with --in-process: the query servers of --resolvers run in processes of their own"))
		}
		if o.Features < ResolvedFeatures {
			errs = append(errs, fmt.Errorf("--features %d with --resolvers: want at least %d, the features the resolvers compute", o.Features, ResolvedFeatures))
		}
		if o.Ask != 0 && o.Ask != o.Features {
			errs = append(errs, fmt.Errorf("--ask %d with --resolvers: want 0 (all), so that each query asks for the features the resolvers compute", o.Ask))
		}
	} else if o.PGDSN != "" {
		errs = append(errs, errors.New("--pg-dsn without --resolvers: it is only used by the sql resolver of --resolvers"))
	}
	if o.Formats && o.Security {
		errs = append(errs, errors.New("--formats with --security: with --formats, (a), (g) and (h) share one query server, whose CPU is attributed to them slice by slice; measure them in a run of their own"))
	}
	if o.Formats && o.Resolvers {
		errs = append(errs, errors.New("--formats with --resolvers: with --formats, (a), (g) and (h) share one query server, whose CPU is attributed to them slice by slice; measure them in a run of their own"))
	}
	if o.ServerProcs < 0 {
		errs = append(errs, fmt.Errorf("--server-procs %d: want 0 (Go's default) or more", o.ServerProcs))
	}
	if o.ServerProcs > 0 && o.InProcess {
		errs = append(errs, errors.New("--server-procs with --in-process: the query server shares this process's GOMAXPROCS"))
	}
	if o.Pin && o.InProcess {
		errs = append(errs, errors.New("--pin with --in-process: --pin puts the query servers' processes on other CPUs than this one's"))
	}
	if o.Pin && !pinSupported {
		errs = append(errs, errors.New("--pin: processes are pinned to CPUs on Linux only"))
	}
	if o.Metrics && o.InProcess {
		errs = append(errs, errors.New("--metrics with --in-process: the query servers of --metrics run in processes of their own"))
	}
	if o.Relay && o.InProcess {
		errs = append(errs, errors.New("--relay with --in-process: the relay of (r) is a process hop, measured against the query server's own process"))
	}
	if u, err := url.Parse(o.Store); o.Relay && o.Store != "" && (err != nil || !redis.IsURIScheme(u.Scheme)) {
		scheme := "?"
		if err == nil {
			scheme = u.Scheme
		}
		errs = append(errs, fmt.Errorf("--relay with a store of scheme %q: want a single Redis or Valkey server (redis://host:port/db), whose floor (b) the relay reads as it does", scheme))
	}
	if o.InProcess && o.StartServer == nil {
		errs = append(errs, errors.New("bench: --in-process without StartServer"))
	}
	if u, err := url.Parse(o.Store); err == nil && redis.IsURIScheme(u.Scheme) && o.RedisConfig == nil {
		errs = append(errs, errors.New("bench: a Redis store without RedisConfig"))
	}
	return errors.Join(errs...)
}

// path is one of the things measured side by side.
type path struct {
	name   string // (a), (b), …
	label  string
	target Target
	rounds []*Result
	// server is the query server process the path queries, if it has
	// one of its own.
	server *serverProcess
	// resolver is set for a path whose server computes features with a
	// resolver; calls are its cairn_resolver_calls_total by outcome,
	// read when the rounds end, or callsErr.
	resolver bool
	calls    map[string]float64
	callsErr error
	// answers, with Formats, records the path's answers (formats.go).
	answers *answerStats
	// cpuServer is the query server process that answers the path, its
	// own or one it shares with other paths (--formats); cpu is that
	// process's CPU time over the path's own slices, read from
	// /proc/PID/stat before and after each (cpu.go).
	cpuServer *serverProcess
	cpu       sliceCPU
	// tail is the runtime statistics of cpuServer and of this process
	// over the path's own slices (tail.go).
	tail tailStats
}

// setup is what a measurement measures, ready to be driven.
type setup struct {
	uri       string // the store's, with the measurement's own prefix
	ownPrefix bool
	http      *httpPath
	floor     *redisFloor // nil for stores other than Redis
	paths     []*path
	// closers run when the measurement ends, the last added first.
	closers []func()
	// cpuStart and cpuEnd frame the measured rounds.
	cpuStart, cpuEnd cpuSample
	// server is the plain query server's process; nil with InProcess.
	server *serverProcess
	// closeStore closes the store this process opened, once.
	closeStore func()
	// service is the http resolver's service of Resolvers, and
	// serviceCalls the calls it had answered when the rounds ended.
	service      *resolverService
	serviceCalls int64
	// broker is the Kafka broker of Metrics, and seen what its metrics
	// topic held once (i)'s server stopped.
	broker *metricsBroker
	seen   metricsSeen
	// pin is how the processes were pinned to CPUs with Pin.
	pin *pinning
}

func (b *setup) close() {
	for _, c := range slices.Backward(b.closers) {
		c()
	}
}

// MeasureQueries is `cairn bench`: it writes the entities, starts the
// query server, drives path (a), queries through the server's HTTP API,
// and for a Redis or Valkey store path (b), the store's bare round trip,
// in interleaved slices at a constant rate, and writes the report to
// o.Stdout. Everything it opened or started is closed or stopped when it
// returns, whether or not it succeeded.
func MeasureQueries(ctx context.Context, o Options) error {
	if err := o.Validate(); err != nil {
		return err
	}
	if o.Stdout == nil {
		o.Stdout = io.Discard
	}
	if o.Stderr == nil {
		o.Stderr = io.Discard
	}
	progress := func(format string, args ...any) { fmt.Fprintf(o.Stderr, format+"\n", args...) }

	var pin *pinning
	if o.Pin {
		var err error
		if pin, err = planPinning(); err != nil {
			return err
		}
		if o.ServerProcs == 0 {
			o.ServerProcs = len(pin.servers)
		}
		pin.serverProcs = o.ServerProcs
	}
	b, err := setUp(ctx, o, progress)
	if b != nil {
		defer b.close()
	}
	if err != nil {
		return err
	}
	if pin != nil {
		restore, err := pin.apply(b)
		if err != nil {
			return err
		}
		defer restore()
		b.pin = pin
		progress("pinned: %s", pin.describe())
	}

	if o.CPUProfile != "" && o.InProcess { // else the server process writes it
		stop, err := StartCPUProfile(o.CPUProfile)
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		defer stop()
	}
	if o.Trace != "" && o.InProcess {
		stop, err := StartTrace(o.Trace)
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		defer stop()
	}
	if o.MemProfile != "" && o.InProcess {
		defer func() {
			if err := WriteHeapProfile(o.MemProfile); err != nil {
				progress("%v", err)
			}
		}()
	}
	load := func(rate float64, d time.Duration) Load {
		return Load{Rate: rate, Duration: d, MaxInFlight: o.MaxInFlight}
	}

	if o.Warmup > 0 {
		for _, p := range b.paths {
			progress("warm-up %v at %v q/s: %s", o.Warmup, o.Rate, p.label)
			res, err := Run(ctx, load(o.Rate, o.Warmup), p.target)
			if err != nil {
				return err
			}
			if res.Errors > 0 {
				return fmt.Errorf("bench: warm-up of %s: %d errors, the first: %w", p.label, res.Errors, res.FirstError)
			}
		}
	}

	rate := o.Rate
	var search []Step
	if o.FindMaxP99 > 0 {
		progress("searching the highest rate at which (a) keeps p99 ≤ %v, from %v q/s, %v per step", o.FindMaxP99, o.Rate, o.SearchStep)
		best, err := FindMaxRate(ctx, Search{
			Start: o.Rate, MaxRate: o.MaxRate, Step: o.SearchStep, Bound: o.FindMaxP99, MaxInFlight: o.MaxInFlight,
			Progress: func(s Step) {
				search = append(search, s)
				progress("  %8.0f q/s: %s p99 %s, %d errors: %s", s.Rate, achieved(s.Result), fmtMS(s.Latency), s.Result.Errors, passWord(s.Pass))
			},
		}, b.http.call)
		printSearch(o.Stdout, o, search)
		if err != nil {
			return err
		}
		rate = best.Rate
		progress("highest rate with p99 ≤ %v: %v q/s; measuring both paths at it", o.FindMaxP99, rate)
	}

	rounds := int(o.Duration / o.Slice)
	b.cpuStart = b.sampleCPU(ctx)
	for r := range rounds {
		order := slices.Clone(b.paths)
		if r%2 == 1 {
			slices.Reverse(order) // neither path always goes first
		}
		for _, p := range order {
			var before, after float64
			var okBefore, okAfter bool
			var srvBefore RuntimeStats
			var srvErr error
			if p.cpuServer != nil {
				srvBefore, srvErr = p.cpuServer.runtime(ctx)
				before, okBefore = processTicks(fmt.Sprintf("/proc/%d/stat", p.cpuServer.pid()))
			}
			serverPID := 0
			if p.cpuServer != nil {
				serverPID = p.cpuServer.pid()
			}
			genBefore, queueBefore := ReadRuntime(), startQueue(serverPID)
			res, err := Run(ctx, load(rate, o.Slice), p.target)
			if err != nil {
				return err
			}
			p.tail.addQueue(queueBefore, serverPID)
			p.tail.gen.add(ReadRuntime().sub(genBefore))
			if p.cpuServer != nil {
				after, okAfter = processTicks(fmt.Sprintf("/proc/%d/stat", p.cpuServer.pid()))
				p.cpu.add(before, after, okBefore, okAfter, res.Count)
				p.tail.addServer(ctx, p.cpuServer, srvBefore, srvErr)
			}
			p.rounds = append(p.rounds, res)
			s := res.Latency.Summary()
			progress("round %d/%d %s %s  p50 %s  p99 %s  max %s  errors %d", r+1, rounds, p.name, achieved(res),
				fmtMS(s.P50), fmtMS(s.P99), fmtMS(s.Max), res.Errors)
		}
	}
	b.cpuEnd = b.sampleCPU(ctx)
	b.readResolverCalls(ctx)
	b.readMetrics(ctx)
	printReport(o.Stdout, o, b, rate)
	return nil
}

// setUp opens the store, writes the entities, starts the query server and
// prepares both paths. The setup it returns, even with an error, must be
// closed.
func setUp(ctx context.Context, o Options, progress func(string, ...any)) (*setup, error) {
	reg, err := Registry(o.Features)
	if err != nil {
		return nil, err
	}
	ns, _ := reg.Namespace(Namespace)
	feats := ns.Features[1:] // the primary key first
	asked := feats
	if o.Ask > 0 {
		asked = feats[:o.Ask]
	}

	b := &setup{}
	if b.uri, b.ownPrefix, err = storeURI(o.Store); err != nil {
		return nil, err
	}
	keys := make([]string, o.Pool)
	for i := range keys {
		keys[i] = fmt.Sprintf("e%07d", i)
	}
	if o.Resolvers {
		// First, so that a PostgreSQL out of reach stops the run before
		// anything else is written or started.
		start := time.Now()
		first := len(feats) - ResolvedFeatures
		if err := seedResolvedTable(ctx, o.PGDSN, keys, feats[first:], first); err != nil {
			return b, err
		}
		progress("wrote %d rows × %d columns into %s in %v", len(keys), ResolvedFeatures, ResolvedTable, time.Since(start).Round(time.Millisecond))
	}
	prom := prometheus.NewRegistry()
	// The collector is set up as serve's: this process runs the load
	// generator (and with InProcess the query server), whose collections
	// would otherwise count in both paths' latencies.
	b.closers = append(b.closers, gcfloor.Start(o.GCHeapFloor, prom).Stop)
	st, err := o.OpenStore(ctx, b.uri, prom)
	if err != nil {
		return b, err // b's closers stop the floor
	}
	var closeStore sync.Once
	b.closeStore = func() { closeStore.Do(func() { st.Close() }) }
	b.closers = append(b.closers, b.closeStore)

	start := time.Now()
	if err := seed(ctx, st, ns, feats, keys, progress); err != nil {
		return b, err
	}
	progress("wrote %d entities × %d features in %v", len(keys), len(feats), time.Since(start).Round(time.Millisecond))

	if u, _ := url.Parse(b.uri); redis.IsURIScheme(u.Scheme) {
		cfg, err := o.RedisConfig(b.uri)
		if err != nil {
			return b, err
		}
		if b.floor, err = newRedisFloor(ctx, cfg, ns, asked); err != nil {
			return b, err
		}
		fl := b.floor
		b.closers = append(b.closers, fl.close)
		if b.ownPrefix {
			// Not with the run's context: an interrupted run still
			// cleans up.
			b.closers = append(b.closers, func() {
				cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
				defer cancel()
				if err := fl.deleteAll(cctx, keys); err != nil {
					progress("could not delete the benchmark's keys (prefix %s): %v", cfg.KeyPrefix, err)
				}
			})
		}
	}

	addr, err := b.startServer(ctx, o, reg, st, prom)
	if err != nil {
		return b, err
	}
	sets := requests(keys, o.Entities, asked)
	plain := plainVariant()
	b.http = newHTTPPath(addr, plain, sets, o.MaxInFlight)
	b.closers = append(b.closers, b.http.close)

	if err := b.http.check(ctx, len(asked)); err != nil {
		return b, err
	}
	b.paths = []*path{{name: plain.name, label: plain.label, target: b.http.call, server: b.server, cpuServer: b.server}}
	if o.Formats {
		b.http.answers = &answerStats{}
		b.paths[0].answers = b.http.answers
	}
	if b.floor != nil {
		b.floor.use(sets)
		if err := b.floor.call(ctx); err != nil {
			return b, fmt.Errorf("bench: floor: %w", err)
		}
		b.paths = append(b.paths, &path{name: "(b)", label: "(b) floor: bare " + b.floor.describe(o.Entities), target: b.floor.call})
	}
	if o.Formats {
		// On (a)'s server: the answer form is chosen per request.
		for _, v := range formatVariants() {
			h := newHTTPPath(addr, v, sets, o.MaxInFlight)
			b.closers = append(b.closers, h.close)
			if err := h.post(ctx, checkAnswer); err != nil {
				return b, fmt.Errorf("bench: first query of %s: %w", v.name, err)
			}
			h.answers = &answerStats{}
			b.paths = append(b.paths, &path{name: v.name, label: v.label, target: h.call, answers: h.answers, cpuServer: b.server})
		}
	}
	if o.Relay {
		if err := b.startRelay(ctx, o, sets, progress); err != nil {
			return b, err
		}
	}
	if o.Metrics {
		if err := b.startMetrics(ctx, o, sets, len(asked), progress); err != nil {
			return b, err
		}
	}
	if o.Security {
		dir, err := os.MkdirTemp("", "cairn-bench-")
		if err != nil {
			return b, fmt.Errorf("bench: %w", err)
		}
		b.closers = append(b.closers, func() { os.RemoveAll(dir) })
		variants, err := securityVariants(dir)
		if err != nil {
			return b, err
		}
		for _, v := range variants {
			progress("starting the query server of %s", v.label)
			if _, err := b.addServerPath(ctx, o, v, sets, len(asked)); err != nil {
				return b, err
			}
		}
	}
	if o.Resolvers {
		if err := b.startResolvers(ctx, o, feats, sets, progress); err != nil {
			return b, err
		}
	}
	return b, nil
}

// startRelay starts the relay process of (r) and adds its path, after
// (b)'s: the relay makes the floor's reads, so the floor must make them
// with the store's raw reads (a single server).
func (b *setup) startRelay(ctx context.Context, o Options, sets []requestSet, progress func(string, ...any)) error {
	if b.floor == nil || b.floor.raw == nil {
		return errors.New("--relay: the store is a Redis cluster, whose floor reads through go-redis: want a single Redis or Valkey server, read with the store's raw reads")
	}
	v := relayVariant(o.Ask, b.floor.describe(o.Entities))
	progress("starting the relay process of %s", v.label)
	_, err := b.addProcessPath(ctx, o, v, relaySets(sets), (*httpPath).call)
	return err
}

// startMetrics starts the Kafka broker of Metrics and the query server
// of (i), and adds its path.
func (b *setup) startMetrics(ctx context.Context, o Options, sets []requestSet, asked int, progress func(string, ...any)) error {
	br, err := startMetricsBroker(ctx, o.Kafka)
	if err != nil {
		return err
	}
	b.broker = br
	b.closers = append(b.closers, br.close) // after the server's stop
	interval := o.MetricsInterval
	if interval == 0 {
		interval = 10 * time.Second
	}
	v := metricsVariant(br.cfg.Brokers, interval)
	progress("starting the query server of %s, on the broker at %s", v.label, strings.Join(br.cfg.Brokers, ","))
	_, err = b.addServerPath(ctx, o, v, sets, asked)
	return err
}

// addServerPath starts a query server process of variant v, checks that it
// answers the queries of sets with asked features, and adds its path.
func (b *setup) addServerPath(ctx context.Context, o Options, v serverVariant, sets []requestSet, asked int) (*path, error) {
	return b.addProcessPath(ctx, o, v, sets, func(h *httpPath, ctx context.Context) error { return h.check(ctx, asked) })
}

// addProcessPath starts a `cairn bench-server` process of variant v,
// checks with first that it answers the requests of sets, and adds its
// path.
func (b *setup) addProcessPath(ctx context.Context, o Options, v serverVariant, sets []requestSet, first func(*httpPath, context.Context) error) (*path, error) {
	vo := o
	vo.CPUProfile, vo.MemProfile, vo.Trace = "", "", "" // the plain server's only
	p, err := startServerProcess(ctx, vo, b.uri, v)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", v.name, err)
	}
	b.closers = append(b.closers, p.stop)
	h := newHTTPPath(p.addr, v, sets, o.MaxInFlight)
	b.closers = append(b.closers, h.close)
	if err := first(h, ctx); err != nil {
		return nil, fmt.Errorf("%s: first request: %w", v.name, err)
	}
	pa := &path{name: v.name, label: v.label, target: h.call, server: p, cpuServer: p}
	b.paths = append(b.paths, pa)
	return pa, nil
}

// readMetrics stops (i)'s query server, which sends its last record,
// and reads the records of the metrics topic.
func (b *setup) readMetrics(ctx context.Context) {
	if b.broker == nil {
		return
	}
	for _, p := range b.paths {
		if p.name == "(i)" {
			p.server.stop()
		}
	}
	b.seen = b.broker.read(ctx)
}

// startResolvers starts the http resolver's service and the query
// servers of (e) and (f), and adds their paths; the sql resolver's table
// is filled already.
func (b *setup) startResolvers(ctx context.Context, o Options, feats []*feature.Feature, sets []requestSet, progress func(string, ...any)) error {
	first := len(feats) - ResolvedFeatures
	svc, err := startResolverService(feats[first:], first)
	if err != nil {
		return err
	}
	b.service = svc
	b.closers = append(b.closers, svc.close)
	for _, v := range resolverVariants(o, svc.url) {
		progress("starting the query server of %s", v.label)
		pa, err := b.addServerPath(ctx, o, v, sets, len(feats))
		if err != nil {
			return err
		}
		pa.resolver = true
	}
	return nil
}

// readResolverCalls reads, from each resolver path's query server, the
// calls its resolver made, for the report.
func (b *setup) readResolverCalls(ctx context.Context) {
	for _, p := range b.paths {
		if p.resolver {
			p.calls, p.callsErr = resolverCalls(ctx, p.server.addr)
		}
	}
	if b.service != nil {
		b.serviceCalls = b.service.calls.Load()
	}
}

// startServer starts the query server, in a process of its own unless
// o.InProcess, and returns its address.
func (b *setup) startServer(ctx context.Context, o Options, reg *feature.Registry, st Store, prom prometheus.Registerer) (string, error) {
	if !o.InProcess {
		// The store was opened here to write the entities; the server
		// opens its own (an embedded store admits one process at a time).
		b.closeStore()
		p, err := startServerProcess(ctx, o, b.uri, plainVariant())
		if err != nil {
			return "", err
		}
		b.server = p
		b.closers = append(b.closers, p.stop)
		return p.addr, nil
	}
	addr, stop, err := o.StartServer(ctx, ServerSpec{Registry: reg, Store: st, Metrics: prom})
	if err != nil {
		return "", err
	}
	b.closers = append(b.closers, func() { _ = stop() })
	return addr, nil
}
