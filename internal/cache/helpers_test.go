package cache_test

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairnfs/cairn/internal/cache"
	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/store"
	"github.com/cairnfs/cairn/internal/store/embedded"
	"github.com/cairnfs/cairn/internal/store/storetest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// t0 is when every test clock starts.
var t0 = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

// clock is a test clock that moves only when told to.
type clock struct{ ns atomic.Int64 }

func (c *clock) Now() time.Time               { return t0.Add(time.Duration(c.ns.Load())) }
func (c *clock) Advance(d time.Duration)      { c.ns.Add(int64(d)) }
func (c *clock) Set(sinceStart time.Duration) { c.ns.Store(int64(sinceStart)) }

// call is one Read that reached the store.
type call struct {
	keys  []string
	feats []string // names
}

// counting is the embedded store with a record of the reads that reach it.
type counting struct {
	*embedded.Store
	mu    sync.Mutex
	calls []call
}

func (s *counting) Read(ctx context.Context, ns *feature.Namespace, keys []string, feats []*feature.Feature) ([]store.Row, error) {
	c := call{keys: slices.Clone(keys)}
	for _, f := range feats {
		c.feats = append(c.feats, f.Name)
	}
	s.mu.Lock()
	s.calls = append(s.calls, c)
	s.mu.Unlock()
	return s.Store.Read(ctx, ns, keys, feats)
}

// take returns the reads made since the last take.
func (s *counting) take() []call {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.calls
	s.calls = nil
	return c
}

// env is a cache over a fresh embedded store, with its clock and metrics.
type env struct {
	t     *testing.T
	st    *counting
	clock *clock
	reg   *prometheus.Registry
	c     *cache.Cache
	user  *feature.Namespace
}

const ttl = time.Minute

// newEnv caches namespace user with TTL ttl and the given bound and
// CacheMisses.
func newEnv(t *testing.T, maxEntries int, cacheMisses bool) *env {
	t.Helper()
	st, err := embedded.Open(t.TempDir(), embedded.Options{Logger: quiet, CacheBytes: 1 << 20, MemTableBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	e := &env{t: t, st: &counting{Store: st}, clock: &clock{}, reg: prometheus.NewRegistry()}
	e.user, _ = storetest.Registry().Namespace("user")
	cfg := cache.DefaultConfig()
	cfg.Namespaces = []cache.NamespaceConfig{{Namespace: "user", TTL: ttl, MaxEntries: maxEntries}}
	cfg.CacheMisses = cacheMisses
	cfg.Now = e.clock.Now
	if e.c, err = cache.New(e.st, cfg, e.reg, quiet); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) feats(names ...string) []*feature.Feature {
	e.t.Helper()
	return featsOf(e.t, e.user, names...)
}

func featsOf(t testing.TB, ns *feature.Namespace, names ...string) []*feature.Feature {
	t.Helper()
	var fs []*feature.Feature
	for _, n := range names {
		f, ok := ns.Feature(n)
		if !ok {
			t.Fatalf("no feature %s.%s", ns.Name, n)
		}
		fs = append(fs, f)
	}
	return fs
}

// write stores name=value pairs for key, observed at at.
func (e *env) write(key string, at time.Time, kv ...any) {
	e.t.Helper()
	w := store.EntityWrite{Namespace: e.user, Key: key}
	for i := 0; i < len(kv); i += 2 {
		f := e.feats(kv[i].(string))[0]
		w.Values = append(w.Values, store.Value{Feature: f, Value: kv[i+1], ObservedAt: at})
	}
	if err := e.st.Write(context.Background(), []store.EntityWrite{w}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) read(keys []string, names ...string) []store.Row {
	e.t.Helper()
	rows, err := e.c.Read(context.Background(), e.user, keys, e.feats(names...))
	if err != nil {
		e.t.Fatal(err)
	}
	if len(rows) != len(keys) {
		e.t.Fatalf("%d rows for %d keys", len(rows), len(keys))
	}
	return rows
}

// expectCalls checks the store reads made since the last check.
func (e *env) expectCalls(want ...call) {
	e.t.Helper()
	got := e.st.take()
	if len(got) != len(want) {
		e.t.Fatalf("store reads: got %v, want %v", got, want)
	}
	for i := range got {
		if !slices.Equal(got[i].keys, want[i].keys) || !slices.Equal(got[i].feats, want[i].feats) {
			e.t.Fatalf("store read %d: got %v, want %v", i, got[i], want[i])
		}
	}
}

// metric returns the value of a cache metric for namespace user (and the
// given reason, for evictions).
func (e *env) metric(name string, reason ...string) float64 {
	e.t.Helper()
	return metricValue(e.t, e.reg, name, reason...)
}

// metricValue returns the value of a cache metric in reg for namespace
// user (and the given reason, for evictions), or 0 when it has none.
func metricValue(t testing.TB, reg *prometheus.Registry, name string, reason ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "namespace" && l.GetValue() != "user" ||
					l.GetName() == "reason" && (len(reason) == 0 || l.GetValue() != reason[0]) {
					continue metrics
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

// cell describes an expected cell: a stored value, or absent (nil value
// with found false).
type cell struct {
	found bool
	value any
	hit   bool
}

func (e *env) check(what string, row store.Row, found bool, want ...cell) {
	e.t.Helper()
	if row.Found != found {
		e.t.Errorf("%s: row found %v, want %v", what, row.Found, found)
	}
	if len(row.Cells) != len(want) {
		e.t.Fatalf("%s: %d cells, want %d", what, len(row.Cells), len(want))
	}
	for j, w := range want {
		c := row.Cells[j]
		if c.Found != w.found || c.CacheHit != w.hit || !equalValue(c.Value, w.value) {
			e.t.Errorf("%s: cell %d = {found %v hit %v %#v}, want {found %v hit %v %#v}",
				what, j, c.Found, c.CacheHit, c.Value, w.found, w.hit, w.value)
		}
	}
}

func equalValue(a, b any) bool {
	switch a := a.(type) {
	case []float32:
		b, ok := b.([]float32)
		return ok && slices.Equal(a, b)
	case time.Time:
		b, ok := b.(time.Time)
		return ok && a.Equal(b)
	}
	return a == b
}
