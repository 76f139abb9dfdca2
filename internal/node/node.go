// Package node is what a cairn process is: one typed configuration, read
// from the environment and the flags and validated once ([Load]), and a run
// group of the components its role runs ([Run]).
//
// Each role adds only the components it runs:
//
//	component          dev  serve  write  bench-server
//	embedded broker     ●
//	heap floor          ●     ●      ●       ●
//	HTTP API            ●     ●              ●
//	writer HTTP                      ●
//	Bloom tracker       ●*    ●*
//	health probe        ●     ●      ●       ●
//	ui sampler          ●     ●
//	writer              ●            ●
//	query metrics       ●     ●
//	metrics consumer    ●†           ●†
//	kafka auto failover ●‡    ●‡     ●‡
//	signals             ●     ●      ●       ●
//
// (* with CAIRN_BLOOM_NAMESPACES; † not with `cairn write --metrics=false`;
// ‡ with CAIRN_KAFKA_AUTO_FAILOVER_AFTER and a secondary cluster.) Every
// Kafka client registers with one queue.Failover, which the failover
// endpoint (`POST /v1/admin/kafka/active`, on the API and on the writer's
// address) switches; see docs/multi-region.md.
// The signals component ends the process on SIGINT or SIGTERM (through the context Run is given) and, on SIGHUP,
// reloads in turn what the process reads from files: the feature file
// (writers), the API keys (query servers with CAIRN_API_KEYS_FILE) and the
// listener's certificate (with CAIRN_TLS_CERT_FILE); each reload that fails
// keeps what is in use and logs why. A component that a role does not run is
// not in its group, so it can never end the process. The run group is
// github.com/oklog/run: the first component to return, or the end of the
// context Run is given (SIGINT, SIGTERM), interrupts every component. Each
// then stops on its own terms, at once and concurrently:
//
//  1. the HTTP server answers /readyz 503, stops accepting connections and
//     finishes the requests in flight (at most CAIRN_SHUTDOWN_TIMEOUT);
//  2. the writer finishes and commits the batch in hand (at most
//     CAIRN_SHUTDOWN_TIMEOUT, then abandons it uncommitted) and leaves;
//  3. the Bloom trackers delete their groups, so writers stop waiting;
//
// and once every component has returned, the resources they shared are
// closed in the reverse order of opening: the producer is flushed and
// closed (every upload answered 202 was acknowledged before its answer),
// then the store, then the embedded broker.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cairnfs/cairn/internal/api"
	"github.com/cairnfs/cairn/internal/auth"
	"github.com/cairnfs/cairn/internal/config"
	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/gcfloor"
	"github.com/cairnfs/cairn/internal/health"
	"github.com/cairnfs/cairn/internal/metrics"
	"github.com/cairnfs/cairn/internal/query"
	"github.com/cairnfs/cairn/internal/queue"
	"github.com/cairnfs/cairn/internal/resolver"
	"github.com/cairnfs/cairn/internal/store"
	"github.com/cairnfs/cairn/internal/store/dynamo"
	"github.com/cairnfs/cairn/internal/tlscert"
	"github.com/cairnfs/cairn/internal/ui"
	"github.com/cairnfs/cairn/internal/writer"
)

// Component is a long-running part of a process: Run returns when ctx ends
// (having stopped cleanly) or when it fails.
type Component struct {
	Name string
	Run  func(ctx context.Context) error
}

// ErrStop is returned by a component to stop the process cleanly (e.g.
// bench-server when its parent closes its standard input).
var ErrStop = errors.New("stop requested")

// Options are what a command gives a process besides its configuration.
type Options struct {
	// Log receives the process's log. Required.
	Log *slog.Logger
	// Metrics is the registry the process's metrics go to and /metrics
	// serves. Default: a new registry with the Go and process collectors.
	Metrics *prometheus.Registry
	// OnListen is called with the HTTP address once the process serves.
	OnListen func(addr string)
	// Store, when set, is a store the caller opened and will close; the
	// process uses it instead of opening cfg.Store (bench --in-process).
	Store Store
	// Components are added to the group besides the role's own (e.g.
	// bench-server's end of standard input).
	Components []Component
}

