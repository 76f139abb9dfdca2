// Package api is cairn's HTTP interface: the upload and online query
// endpoints (JSON shapes compatible with Chalk's REST query API), health and
// readiness probes, and Prometheus metrics.
//
// With API keys configured (Config.Keys), queries and uploads need a key
// with the route's scope, presented as "Authorization: Bearer <token>":
// 401 UNAUTHENTICATED without one, 403 UNAUTHORIZED with a key lacking the
// scope (see auth.go). /healthz and /readyz are always open; /metrics is
// open unless Config.MetricsRequireAuth, and so are the figures of the
// store-health page (/ui/data, package ui); the page itself (/ui) holds no
// figures and is always open, so that a browser can load it and be asked
// for a key.
//
// Every error answered carries a code, a category and a message naming the
// field at fault; see errors.go for the codes. Unknown routes and wrong
// methods are answered in the same shape (NOT_FOUND, METHOD_NOT_ALLOWED).
//
// [Server.Run] serves the API on a listener until its context ends, then
// drains: /readyz turns 503, and in-flight requests are given
// Config.ShutdownTimeout to finish.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cairnfs/cairn/internal/auth"
	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/health"
	"github.com/cairnfs/cairn/internal/lograte"
	"github.com/cairnfs/cairn/internal/metrics"
	"github.com/cairnfs/cairn/internal/query"
	"github.com/cairnfs/cairn/internal/queue"
	"github.com/cairnfs/cairn/internal/ui"
)

// Producer is the persistence queue as the API uses it.
type Producer interface {
	// Persist returns once the record is acknowledged by Kafka.
	Persist(ctx context.Context, key []byte, r *queue.Record) error
	// Metric hands a query metric over without waiting.
	Metric(value []byte)
}

// Config tunes the HTTP API.
type Config struct {
	// MaxBodyBytes bounds request bodies; a larger one is answered 413
	// REQUEST_TOO_LARGE. Default 1 MiB (CAIRN_MAX_BODY_BYTES).
	MaxBodyBytes int64
	// MaxQueryKeys bounds the entities of one query. Default 10,000.
	MaxQueryKeys int

	// QueryTimeout is the deadline of one online query, from the moment
	// its request is handled: store reads, their retries and request
	// racing stop at it, and each field not read by then answers null
	// with a DEADLINE_EXCEEDED error. Default 1s (CAIRN_QUERY_TIMEOUT).
	QueryTimeout time.Duration

	// ReadHeaderTimeout bounds reading a request's line and headers, from
	// its first byte (on a new connection, from its opening). Default 5s
	// (CAIRN_HTTP_READ_HEADER_TIMEOUT).
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a request's body, from the end of its
	// headers: a client sending its body slower is answered 408 and
	// disconnected. Default 10s (CAIRN_HTTP_READ_TIMEOUT).
	ReadTimeout time.Duration
	// WriteTimeout bounds the time from the start of a request's handling
	// (its body read) to the end of its response; it must exceed
	// QueryTimeout, and should exceed the Kafka produce timeout, so that
	// a slow upload still gets its answer. Default 30s
	// (CAIRN_HTTP_WRITE_TIMEOUT).
	WriteTimeout time.Duration
	// IdleTimeout bounds how long an idle keep-alive connection stays
	// open. Default 120s (CAIRN_HTTP_IDLE_TIMEOUT).
	IdleTimeout time.Duration
	// ShutdownTimeout bounds how long Run waits, once its context ends,
	// for in-flight requests; connections still open then are closed.
	// Default 30s (CAIRN_SHUTDOWN_TIMEOUT).
	ShutdownTimeout time.Duration

	// StoreErrorLogInterval is the least time between two log lines of
	// failed store reads for one namespace; the lines in between are
	// counted and the count is logged with the next. Default 10s.
	StoreErrorLogInterval time.Duration
	// QueryMetrics, when set, counts every query per namespace for the
	// metrics topic (package metrics). Default: none.
	QueryMetrics *metrics.Aggregator

	// Keys, when set, authenticates requests: queries need a key with the
	// query scope, uploads one with the upload scope (package auth).
	// /healthz and /readyz stay open. Default: none, every request is
	// served (CAIRN_API_AUTH=none, or `cairn dev`).
	Keys *auth.Keys
	// MetricsRequireAuth makes /metrics need a key with the admin scope;
	// it needs Keys. Default false (CAIRN_METRICS_REQUIRE_AUTH).
	MetricsRequireAuth bool

	// Failover, when set, serves KafkaActivePath (admin scope): the active
	// Kafka cluster, read and switched. Default: not served.
	Failover *queue.Failover

	// UI, when set, serves the store-health page at /ui and its figures
	// at /ui/data, which need the admin scope when MetricsRequireAuth.
	// Default: no page.
	UI *ui.Handler

	// Health answers /healthz and /readyz; the server adds to it the
	// readiness condition "http" (serving, and not shutting down). Default:
	// a checker with no other check.
	Health *health.Checker
}

