// Package health answers whether a cairn process can do its work (/healthz)
// and whether it should be sent traffic (/readyz).
//
// A [Checker] holds three kinds of conditions:
//
//   - Probed checks ([Checker.AddProbe]): a function run in the background
//     every [Config.ProbeInterval], each run bounded by [Config.ProbeTimeout].
//     A check turns unhealthy after [Config.FailureThreshold] failed runs in
//     a row, and healthy again after one success, so that one slow request
//     does not fail a region over, and a recovered dependency is trusted at
//     once. The online store is checked this way ([StoreProbe]).
//   - Reported checks ([Checker.AddReported]): a function read when /healthz
//     is asked, for components that already know their own state (a Kafka
//     producer's or a persistence writer's Health method).
//   - Readiness conditions ([Checker.AddReadiness]): functions read when
//     /readyz is asked (store open, feature-id mapping warm, Bloom filters
//     built). /readyz also fails from [Checker.SetShuttingDown] on.
//
// Each check is critical or not. /healthz answers 503 while a critical check
// fails, and 200 otherwise; a failing non-critical check (Kafka, for a query
// server: queries are still answered) is reported in the body only. Both
// bodies are JSON and name every check with its state:
//
//	{"status": "unhealthy", "checks": {
//	   "store": {"ok": false, "critical": true, "error": "...", "since": "RFC3339", "failures": 3},
//	   "kafka": {"ok": true, "critical": false}}}
package health

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Config tunes a Checker's probes.
type Config struct {
	// ProbeInterval is the time between two runs of each probed check.
	// Default 5s (CAIRN_HEALTH_PROBE_INTERVAL).
	ProbeInterval time.Duration
	// ProbeTimeout bounds one run of a probed check; it must not exceed
	// ProbeInterval. Default 2s, or ProbeInterval when that is shorter
	// (CAIRN_HEALTH_PROBE_TIMEOUT).
	ProbeTimeout time.Duration
	// FailureThreshold is the number of failed runs in a row after which a
	// probed check is unhealthy. Default 3 (CAIRN_HEALTH_FAILURE_THRESHOLD).
	FailureThreshold int
}

// EnsureDefaults fills zero fields with their defaults.
func (c *Config) EnsureDefaults() {
	if c.ProbeInterval == 0 {
		c.ProbeInterval = 5 * time.Second
	}
	if c.ProbeTimeout == 0 {
		c.ProbeTimeout = min(2*time.Second, c.ProbeInterval)
	}
	if c.FailureThreshold == 0 {
		c.FailureThreshold = 3
	}
}

// Validate reports every problem with c.
func (c *Config) Validate() error {
	var errs []error
	if c.ProbeInterval <= 0 {
		errs = append(errs, fmt.Errorf("health: probe interval %v: want a positive duration", c.ProbeInterval))
	}
	if c.ProbeTimeout <= 0 {
		errs = append(errs, fmt.Errorf("health: probe timeout %v: want a positive duration", c.ProbeTimeout))
	} else if c.ProbeInterval > 0 && c.ProbeTimeout > c.ProbeInterval {
		errs = append(errs, fmt.Errorf("health: probe timeout %v: want at most the probe interval %v", c.ProbeTimeout, c.ProbeInterval))
	}
	if c.FailureThreshold < 1 {
		errs = append(errs, fmt.Errorf("health: failure threshold %d: want at least 1", c.FailureThreshold))
	}
	return errors.Join(errs...)
}

// Checker tracks the health and readiness of one process. Its methods are
// safe for concurrent use. Checks are added before [Checker.Run] starts.
type Checker struct {
	cfg Config
	log *slog.Logger
	now func() time.Time

	checkOK       *prometheus.GaugeVec
	probeFailures *prometheus.CounterVec

	mu struct {
		sync.Mutex
		probes       []*probe
		reported     []reported
		readiness    []condition
		shuttingDown bool
	}
}

// probe is a probed check and its state.
type probe struct {
	name     string
	critical bool
	fn       func(ctx context.Context) error

	// Guarded by Checker.mu.
	failures int       // failed runs in a row
	lastErr  error     // error of the last failed run
	since    time.Time // start of the current state (healthy or failing)
	checked  time.Time // end of the last run; zero before the first
	ok       bool
}