// Run runs the process cfg describes until ctx ends or one of its
// components stops, then stops the rest in the order of the package
// documentation. It returns nil after a clean stop on ctx's end.
func Run(ctx context.Context, cfg *Config, o Options) (err error) {
	p := &process{cfg: cfg, log: o.Log, prom: o.Metrics}
	if p.prom == nil {
		p.prom = NewMetrics()
	}
	defer func() {
		err = errors.Join(err, p.close())
		p.log.Info("stopped", "role", cfg.Role.String())
	}()
	if err := p.build(ctx, o); err != nil {
		return err
	}
	p.component(Component{Name: "signals", Run: func(c context.Context) error {
		// SIGHUP reloads what the process has to reload; a process with
		// nothing to reload must not die of it, Go's default.
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return ErrStop
			case <-c.Done():
				return nil
			case <-hup:
				for _, reload := range p.reloads {
					reload()
				}
			}
		}
	}})
	p.log.Info("cairn started", "role", cfg.Role.String())
	runErr := p.g.Run()
	return errors.Join(runErr, p.joinErrs())
}

// NewMetrics returns a registry with the Go runtime's and the process's
// collectors.
func NewMetrics() *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

// process is a run group being assembled and the resources its components
// share.
type process struct {
	cfg  *Config
	log  *slog.Logger
	prom *prometheus.Registry
	g    run.Group
	// cert, when TLS is configured, serves the HTTP listener.
	cert *tlscert.Cert

	// closers release shared resources once every component has
	// returned, last opened first.
	closers []func() error

	// reloads run, in turn, on SIGHUP.
	reloads []func()

	// failover switches the Kafka clients between the primary and the
	// secondary cluster; nil for a role without Kafka.
	failover *queue.Failover

	mu   sync.Mutex
	errs []error
}

// onReload registers reload to run on SIGHUP, after those registered
// before it.
func (p *process) onReload(reload func()) { p.reloads = append(p.reloads, reload) }

// component adds c to the group: it runs until interrupted, and its
// failure, or its return while not interrupted, stops the process.
func (p *process) component(c Component) {
	ctx, cancel := context.WithCancel(context.Background())
	p.g.Add(func() error {
		err := c.Run(ctx)
		switch {
		case errors.Is(err, ErrStop):
			p.log.Info("component asked to stop", "component", c.Name)
			return nil
		case err != nil:
			err = fmt.Errorf("%s: %w", c.Name, err)
		case ctx.Err() == nil:
			err = fmt.Errorf("%s stopped unexpectedly", c.Name)
		}
		if err != nil {
			p.mu.Lock()
			p.errs = append(p.errs, err)
			p.mu.Unlock()
			p.log.Error("component stopped", "component", c.Name, "err", err)
		}
		return err
	}, func(error) { cancel() })
}

func (p *process) joinErrs() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return errors.Join(p.errs...)
}

// onClose registers a resource to release after the group has stopped.
func (p *process) onClose(name string, close func() error) {
	p.closers = append(p.closers, func() error {
		if err := close(); err != nil {
			return fmt.Errorf("close %s: %w", name, err)
		}
		return nil
	})
}

func (p *process) close() error {
	var errs []error
	for i := len(p.closers) - 1; i >= 0; i-- {
		errs = append(errs, p.closers[i]())
	}
	p.closers = nil
	return errors.Join(errs...)
}

