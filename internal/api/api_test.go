package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/query"
	"github.com/cairnfs/cairn/internal/queue"
	"github.com/cairnfs/cairn/internal/store/embedded"
	"github.com/cairnfs/cairn/internal/writer"
)

// stack is the whole persistence path in one test: HTTP API, Kafka protocol
// (kfake), persistence writer and embedded store.
type stack struct {
	t    *testing.T
	url  string
	qcfg queue.Config
	adm  *kadm.Client
	// metrics holds the API's and the query engine's metrics.
	metrics *prometheus.Registry
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// storeRW is the store a stack reads and writes.
type storeRW interface {
	query.Store
	writer.Store
}

// stackOptions says how newStackOn builds a stack.
type stackOptions struct {
	// writer, when set, runs a persistence writer with this config.
	writer *writer.Config
	// writerMetrics receives the writer's metrics.
	writerMetrics prometheus.Registerer
	// maxBody bounds request bodies (0: the default).
	maxBody int64
	// api, when set, is the API's config (maxBody then unused).
	api *Config
	// log receives the API's log (nil: discarded).
	log *slog.Logger
}

// newStack is the whole path over an embedded store.
func newStack(t *testing.T, withWriter bool) *stack {
	t.Helper()
	st, err := embedded.Open(t.TempDir(), embedded.Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	opts := stackOptions{maxBody: 64 << 10}
	if withWriter {
		opts.writer = &writer.Config{}
	}
	return newStackOn(t, st, opts)
}

// newStackOn starts a kfake broker with the topics, the API over st and,
// if asked, a writer into st.
func newStackOn(t *testing.T, st storeRW, opts stackOptions) *stack {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	qcfg := queue.Config{Brokers: c.ListenAddrs(), ProduceTimeout: 5 * time.Second}
	qcfg.EnsureDefaults()
	ctx := context.Background()
	if _, err := queue.CreateTopics(ctx, qcfg, queue.TopicSpec{Partitions: 2, ReplicationFactor: 1, MinInsyncReplicas: 1}); err != nil {
		t.Fatal(err)
	}
	reg, err := feature.Load("../../examples/features.yaml")
	if err != nil {
		t.Fatal(err)
	}
	prod, err := queue.NewProducer(qcfg, nil, quiet())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	promReg := prometheus.NewRegistry()
	acfg := Config{MaxBodyBytes: opts.maxBody}
	if opts.api != nil {
		acfg = *opts.api
	}
	log := opts.log
	if log == nil {
		log = quiet()
	}
	srv, err := New(acfg, reg, query.NewEngine(st, promReg, nil), prod, promReg, promReg, log)
	if err != nil {
		t.Fatal(err)
	}
	srv.SetReady(true)
	hs := serveTest(t, srv)
	if opts.writer != nil {
		w, err := writer.New(qcfg, *opts.writer, reg, st, opts.writerMetrics, quiet())
		if err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { w.Run(wctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	cl, err := kgo.NewClient(qcfg.ClientOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return &stack{t: t, url: hs.URL, qcfg: qcfg, adm: kadm.NewClient(cl), metrics: promReg}
}

func (s *stack) post(path, body string) (int, map[string]any) {
	s.t.Helper()
	resp, err := http.Post(s.url+path, "application/json", strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &out); err != nil {
		s.t.Fatalf("POST %s: response is not JSON: %q", path, raw)
	}
	return resp.StatusCode, out
}

// persisted counts the records on the persistence topic.
func (s *stack) persisted() int64 {
	s.t.Helper()
	ends, err := s.adm.ListEndOffsets(context.Background(), s.qcfg.PersistTopic)
	if err != nil {
		s.t.Fatal(err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
	return n
}

// field returns the value of one output of a query for user.id = key, waiting
// up to 10s for want to appear when want is not nil.
func (s *stack) waitValue(body, fqn string, want any) map[string]any {
	s.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, out := s.post("/v1/query/online", body)
		if code != 200 {
			s.t.Fatalf("query: %d %v", code, out)
		}
		for _, d := range out["data"].([]any) {
			f := d.(map[string]any)
			if f["field"] == fqn && fmt.Sprint(f["value"]) == fmt.Sprint(want) {
				return f
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("query %s: %s never became %v; last answer %v", body, fqn, want, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestUploadThenQueryEveryType(t *testing.T) {
	s := newStack(t, true)
	code, out := s.post("/v1/upload_features", `{
		"inputs": {"user.id": "u1", "user.age": 31, "user.score": 0.5, "user.name": "Ada", "user.is_active": true,
			"user.avatar": "AAEC", "user.signup": "2024-05-01T12:00:00.123456Z", "user.tags": ["a","b"],
			"user.embedding": [1,2,3,4,5,6,7,8.5], "user.profile": {"tier": "gold", "n": 2}},
		"observed_at": "2026-01-01T00:00:00Z"}`)
	if code != http.StatusAccepted || out["accepted"] != 1.0 {
		t.Fatalf("upload: %d %v", code, out)
	}
	q := `{"inputs": {"user.id": "u1"}, "outputs": ["user.id", "user.age", "user.score", "user.name", "user.is_active",
		"user.avatar", "user.signup", "user.tags", "user.embedding", "user.profile", "user.last_login"], "include_meta": true}`
	s.waitValue(q, "user.age", 31)
	_, out = s.post("/v1/query/online", q)
	got := map[string]any{}
	for _, d := range out["data"].([]any) {
		f := d.(map[string]any)
		got[f["field"].(string)] = f["value"]
		if f["pkey"] != "u1" {
			t.Errorf("%s: pkey %v", f["field"], f["pkey"])
		}
		if f["field"] == "user.age" && f["ts"] != "2026-01-01T00:00:00Z" {
			t.Errorf("ts = %v", f["ts"])
		}
		if _, ok := f["meta"].(map[string]any)["cache_hit"]; !ok {
			t.Errorf("%s: no meta.cache_hit", f["field"])
		}
	}
	want := map[string]string{
		"user.id": "u1", "user.age": "31", "user.score": "0.5", "user.name": "Ada", "user.is_active": "true",
		"user.avatar": "AAEC", "user.signup": "2024-05-01T12:00:00.123456Z", "user.tags": "[a b]",
		"user.embedding": "[1 2 3 4 5 6 7 8.5]", "user.profile": "map[n:2 tier:gold]", "user.last_login": "<nil>",
	}
	for k, v := range want {
		if fmt.Sprint(got[k]) != v {
			t.Errorf("%s = %v, want %s", k, got[k], v)
		}
	}
	if m := out["meta"].(map[string]any); m["query_id"] == "" || m["execution_duration_s"] == nil {
		t.Errorf("meta = %v", m)
	}
}

func TestNewestWins(t *testing.T) {
	s := newStack(t, true)
	up := func(body string) {
		t.Helper()
		if code, out := s.post("/v1/upload_features", body); code != http.StatusAccepted {
			t.Fatalf("upload: %d %v", code, out)
		}
	}
	// t2 then t1: the t1 value arrives last and must not win.
	up(`{"inputs": {"user.id": "u2", "user.age": 2}, "observed_at": "2026-01-02T00:00:00Z"}`)
	up(`{"inputs": {"user.id": "u2", "user.age": 1}, "observed_at": "2026-01-01T00:00:00Z"}`)
	// Feature A at t1 and feature B at t2: both kept.
	up(`{"inputs": {"user.id": "u3", "user.age": 10}, "observed_at": "2026-01-01T00:00:00Z"}`)
	up(`{"inputs": {"user.id": "u3", "user.name": "Bo"}, "observed_at": "2026-01-02T00:00:00Z"}`)
	// A marker written last tells when everything before it was consumed.
	up(`{"inputs": {"user.id": "done", "user.age": 1}}`)
	s.waitValue(`{"inputs": {"user.id": "done"}, "outputs": ["user.age"]}`, "user.age", 1)

	f := s.waitValue(`{"inputs": {"user.id": "u2"}, "outputs": ["user.age"]}`, "user.age", 2)
	if f["ts"] != "2026-01-02T00:00:00Z" {
		t.Errorf("u2 age ts = %v", f["ts"])
	}
	s.waitValue(`{"inputs": {"user.id": "u3"}, "outputs": ["user.age", "user.name"]}`, "user.age", 10)
	s.waitValue(`{"inputs": {"user.id": "u3"}, "outputs": ["user.age", "user.name"]}`, "user.name", "Bo")
}

func TestColumnarUploadAndMultiEntityQuery(t *testing.T) {
	s := newStack(t, true)
	code, out := s.post("/v1/upload_features", `{"inputs": {"merchant.id": [1, 2, 3], "merchant.name": ["a", "b", null],
		"merchant.risk_scores": [[0.1], [], [0.3, 0.4]]}}`)
	if code != http.StatusAccepted || out["accepted"] != 3.0 {
		t.Fatalf("upload: %d %v", code, out)
	}
	q := `{"inputs": {"merchant.id": [3, 2, 1, 99]}, "outputs": ["merchant.name", "merchant.risk_scores"]}`
	s.waitValue(q, "merchant.name", "a")
	_, out = s.post("/v1/query/online", q)
	var lines []string
	for _, d := range out["data"].([]any) {
		f := d.(map[string]any)
		lines = append(lines, fmt.Sprintf("%v %s=%v", f["pkey"], f["field"], f["value"]))
	}
	want := []string{"3 merchant.name=<nil>", "3 merchant.risk_scores=[0.3 0.4]", "2 merchant.name=b", "2 merchant.risk_scores=[]",
		"1 merchant.name=a", "1 merchant.risk_scores=[0.1]", "99 merchant.name=<nil>", "99 merchant.risk_scores=<nil>"}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("answer:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}

// Every bad upload is a 400 with its own code and a message naming the
// problem, and none of them writes anything.
func TestBadUploadsWriteNothing(t *testing.T) {
	s := newStack(t, false)
	tests := []struct {
		name, body, code, feature, msg string
	}{
		{"malformed JSON", `{"inputs": {"user.id": "u1",}`, CodeParseFailed, "", "malformed JSON"},
		{"not an object", `[1,2]`, CodeParseFailed, "", "want"},
		{"empty body", ``, CodeParseFailed, "", "empty body"},
		{"trailing data", `{"inputs": {"user.id": "u1", "user.age": 1}} {}`, CodeParseFailed, "", "after the JSON object"},
		{"unknown top-level field", `{"inputs": {"user.id": "u1", "user.age": 1}, "observedAt": "x"}`, CodeParseFailed, "", `"observedAt"`},
		{"unknown namespace", `{"inputs": {"shop.id": "s1", "shop.x": 1}}`, CodeUnknownNamespace, "shop.id", `unknown namespace "shop"`},
		{"unknown feature", `{"inputs": {"user.id": "u1", "user.height": 180}}`, CodeUnknownFeature, "user.height", `no feature "height"`},
		{"not a feature name", `{"inputs": {"age": 3}}`, CodeUnknownFeature, "age", "fully-qualified"},
		{"wrong type", `{"inputs": {"user.id": "u1", "user.age": "old"}}`, CodeValidationFailed, "user.age", "want an integer"},
		{"int out of range", `{"inputs": {"user.id": "u1", "user.age": 9223372036854775808}}`, CodeValidationFailed, "user.age", "int64 range"},
		{"wrong vector length", `{"inputs": {"user.id": "u1", "user.embedding": [1,2]}}`, CodeValidationFailed, "user.embedding", "exactly 8"},
		{"bad datetime", `{"inputs": {"user.id": "u1", "user.signup": "monday"}}`, CodeValidationFailed, "user.signup", "RFC 3339"},
		{"bad observed_at", `{"inputs": {"user.id": "u1", "user.age": 1}, "observed_at": "now"}`, CodeValidationFailed, "", "observed_at"},
		{"observed_at out of range", `{"inputs": {"user.id": "u1", "user.age": 1}, "observed_at": "0999-12-31T00:00:00Z"}`, CodeValidationFailed, "", "outside the years 1000 to 2999"},
		{"ragged columns", `{"inputs": {"user.id": ["u1", "u2"], "user.age": [1]}}`, CodeRaggedColumns, "user.age", "1 values but the primary key"},
		{"scalar in columns", `{"inputs": {"user.id": ["u1", "u2"], "user.age": 1}}`, CodeRaggedColumns, "user.age", "must be a list of 2"},
		{"missing primary key", `{"inputs": {"user.age": 1}}`, CodeMissingPrimaryKey, "user.id", "primary key"},
		{"null primary key", `{"inputs": {"user.id": null, "user.age": 1}}`, CodeValidationFailed, "user.id", "must not be null"},
		{"int key as string", `{"inputs": {"merchant.id": "m1", "merchant.name": "x"}}`, CodeValidationFailed, "merchant.id", "want an integer"},
		{"only a key", `{"inputs": {"user.id": "u1"}}`, CodeValidationFailed, "user.id", "no feature values"},
		{"no inputs", `{}`, CodeValidationFailed, "", "inputs is required"},
		{"bad row in a good request", `{"inputs": {"user.id": ["u1", "u2"], "user.age": [1, 2.5]}}`, CodeValidationFailed, "user.age", "row 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out := s.post("/v1/upload_features", tt.body)
			if code != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %v", code, out)
			}
			errs, _ := out["errors"].([]any)
			if len(errs) == 0 {
				t.Fatalf("no errors in %v", out)
			}
			e := errs[0].(map[string]any)
			if e["code"] != tt.code || e["category"] != CategoryRequest {
				t.Errorf("code %v category %v, want %s REQUEST (%v)", e["code"], e["category"], tt.code, e)
			}
			if fmt.Sprint(e["feature"]) != tt.feature && !(tt.feature == "" && e["feature"] == nil) {
				t.Errorf("feature %v, want %q", e["feature"], tt.feature)
			}
			if !strings.Contains(fmt.Sprint(e["message"]), tt.msg) {
				t.Errorf("message %q lacks %q", e["message"], tt.msg)
			}
		})
	}
	if n := s.persisted(); n != 0 {
		t.Errorf("%d records reached the persistence topic from bad uploads", n)
	}
	// Every problem is reported, not just the first.
	_, out := s.post("/v1/upload_features", `{"inputs": {"user.id": "u1", "user.age": "x", "user.height": 1, "shop.a": 1}}`)
	if n := len(out["errors"].([]any)); n != 3 {
		t.Errorf("got %d errors, want 3: %v", n, out)
	}
}

func TestBadQueries(t *testing.T) {
	s := newStack(t, false)
	tests := []struct{ name, body, code, feature string }{
		{"malformed", `{"inputs": `, CodeParseFailed, ""},
		{"unknown output", `{"inputs": {"user.id": "u1"}, "outputs": ["user.height"]}`, CodeUnknownFeature, "user.height"},
		{"unknown namespace", `{"inputs": {"user.id": "u1"}, "outputs": ["shop.x"]}`, CodeUnknownNamespace, "shop.x"},
		{"output without its key", `{"inputs": {"user.id": "u1"}, "outputs": ["merchant.name"]}`, CodeMissingPrimaryKey, "merchant.name"},
		{"non-key input", `{"inputs": {"user.age": 3}, "outputs": ["user.name"]}`, CodeValidationFailed, "user.age"},
		{"no outputs", `{"inputs": {"user.id": "u1"}}`, CodeValidationFailed, ""},
		{"bad staleness", `{"inputs": {"user.id": "u1"}, "outputs": ["user.age"], "staleness": {"user.age": "soon"}}`, CodeValidationFailed, "user.age"},
		{"bad key type", `{"inputs": {"merchant.id": "m"}, "outputs": ["merchant.name"]}`, CodeValidationFailed, "merchant.id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out := s.post("/v1/query/online", tt.body)
			if code != http.StatusBadRequest {
				t.Fatalf("status %d: %v", code, out)
			}
			e := out["errors"].([]any)[0].(map[string]any)
			if e["code"] != tt.code || fmt.Sprint(e["feature"]) != tt.feature && !(tt.feature == "" && e["feature"] == nil) {
				t.Errorf("got %v, want code %s feature %q", e, tt.code, tt.feature)
			}
		})
	}
}

func TestStaleValuesAreAbsent(t *testing.T) {
	s := newStack(t, true)
	old := time.Now().Add(-2 * time.Hour).UTC().Format(time.RFC3339)
	// merchant values go stale after 1d; user values never, unless the query says so.
	s.post("/v1/upload_features", `{"inputs": {"merchant.id": 1, "merchant.name": "old"}, "observed_at": "2020-01-01T00:00:00Z"}`)
	s.post("/v1/upload_features", `{"inputs": {"user.id": "u1", "user.age": 5}, "observed_at": "`+old+`"}`)
	s.post("/v1/upload_features", `{"inputs": {"merchant.id": 2, "merchant.name": "marker"}}`)
	s.waitValue(`{"inputs": {"merchant.id": 2}, "outputs": ["merchant.name"]}`, "merchant.name", "marker")
	s.waitValue(`{"inputs": {"user.id": "u1"}, "outputs": ["user.age"]}`, "user.age", 5)
	s.waitValue(`{"inputs": {"merchant.id": 1}, "outputs": ["merchant.name"]}`, "merchant.name", nil)
	s.waitValue(`{"inputs": {"user.id": "u1"}, "outputs": ["user.age"], "staleness": {"user.age": "1h"}}`, "user.age", nil)
	s.waitValue(`{"inputs": {"user.id": "u1"}, "outputs": ["user.age"], "staleness": {"user.age": "3h"}}`, "user.age", 5)
}

// With Kafka unreachable an upload is refused with 503 and queries are still
// answered from the store.
func TestKafkaDown(t *testing.T) {
	reg, _ := feature.Load("../../examples/features.yaml")
	st, err := embedded.Open(t.TempDir(), embedded.Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// A port nothing listens on.
	l := httptest.NewServer(http.NotFoundHandler())
	dead := l.Listener.Addr().String()
	l.Close()
	prod, err := queue.NewProducer(queue.Config{Brokers: []string{dead}, ProduceTimeout: time.Second}, nil, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	srv, _ := New(Config{}, reg, query.NewEngine(st, nil, nil), prod, nil, nil, quiet())
	s := &stack{t: t, url: serveTest(t, srv).URL}

	start := time.Now()
	code, out := s.post("/v1/upload_features", `{"inputs": {"user.id": "u1", "user.age": 3}}`)
	if code != http.StatusServiceUnavailable || out["errors"].([]any)[0].(map[string]any)["code"] != CodeUpstreamFailed {
		t.Errorf("upload with Kafka down: %d %v", code, out)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("refusal took %v", d)
	}
	start = time.Now()
	code, out = s.post("/v1/query/online", `{"inputs": {"user.id": "u1"}, "outputs": ["user.age"]}`)
	if code != 200 || len(out["errors"].([]any)) != 0 {
		t.Errorf("query with Kafka down: %d %v", code, out)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("query took %v with Kafka down", d)
	}
}

func TestProbesAndMetrics(t *testing.T) {
	s := newStack(t, false)
	s.post("/v1/query/online", `{"inputs": {"user.id": "u1"}, "outputs": ["user.age"]}`)
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		resp, err := http.Get(s.url + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s: %d", path, resp.StatusCode)
		}
		if path == "/metrics" && (!bytes.Contains(body, []byte(`cairn_query_namespace_reads_total{namespace="user",outcome="ok"} 1`)) ||
			!bytes.Contains(body, []byte(`cairn_api_requests_total{code="200",outcome="ok",route="query"} 1`))) {
			t.Errorf("/metrics lacks cairn metrics:\n%s", body)
		}
	}
}
