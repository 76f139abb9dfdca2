// Package resolver computes the features the online store cannot answer:
// absent, or older than their maximum staleness. Each resolver is declared
// in the feature file (feature.Resolver) and is one of three kinds: an HTTP
// service, a PostgreSQL query, or an expression over other features of the
// same entity.
//
// A [Set] holds a server's resolvers, built and checked at start: the
// environment variables they name are set, a sql resolver's columns can
// become its features' types, an expression type-checks, and no resolver
// depends on itself. It runs them for queries:
//
//   - keys are sent in batches of the declaration's batch_size, at most
//     max_concurrency calls of one resolver in flight at once;
//   - a key whose resolver is already computing it for another query joins
//     that call instead of making its own (a shared call), so that many
//     concurrent queries for one missing entity make one call;
//   - a call ends at the declaration's timeout; a query waiting for it
//     stops waiting at its own deadline.
//
// Every failure is a *[Error] naming the resolver, the features it was
// computing and why; a timeout is one with TimedOut set.
package resolver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/lograte"
)

// Config is what a Set is built with besides the registry.
type Config struct {
	// Getenv reads the environment variables the feature file names as
	// ${NAME}. Default os.Getenv.
	Getenv func(string) string
	// HTTPClient makes the http resolvers' calls. Default a client of its
	// own, with keep-alive connections, no timeout of its own (each call
	// has its resolver's), and redirects not followed.
	HTTPClient *http.Client
	// StartTimeout bounds what building the set does over the network:
	// connecting to and describing the queries of sql resolvers. Default
	// 10s.
	StartTimeout time.Duration
	// Lenient builds the resolvers it can and logs the others' problems
	// as warnings instead of failing: their features then answer
	// RESOLVER_FAILED, saying why. For `cairn dev`, whose example feature
	// file declares resolvers whose services may not be running. Default
	// false: a production server refuses to start.
	Lenient bool
}

// Error is a resolver's failure to compute its features for a key.
type Error struct {
	// Resolver is the resolver that failed.
	Resolver *feature.Resolver
	// TimedOut is set when the call outlived its timeout or the query's
	// deadline.
	TimedOut bool
	// Err is the cause.
	Err error
}

