package api

import (
	"context"
	"net/http"
	"os"
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
