package dynamo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/store"
	"github.com/cairnfs/cairn/internal/testserver"
	"github.com/cairnfs/cairn/internal/testserver/faultproxy"
)

// The tests in this file put a fault-injecting proxy between the store and
// moto, and check what a user of the store sees when DynamoDB throttles,
// fails, or drops connections.

// writeOps are the operations an entity write may use, whichever path
// (single-entity UpdateItem, bulk transaction) the store takes.
var writeOps = []string{opUpdateItem, opTransactWriteItems, opPutItem, "BatchWriteItem"}

// proxied is a Store that reaches moto through a fault proxy.
type proxied struct {
	*Store
	proxy *faultproxy.Proxy
	reg   *prometheus.Registry
}

// openProxied opens a Store on a new table through a new proxy, retrying
// retryable errors maxRetries times, with tune applied to its Config.
func openProxied(t testing.TB, label string, maxRetries int, tune ...func(*Config)) *proxied {
	t.Helper()
	p := faultproxy.Start(t, testserver.Moto(t), 1)
	cfg := testConfig(t, tableName(label))
	cfg.Endpoint = p.URL()
	cfg.MaxRetries = maxRetries
	for _, f := range tune {
		f(&cfg)
	}
	reg := prometheus.NewRegistry()
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s, err := Open(context.Background(), cfg, reg, log)
	if err != nil {
		t.Fatalf("open table %q through the proxy: %v", cfg.Table, err)
	}
	t.Cleanup(func() { s.Close() })
	return &proxied{Store: s, proxy: p, reg: reg}
}