func (e *Error) Error() string {
	if e.TimedOut {
		return fmt.Sprintf("resolver %s (%s) timed out: %v", e.Resolver.FQN, e.Resolver.Kind, e.Err)
	}
	return fmt.Sprintf("resolver %s (%s) failed: %v", e.Resolver.FQN, e.Resolver.Kind, e.Err)
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Set is a server's resolvers. Its methods are safe for concurrent use.
type Set struct {
	byDecl map[*feature.Resolver]*runner
	// missing holds the resolvers a lenient Set could not build, with
	// why.
	missing map[*feature.Resolver]error
	order   []*feature.Resolver
	m       *metrics
	log     *slog.Logger
	errLog  lograte.Limiter
}

// runner runs one resolver.
type runner struct {
	d     *feature.Resolver
	k     kind
	in    []*feature.Feature
	slots chan struct{} // max_concurrency
	// shared is set for kinds that do I/O: their calls are shared
	// between queries. An expression is evaluated by each query itself.
	shared bool
	mu     struct {
		sync.Mutex
		inflight map[string]*batchCall // by key
	}
}

// batchCall is one batch in flight; queries asking for its keys wait for it.
type batchCall struct {
	done chan struct{}
	keys map[string]int // key → index in rows
	rows []Row
	err  error
}

// New builds the resolvers of reg. It returns a nil Set, and no error,
// when reg declares none. A problem with any resolver is an error naming
// it; all of them are reported.
func New(ctx context.Context, reg *feature.Registry, cfg Config, prom prometheus.Registerer, log *slog.Logger) (*Set, error) {
	if cfg.Getenv == nil {
		cfg.Getenv = os.Getenv
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{
			Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, MaxIdleConnsPerHost: 64, IdleConnTimeout: 90 * time.Second},
			// A redirect would turn the POST into a GET without its body:
			// a 3xx is answered as the failure it is.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 10 * time.Second
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var decls []*feature.Resolver
	for _, ns := range reg.Namespaces() {
		decls = append(decls, ns.Resolvers...)
	}
	if len(decls) == 0 {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.StartTimeout)
	defer cancel()
	kinds := map[*feature.Resolver]kind{}
	missing := map[*feature.Resolver]error{}
	var errs []error
	for _, d := range decls {
		var (
			k   kind
			err error
		)
		switch d.Kind {
		case feature.ResolverHTTP:
			k, err = newHTTP(d, cfg.Getenv, cfg.HTTPClient)
		case feature.ResolverSQL:
			k, err = newSQL(ctx, d, cfg.Getenv)
		case feature.ResolverExpression:
			k, err = newExpression(d)
		default:
			err = fmt.Errorf("kind %q is not one cairn runs", d.Kind)
		}
		if err != nil {
			if !strings.Contains(err.Error(), d.FQN) {
				err = fmt.Errorf("resolver %s: %w", d.FQN, err)
			}
			if cfg.Lenient {
				log.Warn("resolver: not built; its features answer RESOLVER_FAILED", "resolver", d.FQN, "err", err)
				missing[d] = err
				continue
			}
			errs = append(errs, err)
			continue
		}
		if l, ok := k.(interface{ deferred() error }); ok {
			log.Warn("resolver: its database was not reached at start; the query is checked at the first call that reaches it, and calls fail until then",
				"resolver", d.FQN, "err", l.deferred())
		}
		kinds[d] = k
	}
	s := &Set{byDecl: map[*feature.Resolver]*runner{}, log: log, errLog: lograte.Limiter{Interval: time.Minute},
		missing: missing}
	if len(errs) == 0 {
		order, err := checkGraph(kinds)
		if err != nil {
			errs = append(errs, err)
		}
		// Resolvers not built read nothing: they come first, and fail
		// every key they are asked for.
		for _, d := range decls {
			if missing[d] != nil {
				s.order = append(s.order, d)
			}
		}
		s.order = append(s.order, order...)
	}
	if err := errors.Join(errs...); err != nil {
		for _, k := range kinds {
			k.close()
		}
		return nil, err
	}
	s.m = newMetrics()
	if prom != nil {
		if err := s.m.register(prom); err != nil {
			for _, k := range kinds {
				k.close()
			}
			return nil, err
		}
	}
	for d, k := range kinds {
		r := &runner{d: d, k: k, in: k.inputs(), shared: d.Kind != feature.ResolverExpression,
			slots: make(chan struct{}, max(1, d.MaxConcurrency))}
		r.mu.inflight = map[string]*batchCall{}
		s.byDecl[d] = r
	}
	return s, nil
}

// Order returns the resolvers with every one after those computing its
// inputs.
func (s *Set) Order() []*feature.Resolver { return s.order }

// Inputs returns the features of the same entity that d reads (an
// expression's variables); nil for a resolver that reads none.
func (s *Set) Inputs(d *feature.Resolver) []*feature.Feature {
	if r := s.byDecl[d]; r != nil {
		return r.in
	}
	return nil
}

// Close releases the resolvers' connections.
func (s *Set) Close() {
	if s == nil {
		return
	}
	for _, r := range s.byDecl {
		r.k.close()
	}
}

// Resolve computes d's outputs for keys, which must be distinct: one Row
// per key, in order, whose Values follow d.Outputs. inputs, for a resolver
// with inputs, holds per key its values of Inputs(d). A key that failed
// has Row.Err, an *Error. Resolve returns when every key is answered or
// ctx ends; keys still being computed then fail as timed out.
func (s *Set) Resolve(ctx context.Context, d *feature.Resolver, keys []string, inputs [][]any) []Row {
	r := s.byDecl[d]
	out := make([]Row, len(keys))
	if r == nil {
		why := s.missing[d]
		if why == nil {
			why = errors.New("the feature file the server started with does not declare it")
		}
		for i := range out {
			out[i].Err = &Error{Resolver: d, Err: fmt.Errorf("not built at start: %w", why)}
		}
		return out
	}
	if !r.shared {
		s.direct(ctx, r, keys, inputs, out)
		return out
	}

	// Keys another query is computing join its call; the rest are split
	// into batches of this query's own.
	type joined struct {
		i int
		c *batchCall
	}
	var joins []joined
	var mine []*batchCall
	r.mu.Lock()
	var cur *batchCall
	for i, key := range keys {
		if c := r.mu.inflight[key]; c != nil {
			joins = append(joins, joined{i, c})
			continue
		}
		if cur == nil || len(cur.keys) == d.BatchSize {
			cur = &batchCall{done: make(chan struct{}), keys: make(map[string]int, min(d.BatchSize, len(keys)-i))}
			mine = append(mine, cur)
		}
		cur.keys[key] = len(cur.keys)
		r.mu.inflight[key] = cur
	}
	r.mu.Unlock()
	if len(joins) > 0 {
		s.m.shared.WithLabelValues(d.FQN).Add(float64(len(joins)))
	}

	// A call outlives the query that started it, up to the resolver's
	// timeout, for the other queries that joined it; this query stops
	// waiting at its own deadline.
	callCtx := context.WithoutCancel(ctx)
	for _, c := range mine {
		go s.run(callCtx, r, c)
	}
	wait := func(c *batchCall, key string, i int) {
		select {
		case <-c.done:
			if c.err != nil {
				out[i].Err = c.err
				return
			}
			out[i] = c.rows[c.keys[key]]
		case <-ctx.Done():
			out[i].Err = &Error{Resolver: d, TimedOut: errors.Is(ctx.Err(), context.DeadlineExceeded),
				Err: fmt.Errorf("not answered within the query's deadline: %w", context.Cause(ctx))}
		}
	}
	for i, key := range keys {
		if c := findCall(mine, key); c != nil {
			wait(c, key, i)
		}
	}
	for _, j := range joins {
		wait(j.c, keys[j.i], j.i)
	}
	return out
}

func findCall(calls []*batchCall, key string) *batchCall {
	for _, c := range calls {
		if _, ok := c.keys[key]; ok {
			return c
		}
	}
	return nil
}

// run makes call c and releases its keys for the next queries.
func (s *Set) run(ctx context.Context, r *runner, c *batchCall) {
	defer func() {
		r.mu.Lock()
		for key := range c.keys {
			if r.mu.inflight[key] == c {
				delete(r.mu.inflight, key)
			}
		}
		r.mu.Unlock()
		close(c.done)
	}()
	keys := make([]string, len(c.keys))
	for key, i := range c.keys {
		keys[i] = key
	}
	ctx, cancel := context.WithTimeout(ctx, r.d.Timeout)
	defer cancel()
	c.rows, c.err = s.call(ctx, r, keys, nil)
}

// direct evaluates an expression for keys on the caller's goroutine. It
// does no I/O and its cost is bounded, so it runs even when the query's
// deadline has passed: its inputs are at hand, and the answer is better
// with its value than with a timeout.
func (s *Set) direct(ctx context.Context, r *runner, keys []string, inputs [][]any, out []Row) {
	ctx = context.WithoutCancel(ctx)
	for from := 0; from < len(keys); from += r.d.BatchSize {
		to := min(from+r.d.BatchSize, len(keys))
		var in [][]any
		if inputs != nil {
			in = inputs[from:to]
		}
		rows, err := s.call(ctx, r, keys[from:to], in)
		for i := from; i < to; i++ {
			if err != nil {
				out[i].Err = err
				continue
			}
			out[i] = rows[i-from]
		}
	}
}

// call makes one call of r's kind, within a slot, and checks its answer.
// Its error is an *Error; so are its rows'.
func (s *Set) call(ctx context.Context, r *runner, keys []string, inputs [][]any) ([]Row, error) {
	d := r.d
	fail := func(err error) ([]Row, error) {
		e := &Error{Resolver: d, Err: err, TimedOut: errors.Is(err, context.DeadlineExceeded)}
		outcome := "error"
		if e.TimedOut {
			outcome = "timeout"
		}
		s.m.calls.WithLabelValues(d.FQN, outcome).Inc()
		if ok, suppressed := s.errLog.Allow(time.Now()); ok {
			s.log.Warn("resolver: call failed", "resolver", d.FQN, "kind", d.Kind, "keys", len(keys),
				"timed_out", e.TimedOut, "err", err, "suppressed", suppressed)
		}
		return nil, e
	}
	if r.shared {
		start := time.Now()
		select {
		case r.slots <- struct{}{}:
		case <-ctx.Done():
			return fail(fmt.Errorf("waiting for one of its %d call slots (max_concurrency): %w", cap(r.slots), context.Cause(ctx)))
		}
		defer func() { <-r.slots }()
		s.m.slotWait.WithLabelValues(d.FQN).Observe(time.Since(start).Seconds())
	}
	s.m.inFlight.WithLabelValues(d.FQN).Inc()
	callStart := time.Now()
	rows, err := r.k.call(ctx, keys, inputs)
	s.m.inFlight.WithLabelValues(d.FQN).Dec()
	s.m.duration.WithLabelValues(d.FQN).Observe(time.Since(callStart).Seconds())
	s.m.keys.WithLabelValues(d.FQN).Add(float64(len(keys)))
	if err == nil && len(rows) != len(keys) {
		err = fmt.Errorf("answered %d rows for %d keys", len(rows), len(keys))
	}
	if err == nil {
		for i := range rows {
			if err = checkRow(d, keys[i], &rows[i]); err != nil {
				break
			}
		}
	}
	if err != nil {
		return fail(err)
	}
	s.m.calls.WithLabelValues(d.FQN, "ok").Inc()
	failed := 0
	for i := range rows {
		if rows[i].Err != nil {
			failed++
			rows[i].Err = &Error{Resolver: d, Err: rows[i].Err}
		}
	}
	if failed > 0 {
		s.m.keyErrors.WithLabelValues(d.FQN).Add(float64(failed))
	}
	return rows, nil
}

// checkRow checks a kind's answer for a key against the declaration: one
// value per output, each of its feature's type.
func checkRow(d *feature.Resolver, key string, row *Row) error {
	if row.Err != nil || row.Values == nil {
		return nil
	}
	if len(row.Values) != len(d.Outputs) {
		return fmt.Errorf("key %q: %d values for %d outputs", key, len(row.Values), len(d.Outputs))
	}
	var bad []string
	for j, f := range d.Outputs {
		if err := feature.Check(f.Type, row.Values[j]); err != nil {
			bad = append(bad, fmt.Sprintf("%s: %v", f.Name, err))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("key %q: %s", key, strings.Join(bad, "; "))
	}
	return nil
}
