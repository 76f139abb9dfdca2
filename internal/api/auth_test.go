package api

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cairnfs/cairn/internal/auth"
	"github.com/cairnfs/cairn/internal/store/embedded"
)

const (
	queryBody  = `{"inputs": {"user.id": "u1"}, "outputs": ["user.age"]}`
	uploadBody = `{"inputs": {"user.id": "u1", "user.age": 31}, "observed_at": "2026-01-01T00:00:00Z"}`
)

// Tokens of the keys file keysFile writes.
const (
	rankerToken = "cairn_ranker-token"
	loaderToken = "cairn_loader-token"
	adminToken  = "cairn_admin-token"
)

func sha(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// keysFile writes a keys file of three keys, one per scope, and returns
// its path.
func keysFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keys.yaml")
	content := fmt.Sprintf("keys:\n  - {name: ranker, sha256: %s, scopes: [query]}\n  - {name: loader, sha256: %s, scopes: [upload]}\n  - {name: ops, sha256: %s, scopes: [admin]}\n",
		sha(rankerToken), sha(loaderToken), sha(adminToken))
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// authStack is the whole path with API keys.
func authStack(t *testing.T, metricsAuth bool) (*stack, *auth.Keys) {
	t.Helper()
	st, err := embedded.Open(t.TempDir(), embedded.Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	keys, err := auth.Open(keysFile(t), quiet())
	if err != nil {
		t.Fatal(err)
	}
	return newStackOn(t, st, stackOptions{api: &Config{Keys: keys, MetricsRequireAuth: metricsAuth}}), keys
}

// send sends a request with the given Authorization header values, and
// returns the status, the WWW-Authenticate header and the first error's
// code.
func send(t *testing.T, method, url, body string, authorization ...string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range authorization {
		req.Header.Add("Authorization", a)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate"), firstError(out)
}

func TestAPIKeysGuardRoutesByScope(t *testing.T) {
	s, _ := authStack(t, false)
	for _, tc := range []struct {
		name, method, path, body string
		auth                     []string
		status                   int
		code                     string
	}{
		{"query with a query key", "POST", "/v1/query/online", queryBody, []string{"Bearer " + rankerToken}, 200, ""},
		{"lowercase scheme", "POST", "/v1/query/online", queryBody, []string{"bearer " + rankerToken}, 200, ""},
		{"upload with an upload key", "POST", "/v1/upload_features", uploadBody, []string{"Bearer " + loaderToken}, 202, ""},
		{"upload with a query key", "POST", "/v1/upload_features", uploadBody, []string{"Bearer " + rankerToken}, 403, CodeUnauthorized},
		{"query with an upload key", "POST", "/v1/query/online", queryBody, []string{"Bearer " + loaderToken}, 403, CodeUnauthorized},
		{"query with an admin key", "POST", "/v1/query/online", queryBody, []string{"Bearer " + adminToken}, 403, CodeUnauthorized},
		{"no header", "POST", "/v1/query/online", queryBody, nil, 401, CodeUnauthenticated},
		{"unknown token", "POST", "/v1/query/online", queryBody, []string{"Bearer cairn_guess"}, 401, CodeUnauthenticated},
		{"the key's hash as token", "POST", "/v1/query/online", queryBody, []string{"Bearer " + sha(rankerToken)}, 401, CodeUnauthenticated},
		{"token with a space", "POST", "/v1/query/online", queryBody, []string{"Bearer cairn_ranker token"}, 401, CodeUnauthenticated},
		{"token then garbage", "POST", "/v1/query/online", queryBody, []string{"Bearer " + rankerToken + " x"}, 401, CodeUnauthenticated},
		{"repeated header", "POST", "/v1/query/online", queryBody, []string{"Bearer " + rankerToken, "Bearer " + rankerToken}, 401, CodeUnauthenticated},
		{"oversized header", "POST", "/v1/query/online", queryBody, []string{"Bearer " + strings.Repeat("a", 8<<10)}, 401, CodeUnauthenticated},
		{"basic scheme", "POST", "/v1/query/online", queryBody, []string{"Basic cmFua2VyOnB3"}, 401, CodeUnauthenticated},
		{"healthz open", "GET", "/healthz", "", nil, 200, ""},
		{"readyz open", "GET", "/readyz", "", nil, 200, ""},
		{"metrics open by default", "GET", "/metrics", "", nil, 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, challenge, code := send(t, tc.method, s.url+tc.path, tc.body, tc.auth...)
			if status != tc.status || code != tc.code {
				t.Fatalf("%s %s: %d %q, want %d %q", tc.method, tc.path, status, code, tc.status, tc.code)
			}
			if (status == 401) != strings.HasPrefix(challenge, "Bearer") {
				t.Errorf("status %d with WWW-Authenticate %q", status, challenge)
			}
		})
	}

	// Each request is counted under its key's name, never its token.
	for _, c := range []struct {
		key, route, outcome string
		want                float64
	}{
		{"ranker", "query", outcomeOK, 2},
		{"loader", "upload", outcomeOK, 1},
		{"ranker", "upload", outcomeUnauthorized, 1},
		{"loader", "query", outcomeUnauthorized, 1},
		{"", "query", outcomeUnauthenticated, 8},
	} {
		got := counterValue(t, s.metrics, "cairn_api_requests_by_key_total", map[string]string{"key": c.key, "route": c.route, "outcome": c.outcome})
		if got != c.want {
			t.Errorf("cairn_api_requests_by_key_total{key=%q,route=%q,outcome=%q} = %v, want %v", c.key, c.route, c.outcome, got, c.want)
		}
	}
	resp, err := http.Get(s.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, secret := range []string{rankerToken, loaderToken, "ranker-token"} {
		if strings.Contains(string(body), secret) {
			t.Errorf("/metrics shows a token: %q", secret)
		}
	}
}

func TestMetricsCanRequireTheAdminScope(t *testing.T) {
	s, _ := authStack(t, true)
	for _, tc := range []struct {
		auth   []string
		status int
		code   string
	}{
		{nil, 401, CodeUnauthenticated},
		{[]string{"Bearer " + rankerToken}, 403, CodeUnauthorized},
		{[]string{"Bearer " + adminToken}, 200, ""},
	} {
		status, _, code := send(t, "GET", s.url+"/metrics", "", tc.auth...)
		if status != tc.status || code != tc.code {
			t.Errorf("GET /metrics with %q: %d %q, want %d %q", tc.auth, status, code, tc.status, tc.code)
		}
	}
	if status, _, _ := send(t, "GET", s.url+"/healthz", ""); status != 200 {
		t.Errorf("/healthz with /metrics guarded: %d", status)
	}
	if _, err := New(Config{MetricsRequireAuth: true}, nil, nil, nil, nil, nil, nil); err == nil {
		t.Error("New accepted CAIRN_METRICS_REQUIRE_AUTH without keys")
	}
}

// TestKeyRotationDropsNoRequest reloads the keys file, now and then with a
// malformed version, while clients query with a key present in every
// version: none of their requests may fail, and once the file revokes a
// key its token is refused.
func TestKeyRotationDropsNoRequest(t *testing.T) {
	s, keys := authStack(t, false)
	path := keys.Path()
	write := func(content string) {
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	var stop atomic.Bool
	var served atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for !stop.Load() {
				if status, _, code := send(t, "POST", s.url+"/v1/query/online", queryBody, "Bearer "+rankerToken); status != 200 {
					t.Errorf("query during a reload: %d %s", status, code)
					return
				}
				served.Add(1)
			}
		})
	}
	for i := range 50 {
		content := fmt.Sprintf("keys:\n  - {name: ranker, sha256: %s, scopes: [query]}\n  - {name: rotating, sha256: %s, scopes: [upload]}\n",
			sha(rankerToken), sha(fmt.Sprint("cairn_rot", i)))
		if i%5 == 4 {
			content = "keys:\n  - {name: ranker, sha256: not-a-hash, scopes: [query]}\n"
		}
		write(content)
		if err := keys.Reload(); (err != nil) != (i%5 == 4) {
			t.Fatalf("reload %d: %v", i, err)
		}
	}
	stop.Store(true)
	wg.Wait()
	if served.Load() == 0 {
		t.Fatal("no query served during the reloads")
	}

	// The loader's key was dropped by the first reload.
	if status, _, code := send(t, "POST", s.url+"/v1/upload_features", uploadBody, "Bearer "+loaderToken); status != 401 || code != CodeUnauthenticated {
		t.Errorf("upload with a revoked key: %d %s", status, code)
	}
	if status, _, _ := send(t, "POST", s.url+"/v1/upload_features", uploadBody, "Bearer cairn_rot48"); status != 202 {
		t.Errorf("upload with the rotated-in key: %d", status)
	}
}

// Headers over the server's 16 KiB are refused before any handler runs,
// 431 HEADERS_TOO_LARGE in the API's error shape: never a 500, never
// served. Below the limit, an oversized Authorization header reaches the
// API and is its JSON 401.
func TestOversizedHeaders(t *testing.T) {
	s, _ := authStack(t, false)
	status, _, code := send(t, "POST", s.url+"/v1/query/online", queryBody, "Bearer "+rankerToken+strings.Repeat("a", 8<<10))
	if status != http.StatusUnauthorized || code != CodeUnauthenticated {
		t.Errorf("8 KiB Authorization header: %d %q, want 401 %q", status, code, CodeUnauthenticated)
	}

	// The server of Run, with a handler that must not be reached.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{}
	cfg.EnsureDefaults()
	hs := newFastServer(cfg, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("a request with %d bytes of Authorization reached the handler", len(r.Header.Get("Authorization")))
	}), quiet(), &connSet{})
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Shutdown() })
	for _, size := range []int{maxHeaderBytes, 100 << 10, 2 * maxHeaderBytes} {
		req, err := http.NewRequest("POST", "http://"+ln.Addr().String()+"/v1/query/online", strings.NewReader(queryBody))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+strings.Repeat("a", size))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var body struct {
			Errors []ChalkError `json:"errors"`
		}
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge || json.Unmarshal(raw, &body) != nil ||
			len(body.Errors) != 1 || body.Errors[0].Code != CodeHeadersTooLarge {
			t.Errorf("%d bytes of Authorization: %d %q, want 431 %s", size, resp.StatusCode, raw, CodeHeadersTooLarge)
		}
	}
}
