package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/health"
	"github.com/cairnfs/cairn/internal/query"
	"github.com/cairnfs/cairn/internal/store/embedded"
)

// runServer runs a server without a producer over an embedded store on a
// real listener, and returns its base URL and a function stopping it and
// returning Run's error.
func runServer(t *testing.T, cfg Config) (string, func() error) {
	t.Helper()
	st, err := embedded.Open(t.TempDir(), embedded.Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	reg, err := feature.Load("../../examples/features.yaml")
	if err != nil {
		t.Fatal(err)
	}
	promReg := prometheus.NewRegistry()
	srv, err := New(cfg, reg, query.NewEngine(st, promReg, nil), nil, promReg, promReg, quiet())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, ln) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() { cancel(); runErr = <-done })
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return "http://" + ln.Addr().String(), stop
}

// do sends a request and returns the status, the header and the body
// decoded as JSON (nil when it is not JSON).
func do(t *testing.T, method, url, body string) (int, http.Header, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, resp.Header, out
}

// firstError returns the code of the first error of a JSON error answer.
func firstError(out map[string]any) string {
	errs, _ := out["errors"].([]any)
	if len(errs) == 0 {
		return ""
	}
	e, _ := errs[0].(map[string]any)
	return fmt.Sprint(e["code"])
}

// A body over CAIRN_MAX_BODY_BYTES was answered 400, as if the client had
// sent something malformed, on both routes; it is 413 REQUEST_TOO_LARGE.
func TestBodyOverLimitIs413(t *testing.T) {
	s := newStack(t, false) // a 64 KiB limit
	big := strings.Repeat("x", 70<<10)
	for _, tt := range []struct{ path, body string }{
		{"/v1/upload_features", `{"inputs": {"user.id": "u1", "user.name": "` + big + `"}}`},
		{"/v1/query/online", `{"inputs": {"user.id": "u1"}, "outputs": ["user.age"], "query_name": "` + big + `"}`},
	} {
		code, out := s.post(tt.path, tt.body)
		if code != http.StatusRequestEntityTooLarge || firstError(out) != CodeRequestTooLarge {
			t.Errorf("%s: %d %v, want 413 %s", tt.path, code, out, CodeRequestTooLarge)
		}
	}
	if n := s.persisted(); n != 0 {
		t.Errorf("%d records persisted from an oversized upload", n)
	}
}

// Unknown routes and wrong methods were answered by net/http in plain text
// ("404 page not found"); every answer of the API is now a JSON error with
// a code.
func TestUnknownRouteAndWrongMethodAnswerJSON(t *testing.T) {
	url, _ := runServer(t, Config{})
	for _, tt := range []struct {
		method, path string
		code         int
		errCode      string
		allow        string
	}{
		{http.MethodGet, "/nope", http.StatusNotFound, CodeNotFound, ""},
		{http.MethodPost, "/v1/query", http.StatusNotFound, CodeNotFound, ""},
		{http.MethodGet, "/v1/query/online", http.StatusMethodNotAllowed, CodeMethodNotAllowed, "POST"},
		{http.MethodPost, "/healthz", http.StatusMethodNotAllowed, CodeMethodNotAllowed, "GET, HEAD"},
	} {
		code, hdr, out := do(t, tt.method, url+tt.path, "{}")
		if code != tt.code || firstError(out) != tt.errCode {
			t.Errorf("%s %s: %d %v, want %d %s", tt.method, tt.path, code, out, tt.code, tt.errCode)
		}
		if got := hdr.Get("Allow"); got != tt.allow {
			t.Errorf("%s %s: Allow %q, want %q", tt.method, tt.path, got, tt.allow)
		}
		if ct := hdr.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s %s: Content-Type %q", tt.method, tt.path, ct)
		}
	}
}

// A server without a producer (bench-server) registered the upload route
// anyway and panicked on the nil producer; the route is now absent.
func TestNoProducerNoUploadRoute(t *testing.T) {
	url, _ := runServer(t, Config{})
	code, _, out := do(t, http.MethodPost, url+"/v1/upload_features", `{"inputs": {"user.id": "u1", "user.age": 1}}`)
	if code != http.StatusNotFound || firstError(out) != CodeNotFound {
		t.Fatalf("upload without a producer: %d %v, want 404 %s", code, out, CodeNotFound)
	}
	// Queries are still served.
	code, _, out = do(t, http.MethodPost, url+"/v1/query/online", `{"inputs": {"user.id": "u1"}, "outputs": ["user.age"]}`)
	if code != http.StatusOK {
		t.Fatalf("query: %d %v", code, out)
	}
}

