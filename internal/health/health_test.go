package health_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/health"
	"github.com/cairnfs/cairn/internal/store"
	"github.com/cairnfs/cairn/internal/store/embedded"
	"github.com/cairnfs/cairn/internal/store/redis"
	"github.com/cairnfs/cairn/internal/testserver"
)

func TestMain(m *testing.M) { os.Exit(testserver.Run(m)) }

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// get asks h for path and returns the status and the decoded report.
func get(t *testing.T, h http.Handler, path string) (int, health.Report) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	var rep health.Report
	if err := json.Unmarshal(rec.Body.Bytes(), &rep); err != nil {
		t.Fatalf("%s: body is not a report: %q", path, rec.Body)
	}
	return rec.Code, rep
}

func handler(c *health.Checker) http.Handler {
	mux := http.NewServeMux()
	c.Register(mux)
	return mux
}

// A probed check fails /healthz only after FailureThreshold failed runs in
// a row, recovers after one success, and a run that hangs is cut at
// ProbeTimeout and counted as failed.
func TestProbeThreshold(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, err := health.New(health.Config{ProbeInterval: time.Second, ProbeTimeout: 100 * time.Millisecond}, nil, quiet())
		if err != nil {
			t.Fatal(err)
		}
		// The n-th run (from 0) does what script[n] says.
		script := []string{"ok", "fail", "fail", "ok", "fail", "hang", "fail", "ok"}
		var mu sync.Mutex
		runs := 0
		c.AddProbe("store", true, func(ctx context.Context) error {
			mu.Lock()
			step := script[min(runs, len(script)-1)]
			runs++
			mu.Unlock()
			switch step {
			case "fail":
				return errors.New("connection refused")
			case "hang":
				<-ctx.Done()
				return ctx.Err()
			}
			return nil
		})
		h := handler(c)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- c.Run(ctx) }()

		// After run n (at n seconds, plus a hang's timeout), /healthz says want.
		want := []int{200, 200, 200, 200, 200, 200, 503, 200}
		for n, code := range want {
			synctest.Wait()
			got, rep := get(t, h, "/healthz")
			if got != code {
				t.Errorf("after run %d (%s): /healthz %d %+v, want %d", n, script[n], got, rep, code)
			}
			if code == 503 && (rep.Checks["store"].OK || rep.Checks["store"].Failures != 3 || rep.Checks["store"].Error == "") {
				t.Errorf("after run %d: store check %+v, want failing with 3 failures and an error", n, rep.Checks["store"])
			}
			time.Sleep(time.Second)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// /readyz holds until every readiness condition does, and fails from
// SetShuttingDown on, naming why.
func TestReadiness(t *testing.T) {
	c, err := health.New(health.Config{}, nil, quiet())
	if err != nil {
		t.Fatal(err)
	}
	var warm sync.Mutex
	warmed := false
	c.AddReadiness("feature_ids", func() error {
		warm.Lock()
		defer warm.Unlock()
		if !warmed {
			return errors.New("feature-id mapping not loaded")
		}
		return nil
	})
	h := handler(c)
	code, rep := get(t, h, "/readyz")
	if code != 503 || rep.Status != "not_ready" || rep.Checks["feature_ids"].Error != "feature-id mapping not loaded" {
		t.Errorf("/readyz before warm-up: %d %+v", code, rep)
	}
	warm.Lock()
	warmed = true
	warm.Unlock()
	if code, rep = get(t, h, "/readyz"); code != 200 || rep.Status != "ready" {
		t.Errorf("/readyz once warm: %d %+v", code, rep)
	}
	c.SetShuttingDown()
	if code, rep = get(t, h, "/readyz"); code != 503 || rep.Status != "shutting_down" {
		t.Errorf("/readyz while shutting down: %d %+v", code, rep)
	}
	// Readiness is not health.
	if code, rep = get(t, h, "/healthz"); code != 200 {
		t.Errorf("/healthz while shutting down: %d %+v", code, rep)
	}
}

// Every invalid setting is reported at once.
func TestConfigValidate(t *testing.T) {
	cfg := health.Config{ProbeInterval: time.Second, ProbeTimeout: 2 * time.Second, FailureThreshold: -1}
	err := cfg.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) || len(joined.Unwrap()) != 2 {
		t.Errorf("%v: want 2 problems", err)
	}
}

// cutProxy is a TCP proxy in front of a server that can cut the network:
// while cut, it closes every connection it holds and every new one.
type cutProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]bool
}

func startCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	t.Cleanup(func() { ln.Close(); p.setCut(true) })
	go p.serve()
	return p
}

func (p *cutProxy) addr() string { return p.ln.Addr().String() }

func (p *cutProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.pipe(c)
	}
}

func (p *cutProxy) pipe(c net.Conn) {
	if !p.track(c) {
		c.Close()
		return
	}
	up, err := net.Dial("tcp", p.target)
	if err != nil || !p.track(up) {
		c.Close()
		if up != nil {
			up.Close()
		}
		return
	}
	go func() { _, _ = io.Copy(up, c); up.Close() }()
	_, _ = io.Copy(c, up)
	c.Close()
}