// build opens what the role needs and adds its components. Whatever it
// opened is closed by close, also when it fails half way.
func (p *process) build(ctx context.Context, o Options) error {
	cfg := p.cfg
	p.component(Component{Name: "heap floor", Run: func(ctx context.Context) error {
		floor := gcfloor.Start(cfg.GCHeapFloor, p.prom)
		<-ctx.Done()
		floor.Stop()
		return nil
	}})

	qcfg := cfg.Queue
	if cfg.EmbeddedBroker {
		b, err := queue.StartBroker(cfg.DataDir)
		if err != nil {
			return err
		}
		p.onClose("embedded broker", func() error { b.Close(); return nil })
		qcfg.Brokers = b.Addrs()
		p.log.Info("embedded broker started", "addrs", qcfg.Brokers, "dir", cfg.DataDir)
	}
	if cfg.Kafka {
		fcfg := cfg.Failover
		fcfg.Primary = qcfg
		fo, err := queue.NewFailover(fcfg, p.prom, p.log)
		if err != nil {
			return err
		}
		p.failover = fo
		// Every client starts on the active cluster.
		qcfg = fo.ActiveConfig()
		if fcfg.AutoAfter > 0 && fcfg.HasSecondary() {
			p.component(Component{Name: "kafka auto failover", Run: fo.RunAuto})
			p.log.Warn("kafka: automatic failover on: this process switches cluster alone after the active one is unreachable", "after", fcfg.AutoAfter)
		}
	}
	if cfg.Role == Dev {
		// Topics that exist are kept.
		if _, err := queue.CreateTopics(ctx, qcfg, cfg.Topics); err != nil {
			return err
		}
	}

	st := o.Store
	if st == nil {
		var err error
		if st, err = OpenStore(ctx, cfg.Store, p.prom, p.log); err != nil {
			return err
		}
		p.onClose("online store", st.Close)
		p.log.Info("online store opened", "uri", config.RedactURI(cfg.StoreURI))
	}

	// Health: the store is probed through a read of a reserved key, the
	// store itself and not the cache in front of it.
	checker, err := health.New(cfg.Health, p.prom, p.log)
	if err != nil {
		return err
	}
	probe, err := health.StoreProbe(st, cfg.Registry)
	if err != nil {
		return err
	}
	checker.AddProbe("store", true, probe)
	p.component(Component{Name: "health probe", Run: checker.Run})

	if cfg.TLS.Enabled() {
		cert, err := tlscert.Load(cfg.TLS, p.log)
		if err != nil {
			return err
		}
		p.cert = cert
		p.onReload(cert.Refresh)
	}
	if cfg.Role.serves() {
		if err := p.addQueryServer(qcfg, st, checker, o); err != nil {
			return err
		}
	}
	if cfg.Role.writes() {
		if err := p.addWriter(ctx, qcfg, st, checker, o); err != nil {
			return err
		}
	}
	for _, c := range o.Components {
		p.component(c)
	}
	return nil
}

