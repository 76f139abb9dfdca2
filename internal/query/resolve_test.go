package query_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairnfs/cairn/internal/cache"
	"github.com/cairnfs/cairn/internal/config"
	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/node"
	"github.com/cairnfs/cairn/internal/query"
	"github.com/cairnfs/cairn/internal/resolver"
	"github.com/cairnfs/cairn/internal/store"
	"github.com/cairnfs/cairn/internal/store/embedded"
	"github.com/cairnfs/cairn/internal/testserver"
	"github.com/cairnfs/cairn/internal/testserver/resolversvc"
)

func TestMain(m *testing.M) { os.Exit(testserver.Run(m)) }

// sink keeps what the engine hands to persistence.
type sink struct {
	mu       sync.Mutex
	entities map[string]map[string]any // key → fqn → value
}

func (s *sink) Computed(ns *feature.Namespace, key string, feats []*feature.Feature, values []any, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.entities == nil {
		s.entities = map[string]map[string]any{}
	}
	m := map[string]any{}
	for i, f := range feats {
		m[f.FQN] = values[i]
	}
	s.entities[key] = m
}

type fixture struct {
	reg     *feature.Registry
	st      query.Store
	eng     *query.Engine
	svc     *resolversvc.Service
	sink    *sink
	f       func(string) *feature.Feature
	user    *feature.Namespace
	timeout time.Duration
}

func newFixture(t *testing.T, st query.Store) *fixture {
	t.Helper()
	reg, err := feature.Parse("t.yaml", []byte(resolversvc.Features))
	if err != nil {
		t.Fatal(err)
	}
	svc := resolversvc.Start(t)
	env := map[string]string{"CREDIT_URL": svc.URL(), "CREDIT_TOKEN": resolversvc.Token}
	set, err := resolver.New(context.Background(), reg, resolver.Config{Getenv: func(k string) string { return env[k] }}, prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(set.Close)
	if st == nil {
		e, err := embedded.Open(t.TempDir(), embedded.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close() })
		st = e
	}
	fx := &fixture{reg: reg, st: st, svc: svc, sink: &sink{}, timeout: 5 * time.Second}
	fx.eng = query.NewEngine(st, prometheus.NewRegistry(), nil)
	fx.eng.UseResolvers(set, fx.sink)
	fx.f = func(fqn string) *feature.Feature { x, _ := reg.Lookup(fqn); return x }
	fx.user, _ = reg.Namespace("user")
	return fx
}

// query asks outputs of keys and returns the fields by "key fqn".
func (fx *fixture) query(t *testing.T, keys []string, staleness map[string]feature.Staleness, outputs ...string) map[string]query.Field {
	t.Helper()
	req := &query.Request{Keys: map[*feature.Namespace][]string{fx.user: keys}, Staleness: map[*feature.Feature]feature.Staleness{}}
	for _, o := range outputs {
		req.Outputs = append(req.Outputs, fx.f(o))
	}
	for fqn, s := range staleness {
		req.Staleness[fx.f(fqn)] = s
	}
	ctx, cancel := context.WithTimeout(context.Background(), fx.timeout)
	defer cancel()
	out := map[string]query.Field{}
	for _, fl := range fx.eng.Query(ctx, req) {
		out[fl.Key+" "+fl.Feature.FQN] = fl
	}
	fx.eng.Publish(req)
	return out
}

func (fx *fixture) write(t *testing.T, key string, at time.Time, vals map[string]any) {
	t.Helper()
	w, ok := fx.st.(interface {
		Write(context.Context, []store.EntityWrite) error
	})
	if !ok {
		t.Fatalf("store %T cannot be written", fx.st)
	}
	e := store.EntityWrite{Namespace: fx.user, Key: key}
	for fqn, v := range vals {
		e.Values = append(e.Values, store.Value{Feature: fx.f(fqn), Value: v, ObservedAt: at})
	}
	if err := w.Write(context.Background(), []store.EntityWrite{e}); err != nil {
		t.Fatal(err)
	}
}

