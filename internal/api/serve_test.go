package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// testServer is an API served as Run serves it, on 127.0.0.1.
type testServer struct{ URL string }

// serveTest serves srv's routes with the server of Run (fasthttp behind
// the bridge) until the test ends.
func serveTest(t *testing.T, srv *Server) testServer {
	t.Helper()
	return serveHandler(t, srv.cfg, srv.Handler())
}

// serveHandler serves h with the server of Run and cfg until the test
// ends.
func serveHandler(t *testing.T, cfg Config, h http.Handler) testServer {
	t.Helper()
	cfg.EnsureDefaults()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns connSet
	hs := newFastServer(cfg, h, quiet(), &conns)
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if hs.ShutdownWithContext(ctx) != nil {
			conns.closeAll()
		}
	})
	return testServer{URL: "http://" + ln.Addr().String()}
}

// The handler sees the request as net/http would give it: method, path,
// query, every header value (repeated ones too), the body and its length,
// the host; and what it writes is the answer: status, every header value,
// the body, a sniffed Content-Type when it set none.
func TestBridgeCarriesRequestAndAnswer(t *testing.T) {
	type seen struct {
		method, path, rawQuery, host, body string
		length                             int64
		auth, custom                       []string
		hasHost                            bool
	}
	got := make(chan seen, 1)
	s := serveHandler(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		_, hasHost := r.Header["Host"]
		got <- seen{r.Method, r.URL.Path, r.URL.RawQuery, r.Host, string(body), r.ContentLength,
			r.Header.Values("Authorization"), r.Header.Values("X-Custom-Thing"), hasHost}
		if r.URL.Path == "/sniff" {
			fmt.Fprint(w, "<html><body>hi</body></html>")
			return
		}
		w.Header().Add("X-Answer", "one")
		w.Header().Add("X-Answer", "two")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTeapot)
		fmt.Fprint(w, `{"a":`)
		fmt.Fprint(w, `1}`)
	}))

	req, _ := http.NewRequest("POST", s.URL+"/v1/query/online?x=1&y=%20", strings.NewReader(`{"q":1}`))
	req.Header.Add("Authorization", "Bearer a")
	req.Header.Add("Authorization", "Bearer b")
	req.Header.Set("x-custom-thing", "v")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	r := <-got
	host := strings.TrimPrefix(s.URL, "http://")
	if r.method != "POST" || r.path != "/v1/query/online" || r.rawQuery != "x=1&y=%20" || r.host != host ||
		r.body != `{"q":1}` || r.length != 7 || !slices.Equal(r.auth, []string{"Bearer a", "Bearer b"}) ||
		!slices.Equal(r.custom, []string{"v"}) || r.hasHost {
		t.Errorf("the handler saw %+v", r)
	}
	if resp.StatusCode != http.StatusTeapot || string(raw) != `{"a":1}` ||
		resp.Header.Get("Content-Type") != "application/json" ||
		!slices.Equal(resp.Header.Values("X-Answer"), []string{"one", "two"}) ||
		resp.Header.Get("Server") != "" || resp.ContentLength != 7 {
		t.Errorf("answer: %d %q %v", resp.StatusCode, raw, resp.Header)
	}

	resp, err = http.Get(s.URL + "/sniff")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	<-got
	if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" || resp.StatusCode != 200 {
		t.Errorf("a body without a Content-Type: %d %q, want 200 and net/http's sniffed type", resp.StatusCode, ct)
	}
}

