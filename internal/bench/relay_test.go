package bench

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// startRelay seeds entities keys of a namespace of features features into
// a redis-server under a prefix of the test's own, and serves a relay
// reading ask of them over HTTP on a loopback port, stopped when the test
// ends. It returns the relay's URL.
func startRelay(t *testing.T, features, ask int, keys []string) string {
	t.Helper()
	ctx := context.Background()
	st, cfg := openRedis(t)
	reg, err := Registry(features)
	if err != nil {
		t.Fatal(err)
	}
	ns, _ := reg.Namespace(Namespace)
	if err := seed(ctx, st, ns, ns.Features[1:], keys, func(string, ...any) {}); err != nil {
		t.Fatal(err)
	}
	r, err := newRelay(ctx, RelayConfig{Redis: cfg, Features: features, Ask: ask})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := r.server()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		if err := srv.Shutdown(); err != nil {
			t.Error(err)
		}
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
		r.close()
	})
	return "http://" + ln.Addr().String() + "/"
}

// postRelay posts body to the relay and returns the answer's status and
// body.
func postRelay(t *testing.T, url, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "text/plain", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// The relay answers as the query server does when every entity asked
// for was read, so that path (r) passes httpPath's checks, and 500 as
// soon as one is absent: a relay reading empty keys would measure
// nothing. Both with HGETALL (every feature) and HMGET (some).
func TestRelayAnswers(t *testing.T) {
	keys := []string{"e1", "e2", "e3", "key with spaces"}
	for _, ask := range []int{0, 3} {
		url := startRelay(t, 8, ask, keys)
		for _, tc := range []struct {
			body   string
			status int
			want   string
		}{
			{"e1", 200, `{"errors":[]}`},
			{"e2\ne3\nkey with spaces", 200, `{"errors":[]}`},
			{"e1\n", 200, `{"errors":[]}`},
			{"never-written", 500, "never-written"},
			{"e1\nnever-written\ne2", 500, "never-written"},
			{"", 400, "no keys"},
		} {
			status, body := postRelay(t, url, tc.body)
			if status != tc.status || !strings.Contains(body, tc.want) {
				t.Errorf("ask %d, POST %q: %d %q, want %d with %q", ask, tc.body, status, body, tc.status, tc.want)
			}
		}
	}
}

// A relay is refused for features it cannot read.
func TestRelayRefusesAsk(t *testing.T) {
	_, cfg := openRedis(t)
	if _, err := newRelay(context.Background(), RelayConfig{Redis: cfg, Features: 4, Ask: 5}); err == nil || !strings.Contains(err.Error(), "--ask 5") {
		t.Errorf("ask 5 of 4 features: %v, want an error naming --ask", err)
	}
	cfg.Clustered = true
	if _, err := newRelay(context.Background(), RelayConfig{Redis: cfg, Features: 4}); err == nil || !strings.Contains(err.Error(), "cluster") {
		t.Errorf("a cluster: %v, want an error naming it", err)
	}
}

// RunRelay follows the protocol of a bench-server process: it announces
// its address, answers a request for runtime statistics, serves the
// relay there, and returns once its standard input closes.
func TestRunRelayProtocol(t *testing.T) {
	ctx := context.Background()
	st, cfg := openRedis(t)
	reg, err := Registry(4)
	if err != nil {
		t.Fatal(err)
	}
	ns, _ := reg.Namespace(Namespace)
	if err := seed(ctx, st, ns, ns.Features[1:], []string{"e1"}, func(string, ...any) {}); err != nil {
		t.Fatal(err)
	}
	stdinR, stdinW := io.Pipe()
	stdoutR, stdoutW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := RunRelay(ctx, RelayConfig{Redis: cfg, Features: 4}, stdinR, stdoutW)
		stdoutW.Close()
		done <- err
	}()
	out := bufio.NewReader(stdoutR)
	line, err := out.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), listening)
	if !ok {
		t.Fatalf("first line %q, want %q and an address", line, listening)
	}
	if status, body := postRelay(t, "http://"+addr+"/v1/query/online", "e1"); status != 200 {
		t.Errorf("POST e1: %d %q, want 200", status, body)
	}
	if _, err := io.WriteString(stdinW, runtimeRequest+"\n"); err != nil {
		t.Fatal(err)
	}
	if line, err = out.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	if _, err := parseRuntimeAnswer(line); err != nil {
		t.Errorf("runtime statistics: %v", err)
	}
	stdinW.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("RunRelay: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("RunRelay still serving 10s after its standard input closed")
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("the relay still accepts connections after it returned")
	}
}

// The relay's bodies carry each set's keys, one per line, which the
// relay reads back as the same keys.
func TestRelaySets(t *testing.T) {
	keys := make([]string, 50)
	for i := range keys {
		keys[i] = "e" + strings.Repeat("0", i%3) + string(rune('a'+i%26))
	}
	for _, s := range relaySets(requests(keys, 5, nil)) {
		if got := splitKeys(nil, s.body); !slices.Equal(got, s.keys) {
			t.Fatalf("body %q read as %q, want %q", s.body, got, s.keys)
		}
	}
}

// FuzzSplitKeys: whatever the body, the keys read from it are non-empty
// and hold no newline, and a body of keys joined by newlines is read
// back as those keys.
func FuzzSplitKeys(f *testing.F) {
	for _, s := range []string{"", "e1", "e1\ne2", "\n\n", "a\r\nb", "k\x00\n\n z"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		keys := splitKeys(nil, body)
		for _, k := range keys {
			if k == "" || strings.Contains(k, "\n") {
				t.Fatalf("key %q read from %q", k, body)
			}
		}
		if again := splitKeys(nil, []byte(strings.Join(keys, "\n"))); !slices.Equal(again, keys) {
			t.Fatalf("%q joined and read again: %q", keys, again)
		}
		if want := bytes.Count(body, []byte{'\n'}) + 1; len(keys) > want {
			t.Fatalf("%d keys from %d lines", len(keys), want)
		}
	})
}