// addQueryServer adds the HTTP API, and the Bloom trackers when filters are
// configured; the producer is a shared resource, closed after the API.
func (p *process) addQueryServer(qcfg queue.Config, st Store, checker *health.Checker, o Options) error {
	cfg := p.cfg
	reader := query.Store(st)
	if cfg.Role != BenchServer {
		rp, err := buildReadPath(cfg.Read, cfg.Registry, st, qcfg, p.prom, p.log)
		if err != nil {
			return err
		}
		reader = rp.reader
		if rp.unfiltered != nil && p.failover != nil {
			p.failover.Register("bloom filters", rp.unfiltered.Switch)
		}
		if tr := rp.tracker; tr != nil {
			p.component(Component{Name: "bloom tracker", Run: tr.Run})
			checker.AddReadiness("bloom filters", func() error {
				if !tr.Ready() {
					return errors.New("the Bloom filters are being built")
				}
				return nil
			})
			// A lapsed lease sends queries to the store: reported only.
			checker.AddReported("bloom lease", false, func() error {
				if !tr.LeaseValid() {
					return errors.New("the filters' lease lapsed: every read goes to the store")
				}
				return nil
			})
		}
	}
	var producer api.Producer
	var results query.Sink
	if cfg.Kafka {
		pr, err := queue.NewProducer(qcfg, p.prom, p.log)
		if err != nil {
			return err
		}
		p.onClose("producer", func() error { pr.Close(); return nil })
		p.failover.Register("producer", pr.SwitchTo)
		producer, results = pr, resultSink{pr}
		// Queries do not need Kafka: it is probed and reported, not
		// critical. The probe shows settings the brokers refuse before
		// the first upload meets them.
		checker.AddProbe("kafka", false, pr.Probe)
	}
	acfg := cfg.API
	if producer != nil {
		// One metrics record per interval, through the producer's own
		// buffer for metrics (dropped and counted when full).
		agg, err := metrics.NewAggregator(cfg.Metrics.Aggregator, producer, p.prom, p.prom, p.log)
		if err != nil {
			return err
		}
		acfg.QueryMetrics = agg
		p.component(Component{Name: "query metrics", Run: agg.Run})
	}
	acfg.Health = checker
	acfg.Failover = p.failover
	if cfg.Role != BenchServer {
		sources, err := p.uiSources(qcfg, st)
		if err != nil {
			return err
		}
		if acfg.UI, err = ui.NewHandler(p.log, sources...); err != nil {
			return err
		}
	}
	if cfg.Auth.KeysFile != "" {
		keys, err := auth.Open(cfg.Auth.KeysFile, p.log)
		if err != nil {
			return err
		}
		acfg.Keys, acfg.MetricsRequireAuth = keys, cfg.Auth.MetricsRequireAuth
		p.onReload(func() { _ = keys.Reload() }) // it logs its outcome
		p.log.Info("api: requests need an API key", "file", keys.Path(), "keys", keys.Len(), "metrics_require_auth", acfg.MetricsRequireAuth)
	} else if cfg.Role == Dev {
		// cairn dev never asks for keys, whatever CAIRN_API_AUTH says.
		p.log.Warn("api: no authentication (cairn dev): anyone who can reach the API can query and upload")
	} else if cfg.Role != BenchServer {
		p.log.Warn("api: no authentication: anyone who can reach the API can query and upload", "CAIRN_API_AUTH", cfg.Auth.Mode)
	}
	engine := query.NewEngine(reader, p.prom, nil)
	if bs, ok := st.(store.BucketStore); ok {
		// Windowed features are read from their buckets, past the cache
		// and the Bloom filters, which know entities only.
		engine.UseBuckets(bs)
	}
	resolvers, err := resolver.New(context.Background(), cfg.Registry, resolver.Config{Getenv: cfg.Getenv, Lenient: cfg.Role == Dev}, p.prom, p.log)
	if err != nil {
		return err
	}
	if resolvers != nil {
		p.onClose("resolvers", func() error { resolvers.Close(); return nil })
		engine.UseResolvers(resolvers, results)
		p.log.Info("resolvers ready", "resolvers", len(resolvers.Order()), "persist_results", results != nil)
	}
	server, err := api.New(acfg, cfg.Registry, engine, producer, p.prom, p.prom, p.log)
	if err != nil {
		return err
	}
	ln, err := p.listen()
	if err != nil {
		return err
	}
	p.component(Component{Name: "http server", Run: func(ctx context.Context) error {
		p.listening("query server", ln, o.OnListen)
		return server.Run(ctx, ln)
	}})
	return nil
}

// resultSink hands what queries computed to the persistence topic as
// query-result records, one per entity, keyed like uploads so that an
// entity's records share a partition.
type resultSink struct{ p *queue.Producer }

func (s resultSink) Computed(ns *feature.Namespace, key string, feats []*feature.Feature, values []any, at time.Time) {
	e := queue.Entity{Namespace: ns.Name, Key: key, Values: make([]queue.Value, len(feats))}
	for i, f := range feats {
		e.Values[i] = queue.Value{FQN: f.FQN, ObservedAt: at, Value: values[i]}
	}
	s.p.PersistResult(queue.EntityKey(ns.Name, key), &queue.Record{Kind: queue.KindQueryResult, Entities: []queue.Entity{e}})
}