// A miss is computed and handed to persistence; a fresh stored value is
// served without a call; a stale one, or a query asking for 0s, is
// computed again; a feature of max staleness 0s is computed every time
// and never persisted.
func TestResolveByStaleness(t *testing.T) {
	fx := newFixture(t, nil)
	before := time.Now()
	got := fx.query(t, []string{"ada"}, nil, "user.credit_score", "user.tier", "user.id")
	cs := got["ada user.credit_score"]
	if cs.Err != nil || cs.Value != int64(650) || cs.Resolver == nil || cs.Resolver.FQN != "user.credit" || cs.ObservedAt.Before(before.Truncate(time.Microsecond)) {
		t.Fatalf("credit_score of a miss: %+v, want 650 computed by user.credit now", cs)
	}
	if tier := got["ada user.tier"]; tier.Value != "gold" || tier.Resolver == nil || tier.Resolver.FQN != "user.tier_of" {
		t.Errorf("tier from the computed score: %+v, want gold by user.tier_of", tier)
	}
	if fx.svc.Calls.Load() != 1 {
		t.Errorf("%d calls, want 1", fx.svc.Calls.Load())
	}
	persisted := fx.sink.entities["ada"]
	if persisted["user.credit_score"] != int64(650) || persisted["user.tier"] != "gold" {
		t.Errorf("handed to persistence: %v, want credit_score and tier", persisted)
	}
	if _, ok := persisted["user.fresh_score"]; ok {
		t.Errorf("fresh_score (max staleness 0s) handed to persistence: %v", persisted)
	}

	// The writer stores it: served from the store from then on.
	now := time.Now()
	fx.write(t, "ada", now, map[string]any{"user.credit_score": int64(650), "user.tier": "gold"})
	calls := fx.svc.Calls.Load()
	got = fx.query(t, []string{"ada"}, nil, "user.credit_score", "user.tier")
	if cs := got["ada user.credit_score"]; cs.Value != int64(650) || cs.Resolver != nil || fx.svc.Calls.Load() != calls {
		t.Errorf("stored and fresh: %+v after %d calls (had %d), want the store's value and no call", cs, fx.svc.Calls.Load(), calls)
	}
	// A query asking for 0s computes it again.
	got = fx.query(t, []string{"ada"}, map[string]feature.Staleness{"user.credit_score": feature.Recompute}, "user.credit_score")
	if cs := got["ada user.credit_score"]; cs.Resolver == nil || fx.svc.Calls.Load() != calls+1 {
		t.Errorf("staleness 0s in the query: %+v, want computed", cs)
	}
	// Older than its hour: computed again.
	fx.write(t, "bob", now.Add(-2*time.Hour), map[string]any{"user.credit_score": int64(1)})
	got = fx.query(t, []string{"bob"}, nil, "user.credit_score")
	if cs := got["bob user.credit_score"]; cs.Value != int64(650) || cs.Resolver == nil {
		t.Errorf("stale stored value: %+v, want recomputed 650", cs)
	}
	// ... unless the query accepts any age.
	got = fx.query(t, []string{"bob"}, map[string]feature.Staleness{"user.credit_score": feature.Infinite}, "user.credit_score")
	if cs := got["bob user.credit_score"]; cs.Value != int64(1) || cs.Resolver != nil {
		t.Errorf("stale value with staleness infinity in the query: %+v, want the stored 1", cs)
	}
	// fresh_score: computed on every query.
	calls = fx.svc.Calls.Load()
	for range 3 {
		fx.query(t, []string{"ada"}, nil, "user.fresh_score")
	}
	if n := fx.svc.Calls.Load() - calls; n != 3 {
		t.Errorf("fresh_score (0s) asked 3 times: %d calls, want 3", n)
	}
	// A key the service does not answer resolves to null, no error.
	got = fx.query(t, []string{"unknown"}, nil, "user.credit_score", "user.tier")
	if cs := got["unknown user.credit_score"]; cs.Err != nil || cs.Value != nil || cs.Resolver == nil {
		t.Errorf("key missing from the answer: %+v, want null computed", cs)
	}
	if tier := got["unknown user.tier"]; tier.Err != nil || tier.Value != nil {
		t.Errorf("expression over a null input: %+v, want null", tier)
	}
}

// Fifty concurrent queries for one missing entity make one call.
func TestResolveSharesCalls(t *testing.T) {
	fx := newFixture(t, nil)
	fx.svc.Delay.Store(int64(300 * time.Millisecond))
	var wg sync.WaitGroup
	var wrong atomic.Int64
	for range 50 {
		wg.Go(func() {
			got := fx.query(t, []string{"carol"}, nil, "user.credit_score")
			if got["carol user.credit_score"].Value != int64(750) {
				wrong.Add(1)
			}
		})
	}
	wg.Wait()
	if n := fx.svc.CallsFor("carol"); n != 1 || wrong.Load() != 0 {
		t.Errorf("50 concurrent queries: %d calls for the key, %d wrong answers; want 1 and 0", n, wrong.Load())
	}
}

