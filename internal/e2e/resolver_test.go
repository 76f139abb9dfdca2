package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairnfs/cairn/internal/testserver/resolversvc"
)

// resolvedField is one field of an answer with its meta.
type resolvedField struct {
	Field string          `json:"field"`
	Value json.RawMessage `json:"value"`
	Pkey  string          `json:"pkey"`
	Meta  struct {
		Resolver string `json:"chosen_resolver_fqn"`
	} `json:"meta"`
}

type resolvedAnswer struct {
	Data   []resolvedField `json:"data"`
	Errors []struct {
		Code     string `json:"code"`
		Category string `json:"category"`
		Feature  string `json:"feature"`
		Resolver string `json:"resolver"`
		Message  string `json:"message"`
	} `json:"errors"`
}

func (a *resolvedAnswer) field(key, fqn string) resolvedField {
	for _, d := range a.Data {
		if d.Pkey == key && d.Field == fqn {
			return d
		}
	}
	return resolvedField{}
}

// ask queries outputs of keys with meta and returns the answer and the
// time it took.
func ask(t *testing.T, base string, keys []string, outputs ...string) (*resolvedAnswer, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	start := time.Now()
	code, body, err := post(ctx, base+"/v1/query/online", map[string]any{
		"inputs": map[string]any{"user.id": keys}, "outputs": outputs, "include_meta": true,
	})
	took := time.Since(start)
	if err != nil || code != http.StatusOK {
		t.Fatalf("query %v: %d %s %v", keys, code, body, err)
	}
	var a resolvedAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatalf("answer %s: %v", body, err)
	}
	return &a, took
}