// uiSources returns what /ui draws, in preference order (CAIRN_UI_SOURCE):
// the fleet, from the metrics rollups in the store with the writers' lag
// read from Kafka; and this process's own metrics, sampled by a component.
func (p *process) uiSources(qcfg queue.Config, st Store) ([]ui.Source, error) {
	cfg := p.cfg
	var sources []ui.Source
	if cfg.UISource != "process" && cfg.Role.kafka() {
		rd, err := metrics.NewReader(st, cfg.Metrics.Consumer)
		if err != nil {
			return nil, err
		}
		lr, err := queue.NewLagReader(qcfg)
		if err != nil {
			return nil, err
		}
		p.onClose("lag reader", func() error { lr.Close(); return nil })
		p.failover.Register("lag reader", lr.SwitchTo)
		sources = append(sources, ui.NewRollupSource(rd, lr.Lag, p.log))
	}
	if cfg.UISource != "fleet" {
		src, err := ui.NewProcessSource(cfg.UI, p.prom, p.log)
		if err != nil {
			return nil, err
		}
		p.component(Component{Name: "ui sampler", Run: src.Run})
		sources = append(sources, src)
	}
	return sources, nil
}

// addWriter adds the persistence writer, and for `cairn write` its own
// HTTP server of health, readiness and metrics.
func (p *process) addWriter(ctx context.Context, qcfg queue.Config, st Store, checker *health.Checker, o Options) error {
	cfg := p.cfg
	// Settings that cannot work (wrong credentials, an untrusted
	// certificate, TLS against a plaintext listener) end `cairn write` at
	// once with the cause, instead of a consumer retrying forever. Brokers
	// that are only unreachable or slow may come back: the writer starts,
	// and waits for them.
	if cfg.Role == Write {
		if err := queue.Probe(ctx, qcfg); err != nil {
			var ce *queue.ConnectError
			if !errors.As(err, &ce) {
				return err
			}
			if ce.Cause != queue.CauseUnreachable && ce.Cause != queue.CauseUnknown {
				return err
			}
			p.log.Warn("kafka: brokers not answering at start; the writer waits for them", "err", err)
		}
	}
	w, err := writer.New(qcfg, cfg.Writer, cfg.Registry, st, p.prom, p.log)
	if err != nil {
		return err
	}
	w.SetRewind(cfg.Failover.Rewind)
	p.failover.Register("writer", w.SwitchTo)
	p.component(Component{Name: "writer", Run: w.Run})
	p.onReload(func() { reloadFeatures(cfg.Features, cfg.featureIDsCheck(), w.SetRegistry, p.log) })
	// A writer is of no use without its store or Kafka: both critical.
	checker.AddReported("writer", true, w.Health)
	checker.AddReadiness("writer", w.Ready)
	// A standby writer (DynamoDB global table, passive region) says so.
	checker.AddReadiness("writer store writes", w.StoreWritesReady)
	p.log.Info("persistence writer started", "group", qcfg.WriterGroup, "topic", qcfg.PersistTopic, "instance_id", cfg.Writer.InstanceID)
	if cfg.Metrics.Consume {
		// The metrics consumer cannot switch cluster itself: it is made
		// again at a switch (rollups tolerate replays).
		mc := newRestarting(qcfg, p.prom, func(q queue.Config, reg prometheus.Registerer) (func(context.Context) error, error) {
			c, err := metrics.NewConsumer(q, cfg.Metrics.Consumer, st, reg, p.log)
			if err != nil {
				return nil, err
			}
			// Standby writers' consumers stand by with them.
			c.FollowActive(w.StoreWritesActive)
			return c.Run, nil
		})
		p.failover.Register("metrics consumer", mc.Switch)
		p.component(Component{Name: "metrics consumer", Run: mc.Run})
		p.log.Info("metrics consumer started", "group", cfg.Metrics.Consumer.Group, "topic", qcfg.MetricsTopic, "retention", cfg.Metrics.Consumer.Retention)
	}
	if cfg.Role != Write {
		return nil
	}
	mux := http.NewServeMux()
	checker.Register(mux)
	mux.Handle("GET /metrics", promhttp.HandlerFor(p.prom, promhttp.HandlerOpts{}))
	if err := p.addWriterAdmin(mux, w); err != nil {
		return err
	}
	ln, err := p.listen()
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second,
		ErrorLog: slog.NewLogLogger(p.log.Handler(), slog.LevelWarn)}
	p.component(Component{Name: "writer http server", Run: func(ctx context.Context) error {
		served := make(chan error, 1)
		go func() { served <- srv.Serve(ln) }()
		p.listening("writer", ln, o.OnListen)
		select {
		case err := <-served:
			return err
		case <-ctx.Done():
		}
		checker.SetShuttingDown()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			srv.Close()
		}
		<-served
		return nil
	}})
	return nil
}