// A resolver that hangs ends at the query's deadline as timed out; one
// that fails answers a failure naming why; the store's features are
// answered either way.
func TestResolveFailures(t *testing.T) {
	fx := newFixture(t, nil)
	fx.write(t, "dan", time.Now(), map[string]any{"user.age": int64(42)})
	fx.svc.SetMode("hang")
	fx.timeout = 300 * time.Millisecond
	start := time.Now()
	got := fx.query(t, []string{"dan"}, nil, "user.credit_score", "user.age", "user.decade")
	took := time.Since(start)
	var re *resolver.Error
	if cs := got["dan user.credit_score"]; !errors.As(cs.Err, &re) || !re.TimedOut || re.Resolver.FQN != "user.credit" {
		t.Errorf("hanging resolver: %+v, want a timed-out *resolver.Error of user.credit", cs)
	}
	if took > 2*time.Second {
		t.Errorf("the query took %v with a deadline of 300ms", took)
	}
	if age := got["dan user.age"]; age.Value != int64(42) || age.Err != nil {
		t.Errorf("age beside a hanging resolver: %+v", age)
	}
	if d := got["dan user.decade"]; d.Value != int64(4) || d.Err != nil {
		t.Errorf("decade (age / 10): %+v, want 4", d)
	}
	fx.timeout = 5 * time.Second
	for mode, reason := range map[string]string{
		"500":         "500",
		"malformed":   "malformed",
		"wrong-type":  "credit_score",
		"unknown-key": "stranger",
	} {
		fx.svc.SetMode(mode)
		got := fx.query(t, []string{"erin"}, nil, "user.credit_score", "user.tier")
		cs := got["erin user.credit_score"]
		if !errors.As(cs.Err, &re) || re.TimedOut || !strings.Contains(cs.Err.Error(), reason) {
			t.Errorf("%s: %v, want a failure naming %q", mode, cs.Err, reason)
		}
		if tier := got["erin user.tier"]; tier.Err == nil {
			t.Errorf("%s: tier, computed from the failed score: %+v, want a failure", mode, tier)
		}
	}
}

// Expressions read their inputs from every store alike.
func TestExpressionOnEveryStore(t *testing.T) {
	stores := map[string]string{
		"redis":  "redis://" + testserver.Redis(t) + "/0?prefix=expr" + fmt.Sprint(time.Now().UnixNano()) + ":",
		"dynamo": "dynamodb:///cairn-expr?region=us-east-1&endpoint=" + testserver.Moto(t),
	}
	for name, uri := range stores {
		t.Run(name, func(t *testing.T) {
			env := config.FromMap(map[string]string{"DYNAMODB_CREATE_TABLES_IF_NOT_EXISTS": "true"})
			sc, err := node.StoreFromEnv(env, uri)
			if err != nil {
				t.Fatal(err)
			}
			st, err := node.OpenStore(context.Background(), sc, prometheus.NewRegistry(), nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			fx := newFixture(t, st)
			fx.write(t, "fay", time.Now(), map[string]any{"user.age": int64(37)})
			got := fx.query(t, []string{"fay", "nobody"}, nil, "user.decade")
			if d := got["fay user.decade"]; d.Value != int64(3) || d.Resolver == nil {
				t.Errorf("decade of 37: %+v, want 3", d)
			}
			if d := got["nobody user.decade"]; d.Value != nil || d.Err != nil {
				t.Errorf("decade without an age: %+v, want null", d)
			}
		})
	}
	t.Run("embedded", func(t *testing.T) {
		fx := newFixture(t, nil)
		fx.write(t, "fay", time.Now(), map[string]any{"user.age": int64(37)})
		if d := fx.query(t, []string{"fay"}, nil, "user.decade")["fay user.decade"]; d.Value != int64(3) {
			t.Errorf("decade of 37: %+v, want 3", d)
		}
	})
}

// Computed values enter the namespace cache at once: the same server
// serves them, as cache hits, instead of computing them again before the
// writer has stored them.
func TestResolvedValuesEnterTheCache(t *testing.T) {
	st, err := embedded.Open(t.TempDir(), embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg := cache.DefaultConfig()
	cfg.Namespaces = []cache.NamespaceConfig{{Namespace: "user", TTL: time.Minute}}
	c, err := cache.New(st, cfg, prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	fx := newFixture(t, c)
	got := fx.query(t, []string{"hal"}, nil, "user.credit_score", "user.fresh_score")
	if cs := got["hal user.credit_score"]; cs.Resolver == nil || cs.Value != int64(650) {
		t.Fatalf("first query: %+v, want computed", cs)
	}
	calls := fx.svc.Calls.Load()
	got = fx.query(t, []string{"hal"}, nil, "user.credit_score")
	if cs := got["hal user.credit_score"]; cs.Resolver != nil || !cs.CacheHit || cs.Value != int64(650) || fx.svc.Calls.Load() != calls {
		t.Errorf("second query: %+v after %d more calls; want a cache hit of 650 and no call", cs, fx.svc.Calls.Load()-calls)
	}
	// fresh_score (0s) is never served from anywhere but its resolver.
	if fs := fx.query(t, []string{"hal"}, nil, "user.fresh_score")["hal user.fresh_score"]; fs.Resolver == nil {
		t.Errorf("fresh_score: %+v, want computed again", fs)
	}
}