// EnsureDefaults fills zero fields with their defaults.
func (c *Config) EnsureDefaults() {
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 1 << 20
	}
	if c.MaxQueryKeys == 0 {
		c.MaxQueryKeys = 10_000
	}
	if c.QueryTimeout == 0 {
		c.QueryTimeout = time.Second
	}
	if c.ReadHeaderTimeout == 0 {
		c.ReadHeaderTimeout = 5 * time.Second
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = 10 * time.Second
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 30 * time.Second
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 120 * time.Second
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 30 * time.Second
	}
	if c.StoreErrorLogInterval == 0 {
		c.StoreErrorLogInterval = 10 * time.Second
	}
}

// Validate reports every problem with c.
func (c *Config) Validate() error {
	var errs []error
	if c.MaxBodyBytes < 1024 {
		errs = append(errs, fmt.Errorf("api: max body bytes %d: want at least 1024", c.MaxBodyBytes))
	}
	if c.MaxQueryKeys < 1 {
		errs = append(errs, fmt.Errorf("api: max query keys %d: want at least 1", c.MaxQueryKeys))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"query timeout (CAIRN_QUERY_TIMEOUT)", c.QueryTimeout},
		{"read header timeout (CAIRN_HTTP_READ_HEADER_TIMEOUT)", c.ReadHeaderTimeout},
		{"read timeout (CAIRN_HTTP_READ_TIMEOUT)", c.ReadTimeout},
		{"write timeout (CAIRN_HTTP_WRITE_TIMEOUT)", c.WriteTimeout},
		{"idle timeout (CAIRN_HTTP_IDLE_TIMEOUT)", c.IdleTimeout},
		{"shutdown timeout (CAIRN_SHUTDOWN_TIMEOUT)", c.ShutdownTimeout},
		{"store error log interval", c.StoreErrorLogInterval},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("api: %s %v: want a positive duration", d.name, d.v))
		}
	}
	if c.QueryTimeout > 0 && c.WriteTimeout > 0 && c.WriteTimeout <= c.QueryTimeout {
		errs = append(errs, fmt.Errorf("api: write timeout %v (CAIRN_HTTP_WRITE_TIMEOUT): want more than the query timeout %v (CAIRN_QUERY_TIMEOUT), or queries past their deadline are never answered",
			c.WriteTimeout, c.QueryTimeout))
	}
	if c.ReadHeaderTimeout > 0 && c.ReadTimeout > 0 && c.ReadHeaderTimeout > c.ReadTimeout {
		errs = append(errs, fmt.Errorf("api: read header timeout %v (CAIRN_HTTP_READ_HEADER_TIMEOUT): want at most the read timeout %v (CAIRN_HTTP_READ_TIMEOUT)",
			c.ReadHeaderTimeout, c.ReadTimeout))
	}
	return errors.Join(errs...)
}

// Server serves the HTTP API.
type Server struct {
	cfg      Config
	reg      *feature.Registry
	engine   *query.Engine
	producer Producer
	gatherer prometheus.Gatherer
	log      *slog.Logger
	health   *health.Checker
	// serving is set while the server should be sent traffic: from
	// SetReady(true) or the start of Run, to the start of shutdown.
	serving  atomic.Bool
	storeLog lograte.Keyed // keyed by namespace

	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	byKey    *prometheus.CounterVec
}

