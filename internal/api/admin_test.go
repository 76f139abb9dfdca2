package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairnfs/cairn/internal/auth"
	"github.com/cairnfs/cairn/internal/queue"
	"github.com/cairnfs/cairn/internal/store/embedded"
)

// failoverFor returns a failover of two clusters whose one participant
// records the brokers it is switched to, and fails while fail is set.
func failoverFor(t testing.TB, fail *atomic.Bool) (*queue.Failover, *atomic.Value) {
	t.Helper()
	f, err := queue.NewFailover(queue.FailoverConfig{Primary: queue.Config{Brokers: []string{"primary:9096"}},
		Secondary: queue.Config{Brokers: []string{"secondary:9096"}}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got atomic.Value
	f.Register("producer", func(_ context.Context, cfg queue.Config, _ time.Time) error {
		if fail.Load() {
			return errors.New("brokers unreachable")
		}
		got.Store(cfg.Brokers[0])
		return nil
	})
	return f, &got
}

// The query server serves the active cluster to admin keys only, and a
// POST switches the process's clients, answering the cluster now active.
func TestKafkaActiveEndpoint(t *testing.T) {
	st, err := embedded.Open(t.TempDir(), embedded.Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	keys, err := auth.Open(keysFile(t), quiet())
	if err != nil {
		t.Fatal(err)
	}
	var fail atomic.Bool
	f, got := failoverFor(t, &fail)
	s := newStackOn(t, st, stackOptions{api: &Config{Keys: keys, Failover: f}})
	url := s.url + KafkaActivePath

	if code, _, ec := send(t, "GET", url, ""); code != 401 || ec != CodeUnauthenticated {
		t.Errorf("no key: %d %s", code, ec)
	}
	if code, _, ec := send(t, "POST", url, `{"cluster": "secondary"}`, "Bearer "+loaderToken); code != 403 || ec != CodeUnauthorized {
		t.Errorf("upload key: %d %s", code, ec)
	}
	if f.Active() != queue.Primary || got.Load() != nil {
		t.Fatal("a refused request switched")
	}
	ask := func(method, body string) (int, KafkaActive, string) {
		t.Helper()
		req, _ := http.NewRequest(method, url, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+adminToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var raw json.RawMessage
		if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
			t.Fatal(err)
		}
		var ka KafkaActive
		_ = json.Unmarshal(raw, &ka)
		return resp.StatusCode, ka, string(raw)
	}
	if code, ka, _ := ask("GET", ""); code != 200 || ka.Cluster != "primary" || !ka.Secondary {
		t.Errorf("GET: %d %+v", code, ka)
	}
	for _, tc := range []struct{ body, code, field string }{
		{`{"cluster": 1}`, CodeParseFailed, "cluster"},
		{`not json`, CodeParseFailed, "body"},
		{`{}`, CodeValidationFailed, "is missing"},
		{`{"cluster": "tertiary"}`, CodeValidationFailed, "tertiary"},
		{`{"cluster": "secondary", "force": true}`, CodeParseFailed, "force"},
	} {
		code, _, raw := ask("POST", tc.body)
		if code != 400 || !strings.Contains(raw, tc.code) || !strings.Contains(raw, tc.field) {
			t.Errorf("%s: %d %s: want 400 %s naming %s", tc.body, code, raw, tc.code, tc.field)
		}
	}
	fail.Store(true)
	if code, _, raw := ask("POST", `{"cluster": "secondary"}`); code != 503 || !strings.Contains(raw, CodeUpstreamFailed) || !strings.Contains(raw, "producer did not switch") {
		t.Errorf("failed switch: %d %s", code, raw)
	}
	if _, ka, _ := ask("GET", ""); ka.Clients["producer"] != "primary" {
		t.Errorf("after a failed switch: %+v: want the producer still on the primary", ka)
	}
	fail.Store(false)
	if code, ka, raw := ask("POST", `{"cluster": "secondary"}`); code != 200 || ka.Cluster != "secondary" || ka.Clients["producer"] != "secondary" {
		t.Errorf("switch: %d %s", code, raw)
	}
	if got.Load() != "secondary:9096" {
		t.Errorf("the producer was switched to %v", got.Load())
	}
}

// RequireScope answers as the query server does.
func TestRequireScope(t *testing.T) {
	keys, err := auth.Open(keysFile(t), quiet())
	if err != nil {
		t.Fatal(err)
	}
	var fail atomic.Bool
	f, _ := failoverFor(t, &fail)
	srv := httptest.NewServer(RequireScope(keys, auth.Admin, KafkaActiveHandler(f, 1<<10)))
	defer srv.Close()
	for _, tc := range []struct {
		auth []string
		code int
	}{{nil, 401}, {[]string{"Bearer nope"}, 401}, {[]string{"Bearer " + rankerToken}, 403}, {[]string{"Bearer " + adminToken}, 200}} {
		if code, _, _ := send(t, "GET", srv.URL, "", tc.auth...); code != tc.code {
			t.Errorf("%v: %d, want %d", tc.auth, code, tc.code)
		}
	}
}

// FuzzKafkaActiveBody: whatever the body, the endpoint answers 200 with
// the active cluster, 400 or 503 with the usual error shape, and switches
// only to a cluster it knows.
func FuzzKafkaActiveBody(f *testing.F) {
	for _, s := range []string{`{"cluster": "secondary"}`, `{"cluster": "primary"}`, `{}`, `{"cluster": null}`,
		`{"cluster": "x"} {}`, `[`, `{"cluster": "secondary", "x": 1}`, ``} {
		f.Add(s)
	}
	var fail atomic.Bool
	fo, _ := failoverFor(f, &fail)
	h := KafkaActiveHandler(fo, 1<<10)
	f.Fuzz(func(t *testing.T, body string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", KafkaActivePath, strings.NewReader(body)))
		var out struct {
			Cluster string            `json:"cluster"`
			Errors  []json.RawMessage `json:"errors"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatalf("answer %q is not JSON: %v", rec.Body.String(), err)
		}
		switch rec.Code {
		case 200:
			if out.Cluster != queue.Primary && out.Cluster != queue.Secondary {
				t.Fatalf("200 with cluster %q", out.Cluster)
			}
		case 400, 503:
			if len(out.Errors) == 0 {
				t.Fatalf("%d without errors: %s", rec.Code, rec.Body.String())
			}
		default:
			t.Fatalf("status %d for %q", rec.Code, body)
		}
		if a := fo.Active(); a != queue.Primary && a != queue.Secondary {
			t.Fatalf("active %q", a)
		}
	})
}

// The store-writes route switches both ways where standby is allowed,
// refuses it where it is not, and names the field of every bad body.
func TestStoreWritesHandler(t *testing.T) {
	var active atomic.Bool
	active.Store(true)
	h := StoreWritesHandler(active.Load, active.Store, nil, 1<<10)
	post := func(h http.Handler, body string) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", StoreWritesPath, strings.NewReader(body)))
		return rec.Code, rec.Body.String()
	}
	if code, body := post(h, `{"store_writes": "standby"}`); code != 200 || active.Load() || !strings.Contains(body, `"standby"`) {
		t.Errorf("standby: %d %s, active %v", code, body, active.Load())
	}
	if code, body := post(h, `{"store_writes": "active"}`); code != 200 || !active.Load() || !strings.Contains(body, `"active"`) {
		t.Errorf("active: %d %s, active %v", code, body, active.Load())
	}
	for _, body := range []string{`{}`, `{"store_writes": "paused"}`, `{"store_writes": "active", "x": 1}`, `[`} {
		if code, out := post(h, body); code != 400 || !strings.Contains(out, "store_writes") {
			t.Errorf("%s: %d %s, want 400 naming store_writes", body, code, out)
		}
	}
	refusing := StoreWritesHandler(active.Load, active.Store, errors.New("not a global table"), 1<<10)
	if code, out := post(refusing, `{"store_writes": "standby"}`); code != 400 || !active.Load() || !strings.Contains(out, "not a global table") {
		t.Errorf("standby refused: %d %s, active %v", code, out, active.Load())
	}
}

func FuzzStoreWritesBody(f *testing.F) {
	for _, s := range []string{`{"store_writes": "standby"}`, `{"store_writes": "active"}`, `{}`, `{"store_writes": null}`, `[`, ``} {
		f.Add(s)
	}
	var active atomic.Bool
	h := StoreWritesHandler(active.Load, active.Store, nil, 1<<10)
	f.Fuzz(func(t *testing.T, body string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", StoreWritesPath, strings.NewReader(body)))
		var out struct {
			StoreWrites string            `json:"store_writes"`
			Errors      []json.RawMessage `json:"errors"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatalf("answer %q is not JSON: %v", rec.Body.String(), err)
		}
		switch {
		case rec.Code == 200 && (out.StoreWrites == "active" || out.StoreWrites == "standby"):
		case rec.Code == 400 && len(out.Errors) > 0:
		default:
			t.Fatalf("%d %s for %q", rec.Code, rec.Body.String(), body)
		}
	})
}