// addWriterAdmin serves the Kafka failover endpoint on the writer's mux:
// with the API keys file (admin scope), or openly with CAIRN_API_AUTH=none;
// not at all without either (Load then requires one when a secondary
// cluster is configured).
func (p *process) addWriterAdmin(mux *http.ServeMux, w *writer.Writer) error {
	cfg := p.cfg
	var keys *auth.Keys
	switch {
	case cfg.Auth.KeysFile != "":
		k, err := auth.Open(cfg.Auth.KeysFile, p.log)
		if err != nil {
			return err
		}
		keys = k
		p.onReload(func() { _ = keys.Reload() }) // it logs its outcome
	case cfg.Auth.Mode == auth.ModeNone:
		p.log.Warn("writer: no authentication: anyone who can reach the writer's address can switch its Kafka cluster", "CAIRN_API_AUTH", cfg.Auth.Mode)
	default:
		p.log.Info("writer: no CAIRN_API_KEYS_FILE: the Kafka failover endpoint is not served", "path", api.KafkaActivePath)
		return nil
	}
	h := api.RequireScope(keys, auth.Admin, api.KafkaActiveHandler(p.failover, 1<<10))
	mux.Handle("GET "+api.KafkaActivePath, h)
	mux.Handle("POST "+api.KafkaActivePath, h)
	// The regional switch of a DynamoDB global table's writers.
	var standby error
	if cfg.Store.Scheme != dynamo.URIScheme || len(cfg.Store.Dynamo.GlobalTableRegions) == 0 {
		standby = errors.New("only the writers of a DynamoDB global table's passive region stand by (DYNAMODB_GLOBAL_TABLE_REGIONS)")
	}
	sw := api.RequireScope(keys, auth.Admin, api.StoreWritesHandler(w.StoreWritesActive, w.SetStoreWrites, standby, 1<<10))
	mux.Handle("GET "+api.StoreWritesPath, sw)
	mux.Handle("POST "+api.StoreWritesPath, sw)
	return nil
}

// listen listens on the configured address now, so that a taken port
// fails the start before anything runs.
func (p *process) listen() (net.Listener, error) {
	addr := p.cfg.Addr
	if addr == "" {
		addr = "127.0.0.1:0" // bench-server
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	if p.cert != nil {
		ln = p.cert.Listener(ln)
	}
	return ln, nil
}

func (p *process) listening(what string, ln net.Listener, onListen func(string)) {
	if p.cert != nil {
		p.log.Info("listening", "server", what, "addr", ln.Addr().String(), "tls", true, "serial", p.cert.Leaf().SerialNumber.String())
	} else {
		p.log.Info("listening", "server", what, "addr", ln.Addr().String())
	}
	if onListen != nil {
		onListen(ln.Addr().String())
	}
}

// reloadFeatures reads the feature file again and hands it to set (the
// writer resumes the partitions it paused at features it did not know). A
// file that does not load, or that check (when not nil) refuses, keeps the
// features in use.
func reloadFeatures(path string, check func(*feature.Registry) error, set func(*feature.Registry), log *slog.Logger) {
	reg, err := feature.Load(path)
	if err == nil && check != nil {
		err = check(reg)
	}
	if err != nil {
		log.Error("feature reload: keeping the features in use", "file", path, "err", err)
		return
	}
	set(reg)
	log.Info("feature reload: features reloaded", "file", path)
}

// CreateTopics is `cairn topics create`: it reconciles the topics cfg
// names with cfg.Topics (see [queue.ReconcileTopics]) and returns every
// difference found, with what was done about it.
func CreateTopics(ctx context.Context, cfg *Config, opts queue.ReconcileOptions) ([]queue.TopicChange, error) {
	return queue.ReconcileTopics(ctx, cfg.Queue, cfg.Topics, opts)
}