// New returns a server. gatherer is what /metrics exposes; promReg receives
// the server's own metrics. With a nil producer, the routes that need one
// (upload) are not served.
func New(cfg Config, reg *feature.Registry, engine *query.Engine, producer Producer,
	gatherer prometheus.Gatherer, promReg prometheus.Registerer, log *slog.Logger) (*Server, error) {
	cfg.EnsureDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// Keys are opened after the configuration is validated, so this
	// is checked here and not in Validate.
	if cfg.MetricsRequireAuth && cfg.Keys == nil {
		return nil, errors.New("api: /metrics cannot require authentication (CAIRN_METRICS_REQUIRE_AUTH) without API keys (CAIRN_API_KEYS_FILE)")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	checker := cfg.Health
	if checker == nil {
		var err error
		if checker, err = health.New(health.Config{}, nil, log); err != nil {
			return nil, err
		}
	}
	s := &Server{
		cfg: cfg, reg: reg, engine: engine, producer: producer, gatherer: gatherer, log: log, health: checker,
		storeLog: lograte.Keyed{Interval: cfg.StoreErrorLogInterval},
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_api_requests_total",
			Help: "HTTP requests, by route, status code and outcome: ok (answered in full), degraded (a query answered 200 with field errors: the store failed or the deadline passed), client_error (4xx), server_error (5xx).",
		}, []string{"route", "code", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cairn_api_request_seconds",
			Help:    "HTTP request latency, by route.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
		}, []string{"route"}),
		byKey: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_api_requests_by_key_total",
			Help: "HTTP requests to authenticated routes, by API key name (\"\" for requests presenting no known key), route and outcome: those of cairn_api_requests_total, unauthenticated (401) or unauthorized (403, the key lacks the route's scope).",
		}, []string{"key", "route", "outcome"}),
	}
	if promReg != nil {
		promReg.MustRegister(s.requests, s.latency)
		if cfg.Keys != nil {
			promReg.MustRegister(s.byKey)
		}
	}
	checker.AddReadiness("http", func() error {
		if !s.serving.Load() {
			return errors.New("the HTTP server is not serving")
		}
		return nil
	})
	return s, nil
}

// SetReady sets the server's own readiness condition: ready once serving,
// not ready once shutdown begins, so that load balancers stop sending
// traffic. Run sets it itself; SetReady is for a server whose Handler is
// served by other means.
func (s *Server) SetReady(ready bool) { s.serving.Store(ready) }

// Handler returns the routes. Unknown paths answer 404 NOT_FOUND and known
// paths asked with another method 405 METHOD_NOT_ALLOWED, as JSON errors.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	allowed := map[string][]string{} // path → methods served
	handle := func(method, path string, h http.Handler) {
		mux.Handle(method+" "+path, h)
		allowed[path] = append(allowed[path], method)
	}
	if s.producer != nil {
		handle(http.MethodPost, "/v1/upload_features", s.instrument("upload", s.authorize("upload", auth.Upload, s.upload)))
	}
	handle(http.MethodPost, "/v1/query/online", s.instrument("query", s.authorize("query", auth.Query, s.query)))
	handle(http.MethodGet, "/healthz", s.health.HealthHandler())
	handle(http.MethodGet, "/readyz", s.health.ReadyHandler())
	if s.gatherer != nil {
		metrics := promhttp.HandlerFor(s.gatherer, promhttp.HandlerOpts{})
		if s.cfg.MetricsRequireAuth {
			metrics = s.instrument("metrics", s.authorize("metrics", auth.Admin, metrics.ServeHTTP))
		}
		handle(http.MethodGet, "/metrics", metrics)
	}
	if f := s.cfg.Failover; f != nil {
		h := KafkaActiveHandler(f, s.cfg.MaxBodyBytes)
		for _, m := range []string{http.MethodGet, http.MethodPost} {
			handle(m, KafkaActivePath, s.instrument("admin", s.authorize("admin", auth.Admin, h.ServeHTTP)))
		}
	}
	if s.cfg.UI != nil {
		handle(http.MethodGet, "/ui", s.cfg.UI.Page())
		data := s.cfg.UI.Data()
		if s.cfg.MetricsRequireAuth {
			data = s.instrument("ui", s.authorize("ui", auth.Admin, data.ServeHTTP))
		}
		handle(http.MethodGet, "/ui/data", data)
	}
	// The catch-all answers what the mux would answer in plain text.
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		methods, ok := allowed[r.URL.Path]
		if !ok {
			writeErrors(w, http.StatusNotFound, errorList{{Code: CodeNotFound, Category: CategoryRequest,
				Message: fmt.Sprintf("no route %s", r.URL.Path)}})
			return
		}
		if slices.Contains(methods, http.MethodGet) {
			methods = append(slices.Clone(methods), http.MethodHead)
		}
		w.Header().Set("Allow", strings.Join(methods, ", "))
		writeErrors(w, http.StatusMethodNotAllowed, errorList{{Code: CodeMethodNotAllowed, Category: CategoryRequest,
			Message: fmt.Sprintf("%s %s: want %s", r.Method, r.URL.Path, strings.Join(methods, " or "))}})
	})
	return mux
}