// track records a connection to close when cut, unless already cut.
func (p *cutProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		return false
	}
	p.conns[c] = true
	return true
}

func (p *cutProxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for c := range p.conns {
			c.Close()
		}
		clear(p.conns)
	}
}

const registryYAML = `
namespaces:
  - name: user
    primary_key: id
    features: {id: string, age: int}
`

// The store probe against redis-server behind a proxy: /healthz is 200
// while the store answers, 503 naming "store" after three failed probes
// once the network to it is cut, and 200 again after one probe once it is
// back. A failing non-critical check (Kafka, for a query server) is
// reported in the body and does not fail /healthz.
func TestStoreProbeRedis(t *testing.T) {
	reg, err := feature.Parse("t.yaml", []byte(registryYAML))
	if err != nil {
		t.Fatal(err)
	}
	proxy := startCutProxy(t, testserver.Redis(t))
	cfg := redis.DefaultConfig()
	cfg.Addr = proxy.addr()
	cfg.KeyPrefix = "cairn-health-" + rand.Text()[:8] + ":"
	cfg.MaxRetries = 0
	st, err := redis.Open(context.Background(), cfg, nil, quiet())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })

	const interval = 100 * time.Millisecond
	c, err := health.New(health.Config{ProbeInterval: interval, ProbeTimeout: 80 * time.Millisecond}, nil, quiet())
	if err != nil {
		t.Fatal(err)
	}
	probe, err := health.StoreProbe(st, reg)
	if err != nil {
		t.Fatal(err)
	}
	c.AddProbe("store", true, probe)
	c.AddReported("kafka", false, func() error { return errors.New("kafka: no broker reachable") })
	h := handler(c)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	defer func() { cancel(); <-done }()

	waitFor := func(what string, within time.Duration, cond func(int, health.Report) bool) (int, health.Report) {
		t.Helper()
		deadline := time.Now().Add(within)
		for {
			code, rep := get(t, h, "/healthz")
			if cond(code, rep) {
				return code, rep
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %v: %d %+v", what, within, code, rep)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// Healthy, Kafka reported as failing but not critical.
	_, rep := waitFor("the first probe", 2*time.Second, func(_ int, rep health.Report) bool {
		return rep.Checks["store"].CheckedAt != nil
	})
	code, rep := get(t, h, "/healthz")
	if code != 200 || rep.Status != "degraded" || !rep.Checks["store"].OK {
		t.Fatalf("store up, Kafka down: %d %+v, want 200 degraded", code, rep)
	}
	if k := rep.Checks["kafka"]; k.OK || k.Critical || k.Error == "" {
		t.Errorf("kafka check %+v, want reported failing, not critical", k)
	}

	// The store is cut off: 503 after three failed probes, not before.
	proxy.setCut(true)
	cutAt := time.Now()
	_, rep = waitFor("503 with the store cut off", 3*time.Second, func(code int, _ health.Report) bool { return code == 503 })
	if took := time.Since(cutAt); took < 2*interval {
		t.Errorf("unhealthy %v after the cut: before three probes at %v could fail", took, interval)
	}
	if s := rep.Checks["store"]; s.OK || !s.Critical || s.Failures < 3 || s.Error == "" || s.Since == nil {
		t.Errorf("store check %+v, want failing, critical, with 3 failures, an error and since", s)
	}
	if rep.Status != "unhealthy" {
		t.Errorf("status %q, want unhealthy", rep.Status)
	}

	// Back: 200 after one successful probe.
	proxy.setCut(false)
	backAt := time.Now()
	waitFor("200 with the store back", 3*time.Second, func(code int, _ health.Report) bool { return code == 200 })
	if took := time.Since(backAt); took > 3*interval {
		t.Errorf("healthy again %v after the store came back, want within about one probe interval of %v", took, interval)
	}
}

// The reserved key is never found and never written: the probe of an
// embedded store succeeds on an empty store and after writes, and no
// write can create the key.
func TestStoreProbeKeyIsReserved(t *testing.T) {
	reg, err := feature.Parse("t.yaml", []byte(registryYAML))
	if err != nil {
		t.Fatal(err)
	}
	st, err := embedded.Open(t.TempDir(), embedded.Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	probe, err := health.StoreProbe(st, reg)
	if err != nil {
		t.Fatal(err)
	}
	if err := probe(context.Background()); err != nil {
		t.Fatalf("probe of an empty store: %v", err)
	}
	user, _ := reg.Namespace("user")
	age, _ := reg.Lookup("user.age")
	err = st.Write(context.Background(), []store.EntityWrite{{Namespace: user, Key: health.ProbeKey,
		Values: []store.Value{{Feature: age, Value: int64(1), ObservedAt: time.Now()}}}})
	if err == nil {
		t.Error("a write of the reserved probe key was accepted")
	}
	rows, err := st.Read(context.Background(), user, []string{health.ProbeKey}, []*feature.Feature{age})
	if err != nil || len(rows) != 1 || rows[0].Cells[0].Found {
		t.Errorf("read of the probe key: %+v %v, want one row, absent", rows, err)
	}
	st.Close()
	if err := probe(context.Background()); err == nil {
		t.Error("probe of a closed store succeeded")
	}
}
