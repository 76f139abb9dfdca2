// Package api is cairn's HTTP interface: the upload and online query
// endpoints (JSON shapes compatible with Chalk's REST query API), health and
// readiness probes, and Prometheus metrics.
//
// Every error answered carries a code, a category and a message naming the
// field at fault; see errors.go for the codes.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/query"
	"github.com/cairnfs/cairn/internal/queue"
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
	// MaxBodyBytes bounds request bodies. Default 1 MiB.
	MaxBodyBytes int64
	// MaxQueryKeys bounds the entities of one query. Default 10,000.
	MaxQueryKeys int
}

// EnsureDefaults fills zero fields with their defaults.
func (c *Config) EnsureDefaults() {
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 1 << 20
	}
	if c.MaxQueryKeys == 0 {
		c.MaxQueryKeys = 10_000
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
	ready    atomic.Bool

	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

// New returns a server. gatherer is what /metrics exposes; promReg receives
// the server's own metrics.
func New(cfg Config, reg *feature.Registry, engine *query.Engine, producer Producer,
	gatherer prometheus.Gatherer, promReg prometheus.Registerer, log *slog.Logger) (*Server, error) {
	cfg.EnsureDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg: cfg, reg: reg, engine: engine, producer: producer, gatherer: gatherer, log: log,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_api_requests_total",
			Help: "HTTP requests, by route and status code.",
		}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cairn_api_request_seconds",
			Help:    "HTTP request latency, by route.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
		}, []string{"route"}),
	}
	if promReg != nil {
		promReg.MustRegister(s.requests, s.latency)
	}
	return s, nil
}

// SetReady sets what /readyz answers: ready after start-up, not ready once
// shutdown begins so that load balancers stop sending traffic.
func (s *Server) SetReady(ready bool) { s.ready.Store(ready) }

// Handler returns the routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /v1/upload_features", s.instrument("upload", s.upload))
	mux.Handle("POST /v1/query/online", s.instrument("query", s.query))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !s.ready.Load() {
			http.Error(w, "not ready\n", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})
	if s.gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(s.gatherer, promhttp.HandlerOpts{}))
	}
	return mux
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

func (s *Server) instrument(route string, h http.HandlerFunc) http.Handler {
	// The route's series, and that of its usual status, are looked up once.
	latency := s.latency.WithLabelValues(route)
	ok := s.requests.WithLabelValues(route, strconv.Itoa(http.StatusOK))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		h(sw, r)
		latency.Observe(time.Since(start).Seconds())
		if sw.code == http.StatusOK {
			ok.Inc()
		} else {
			s.requests.WithLabelValues(route, strconv.Itoa(sw.code)).Inc()
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