// Run serves the API on ln until ctx ends, then shuts down: /readyz turns
// 503 at once, no new connection is accepted, and requests in flight are
// given ShutdownTimeout to finish before their connections are closed. It
// closes ln. It returns nil after a clean stop, and an error when serving
// failed or requests were still in flight at the shutdown timeout.
func (s *Server) Run(ctx context.Context, ln net.Listener) error {
	var conns connSet
	hs := newFastServer(s.cfg, s.Handler(), s.log, &conns)
	served := make(chan error, 1)
	s.serving.Store(true)
	go func() { served <- hs.Serve(ln) }()
	s.log.Info("api: serving", "addr", ln.Addr().String())

	select {
	case err := <-served:
		// Serve only returns early when the listener failed.
		s.serving.Store(false)
		s.health.SetShuttingDown()
		return fmt.Errorf("api: serve %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	s.serving.Store(false)
	s.health.SetShuttingDown()
	s.log.Info("api: shutting down", "timeout", s.cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	err := hs.ShutdownWithContext(sctx)
	if err != nil {
		conns.closeAll()
		err = fmt.Errorf("api: requests still in flight after the shutdown timeout of %v (CAIRN_SHUTDOWN_TIMEOUT), connections closed: %w",
			s.cfg.ShutdownTimeout, err)
	}
	if serr := <-served; serr != nil {
		err = errors.Join(err, fmt.Errorf("api: serve %s: %w", ln.Addr(), serr))
	}
	return err
}

// Request outcomes, as labelled in cairn_api_requests_total.
const (
	outcomeOK          = "ok"
	outcomeDegraded    = "degraded"
	outcomeClientError = "client_error"
	outcomeServerError = "server_error"
)

type statusWriter struct {
	http.ResponseWriter
	code int
	// degraded is set by a handler answering 200 with field errors.
	degraded bool
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

// markDegraded records, for the request metric, that w's 200 answer
// carries field errors.
func markDegraded(w http.ResponseWriter) {
	if sw, ok := w.(*statusWriter); ok {
		sw.degraded = true
	}
}

func outcome(code int, degraded bool) string {
	switch {
	case code >= 500:
		return outcomeServerError
	case code >= 400:
		return outcomeClientError
	case degraded:
		return outcomeDegraded
	}
	return outcomeOK
}

func (s *Server) instrument(route string, h http.HandlerFunc) http.Handler {
	// The route's series, and that of its usual status, are looked up once.
	latency := s.latency.WithLabelValues(route)
	usual := http.StatusOK
	if route == "upload" {
		usual = http.StatusAccepted
	}
	ok := s.requests.WithLabelValues(route, strconv.Itoa(usual), outcomeOK)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		h(sw, r)
		latency.Observe(time.Since(start).Seconds())
		if sw.code == usual && !sw.degraded {
			ok.Inc()
		} else {
			s.requests.WithLabelValues(route, strconv.Itoa(sw.code), outcome(sw.code, sw.degraded)).Inc()
		}
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v) // the client is gone if this fails
}
