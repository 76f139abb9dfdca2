package api

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/cairnfs/cairn/internal/store/dynamo/dynamotest"
	"github.com/cairnfs/cairn/internal/testserver"
	"github.com/cairnfs/cairn/internal/testserver/faultproxy"
	"github.com/cairnfs/cairn/internal/writer"
)

func TestMain(m *testing.M) { os.Exit(testserver.Run(m)) }

// dynamoStack is the whole path of TestUploadThenQueryEveryType, with the
// DynamoDB store (moto behind a fault proxy) instead of the embedded one.
type dynamoStack struct {
	*stack
	proxy   *faultproxy.Proxy
	writers *prometheus.Registry
}

// maxRetries is the DynamoDB store's retry budget in these tests.
const maxRetries = 2

func newDynamoStack(t *testing.T) *dynamoStack {
	t.Helper()
	st, proxy := dynamotest.OpenProxied(t, maxRetries)
	writers := prometheus.NewRegistry()
	s := newStackOn(t, st, stackOptions{
		writer:        &writer.Config{MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond},
		writerMetrics: writers,
	})
	return &dynamoStack{stack: s, proxy: proxy, writers: writers}
}

// committed sums the writers' committed offsets on the persistence topic.
func (s *dynamoStack) committed() int64 {
	s.t.Helper()
	offs, err := s.adm.FetchOffsets(context.Background(), s.qcfg.WriterGroup)
	if err != nil {
		s.t.Fatal(err)
	}
	var n int64
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Topic == s.qcfg.PersistTopic && o.At > 0 {
			n += o.At
		}
	})
	return n
}