type reported struct {
	name     string
	critical bool
	fn       func() error
}

type condition struct {
	name string
	fn   func() error
}

// New returns a checker with no checks. reg, when not nil, receives its
// metrics.
func New(cfg Config, reg prometheus.Registerer, log *slog.Logger) (*Checker, error) {
	cfg.EnsureDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Checker{cfg: cfg, log: log, now: time.Now,
		checkOK: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cairn_health_check_ok",
			Help: "1 while a probed check is healthy (fewer failed probes in a row than the threshold), 0 while it is not, by check.",
		}, []string{"check"}),
		probeFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_health_probe_failures_total",
			Help: "Failed runs of a probed check, by check.",
		}, []string{"check"}),
	}
	if reg != nil {
		if err := errors.Join(reg.Register(c.checkOK), reg.Register(c.probeFailures)); err != nil {
			return nil, fmt.Errorf("health: register metrics: %w", err)
		}
	}
	return c, nil
}

// AddProbe adds a probed check: fn runs every ProbeInterval with a context
// bounded by ProbeTimeout, once Run has started. The check is healthy
// until FailureThreshold runs in a row have failed, and again after one
// success.
func (c *Checker) AddProbe(name string, critical bool, fn func(ctx context.Context) error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mu.probes = append(c.mu.probes, &probe{name: name, critical: critical, fn: fn, ok: true, since: c.now()})
	c.checkOK.WithLabelValues(name).Set(1)
}

// AddReported adds a reported check: fn is called each time /healthz is
// asked, and must not block; a non-nil error is the check failing.
func (c *Checker) AddReported(name string, critical bool, fn func() error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mu.reported = append(c.mu.reported, reported{name: name, critical: critical, fn: fn})
}

// AddReadiness adds a readiness condition: /readyz answers 503 while fn
// returns an error, which the body gives as the reason. fn is called each
// time /readyz is asked, and must not block.
func (c *Checker) AddReadiness(name string, fn func() error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mu.readiness = append(c.mu.readiness, condition{name: name, fn: fn})
}

// SetShuttingDown makes /readyz answer 503 from now on, so that load
// balancers stop sending traffic while the process drains.
func (c *Checker) SetShuttingDown() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mu.shuttingDown = true
}

// Run runs the probed checks, the first time at once and then every
// ProbeInterval, until ctx ends; it then returns nil. With no probed check
// it waits for ctx.
func (c *Checker) Run(ctx context.Context) error {
	c.mu.Lock()
	probes := c.mu.probes
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range probes {
		wg.Go(func() { c.runProbe(ctx, p) })
	}
	<-ctx.Done()
	wg.Wait()
	return nil
}

func (c *Checker) runProbe(ctx context.Context, p *probe) {
	t := time.NewTicker(c.cfg.ProbeInterval)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, c.cfg.ProbeTimeout)
		err := p.fn(pctx)
		cancel()
		if ctx.Err() != nil {
			return // stopping: the run was cut short, not failed
		}
		c.record(p, err)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// record updates p's state after a run that returned err.
func (c *Checker) record(p *probe, err error) {
	now := c.now()
	c.mu.Lock()
	p.checked = now
	wasOK := p.ok
	if err == nil {
		p.failures, p.lastErr = 0, nil
		if !p.ok {
			p.ok, p.since = true, now
		}
	} else {
		if p.failures == 0 {
			p.since = now // the failing streak starts
		}
		p.failures++
		p.lastErr = err
		if p.failures >= c.cfg.FailureThreshold {
			p.ok = false
		}
	}
	ok, failures := p.ok, p.failures
	c.mu.Unlock()

	if err != nil {
		c.probeFailures.WithLabelValues(p.name).Inc()
	}
	// One line per change of state, not per probe.
	switch {
	case wasOK && !ok:
		c.checkOK.WithLabelValues(p.name).Set(0)
		c.log.Warn("health: check failing", "check", p.name, "critical", p.critical, "failures", failures, "err", err)
	case !wasOK && ok:
		c.checkOK.WithLabelValues(p.name).Set(1)
		c.log.Info("health: check recovered", "check", p.name)
	}
}