// rule adds a rule to the proxy.
func (p *proxied) rule(t testing.TB, r faultproxy.Rule) faultproxy.RuleID {
	t.Helper()
	id, err := p.proxy.Add(r)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// metric sums the samples of the named metric whose labels include match.
func (p *proxied) metric(t testing.TB, name string, match map[string]string) float64 {
	t.Helper()
	families, err := p.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range families {
		if mf.GetName() != name {
			continue
		}
	samples:
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range match {
				if labels[k] != v {
					continue samples
				}
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

// retries returns cairn_dynamo_retries_total for op, for one reason when
// reason is not empty.
func (p *proxied) retries(t testing.TB, op, reason string) float64 {
	t.Helper()
	match := map[string]string{"operation": op}
	if reason != "" {
		match["reason"] = reason
	}
	return p.metric(t, "cairn_dynamo_retries_total", match)
}

// writeRetries sums retries over every write operation.
func (p *proxied) writeRetries(t testing.TB, reason string) float64 {
	t.Helper()
	var n float64
	for _, op := range writeOps {
		n += p.retries(t, op, reason)
	}
	return n
}

// writeRequests sums the write requests the proxy has seen.
func (p *proxied) writeRequests() int {
	n := 0
	for _, op := range writeOps {
		n += p.proxy.Count(op).Requests
	}
	return n
}

// faultEntities returns n entity writes of user.age and user.name, keys
// prefix0..., values derived from i and gen.
func faultEntities(t testing.TB, ns *feature.Namespace, reg *feature.Registry, prefix string, n, gen int, at time.Time) []store.EntityWrite {
	age, name := feat(t, reg, "user.age"), feat(t, reg, "user.name")
	ws := make([]store.EntityWrite, n)
	for i := range ws {
		ws[i] = store.EntityWrite{Namespace: ns, Key: fmt.Sprintf("%s%d", prefix, i), Values: []store.Value{
			{Feature: age, Value: int64(1000*gen + i), ObservedAt: at},
			{Feature: name, Value: fmt.Sprintf("n%d-%d", gen, i), ObservedAt: at},
		}}
	}
	return ws
}

// checkEntities reads the entities faultEntities wrote and checks them.
func checkEntities(t testing.TB, s *proxied, ns *feature.Namespace, reg *feature.Registry, prefix string, n, gen int) {
	t.Helper()
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	rows, err := s.Read(context.Background(), ns, keys, []*feature.Feature{feat(t, reg, "user.age"), feat(t, reg, "user.name")})
	if err != nil {
		t.Fatalf("read back: %v", err)
	}
	for i, r := range rows {
		if !r.Found || r.Cells[0].Value != int64(1000*gen+i) || r.Cells[1].Value != fmt.Sprintf("n%d-%d", gen, i) {
			t.Errorf("%s: %+v, want generation %d", keys[i], r, gen)
		}
	}
}

// Throttling bursts shorter than the retry budget cost latency, not
// answers: reads and writes succeed, and the retries show in
// cairn_dynamo_retries_total.
func TestFaultThrottleBurstWithinBudget(t *testing.T) {
	const burst = 3
	reg, ns := registry(t)
	s := openProxied(t, "fault-burst", burst+1)
	ctx := context.Background()
	if err := s.Write(ctx, faultEntities(t, ns, reg, "k", 5, 1, t0)); err != nil {
		t.Fatal(err)
	}

	before := s.proxy.Count(opBatchGetItem).Requests
	s.rule(t, faultproxy.Rule{Operations: []string{opBatchGetItem}, Fault: faultproxy.Throttle, Count: burst})
	checkEntities(t, s, ns, reg, "k", 5, 1)
	if n := s.retries(t, opBatchGetItem, reasonThrottle); n != burst {
		t.Errorf("cairn_dynamo_retries_total{operation=BatchGetItem,reason=throttle} = %v, want %d", n, burst)
	}
	if n := s.proxy.Count(opBatchGetItem).Requests - before; n != burst+1 {
		t.Errorf("%d BatchGetItem requests for one read through %d throttles, want %d", n, burst, burst+1)
	}

	// Writes, by both paths: several entities (a transaction) and one (an
	// update).
	for _, w := range []struct{ gen, n int }{{2, 5}, {3, 1}} {
		gen, n := w.gen, w.n
		s.proxy.Clear()
		retried := s.writeRetries(t, reasonThrottle)
		s.rule(t, faultproxy.Rule{Operations: writeOps, Fault: faultproxy.Throttling, Count: burst})
		if err := s.Write(ctx, faultEntities(t, ns, reg, "k", n, gen, t0.Add(time.Duration(gen)*time.Second))); err != nil {
			t.Fatalf("write of %d entities through a throttling burst: %v", n, err)
		}
		if n := s.writeRetries(t, reasonThrottle) - retried; n != burst {
			t.Errorf("write retries for throttling = %v, want %d", n, burst)
		}
		checkEntities(t, s, ns, reg, "k", n, gen)
	}
}

// BatchGetItem answering with every key unprocessed (DynamoDB's throttling
// of a batch) is retried; the keys are never answered as absent.
func TestFaultUnprocessedKeysRetried(t *testing.T) {
	reg, ns := registry(t)
	s := openProxied(t, "fault-unprocessed", 3)
	if err := s.Write(context.Background(), faultEntities(t, ns, reg, "k", 5, 1, t0)); err != nil {
		t.Fatal(err)
	}
	id := s.rule(t, faultproxy.Rule{Operations: []string{opBatchGetItem}, Fault: faultproxy.Unprocessed, Count: 2})
	checkEntities(t, s, ns, reg, "k", 5, 1)
	if n := s.proxy.Fired(id); n != 2 {
		t.Fatalf("unprocessed rule fired %d times, want 2", n)
	}
	if n := s.metric(t, "cairn_dynamo_unprocessed_keys_total", nil); n != 10 {
		t.Errorf("cairn_dynamo_unprocessed_keys_total = %v, want 10 (5 keys, twice)", n)
	}
}

// Past the retry budget, a read fails, with an error (not an absent row),
// after the budget's attempts and within the backoff it allows; a write
// fails with an error that is not a rejection, so that the writer retries
// it.
func TestFaultThrottlePastBudget(t *testing.T) {
	const maxRetries = 1
	reg, ns := registry(t)
	s := openProxied(t, "fault-budget", maxRetries)
	ctx := context.Background()
	if err := s.Write(ctx, faultEntities(t, ns, reg, "k", 3, 1, t0)); err != nil {
		t.Fatal(err)
	}
	s.rule(t, faultproxy.Rule{Fault: faultproxy.Throttle})

	before := s.proxy.Count(opBatchGetItem).Requests
	start := time.Now()
	rows, err := s.Read(ctx, ns, []string{"k0", "k1", "k2"}, []*feature.Feature{feat(t, reg, "user.age")})
	took := time.Since(start)
	if err == nil {
		t.Fatalf("read with DynamoDB throttling everything succeeded: %+v", rows)
	}
	t.Logf("read failed after %v: %v", took, err)
	if n := s.proxy.Count(opBatchGetItem).Requests - before; n != maxRetries+1 {
		t.Errorf("%d BatchGetItem attempts, want %d (1 + MaxRetries)", n, maxRetries+1)
	}
	// The SDK's backoff before one retry is at most 2s; anything near the
	// test's timeout means the failure was not bounded by the budget.
	if took > 5*time.Second {
		t.Errorf("read failed only after %v", took)
	}

	err = s.Write(ctx, faultEntities(t, ns, reg, "k", 3, 2, t0.Add(time.Second)))
	if err == nil {
		t.Fatal("write with DynamoDB throttling everything succeeded")
	}
	if errors.Is(err, store.ErrRejected) {
		t.Errorf("throttled write reported as rejected (never retried by the writer): %v", err)
	}

	// Once DynamoDB recovers, nothing is left over: the old values are
	// intact and the write goes through.
	s.proxy.Clear()
	checkEntities(t, s, ns, reg, "k", 3, 1)
	if err := s.Write(ctx, faultEntities(t, ns, reg, "k", 3, 2, t0.Add(time.Second))); err != nil {
		t.Fatal(err)
	}
	checkEntities(t, s, ns, reg, "k", 3, 2)
}

// 5xx answers and dropped connections are retried like throttling, for
// reads and writes; a write whose answer was lost after it took effect is
// written again harmlessly.
func TestFaultServerErrorsAndDropsRetried(t *testing.T) {
	reg, ns := registry(t)
	s := openProxied(t, "fault-5xx", 4)
	ctx := context.Background()
	if err := s.Write(ctx, faultEntities(t, ns, reg, "k", 4, 1, t0)); err != nil {
		t.Fatal(err)
	}

	reads := []string{opBatchGetItem}
	for _, f := range []faultproxy.Fault{faultproxy.InternalServerError, faultproxy.ServiceUnavailable, faultproxy.Drop} {
		s.rule(t, faultproxy.Rule{Operations: reads, Fault: f, Count: 1})
	}
	checkEntities(t, s, ns, reg, "k", 4, 1)
	if n := s.retries(t, opBatchGetItem, reasonServer); n != 2 {
		t.Errorf("BatchGetItem retries for server errors = %v, want 2 (500, 503)", n)
	}
	if n := s.retries(t, opBatchGetItem, reasonConnection); n != 1 {
		t.Errorf("BatchGetItem retries for connections = %v, want 1", n)
	}

	s.proxy.Clear()
	for _, f := range []faultproxy.Fault{faultproxy.DropResponse, faultproxy.ServiceUnavailable, faultproxy.Drop} {
		s.rule(t, faultproxy.Rule{Operations: writeOps, Fault: f, Count: 1})
	}
	if err := s.Write(ctx, faultEntities(t, ns, reg, "k", 4, 2, t0.Add(time.Second))); err != nil {
		t.Fatalf("write through 5xx and dropped connections: %v", err)
	}
	if n := s.writeRetries(t, ""); n < 3 {
		t.Errorf("write retries = %v, want at least 3", n)
	}
	checkEntities(t, s, ns, reg, "k", 4, 2)
}

// A bulk write cancelled by TransactionConflict is retried and lands whole;
// past the conflict retry budget it fails, to be retried by the writer.
func TestFaultTransactionConflictRetried(t *testing.T) {
	reg, ns := registry(t)
	s := openProxied(t, "fault-txconflict", 3, func(c *Config) { c.TransactionWriteConflictMinRetry = 5 * time.Millisecond })
	ctx := context.Background()
	// The first write assigns the feature ids, so that the transactions
	// below are the only writes.
	if err := s.Write(ctx, faultEntities(t, ns, reg, "k", 5, 1, t0)); err != nil {
		t.Fatal(err)
	}
	if s.proxy.Count(opTransactWriteItems).Requests == 0 {
		t.Fatal("a write of 5 entities sent no TransactWriteItems")
	}

	const conflicts = 2
	id := s.rule(t, faultproxy.Rule{Operations: []string{opTransactWriteItems}, Fault: faultproxy.TransactionConflict, Count: conflicts})
	before := s.proxy.Count(opTransactWriteItems).Requests
	if err := s.Write(ctx, faultEntities(t, ns, reg, "k", 5, 2, t0.Add(time.Second))); err != nil {
		t.Fatalf("bulk write through %d transaction conflicts: %v", conflicts, err)
	}
	if n := s.proxy.Fired(id); n != conflicts {
		t.Errorf("conflict rule fired %d times, want %d", n, conflicts)
	}
	if n := s.retries(t, opTransactWriteItems, reasonConflict); n != conflicts {
		t.Errorf("cairn_dynamo_retries_total{operation=TransactWriteItems,reason=transaction_conflict} = %v, want %d", n, conflicts)
	}
	if n := s.proxy.Count(opTransactWriteItems).Requests - before; n < conflicts+1 {
		t.Errorf("%d transactions sent, want at least %d (the conflicts and the one that lands)", n, conflicts+1)
	}
	checkEntities(t, s, ns, reg, "k", 5, 2)

	// Conflicting forever: the write fails after the conflict retries,
	// with an error that is not a rejection (the writer retries it), and
	// the transactions cannot have half-landed.
	s.proxy.Clear()
	s.rule(t, faultproxy.Rule{Operations: []string{opTransactWriteItems}, Fault: faultproxy.TransactionConflict})
	start := time.Now()
	err := s.Write(ctx, faultEntities(t, ns, reg, "k", 5, 3, t0.Add(2*time.Second)))
	if err == nil {
		t.Fatal("bulk write with every transaction conflicting succeeded")
	}
	t.Logf("conflicting write failed after %v: %v", time.Since(start), err)
	if errors.Is(err, store.ErrRejected) {
		t.Errorf("conflicting write reported as rejected: %v", err)
	}
	if n, want := s.retries(t, opTransactWriteItems, reasonConflict), float64(conflicts+DefaultTransactionWriteConflictMaxRetries); n != want {
		t.Errorf("conflict retries = %v, want %v (the budget of DYNAMODB_TRANSACTION_WRITE_CONFLICT_MAX_RETRIES)", n, want)
	}
	s.proxy.Clear()
	checkEntities(t, s, ns, reg, "k", 5, 2)
}