// TestResolvers runs the resolvers in the production topology: a query
// server and a writer as processes of the built binary, a broker and
// redis-server in processes of their own, and the http resolver's service
// in the test. A miss is computed, answered, persisted through Kafka and
// served from the store from then on; uploads and results are ordered by
// observed-at; concurrent queries share a call; failures answer
// RESOLVER_FAILED or RESOLVER_TIMED_OUT; each resolved entity is one store
// write; and with the broker killed, queries that resolve are answered as
// fast while their results are dropped and counted.
func TestResolvers(t *testing.T) {
	svc := resolversvc.Start(t)
	c := startClusterWith(t, "redis", resolversvc.Features, 1, 1,
		"CREDIT_URL="+svc.URL(), "CREDIT_TOKEN="+resolversvc.Token)
	serve, writer := c.serves[0].URL(), c.writers[0].URL()
	ctx := context.Background()

	// A miss resolves and answers.
	a, _ := ask(t, serve, []string{"ada"}, "user.credit_score", "user.tier")
	if f := a.field("ada", "user.credit_score"); string(f.Value) != "650" || f.Meta.Resolver != "user.credit" {
		t.Fatalf("credit_score of a miss: %+v, want 650 from user.credit", f)
	}
	if f := a.field("ada", "user.tier"); string(f.Value) != `"gold"` || f.Meta.Resolver != "user.tier_of" {
		t.Fatalf("tier: %+v, want gold from user.tier_of", f)
	}
	// Once the writer has stored it, the store answers, with no call.
	waitFor(t, readableWithin, "ada's computed score served from the store", func() bool {
		a, _ := ask(t, serve, []string{"ada"}, "user.credit_score", "user.tier")
		return a.field("ada", "user.credit_score").Meta.Resolver == "" && a.field("ada", "user.tier").Meta.Resolver == ""
	})
	calls := svc.Calls.Load()
	for range 3 {
		a, _ := ask(t, serve, []string{"ada"}, "user.credit_score", "user.tier")
		if f := a.field("ada", "user.credit_score"); string(f.Value) != "650" || f.Meta.Resolver != "" {
			t.Errorf("persisted score: %+v, want 650 from the store", f)
		}
	}
	if n := svc.Calls.Load() - calls; n != 0 {
		t.Errorf("%d resolver calls for a persisted, fresh value; want 0", n)
	}
	// max_staleness 0s: every query calls.
	calls = svc.Calls.Load()
	for range 3 {
		a, _ := ask(t, serve, []string{"ada"}, "user.fresh_score")
		if f := a.field("ada", "user.fresh_score"); f.Meta.Resolver != "user.credit" {
			t.Errorf("fresh_score: %+v, want computed", f)
		}
	}
	if n := svc.Calls.Load() - calls; n != 3 {
		t.Errorf("fresh_score (0s) asked 3 times: %d calls, want 3", n)
	}

	// An upload observed after the result wins; one observed before does
	// not. The age uploaded last, to the same entity (so the same
	// partition), shows when the writer has taken both.
	upload := func(vals map[string]any, at time.Time) {
		t.Helper()
		vals["user.id"] = "ada"
		code, body, err := post(ctx, serve+"/v1/upload_features", map[string]any{"inputs": vals, "observed_at": at.UTC().Format(time.RFC3339Nano)})
		if err != nil || code != http.StatusAccepted {
			t.Fatalf("upload %v: %d %s %v", vals, code, body, err)
		}
	}
	upload(map[string]any{"user.credit_score": 800}, time.Now().Add(time.Second))
	upload(map[string]any{"user.credit_score": 100}, time.Now().Add(-30*time.Minute))
	upload(map[string]any{"user.age": 77}, time.Now())
	waitFor(t, readableWithin, "the uploads written", func() bool {
		a, _ := ask(t, serve, []string{"ada"}, "user.age")
		return string(a.field("ada", "user.age").Value) == "77"
	})
	if a, _ := ask(t, serve, []string{"ada"}, "user.credit_score"); string(a.field("ada", "user.credit_score").Value) != "800" {
		t.Errorf("credit_score after a later and an older upload: %+v, want the later upload's 800", a.field("ada", "user.credit_score"))
	}

	// Fifty concurrent queries for one missing entity make one call.
	svc.Delay.Store(int64(400 * time.Millisecond))
	var wg sync.WaitGroup
	var wrong atomic.Int64
	for range 50 {
		wg.Go(func() {
			a, _ := ask(t, serve, []string{"gustav"}, "user.credit_score")
			if string(a.field("gustav", "user.credit_score").Value) != "800" {
				wrong.Add(1)
			}
		})
	}
	wg.Wait()
	svc.Delay.Store(0)
	if n := svc.CallsFor("gustav"); n != 1 || wrong.Load() != 0 {
		t.Errorf("50 concurrent queries of a missing entity: %d calls, %d wrong answers; want 1 and 0", n, wrong.Load())
	}

	// Failures answer 200 with the resolver's code, and the store's
	// features beside them.
	svc.SetMode("hang")
	a, took := ask(t, serve, []string{"ada"}, "user.fresh_score", "user.age")
	if len(a.Errors) != 1 || a.Errors[0].Code != "RESOLVER_TIMED_OUT" || a.Errors[0].Resolver != "user.credit" || a.Errors[0].Feature != "user.fresh_score" {
		t.Errorf("hanging resolver: errors %+v, want one RESOLVER_TIMED_OUT of user.fresh_score by user.credit", a.Errors)
	}
	if took > queryTimeout+slack {
		t.Errorf("a hanging resolver's query took %v, over the deadline %v", took, queryTimeout)
	}
	if string(a.field("ada", "user.age").Value) != "77" {
		t.Errorf("age beside a hanging resolver: %+v", a.field("ada", "user.age"))
	}
	for mode, reason := range map[string]string{"500": "500", "malformed": "malformed", "wrong-type": "credit_score", "unknown-key": "stranger"} {
		svc.SetMode(mode)
		// A key of its own: a call in flight for another key (the hung
		// one above, which outlives its query until the resolver's
		// timeout) would be joined instead of made.
		a, _ := ask(t, serve, []string{"mode-" + mode}, "user.fresh_score")
		if len(a.Errors) != 1 || a.Errors[0].Code != "RESOLVER_FAILED" || a.Errors[0].Category != "FIELD" || !strings.Contains(a.Errors[0].Message, reason) {
			t.Errorf("%s: errors %+v, want one RESOLVER_FAILED naming %q", mode, a.Errors, reason)
		}
	}
	svc.SetMode("")

	// One store write per resolved entity, however many of its features
	// were computed: twenty entities, two features each, one query.
	written := metricValue(t, writer, "cairn_writer_entities_written_total")
	published := metricValue(t, serve, `cairn_queue_produced_records_total{outcome="ok",role="results"}`)
	var keys []string
	for i := range 20 {
		keys = append(keys, fmt.Sprintf("w%02d", i))
	}
	ask(t, serve, keys, "user.credit_score", "user.tier")
	waitFor(t, readableWithin, "twenty results written", func() bool {
		return metricValue(t, writer, "cairn_writer_entities_written_total")-written >= 20
	})
	time.Sleep(time.Second) // room for a write too many to show
	w := metricValue(t, writer, "cairn_writer_entities_written_total") - written
	p := metricValue(t, serve, `cairn_queue_produced_records_total{outcome="ok",role="results"}`) - published
	t.Logf("store writes per persisted result: %v entity writes for %v query-result records of 20 resolved entities", w, p)
	if w != 20 || p != 20 {
		t.Errorf("%v entity writes for %v results of 20 resolved entities; want 20 and 20", w, p)
	}
	a, _ = ask(t, serve, keys, "user.credit_score", "user.tier")
	for _, d := range a.Data {
		if d.Meta.Resolver != "" {
			t.Errorf("%s of %s computed again after being persisted", d.Field, d.Pkey)
		}
	}

	// The broker killed: queries that resolve answer as fast as before;
	// their results are dropped and counted.
	lat := func() time.Duration {
		var ds []time.Duration
		for range 15 {
			_, took := ask(t, serve, []string{"ada"}, "user.fresh_score")
			ds = append(ds, took)
		}
		slices.Sort(ds)
		return ds[len(ds)/2]
	}
	up := lat()
	lost := func() float64 {
		return metricValue(t, serve, `cairn_queue_produced_records_total{outcome="error",role="results"}`) +
			metricValue(t, serve, `cairn_queue_produced_records_total{outcome="dropped",role="results"}`)
	}
	before := lost()
	c.kafka.Kill()
	calls = svc.Calls.Load()
	var down time.Duration
	for range 3 {
		// Results computed now cannot be persisted: every query of a
		// fresh key calls.
		a, took := ask(t, serve, []string{fmt.Sprintf("k%d", time.Now().UnixNano())}, "user.credit_score")
		down = max(down, took)
		if len(a.Errors) != 0 {
			t.Errorf("query with the broker down: errors %+v", a.Errors)
		}
	}
	downMedian := lat()
	t.Logf("median query that resolves: %v with the broker up, %v with it down (slowest fresh key %v)", up, downMedian, down)
	if downMedian > 3*up+50*time.Millisecond || down > queryTimeout {
		t.Errorf("with the broker down, queries that resolve took %v (median; slowest of fresh keys %v), against %v with it up", downMedian, down, up)
	}
	if svc.Calls.Load()-calls < 18 {
		t.Errorf("%d calls for 18 queries that resolve", svc.Calls.Load()-calls)
	}
	waitFor(t, 3*produceTimeout, "results counted as lost", func() bool { return lost() > before })
	c.requireAllRunning()
}

// waitFor polls cond every 100ms until it holds, failing t after within.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
