package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	goredis "github.com/redis/go-redis/v9"

	"github.com/cairnfs/cairn/internal/api"
	"github.com/cairnfs/cairn/internal/bench"
	"github.com/cairnfs/cairn/internal/config"
	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/gcfloor"
	"github.com/cairnfs/cairn/internal/node"
	"github.com/cairnfs/cairn/internal/query"
	"github.com/cairnfs/cairn/internal/store"
	"github.com/cairnfs/cairn/internal/store/redis"
)

// benchNamespace is the namespace the benchmark declares and seeds.
const benchNamespace = "bench"

// benchRequestSets is how many distinct queries the benchmark prepares;
// requests cycle through them.
const benchRequestSets = 1024

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
  (b) for a Redis or Valkey store, a bare go-redis client making the same
      round trip the store makes, the same command per entity (HGETALL
      when every feature is asked, HMGET otherwise), pipelined, its
      replies read raw. Other stores have no floor.

Requests fall due at a constant rate whether or not earlier ones have been
answered, and latency runs from when each fell due, so a stall is counted
in full. The query server runs in a process of its own (cairn bench-server,
or in this one with --in-process); the load generator and the floor's
client run in this one, on the same CPUs. The report (Markdown) goes to standard output, progress to
standard error.

A Redis URI without a prefix parameter gets a fresh prefix, whose keys are
deleted afterwards; with one, the keys are left. Embedded and DynamoDB
stores keep what was written.