// The HTTP server had no timeouts: 20 connections sending their bodies a
// byte at a time were all still open after 20 s. With a read timeout, each
// is closed once it has run out.
func TestSlowBodiesAreCutAtReadTimeout(t *testing.T) {
	const readTimeout = 300 * time.Millisecond
	url, _ := runServer(t, Config{ReadHeaderTimeout: readTimeout, ReadTimeout: readTimeout})
	addr := strings.TrimPrefix(url, "http://")
	const conns = 20
	closed := make(chan time.Duration, conns)
	start := time.Now()
	for range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		fmt.Fprintf(c, "POST /v1/query/online HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
		go func() {
			// Trickle the body until the server hangs up.
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			for range tick.C {
				if _, err := c.Write([]byte(" ")); err != nil {
					return
				}
			}
		}()
		go func() {
			// The server's answer, then EOF or a reset.
			br := bufio.NewReader(c)
			if resp, err := http.ReadResponse(br, nil); err == nil {
				if resp.StatusCode != http.StatusRequestTimeout {
					t.Errorf("a slow body was answered %d, want 408", resp.StatusCode)
				}
				resp.Body.Close()
			}
			_, _ = io.Copy(io.Discard, br)
			closed <- time.Since(start)
		}()
	}
	deadline := time.After(5 * time.Second)
	for i := range conns {
		select {
		case d := <-closed:
			if d < readTimeout-50*time.Millisecond {
				t.Errorf("a connection closed after %v, before the read timeout of %v", d, readTimeout)
			}
		case <-deadline:
			t.Fatalf("%d of %d slow connections still open 5 s after the read timeout of %v", conns-i, conns, readTimeout)
		}
	}
}

// Run serves until its context ends, then answers /readyz 503 while
// draining, lets a request in flight finish, and returns nil.
func TestRunShutsDownGracefully(t *testing.T) {
	checker, err := health.New(health.Config{}, nil, quiet())
	if err != nil {
		t.Fatal(err)
	}
	url, stop := runServer(t, Config{Health: checker, ShutdownTimeout: 5 * time.Second})
	if code, _, out := do(t, http.MethodGet, url+"/readyz", ""); code != http.StatusOK {
		t.Fatalf("/readyz while serving: %d %v", code, out)
	}
	// A request in flight: headers sent, body not yet.
	addr := strings.TrimPrefix(url, "http://")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	body := `{"inputs": {"user.id": "u1"}, "outputs": ["user.age"]}`
	fmt.Fprintf(c, "POST /v1/query/online HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", len(body))
	time.Sleep(50 * time.Millisecond) // the server is reading the body

	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	deadline := time.Now().Add(2 * time.Second)
	for {
		if _, ok := checker.Ready(); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("still ready 2 s after shutdown began")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if rep, _ := checker.Ready(); rep.Status != "shutting_down" {
		t.Errorf("readiness status %q while shutting down", rep.Status)
	}
	fmt.Fprint(c, body)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("the request in flight at shutdown was not answered: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("the request in flight at shutdown: %d", resp.StatusCode)
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Errorf("Run after a clean stop: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("the listener still accepts connections after Run returned")
	}
}

// A listener that fails makes Run return its error rather than nil.
func TestRunReportsServeFailure(t *testing.T) {
	st, err := embedded.Open(t.TempDir(), embedded.Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	reg, err := feature.Load("../../examples/features.yaml")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{}, reg, query.NewEngine(st, nil, nil), nil, nil, nil, quiet())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close() // Serve fails at its first Accept
	if err := srv.Run(context.Background(), ln); err == nil || errors.Is(err, http.ErrServerClosed) {
		t.Fatalf("Run on a closed listener: %v, want its error", err)
	}
}

// Every invalid timeout is reported at once.
func TestConfigValidate(t *testing.T) {
	cfg := Config{QueryTimeout: 2 * time.Second, WriteTimeout: time.Second, ReadHeaderTimeout: 20 * time.Second, IdleTimeout: -1}
	cfg.EnsureDefaults()
	err := cfg.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"CAIRN_HTTP_WRITE_TIMEOUT", "CAIRN_HTTP_READ_HEADER_TIMEOUT", "CAIRN_HTTP_IDLE_TIMEOUT"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%v lacks %s", err, want)
		}
	}
}