// writerRetries is cairn_writer_store_retries_total.
func (s *dynamoStack) writerRetries() float64 {
	s.t.Helper()
	families, err := s.writers.Gather()
	if err != nil {
		s.t.Fatal(err)
	}
	for _, mf := range families {
		if mf.GetName() == "cairn_writer_store_retries_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return 0
}

func (s *dynamoStack) upload(body string) {
	s.t.Helper()
	if code, out := s.post("/v1/upload_features", body); code != http.StatusAccepted {
		s.t.Fatalf("upload: %d %v", code, out)
	}
}

// With DynamoDB throttling past the store's retry budget, a query is
// answered at once with UPSTREAM_FAILED on each feature it could not read,
// uploads are still accepted, and the writer holds them uncommitted; once
// DynamoDB recovers, the writer catches up and every upload is readable.
func TestDynamoThrottledQueryFailsFastWriterCatchesUp(t *testing.T) {
	s := newDynamoStack(t)
	s.upload(`{"inputs": {"user.id": "u1", "user.age": 31, "user.name": "Ada"}, "observed_at": "2026-01-01T00:00:00Z"}`)
	q := `{"inputs": {"user.id": "u1"}, "outputs": ["user.age", "user.name"]}`
	s.waitValue(q, "user.age", 31)
	eventually(t, "the first upload committed", func() bool { return s.committed() == 1 })

	if _, err := s.proxy.Add(faultproxy.Rule{Fault: faultproxy.Throttle}); err != nil {
		t.Fatal(err)
	}

	// Queries: answered quickly, every feature failed, nothing made up.
	reads := s.proxy.Count("BatchGetItem").Requests
	start := time.Now()
	code, out := s.post("/v1/query/online", q)
	took := time.Since(start)
	if code != http.StatusOK {
		t.Fatalf("query while throttled: %d %v", code, out)
	}
	t.Logf("query answered in %v: %v", took, out["errors"])
	errs, _ := out["errors"].([]any)
	failed := map[string]bool{}
	for _, e := range errs {
		e := e.(map[string]any)
		if e["code"] != CodeUpstreamFailed || e["category"] != CategoryField {
			t.Errorf("error %v, want code %s, category %s", e, CodeUpstreamFailed, CategoryField)
		}
		failed[e["feature"].(string)] = true
	}
	if !failed["user.age"] || !failed["user.name"] || len(failed) != 2 {
		t.Errorf("features failed: %v, want user.age and user.name", failed)
	}
	for _, d := range out["data"].([]any) {
		if f := d.(map[string]any); f["value"] != nil || f["ts"] != nil {
			t.Errorf("value answered from a failed read: %v", f)
		}
	}
	if n := s.proxy.Count("BatchGetItem").Requests - reads; n != maxRetries+1 {
		t.Errorf("%d read attempts for the query, want %d (1 + the retry budget)", n, maxRetries+1)
	}
	// Retry k waits at most RetryScaleFactor·2^k ms: well under a second
	// for the whole budget.
	if took > 2*time.Second {
		t.Errorf("query with the store throttled took %v", took)
	}

	// Uploads: accepted (Kafka is up), not committed (the store is not).
	s.upload(`{"inputs": {"user.id": "u1", "user.age": 32}, "observed_at": "2026-01-02T00:00:00Z"}`)
	s.upload(`{"inputs": {"user.id": ["u2", "u3"], "user.age": [20, 30], "user.name": ["Bo", "Cy"]}, "observed_at": "2026-01-02T00:00:00Z"}`)
	s.upload(`{"inputs": {"user.id": "u1", "user.age": 1}, "observed_at": "2025-12-31T00:00:00Z"}`) // older: must not win
	eventually(t, "the writer to retry the throttled batch", func() bool { return s.writerRetries() >= 2 })
	if n := s.committed(); n != 1 {
		t.Fatalf("committed offsets moved to %d while the store was throttled", n)
	}

	s.proxy.Clear()
	eventually(t, "every upload committed", func() bool { return s.committed() == 4 })
	f := s.waitValue(q, "user.age", 32)
	if f["ts"] != "2026-01-02T00:00:00Z" {
		t.Errorf("u1 age ts = %v, want 2026-01-02T00:00:00Z", f["ts"])
	}
	s.waitValue(q, "user.name", "Ada")
	s.waitValue(`{"inputs": {"user.id": "u2"}, "outputs": ["user.name"]}`, "user.name", "Bo")
	s.waitValue(`{"inputs": {"user.id": "u3"}, "outputs": ["user.age"]}`, "user.age", 30)
}

// eventually polls cond for up to 20 seconds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A query had no deadline: with DynamoDB throttling every request, the
// store's default 12 retries back off for 30–60 s before the query was
// answered. Now the query's deadline (CAIRN_QUERY_TIMEOUT, 1 s by default)
// stops the retries: the query is answered 200 within the deadline plus
// 100 ms, each feature it could not read null with DEADLINE_EXCEEDED, and
// the request is counted as degraded.
func TestQueryDeadlineStopsDynamoRetries(t *testing.T) {
	st, proxy := dynamotest.OpenProxied(t, 12) // DYNAMODB_MAX_RETRIES' default
	s := newStackOn(t, st, stackOptions{api: &Config{}})
	if _, err := proxy.Add(faultproxy.Rule{Fault: faultproxy.Throttle}); err != nil {
		t.Fatal(err)
	}
	const deadline = time.Second // Config's default
	start := time.Now()
	code, out := s.post("/v1/query/online", `{"inputs": {"user.id": ["u1", "u2"]}, "outputs": ["user.id", "user.age", "user.name"]}`)
	took := time.Since(start)
	if took > deadline+100*time.Millisecond {
		t.Errorf("query with DynamoDB throttled answered after %v, want at most %v", took, deadline+100*time.Millisecond)
	}
	if took < deadline-50*time.Millisecond {
		t.Errorf("query answered after %v, before its deadline of %v: the retries did not run", took, deadline)
	}
	if code != http.StatusOK {
		t.Fatalf("query: %d %v, want 200", code, out)
	}
	failed := map[string]bool{}
	for _, e := range out["errors"].([]any) {
		e := e.(map[string]any)
		if e["code"] != CodeDeadlineExceeded || e["category"] != CategoryField {
			t.Errorf("error %v, want %s %s", e, CodeDeadlineExceeded, CategoryField)
		}
		failed[fmt.Sprint(e["feature"])] = true
	}
	if !failed["user.age"] || !failed["user.name"] || len(failed) != 2 {
		t.Errorf("features failed: %v, want user.age and user.name", failed)
	}
	for _, d := range out["data"].([]any) {
		f := d.(map[string]any)
		if f["field"] == "user.id" {
			continue // the key itself is answered
		}
		if f["value"] != nil || f["ts"] != nil {
			t.Errorf("value answered past the deadline: %v", f)
		}
	}
	if n := proxy.Count("BatchGetItem").Requests; n < 3 {
		t.Errorf("%d read attempts before the deadline: the store did not retry", n)
	}
	if v := counterValue(t, s.metrics, "cairn_api_requests_total", map[string]string{"route": "query", "code": "200", "outcome": "degraded"}); v != 1 {
		t.Errorf(`cairn_api_requests_total{outcome="degraded"} = %v, want 1`, v)
	}
	if v := counterValue(t, s.metrics, "cairn_query_namespace_reads_total", map[string]string{"namespace": "user", "outcome": "deadline_exceeded"}); v != 1 {
		t.Errorf(`cairn_query_namespace_reads_total{outcome="deadline_exceeded"} = %v, want 1`, v)
	}
}

// During a store outage every query logged one warning per failed feature:
// thousands of lines a second. Now the line is written at most once per
// namespace per StoreErrorLogInterval, with the count suppressed since;
// the request metric counts every degraded query.
func TestStoreOutageLogIsRateLimited(t *testing.T) {
	st, proxy := dynamotest.OpenProxied(t, 0)
	var logged logLines
	s := newStackOn(t, st, stackOptions{api: &Config{StoreErrorLogInterval: time.Hour}, log: slog.New(&logged)})
	if _, err := proxy.Add(faultproxy.Rule{Fault: faultproxy.InternalServerError}); err != nil {
		t.Fatal(err)
	}
	const queries = 40
	for range queries {
		code, out := s.post("/v1/query/online", `{"inputs": {"user.id": "u1", "merchant.id": 7}, "outputs": ["user.age", "user.name", "merchant.name"]}`)
		if code != http.StatusOK || firstError(out) != CodeUpstreamFailed {
			t.Fatalf("query during the outage: %d %v, want 200 with %s", code, out, CodeUpstreamFailed)
		}
	}
	// One line per namespace (user, merchant), not 3 × 40.
	if n := logged.count("api: store read failed"); n != 2 {
		t.Errorf("%d log lines for %d failing queries, want 2 (one per namespace)", n, queries)
	}
	if v := counterValue(t, s.metrics, "cairn_api_requests_total", map[string]string{"route": "query", "code": "200", "outcome": "degraded"}); v != queries {
		t.Errorf(`cairn_api_requests_total{outcome="degraded"} = %v, want %d`, v, queries)
	}
}

// logLines is a slog.Handler counting records by message.
type logLines struct {
	mu   sync.Mutex
	msgs map[string]int
}

func (l *logLines) Enabled(context.Context, slog.Level) bool { return true }
func (l *logLines) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logLines) WithGroup(string) slog.Handler            { return l }
func (l *logLines) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.msgs == nil {
		l.msgs = map[string]int{}
	}
	l.msgs[r.Message]++
	return nil
}

func (l *logLines) count(msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.msgs[msg]
}

// counterValue returns the value of the counter name with exactly labels
// in reg, or 0.
func counterValue(t *testing.T, reg prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range families {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, lp := range m.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}