Flags:
`

// benchFlags are the flags of `cairn bench`.
type benchFlags struct {
	store       string
	entities    int
	features    int
	ask         int
	pool        int
	rate        float64
	duration    time.Duration
	slice       time.Duration
	warmup      time.Duration
	maxInFlight int
	findMaxP99  time.Duration
	searchStep  time.Duration
	maxRate     float64
	cpuProfile  string
	memProfile  string
	inProcess   bool
	logLevel    string
}

func (f *benchFlags) register(fs *flag.FlagSet, env *config.Env) {
	fs.StringVar(&f.store, "store", env.String("CAIRN_ONLINE_STORE"), "online store URI (CAIRN_ONLINE_STORE)")
	fs.IntVar(&f.entities, "entities", 1, "entities per query")
	fs.IntVar(&f.features, "features", 50, "features per entity")
	fs.IntVar(&f.ask, "ask", 0, "features each query asks for, the first of the namespace (0: all of them)")
	fs.IntVar(&f.pool, "pool", 1000, "entities written, from which each query draws its entities")
	fs.Float64Var(&f.rate, "rate", 2000, "queries per second; with --find-max-p99, the search's first rate")
	fs.DurationVar(&f.duration, "duration", 10*time.Second, "measuring time of each path, in slices of --slice")
	fs.DurationVar(&f.slice, "slice", time.Second, "length of one slice; the paths alternate slice by slice")
	fs.DurationVar(&f.warmup, "warmup", time.Second, "unmeasured run of each path before the first slice")
	fs.IntVar(&f.maxInFlight, "max-in-flight", bench.DefaultMaxInFlight, "most requests outstanding at once, per path")
	fs.DurationVar(&f.findMaxP99, "find-max-p99", 0, "first search the highest rate at which (a) keeps p99 within this bound, then measure both paths at it")
	fs.DurationVar(&f.searchStep, "search-step", 2*time.Second, "length of each run of the search")
	fs.Float64Var(&f.maxRate, "max-rate", 100_000, "highest rate the search tries")
	fs.StringVar(&f.cpuProfile, "cpuprofile", "", "write a CPU profile of the query server (with --in-process, of this whole process) to this file")
	fs.StringVar(&f.memProfile, "memprofile", "", "write a heap profile (allocations and memory in use) to this file when the runs end")
	fs.BoolVar(&f.inProcess, "in-process", false, "run the query server in this process, beside the load generator, instead of in a process of its own")
	fs.StringVar(&f.logLevel, "log-level", "warn", "log level: debug, info, warn, error")
}

// validate reports every problem with the flags at once.
func (f *benchFlags) validate() error {
	var errs []error
	if f.store == "" {
		errs = append(errs, errors.New("--store is required: the online store to measure (embedded:///dir, dynamodb:///table?region=R or redis://host:port/db)"))
	}
	if f.entities < 1 || f.entities > 10_000 {
		errs = append(errs, fmt.Errorf("--entities %d: want 1 to 10000 (the query server's limit)", f.entities))
	}
	if f.features < 1 || f.features > 1000 {
		errs = append(errs, fmt.Errorf("--features %d: want 1 to 1000", f.features))
	}
	if f.ask < 0 || f.ask > f.features {
		errs = append(errs, fmt.Errorf("--ask %d: want 0 (all) to --features (%d)", f.ask, f.features))
	}
	if f.pool < f.entities || f.pool > 1_000_000 {
		errs = append(errs, fmt.Errorf("--pool %d: want at least --entities (%d) and at most 1000000", f.pool, f.entities))
	}
	if !(f.rate > 0) {
		errs = append(errs, fmt.Errorf("--rate %v: want more than 0", f.rate))
	}
	if f.slice <= 0 {
		errs = append(errs, fmt.Errorf("--slice %v: want more than 0", f.slice))
	}
	if f.duration < f.slice {
		errs = append(errs, fmt.Errorf("--duration %v: want at least one slice (%v)", f.duration, f.slice))
	}
	if f.warmup < 0 {
		errs = append(errs, fmt.Errorf("--warmup %v: want 0 or more", f.warmup))
	}
	if f.maxInFlight < 1 {
		errs = append(errs, fmt.Errorf("--max-in-flight %d: want 1 or more", f.maxInFlight))
	}
	if f.findMaxP99 < 0 {
		errs = append(errs, fmt.Errorf("--find-max-p99 %v: want a positive bound (or 0 for no search)", f.findMaxP99))
	}
	if f.findMaxP99 > 0 && f.searchStep <= 0 {
		errs = append(errs, fmt.Errorf("--search-step %v: want more than 0", f.searchStep))
	}
	if f.findMaxP99 > 0 && !(f.maxRate >= f.rate) {
		errs = append(errs, fmt.Errorf("--max-rate %v: want at least --rate (%v)", f.maxRate, f.rate))
	}
	return errors.Join(errs...)
}

// benchPath is one of the two things measured side by side.
type benchPath struct {
	name   string // (a) or (b)
	label  string
	target bench.Target
	rounds []*bench.Result
}

// benchSetup is what a benchmark measures, ready to be driven.
type benchSetup struct {
	uri       string // the store's, with the benchmark's own prefix
	ownPrefix bool
	http      *httpPath
	floor     *redisFloor // nil for stores other than Redis
	paths     []*benchPath
	// closers run when the benchmark ends, the last added first.
	closers []func()
	// cpuStart and cpuEnd frame the measured rounds.
	cpuStart, cpuEnd cpuSample
	// gcFloor is CAIRN_GC_HEAP_FLOOR_MIB, in bytes.
	gcFloor uint64
	// server is the query server's process; nil with --in-process.
	server *serverProcess
	// stderr receives the server process's logs.
	stderr io.Writer
	// closeStore closes the store this process opened, once.
	closeStore func()
}

func (b *benchSetup) close() {
	for _, c := range slices.Backward(b.closers) {
		c()
	}
}

func runBench(ctx context.Context, args []string, env *config.Env, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench", stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), benchUsage)
		fs.PrintDefaults()
	}
	var f benchFlags
	f.register(fs, env)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bench: unexpected arguments %q", fs.Args())
	}
	// Progress, logs and the server process's logs share stderr.
	stderr = &lockedWriter{w: stderr}
	if err := errors.Join(f.validate(), checkBenchKnobs(env, f)); err != nil {
		return err
	}
	log, err := newLogger(stderr, f.logLevel)
	if err != nil {
		return err
	}
	progress := func(format string, args ...any) { fmt.Fprintf(stderr, format+"\n", args...) }

	b, err := setUpBench(ctx, f, env, log, stderr, progress)
	if b != nil {
		defer b.close()
	}
	if err != nil {
		return err
	}

	if f.cpuProfile != "" && f.inProcess { // else the server process writes it
		stop, err := startCPUProfile(f.cpuProfile)
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		defer stop()
	}
	if f.memProfile != "" && f.inProcess {
		defer func() {
			if err := writeHeapProfile(f.memProfile); err != nil {
				progress("%v", err)
			}
		}()
	}
	load := func(rate float64, d time.Duration) bench.Load {
		return bench.Load{Rate: rate, Duration: d, MaxInFlight: f.maxInFlight}
	}

	if f.warmup > 0 {
		for _, p := range b.paths {
			progress("warm-up %v at %v q/s: %s", f.warmup, f.rate, p.label)
			res, err := bench.Run(ctx, load(f.rate, f.warmup), p.target)
			if err != nil {
				return err
			}
			if res.Errors > 0 {
				return fmt.Errorf("bench: warm-up of %s: %d errors, the first: %w", p.label, res.Errors, res.FirstError)
			}
		}
	}

	rate := f.rate
	var search []bench.Step
	if f.findMaxP99 > 0 {
		progress("searching the highest rate at which (a) keeps p99 ≤ %v, from %v q/s, %v per step", f.findMaxP99, f.rate, f.searchStep)
		best, err := bench.FindMaxRate(ctx, bench.Search{
			Start: f.rate, MaxRate: f.maxRate, Step: f.searchStep, Bound: f.findMaxP99, MaxInFlight: f.maxInFlight,
			Progress: func(s bench.Step) {
				search = append(search, s)
				progress("  %8.0f q/s: %s p99 %s, %d errors: %s", s.Rate, achieved(s.Result), fmtMS(s.Latency), s.Result.Errors, passWord(s.Pass))
			},
		}, b.http.call)
		printSearch(stdout, f, search)
		if err != nil {
			return err
		}
		rate = best.Rate
		progress("highest rate with p99 ≤ %v: %v q/s; measuring both paths at it", f.findMaxP99, rate)
	}

	rounds := int(f.duration / f.slice)
	b.cpuStart = b.sampleCPU(ctx)
	for r := range rounds {
		order := slices.Clone(b.paths)
		if r%2 == 1 {
			slices.Reverse(order) // neither path always goes first
		}
		for _, p := range order {
			res, err := bench.Run(ctx, load(rate, f.slice), p.target)
			if err != nil {
				return err
			}
			p.rounds = append(p.rounds, res)
			s := res.Latency.Summary()
			progress("round %d/%d %s %s  p50 %s  p99 %s  max %s  errors %d", r+1, rounds, p.name, achieved(res),
				fmtMS(s.P50), fmtMS(s.P99), fmtMS(s.Max), res.Errors)
		}
	}
	b.cpuEnd = b.sampleCPU(ctx)
	printBench(stdout, f, b, rate)
	return nil
}

// setUpBench opens the store, writes the entities, starts the query
// server and prepares both paths. The setup it returns, even with an
// error, must be closed.
func setUpBench(ctx context.Context, f benchFlags, env *config.Env, log *slog.Logger, stderr io.Writer, progress func(string, ...any)) (*benchSetup, error) {
	reg, err := benchRegistry(f.features)
	if err != nil {
		return nil, err
	}
	ns, _ := reg.Namespace(benchNamespace)
	feats := ns.Features[1:] // the primary key first
	asked := feats
	if f.ask > 0 {
		asked = feats[:f.ask]
	}

	b := &benchSetup{stderr: stderr}
	if b.uri, b.ownPrefix, err = benchStoreURI(f.store); err != nil {
		return nil, err
	}
	prom := prometheus.NewRegistry()
	// The collector is set up as serve's: this process runs the load
	// generator (and with --in-process the query server), whose
	// collections would otherwise count in both paths' latencies.
	cfg, err := node.Load(node.BenchServer, env, node.Flags{Store: b.uri, Registry: reg})
	if err != nil {
		return nil, err
	}
	if _, set := env.Value("DYNAMODB_CREATE_TABLES_IF_NOT_EXISTS"); !set {
		cfg.Store.CreateDynamoTable = true
	}
	floor := cfg.GCHeapFloor
	b.gcFloor = floor
	b.closers = append(b.closers, gcfloor.Start(floor, prom).Stop)
	st, err := node.OpenStore(ctx, cfg.Store, prom, log)
	if err != nil {
		return b, err // b's closers stop the floor
	}
	var closeStore sync.Once
	b.closeStore = func() { closeStore.Do(func() { st.Close() }) }
	b.closers = append(b.closers, b.closeStore)

	keys := make([]string, f.pool)
	for i := range keys {
		keys[i] = fmt.Sprintf("e%07d", i)
	}
	start := time.Now()
	if err := benchSeed(ctx, st, ns, feats, keys, progress); err != nil {
		return b, err
	}
	progress("wrote %d entities × %d features in %v", len(keys), len(feats), time.Since(start).Round(time.Millisecond))

	if u, _ := url.Parse(b.uri); redis.IsURIScheme(u.Scheme) {
		if b.floor, err = newRedisFloor(ctx, cfg.Store.Redis, ns, asked); err != nil {
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
					progress("could not delete the benchmark's keys (prefix %s): %v", cfg.Store.Redis.KeyPrefix, err)
				}
			})
		}
	}

	addr, err := b.startServer(ctx, f, env, st, prom, log)
	if err != nil {
		return b, err
	}
	sets := benchRequests(keys, f.entities, asked)
	b.http = newHTTPPath(addr, sets, f.maxInFlight)
	b.closers = append(b.closers, b.http.close)

	if err := b.http.check(ctx, len(asked)); err != nil {
		return b, err
	}
	b.paths = []*benchPath{{name: "(a)", label: "(a) HTTP: POST /v1/query/online", target: b.http.call}}
	if b.floor != nil {
		b.floor.sets = sets
		if err := b.floor.call(ctx); err != nil {
			return b, fmt.Errorf("bench: floor: %w", err)
		}
		b.paths = append(b.paths, &benchPath{name: "(b)", label: "(b) floor: bare go-redis " + b.floor.describe(f.entities), target: b.floor.call})
	}
	return b, nil
}

// checkBenchKnobs checks the knobs of the benchmark's query server.
func checkBenchKnobs(env *config.Env, f benchFlags) error {
	reg, err := benchRegistry(f.features)
	if err != nil {
		return err
	}
	_, err = node.Load(node.BenchServer, env, node.Flags{Store: f.store, Registry: reg})
	return err
}

// startServer starts the query server, in a process of its own unless
// f.inProcess, and returns its address.
func (b *benchSetup) startServer(ctx context.Context, f benchFlags, env *config.Env, st node.Store, prom *prometheus.Registry, log *slog.Logger) (string, error) {
	if !f.inProcess {
		// The store was opened here to write the entities; the server
		// opens its own (an embedded store admits one process at a time).
		b.closeStore()
		p, err := startServerProcess(ctx, f, b.uri, env, b.stderr)
		if err != nil {
			return "", err
		}
		b.server = p
		b.closers = append(b.closers, p.stop)
		return p.addr, nil
	}
	reg, err := benchRegistry(f.features)
	if err != nil {
		return "", err
	}
	server, err := api.New(api.Config{}, reg, query.NewEngine(st, prom, nil), nil, nil, prom, log)
	if err != nil {
		return "", err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("bench: listen: %w", err)
	}
	srv := &http.Server{Handler: server.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	b.closers = append(b.closers, func() { srv.Close() })
	return ln.Addr().String(), nil
}

// benchRegistry declares namespace bench: a string primary key and n
// features cycling through the plain types.
func benchRegistry(n int) (*feature.Registry, error) {
	types := []string{"int", "float", "string", "bool", "datetime", "float", "int", "string", "bytes", "int"}
	var y strings.Builder
	fmt.Fprintf(&y, "namespaces:\n- name: %s\n  primary_key: id\n  features:\n    id: string\n", benchNamespace)
	for i := range n {
		fmt.Fprintf(&y, "    f%03d: %s\n", i, types[i%len(types)])
	}
	return feature.Parse("bench", []byte(y.String()))
}

// benchValue is the value of feature j of entity i, canonical for t.
func benchValue(t feature.Type, i, j int) any {
	switch t.Kind {
	case feature.KindInt:
		return int64(i*1000 + j)
	case feature.KindFloat:
		return float64(i) + float64(j)/7
	case feature.KindString:
		return fmt.Sprintf("value %d of entity %d", j, i)
	case feature.KindBool:
		return (i+j)%2 == 0
	case feature.KindDatetime:
		return time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i*60+j) * time.Second)
	case feature.KindBytes:
		return []byte{byte(i), byte(i >> 8), byte(j), 0xca, 0x1e}
	}
	return nil
}

// benchSeed writes every feature of every key through the store's Write,
// in batches.
func benchSeed(ctx context.Context, st node.Store, ns *feature.Namespace, feats []*feature.Feature, keys []string, progress func(string, ...any)) error {
	const batch = 100
	at := time.Now().UTC()
	lastReport := time.Now()
	for lo := 0; lo < len(keys); lo += batch {
		ws := make([]store.EntityWrite, 0, batch)
		for i := lo; i < min(lo+batch, len(keys)); i++ {
			w := store.EntityWrite{Namespace: ns, Key: keys[i], Values: make([]store.Value, len(feats))}
			for j, f := range feats {
				w.Values[j] = store.Value{Feature: f, Value: benchValue(f.Type, i, j), ObservedAt: at}
			}
			ws = append(ws, w)
		}
		if err := st.Write(ctx, ws); err != nil {
			return fmt.Errorf("bench: write entities %d to %d: %w", lo, lo+len(ws)-1, err)
		}
		if time.Since(lastReport) > time.Second {
			progress("writing entities: %d of %d", lo+len(ws), len(keys))
			lastReport = time.Now()
		}
	}
	return nil
}

// benchStoreURI returns the store URI to use: a Redis URI without a key
// prefix gets a fresh one (ownPrefix), so that the benchmark neither
// touches nor leaves behind anything else's keys.
func benchStoreURI(uri string) (_ string, ownPrefix bool, _ error) {
	u, err := url.Parse(uri)
	if err != nil {
		return "", false, fmt.Errorf("store URI %q: %w", uri, err)
	}
	if !redis.IsURIScheme(u.Scheme) {
		return uri, false, nil
	}
	q := u.Query()
	if q.Has("prefix") {
		return uri, false, nil
	}
	q.Set("prefix", "cairn-bench-"+strconv.FormatInt(time.Now().UnixNano(), 36)+":")
	u.RawQuery = q.Encode()
	return u.String(), true, nil
}

// requestSet is one query: its entities and its HTTP body.
type requestSet struct {
	keys []string
	body []byte
}

// benchRequests prepares benchRequestSets queries of n distinct keys each,
// drawn from keys with a fixed seed, asking for every feature of feats.
func benchRequests(keys []string, n int, feats []*feature.Feature) []requestSet {
	outputs := make([]string, len(feats))
	for i, f := range feats {
		outputs[i] = f.FQN
	}
	rng := rand.New(rand.NewPCG(1, 2))
	sets := make([]requestSet, benchRequestSets)
	for i := range sets {
		idx := rng.Perm(len(keys))[:n]
		ks := make([]string, n)
		for j, k := range idx {
			ks[j] = keys[k]
		}
		var input any = ks
		if n == 1 {
			input = ks[0]
		}
		body, _ := json.Marshal(map[string]any{
			"inputs":  map[string]any{benchNamespace + ".id": input},
			"outputs": outputs,
		})
		sets[i] = requestSet{keys: ks, body: body}
	}
	return sets
}

// httpPath is path (a): queries to the query server, over HTTP/1.1
// keep-alive connections of its own. net/http's client runs a reader and a
// writer goroutine per connection and hands every request and answer
// between them; this lean client does neither, so that the generator adds
// as little as it can to what it measures.
type httpPath struct {
	addr string
	sets []requestSet
	next atomic.Uint64
	// idle holds the open connections not carrying a request.
	idle chan *httpConn
}

// httpConn is one connection of an httpPath.
type httpConn struct {
	conn net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	body bytes.Buffer
	// statusCode is the status of the last answer.
	statusCode int
}

// httpTimeout bounds one request of path (a).
const httpTimeout = 10 * time.Second

func newHTTPPath(addr string, sets []requestSet, maxInFlight int) *httpPath {
	return &httpPath{addr: addr, sets: sets, idle: make(chan *httpConn, maxInFlight)}
}

// close closes the idle connections.
func (h *httpPath) close() {
	for {
		select {
		case c := <-h.idle:
			c.conn.Close()
		default:
			return
		}
	}
}

// post sends the body of the next query on an idle connection (or a new
// one) and hands the answer's status and body to check, whose error it
// returns.
func (h *httpPath) post(ctx context.Context, check func(status int, body []byte) error) error {
	var c *httpConn
	select {
	case c = <-h.idle:
	default:
		conn, err := (&net.Dialer{Timeout: httpTimeout}).DialContext(ctx, "tcp", h.addr)
		if err != nil {
			return fmt.Errorf("connect to the query server: %w", err)
		}
		c = &httpConn{conn: conn, br: bufio.NewReaderSize(conn, 64<<10), bw: bufio.NewWriterSize(conn, 16<<10)}
	}
	keep, err := c.roundTrip(ctx, h.addr, h.sets[h.next.Add(1)%uint64(len(h.sets))].body)
	if err != nil {
		err = fmt.Errorf("POST /v1/query/online: %w", err)
	} else {
		err = check(c.statusCode, c.body.Bytes())
	}
	if !keep {
		c.conn.Close()
		return err
	}
	select {
	case h.idle <- c:
	default:
		c.conn.Close()
	}
	return err
}

// roundTrip sends one query and reads its answer into c.body, reporting
// whether the connection can carry another.
func (c *httpConn) roundTrip(ctx context.Context, host string, body []byte) (keep bool, _ error) {
	deadline := time.Now().Add(httpTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := c.conn.SetDeadline(deadline); err != nil {
		return false, err
	}
	stop := context.AfterFunc(ctx, func() { _ = c.conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	fmt.Fprintf(c.bw, "POST /v1/query/online HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", host, len(body))
	c.bw.Write(body) // an error sticks, and Flush returns it
	if err := c.bw.Flush(); err != nil {
		return false, err
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return false, err
	}
	c.body.Reset()
	_, err = c.body.ReadFrom(resp.Body)
	resp.Body.Close()
	if err != nil {
		return false, fmt.Errorf("read the answer: %w", err)
	}
	c.statusCode = resp.StatusCode
	return !resp.Close, nil
}

// errorsNone is in every query answer without errors.
var errorsNone = []byte(`"errors":[]`)

// call is one request of path (a): a query whose answer must carry no
// errors. The values are not decoded: the client's work stays small.
func (h *httpPath) call(ctx context.Context) error {
	return h.post(ctx, func(status int, body []byte) error {
		if status != http.StatusOK {
			return fmt.Errorf("HTTP %d: %.300s", status, body)
		}
		if !bytes.Contains(body, errorsNone) {
			return fmt.Errorf("query answered errors: %.300s", body)
		}
		return nil
	})
}

// check makes one query and checks that every value asked for came back,
// so that the benchmark measures reads of stored data.
func (h *httpPath) check(ctx context.Context, nfeats int) error {
	err := h.post(ctx, func(status int, body []byte) error {
		if status != http.StatusOK {
			return fmt.Errorf("HTTP %d: %.300s", status, body)
		}
		var ans struct {
			Data []struct {
				Value any `json:"value"`
			} `json:"data"`
			Errors []any `json:"errors"`
		}
		if err := json.Unmarshal(body, &ans); err != nil {
			return err
		}
		found := 0
		for _, d := range ans.Data {
			if d.Value != nil {
				found++
			}
		}
		if want := len(h.sets[0].keys) * nfeats; found != want || len(ans.Errors) > 0 {
			return fmt.Errorf("answered %d values of the %d written, errors %v", found, want, ans.Errors)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("bench: first query: %w", err)
	}
	return nil
}

// redisFloor is path (b): a bare go-redis client making the round trip
// the Redis store makes for a query (see internal/store/redis/read.go):
// the same commands, whose replies it reads whole, without parsing them.
type redisFloor struct {
	client goredis.UniversalClient
	prefix string
	// whole: the query asks every feature of the namespace, and the store
	// reads each entity with HGETALL; otherwise with HMGET of fields, the
	// entity's marker, then the feature ids.
	whole  bool
	fields []any
	sets   []requestSet
	next   atomic.Uint64
}

// markerField is the Redis store's entity marker field (see docs/redis.md).
const markerField = "0"

// newRedisFloor connects with the options the Redis store uses and learns
// the ids of feats, the features asked for, from the store's mapping hash.
func newRedisFloor(ctx context.Context, cfg redis.Config, ns *feature.Namespace, feats []*feature.Feature) (*redisFloor, error) {
	fl := &redisFloor{client: redis.NewClient(cfg), prefix: cfg.KeyPrefix, whole: len(feats) == len(ns.Features)-1}
	ids, err := fl.client.HGetAll(ctx, cfg.KeyPrefix+"ids").Result()
	if err != nil {
		fl.close()
		return nil, fmt.Errorf("bench: floor: read the feature ids: %w", err)
	}
	fl.fields = append(fl.fields, markerField)
	for _, f := range feats {
		id, ok := ids[f.FQN]
		if !ok {
			fl.close()
			return nil, fmt.Errorf("bench: floor: feature %s has no id in %sids", f.FQN, cfg.KeyPrefix)
		}
		fl.fields = append(fl.fields, id)
	}
	return fl, nil
}

func (fl *redisFloor) close() { _ = fl.client.Close() }

func (fl *redisFloor) entityKey(key string) string {
	return fl.prefix + "{" + benchNamespace + ":" + key + "}"
}

// describe names the round trip of a query of n entities.
func (fl *redisFloor) describe(n int) string {
	cmd := fmt.Sprintf("HMGET of %d fields", len(fl.fields))
	if fl.whole {
		cmd = "HGETALL"
	}
	if n == 1 {
		return cmd
	}
	return fmt.Sprintf("pipeline of %d × %s", n, cmd)
}

// errNoEntity is a floor read that found no entity: the floor would be
// measuring something else than the store's reads.
var errNoEntity = errors.New("floor read found no entity")

// call is one request of path (b): the store's command for one entity,
// or a pipeline of one per entity, each reply read raw, as the store reads
// them.
func (fl *redisFloor) call(ctx context.Context) error {
	set := &fl.sets[fl.next.Add(1)%uint64(len(fl.sets))]
	if len(set.keys) == 1 {
		cmd := goredis.NewRawCmd(ctx, fl.args(set.keys[0])...)
		if err := fl.client.Process(ctx, cmd); err != nil {
			return err
		}
		return fl.found(cmd.Val())
	}
	pipe := fl.client.Pipeline()
	cmds := make([]*goredis.RawCmd, len(set.keys))
	for i, k := range set.keys {
		cmds[i] = goredis.NewRawCmd(ctx, fl.args(k)...)
		_ = pipe.Process(ctx, cmds[i])
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return err
	}
	for _, c := range cmds {
		if err := fl.found(c.Val()); err != nil {
			return err
		}
	}
	return nil
}

// args returns the command reading the entity key, as the store sends it.
func (fl *redisFloor) args(key string) []any {
	if fl.whole {
		return []any{"hgetall", fl.entityKey(key)}
	}
	args := make([]any, 2, 2+len(fl.fields))
	args[0], args[1] = "hmget", fl.entityKey(key)
	return append(args, fl.fields...)
}

// found checks, without parsing the reply, that it is not an error and
// holds an entity: HGETALL's is not empty, HMGET's first value, the
// marker, is not null.
func (fl *redisFloor) found(raw []byte) error {
	if len(raw) == 0 || raw[0] == '-' || raw[0] == '!' {
		return fmt.Errorf("floor read: %.100q", raw)
	}
	line, rest, _ := bytes.Cut(raw, []byte("\r\n"))
	if fl.whole && (string(line[1:]) == "0") || !fl.whole && (bytes.HasPrefix(rest, []byte("$-1\r\n")) || bytes.HasPrefix(rest, []byte("_\r\n"))) {
		return errNoEntity
	}
	return nil
}

// serverCPU returns the CPU time the Redis server has used, in seconds
// (INFO cpu: used_cpu_user and used_cpu_sys).
func (fl *redisFloor) serverCPU(ctx context.Context) (float64, bool) {
	info, err := fl.client.Info(ctx, "cpu").Result()
	if err != nil {
		return 0, false
	}
	var secs float64
	n := 0
	for _, line := range strings.Split(info, "\n") {
		name, val, _ := strings.Cut(strings.TrimSpace(line), ":")
		if name == "used_cpu_user" || name == "used_cpu_sys" {
			v, err := strconv.ParseFloat(val, 64)
			if err != nil {
				return 0, false
			}
			secs += v
			n++
		}
	}
	return secs, n == 2
}

// deleteAll removes the entities written and the mapping hash, which live
// under a prefix of the benchmark's own.
func (fl *redisFloor) deleteAll(ctx context.Context, keys []string) error {
	const batch = 1000
	for lo := 0; lo < len(keys); lo += batch {
		pipe := fl.client.Pipeline()
		for _, k := range keys[lo:min(lo+batch, len(keys))] {
			pipe.Unlink(ctx, fl.entityKey(k))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return err
		}
	}
	return fl.client.Unlink(ctx, fl.prefix+"ids").Err()
}

// printSearch writes the steps of the rate search.
func printSearch(w io.Writer, f benchFlags, steps []bench.Step) {
	fmt.Fprintf(w, "### Highest rate of (a) with p99 ≤ %v: %d × %s\n\n", f.findMaxP99, f.entities, shapeText(f))
	fmt.Fprintf(w, "Each step %v at a constant rate; the rate doubles from %v q/s until p99 exceeds the bound, then bisects to 5%%.\n\n", f.searchStep, f.rate)
	fmt.Fprintln(w, "| rate asked (q/s) | achieved (q/s) | p50 (ms) | p99 (ms) | max (ms) | errors | p99 ≤ bound |")
	fmt.Fprintln(w, "|--:|--:|--:|--:|--:|--:|:-:|")
	best := -1
	for i, s := range steps {
		sum := s.Result.Latency.Summary()
		fmt.Fprintf(w, "| %.0f | %.0f | %s | %s | %s | %d | %s |\n", s.Rate, s.Result.Achieved(), fmtMS(sum.P50), fmtMS(sum.P99), fmtMS(sum.Max), s.Result.Errors, passWord(s.Pass))
		if s.Pass && (best < 0 || s.Rate > steps[best].Rate) {
			best = i
		}
	}
	if best >= 0 {
		fmt.Fprintf(w, "\nHighest rate with p99 ≤ %v: **%.0f q/s** (p99 %s ms in its step).\n\n", f.findMaxP99, steps[best].Rate, fmtMS(steps[best].Latency))
	} else {
		fmt.Fprintf(w, "\nNo rate tried kept p99 ≤ %v.\n\n", f.findMaxP99)
	}
}

// startCPUProfile starts profiling the CPU into a new file at path; stop
// ends it and closes the file.
func startCPUProfile(path string) (stop func(), _ error) {
	pf, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(pf); err != nil {
		pf.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); pf.Close() }, nil
}

// writeHeapProfile writes the heap profile to path: allocations since the
// process started, and the memory in use at the last garbage collection.
func writeHeapProfile(path string) error {
	pf, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("bench: heap profile: %w", err)
	}
	if err := pprof.Lookup("heap").WriteTo(pf, 0); err != nil {
		pf.Close()
		return fmt.Errorf("bench: heap profile: %w", err)
	}
	return pf.Close()
}

// gcText describes the collector's settings: GOGC, GOMEMLIMIT and the
// heap floor.
func gcText(floor uint64) string {
	gogc, limit := os.Getenv("GOGC"), os.Getenv("GOMEMLIMIT")
	if gogc == "" {
		gogc = "100 (default)"
	}
	t := "GOGC " + gogc
	if limit != "" {
		t += ", GOMEMLIMIT " + limit
	}
	if floor == 0 || strings.EqualFold(gogc, "off") {
		return t + ", no heap floor (CAIRN_GC_HEAP_FLOOR_MIB)"
	}
	return t + fmt.Sprintf(", heap floor %d MiB (CAIRN_GC_HEAP_FLOOR_MIB)", floor>>20)
}

// shapeText gives the features asked, for headings: "50", or "49 of 50".
func shapeText(f benchFlags) string {
	if f.ask == 0 || f.ask == f.features {
		return strconv.Itoa(f.features)
	}
	return fmt.Sprintf("%d of %d", f.ask, f.features)
}

// askedText tells which features each query asks for.
func askedText(f benchFlags) string {
	if f.ask == 0 || f.ask == f.features {
		return fmt.Sprintf("all %d features", f.features)
	}
	return fmt.Sprintf("the first %d of %d features", f.ask, f.features)
}

// printBench writes the side-by-side report.
func printBench(w io.Writer, f benchFlags, b *benchSetup, rate float64) {
	paths := b.paths
	rounds := len(paths[0].rounds)
	fmt.Fprintf(w, "### %d × %s at %.0f q/s\n\n", f.entities, shapeText(f), rate)
	shown := b.uri
	if u, err := url.Parse(b.uri); err == nil {
		shown = u.Redacted()
	}
	fmt.Fprintf(w, "- store: `%s`", shown)
	if b.ownPrefix {
		fmt.Fprint(w, " (a prefix of the benchmark's own, deleted afterwards)")
	}
	fmt.Fprintf(w, "; %d entities written, each query asks %d of them (distinct, random) for %s\n", f.pool, f.entities, askedText(f))
	warm := "no warm-up"
	if f.warmup > 0 {
		warm = fmt.Sprintf("after a %v warm-up of each", f.warmup)
	}
	fmt.Fprintf(w, "- open loop at %.0f q/s, latency from each request's due time, at most %d in flight per path; %d rounds of %v per path, (a) and (b) alternating, %s\n",
		rate, f.maxInFlight, rounds, f.slice, warm)
	if b.server != nil {
		fmt.Fprintf(w, "- load generator and floor client in one process, the query server in another (`cairn bench-server`), each with GOMAXPROCS %d, on %d CPUs (%s); %s %s/%s\n",
			runtime.GOMAXPROCS(0), runtime.NumCPU(), cpuModel(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	} else {
		fmt.Fprintf(w, "- load generator, query server and floor client in one process (GOMAXPROCS %d), on %d CPUs (%s); %s %s/%s\n",
			runtime.GOMAXPROCS(0), runtime.NumCPU(), cpuModel(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	}
	fmt.Fprintf(w, "- garbage collector: %s\n", gcText(b.gcFloor))
	if use, ok := b.cpuEnd.since(b.cpuStart); ok {
		// The counters are sampled at clock ticks: the machine's total
		// can come out a little under its parts.
		rest := use.machine - use.self
		if use.serverOK {
			fmt.Fprintf(w, "- CPU used during the rounds, in CPUs of the %d: query server %.2f, load generator and floor client %.2f", use.cpus, use.server, use.self)
			rest -= use.server
		} else {
			fmt.Fprintf(w, "- CPU used during the rounds, in CPUs of the %d: this process %.2f", use.cpus, use.self)
		}
		if use.storeOK {
			fmt.Fprintf(w, ", redis-server %.2f", use.store)
			rest -= use.store
		}
		fmt.Fprintf(w, ", other processes %.2f\n", max(rest, 0))
	}
	fmt.Fprintf(w, "- %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))

	header := "| path | achieved (q/s) | errors | p50 (ms) | p90 (ms) | p99 (ms) | p99.9 (ms) | max (ms) | send lag p99 (ms) |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|"
	fmt.Fprintf(w, "Median over %d rounds of each figure (errors: total):\n\n%s\n", rounds, header)
	meds := make([]bench.Summary, len(paths))
	for i, p := range paths {
		meds[i] = medianSummary(p.rounds)
		var ach []float64
		var lag []time.Duration
		errs := 0
		for _, r := range p.rounds {
			ach = append(ach, r.Achieved())
			lag = append(lag, r.Lag.Percentile(99))
			errs += r.Errors
		}
		m := meds[i]
		fmt.Fprintf(w, "| %s | %.0f | %d | %s | %s | %s | %s | %s | %s |\n", p.label, medianFloat(ach), errs,
			fmtMS(m.P50), fmtMS(m.P90), fmtMS(m.P99), fmtMS(m.P999), fmtMS(m.Max), fmtMS(medianDuration(lag)))
	}
	if b.floor == nil {
		fmt.Fprint(w, "\n(b) skipped: the floor is measured for Redis and Valkey stores only.\n\n")
	} else {
		a, b := meds[0], meds[1]
		fmt.Fprintf(w, "\n(a)/(b): p50 **%.2f×**, p99 **%.2f×**; the server adds %s ms at p50 and %s ms at p99 over the bare round trip.\n\n",
			ratio(a.P50, b.P50), ratio(a.P99, b.P99), fmtMS(a.P50-b.P50), fmtMS(a.P99-b.P99))
	}

	fmt.Fprintf(w, "All rounds pooled:\n\n%s\n", header)
	pooled := make([]bench.Samples, len(paths))
	for i, p := range paths {
		var lat, lag bench.Samples
		count, errs := 0, 0
		var elapsed time.Duration
		for _, r := range p.rounds {
			lat = append(lat, r.Latency...)
			lag = append(lag, r.Lag...)
			count += r.Count
			errs += r.Errors
			elapsed += max(r.Elapsed, r.Load.Duration)
		}
		slices.Sort(lat)
		slices.Sort(lag)
		pooled[i] = lat
		s := lat.Summary()
		fmt.Fprintf(w, "| %s | %.0f | %d | %s | %s | %s | %s | %s | %s |\n", p.label, float64(count)/elapsed.Seconds(), errs,
			fmtMS(s.P50), fmtMS(s.P90), fmtMS(s.P99), fmtMS(s.P999), fmtMS(s.Max), fmtMS(lag.Percentile(99)))
	}
	for i, p := range paths {
		fmt.Fprintf(w, "\nLatency of %s, all rounds:\n\n```\n%s```\n", p.label, pooled[i].Histogram())
	}
	fmt.Fprintln(w)
}

// medianSummary returns, figure by figure, the median over rs.
func medianSummary(rs []*bench.Result) bench.Summary {
	var p50, p90, p99, p999, mx []time.Duration
	for _, r := range rs {
		s := r.Latency.Summary()
		p50, p90, p99, p999, mx = append(p50, s.P50), append(p90, s.P90), append(p99, s.P99), append(p999, s.P999), append(mx, s.Max)
	}
	return bench.Summary{P50: medianDuration(p50), P90: medianDuration(p90), P99: medianDuration(p99), P999: medianDuration(p999), Max: medianDuration(mx)}
}

// medianDuration returns the median of ds, the mean of the middle two for
// an even count; ds is reordered.
func medianDuration(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	n := len(ds)
	if n%2 == 1 {
		return ds[n/2]
	}
	return (ds[n/2-1] + ds[n/2]) / 2
}

func medianFloat(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

func ratio(a, b time.Duration) float64 {
	if b <= 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// fmtMS formats d in milliseconds with microsecond precision.
func fmtMS(d time.Duration) string { return fmt.Sprintf("%.3f", d.Seconds()*1000) }

func achieved(r *bench.Result) string { return fmt.Sprintf("%6.0f q/s", r.Achieved()) }

func passWord(pass bool) string {
	if pass {
		return "yes"
	}
	return "no"
}

// cpuSample is the CPU time counters of Linux, in clock ticks, the whole
// machine's and this process's, and the CPU time of the Redis server.
type cpuSample struct {
	ok                     bool
	cpus                   int // the machine's, from /proc/stat
	busy, total, selfTicks float64
	at                     time.Time
	storeOK                bool
	storeSecs              float64
	// serverTicks is the query server process's, when it has one.
	serverOK    bool
	serverTicks float64
}

// sampleCPU samples the CPU counters, the Redis server's included when
// the store is Redis.
func (b *benchSetup) sampleCPU(ctx context.Context) cpuSample {
	s := sampleCPU()
	s.at = time.Now()
	if b.floor != nil {
		s.storeSecs, s.storeOK = b.floor.serverCPU(ctx)
	}
	if b.server != nil {
		s.serverTicks, s.serverOK = processTicks(fmt.Sprintf("/proc/%d/stat", b.server.pid()))
	}
	return s
}

// sampleCPU reads /proc/stat and /proc/self/stat; elsewhere than on Linux
// the sample is not ok.
func sampleCPU() cpuSample {
	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuSample{}
	}
	line, _, _ := strings.Cut(string(stat), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return cpuSample{}
	}
	var s cpuSample
	for _, l := range strings.Split(string(stat), "\n") {
		if len(l) > 3 && strings.HasPrefix(l, "cpu") && l[3] >= '0' && l[3] <= '9' {
			s.cpus++
		}
	}
	for i, v := range f[1:8] { // user nice system idle iowait irq softirq
		n, _ := strconv.ParseFloat(v, 64)
		s.total += n
		if i != 3 && i != 4 {
			s.busy += n
		}
	}
	if len(f) > 8 { // steal
		n, _ := strconv.ParseFloat(f[8], 64)
		s.busy += n
		s.total += n
	}
	if s.selfTicks, s.ok = processTicks("/proc/self/stat"); !s.ok {
		return cpuSample{}
	}
	return s
}

// processTicks returns the CPU time a process has used, in clock ticks,
// from its stat file.
func processTicks(path string) (float64, bool) {
	stat, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	// The fields after the command name, which is in parentheses: state
	// is the first, utime the 12th, stime the 13th.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, false
	}
	g := strings.Fields(string(stat[i+1:]))
	if len(g) < 13 {
		return 0, false
	}
	ut, _ := strconv.ParseFloat(g[11], 64)
	st, _ := strconv.ParseFloat(g[12], 64)
	return ut + st, true
}

// cpuUse is CPU time used over a span, in CPUs (CPU seconds per second).
type cpuUse struct {
	cpus          int // the machine's
	machine, self float64
	storeOK       bool
	store         float64
	serverOK      bool
	server        float64
}

// since returns the CPU used between start and s.
func (s cpuSample) since(start cpuSample) (cpuUse, bool) {
	total := s.total - start.total
	if !s.ok || !start.ok || total <= 0 {
		return cpuUse{}, false
	}
	wall := s.at.Sub(start.at).Seconds()
	if wall <= 0 {
		return cpuUse{}, false
	}
	// Processes' times are in clock ticks of USER_HZ, 100 a second on
	// Linux whatever the kernel's own tick; the machine's share is taken
	// over all its CPUs, whichever this process may run on.
	const userHZ = 100
	u := cpuUse{cpus: s.cpus, machine: float64(s.cpus) * (s.busy - start.busy) / total, self: (s.selfTicks - start.selfTicks) / (wall * userHZ)}
	if s.serverOK && start.serverOK {
		u.serverOK, u.server = true, (s.serverTicks-start.serverTicks)/(wall*userHZ)
	}
	if s.storeOK && start.storeOK {
		u.storeOK, u.store = true, (s.storeSecs-start.storeSecs)/wall
	}
	return u, true
}

// cpuModel returns the CPU's model name from /proc/cpuinfo, or "CPU model
// unknown".
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "CPU model unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if name, val, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(name) == "model name" {
			return strings.TrimSpace(val)
		}
	}
	return "CPU model unknown"
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