// A handler that panics, before or after writing part of its answer,
// gets the client a JSON 500 (never the part, as if whole) and its
// connection closed, and the server goes on serving.
func TestBridgeRecoversPanics(t *testing.T) {
	s := serveHandler(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/panic":
			panic("boom")
		case "/panic-midway":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"data":[`)
			panic("boom")
		}
		fmt.Fprint(w, "ok")
	}))
	for _, path := range []string{"/panic", "/panic-midway"} {
		resp, err := http.Get(s.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if resp.StatusCode != http.StatusInternalServerError || firstError(out) != CodeInternal || !resp.Close {
			t.Errorf("%s: %d %v (closing the connection: %v), want 500 %s and the connection closed",
				path, resp.StatusCode, out, resp.Close, CodeInternal)
		}
	}
	if code, _, _ := do(t, "GET", s.URL+"/ok", ""); code != http.StatusOK {
		t.Errorf("after a panic: %d", code)
	}
}

// What fasthttp cannot read is answered in the API's error shape before
// any handler runs: a request that is not HTTP 400 MALFORMED_REQUEST, a
// body over the limit's first byte past it 413 REQUEST_TOO_LARGE, headers
// that stop coming 408 REQUEST_TIMEOUT.
func TestUnreadableRequestsAnswerJSON(t *testing.T) {
	cfg := Config{MaxBodyBytes: 1 << 10, ReadHeaderTimeout: 300 * time.Millisecond}
	reached := make(chan string, 10)
	s := serveHandler(t, cfg, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		reached <- fmt.Sprintf("%s %d", r.URL.Path, len(b))
	}))
	addr := strings.TrimPrefix(s.URL, "http://")
	for _, tt := range []struct {
		name, raw string
		status    int
		code      string
	}{
		{"not HTTP", "HELLO\r\n\r\n", 400, CodeMalformedRequest},
		{"a bad Content-Length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400, CodeMalformedRequest},
		{"a body of 2 KiB", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2048\r\n\r\n" + strings.Repeat("x", 2048), 413, CodeRequestTooLarge},
		{"headers that stop", "POST / HTTP/1.1\r\nHost: x\r\n", 408, CodeRequestTimeout},
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprint(c, tt.raw)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Errorf("%s: no answer: %v", tt.name, err)
			c.Close()
			continue
		}
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		c.Close()
		if resp.StatusCode != tt.status || firstError(out) != tt.code || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s: %d %v, want %d %s", tt.name, resp.StatusCode, out, tt.status, tt.code)
		}
	}
	// One byte over the limit reaches the handler, which answers 413
	// itself after authentication.
	code, _, _ := do(t, "POST", s.URL+"/limit", strings.Repeat("x", 1<<10+1))
	if code != http.StatusOK {
		t.Errorf("a body one byte over the limit: %d, want the handler's answer", code)
	}
	select {
	case r := <-reached:
		if r != fmt.Sprintf("/limit %d", 1<<10+1) {
			t.Errorf("the handler saw %s", r)
		}
	default:
		t.Errorf("a body one byte over the limit did not reach the handler; these did: %d", len(reached))
	}
	if n := len(reached); n != 0 {
		t.Errorf("%d unreadable requests reached the handler", n)
	}
}

// At the shutdown timeout, Run closes the connections of requests still in
// flight and says so.
func TestRunClosesConnectionsAtShutdownTimeout(t *testing.T) {
	url, stop := runServer(t, Config{ShutdownTimeout: 300 * time.Millisecond})
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Headers sent, the body never: the request stays in flight.
	fmt.Fprint(c, "POST /v1/query/online HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	err = stop()
	if err == nil || !strings.Contains(err.Error(), "CAIRN_SHUTDOWN_TIMEOUT") {
		t.Errorf("Run with a request in flight past the shutdown timeout: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Run took %v to return past a shutdown timeout of 300ms", d)
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.Copy(io.Discard, c); err != nil {
		t.Errorf("the connection in flight was not closed: %v", err)
	}
}

// Whatever bytes a client sends, the server answers with the route's
// answer or an error in the API's shape, or hangs up, within 2 s (its
// timeouts are 50 ms here); it never panics and never hands the route a
// request other than the one sent.
func FuzzServeRequest(f *testing.F) {
	for _, seed := range []string{
		"POST /v1/query/online HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
		"GET /healthz HTTP/1.0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
		"GET /a?b=%zz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a\r\nAuthorization: Bearer b\r\n\r\n",
		"\x16\x03\x01\x00\xa5\x01\x00\x00",
		"GET / HTTP/1.1\r\nHost: x\r\nX: " + strings.Repeat("y", maxHeaderBytes) + "\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	cfg := Config{MaxBodyBytes: 1 << 10, ReadHeaderTimeout: 50 * time.Millisecond, ReadTimeout: 50 * time.Millisecond,
		IdleTimeout: 50 * time.Millisecond}
	cfg.EnsureDefaults()
	hs := newFastServer(cfg, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil || int64(len(b)) != r.ContentLength || len(b) > 1<<10+1 {
			panic(fmt.Sprintf("the route got a body of %d bytes (%v), ContentLength %d", len(b), err, r.ContentLength))
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"method": r.Method, "path": r.URL.Path, "len": len(b)})
	}), quiet(), &connSet{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		start := time.Now()
		defer func() {
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("the exchange took %v", d)
			}
		}()
		client, server := net.Pipe()
		served := make(chan struct{})
		go func() { _ = hs.ServeConn(server); close(served) }()
		_ = client.SetDeadline(time.Now().Add(5 * time.Second))
		go func() { _, _ = client.Write(raw) }()
		br := bufio.NewReader(client)
		for {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				break // the server hung up, or sent what ends the test
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch resp.StatusCode {
			case http.StatusOK:
			case http.StatusBadRequest, http.StatusRequestTimeout, http.StatusRequestEntityTooLarge,
				http.StatusRequestHeaderFieldsTooLarge:
				var out struct {
					Errors []ChalkError `json:"errors"`
				}
				if json.Unmarshal(body, &out) != nil || len(out.Errors) != 1 || out.Errors[0].Code == "" {
					t.Fatalf("%d answered without the API's error shape: %q", resp.StatusCode, body)
				}
			default:
				t.Fatalf("answered %d %q", resp.StatusCode, body)
			}
		}
		client.Close()
		<-served
	})
}