// CheckState is the state of one check as /healthz and /readyz report it.
type CheckState struct {
	// OK reports whether the check passes.
	OK bool `json:"ok"`
	// Critical reports whether the check failing fails /healthz.
	Critical bool `json:"critical"`
	// Error is the last error of a failing check, or of a probed check's
	// failed runs not yet over the threshold.
	Error string `json:"error,omitempty"`
	// Since is when a probed check's current state began: its first
	// failed run in a row, or its recovery.
	Since *time.Time `json:"since,omitempty"`
	// Failures counts a probed check's failed runs in a row.
	Failures int `json:"failures,omitempty"`
	// CheckedAt is the end of a probed check's last run.
	CheckedAt *time.Time `json:"checked_at,omitempty"`
}

// Report is the body of /healthz and /readyz.
type Report struct {
	// Status is "healthy", "degraded" (a non-critical check fails) or
	// "unhealthy" for /healthz; "ready", "not_ready" or "shutting_down"
	// for /readyz.
	Status string `json:"status"`
	// Checks holds every check by name.
	Checks map[string]CheckState `json:"checks"`
}

// Health reports the state of every probed and reported check, and whether
// every critical one passes.
func (c *Checker) Health() (Report, bool) {
	c.mu.Lock()
	rep := Report{Checks: make(map[string]CheckState, len(c.mu.probes)+len(c.mu.reported))}
	for _, p := range c.mu.probes {
		st := CheckState{OK: p.ok, Critical: p.critical, Failures: p.failures}
		if p.lastErr != nil {
			st.Error = p.lastErr.Error()
		}
		since := p.since
		st.Since = &since
		if !p.checked.IsZero() {
			checked := p.checked
			st.CheckedAt = &checked
		}
		rep.Checks[p.name] = st
	}
	reported := c.mu.reported
	c.mu.Unlock()
	// Reported checks are called without the lock held.
	for _, r := range reported {
		st := CheckState{OK: true, Critical: r.critical}
		if err := r.fn(); err != nil {
			st.OK, st.Error = false, err.Error()
		}
		rep.Checks[r.name] = st
	}
	healthy, degraded := true, false
	for _, st := range rep.Checks {
		switch {
		case st.OK:
		case st.Critical:
			healthy = false
		default:
			degraded = true
		}
	}
	switch {
	case !healthy:
		rep.Status = "unhealthy"
	case degraded:
		rep.Status = "degraded"
	default:
		rep.Status = "healthy"
	}
	return rep, healthy
}

// Ready reports every readiness condition, and whether the process should
// be sent traffic: every condition holds and shutdown has not begun.
func (c *Checker) Ready() (Report, bool) {
	c.mu.Lock()
	conds, shuttingDown := c.mu.readiness, c.mu.shuttingDown
	c.mu.Unlock()
	rep := Report{Status: "ready", Checks: make(map[string]CheckState, len(conds))}
	ready := !shuttingDown
	for _, cond := range conds {
		st := CheckState{OK: true, Critical: true}
		if err := cond.fn(); err != nil {
			st.OK, st.Error = false, err.Error()
			ready = false
		}
		rep.Checks[cond.name] = st
	}
	switch {
	case shuttingDown:
		rep.Status = "shutting_down"
	case !ready:
		rep.Status = "not_ready"
	}
	return rep, ready
}

// HealthHandler answers /healthz: 200 while every critical check passes,
// else 503, with the Report as JSON.
func (c *Checker) HealthHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		rep, ok := c.Health()
		writeReport(w, rep, ok)
	})
}

// ReadyHandler answers /readyz: 200 while ready, else 503, with the Report
// as JSON.
func (c *Checker) ReadyHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		rep, ok := c.Ready()
		writeReport(w, rep, ok)
	})
}

// Register adds GET /healthz and GET /readyz to mux.
func (c *Checker) Register(mux *http.ServeMux) {
	mux.Handle("GET /healthz", c.HealthHandler())
	mux.Handle("GET /readyz", c.ReadyHandler())
}

func writeReport(w http.ResponseWriter, rep Report, ok bool) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if ok {
		w.WriteHeader(http.StatusOK)
	} else {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(rep) // the client is gone if this fails
}
