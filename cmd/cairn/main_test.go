package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairnfs/cairn/internal/config"
	"github.com/cairnfs/cairn/internal/testserver"
	"github.com/twmb/franz-go/pkg/kfake"
)

// dev runs `cairn dev` in-process and returns its base URL and a stop
// function that interrupts it and waits for a clean exit.
func dev(t *testing.T, dataDir string, extra ...string) (string, func()) {
	t.Helper()
	return devEnv(t, dataDir, nil, extra...)
}

// devEnv is dev with environment variables.
func devEnv(t *testing.T, dataDir string, env map[string]string, extra ...string) (string, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	args := append([]string{"dev", "--data-dir", dataDir, "--addr", "127.0.0.1:0", "--features", "../../examples/features.yaml", "--log-level", "warn"}, extra...)
	done := make(chan error, 1)
	go func() {
		err := run(ctx, args, config.FromMap(env), io.Discard, pw)
		pw.CloseWithError(io.EOF)
		done <- err
	}()
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			if _, rest, ok := strings.Cut(line, "cairn dev is ready: "); ok {
				urls <- rest
			}
		}
	}()
	select {
	case line := <-urls:
		// Whether the API is open is said at start.
		if env["CAIRN_API_KEYS_FILE"] == "" && !strings.Contains(line, "(no authentication;") {
			t.Errorf("cairn dev's start-up line does not say it runs without authentication: %q", line)
		}
		return strings.Fields(line)[0], func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("cairn dev exited with %v", err)
			}
		}
	case err := <-done:
		cancel()
		t.Fatalf("cairn dev exited before it was ready: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("cairn dev not ready after 30s")
	}
	return "", nil
}

func post(t *testing.T, url, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func ageOf(t *testing.T, base, user string) any {
	t.Helper()
	code, body := post(t, base+"/v1/query/online", `{"inputs": {"user.id": "`+user+`"}, "outputs": ["user.age"]}`)
	if code != 200 {
		t.Fatalf("query: %d %s", code, body)
	}
	var out struct {
		Data []struct{ Value any } `json:"data"`
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil || len(out.Data) != 1 {
		t.Fatalf("query answer %s: %v", body, err)
	}
	return out.Data[0].Value
}

func waitAge(t *testing.T, base, user string, want any) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for fmt.Sprint(ageOf(t, base, user)) != fmt.Sprint(want) {
		if time.Now().After(deadline) {
			t.Fatalf("user %s: age never became %v", user, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The README's promise: upload, read back, restart, still there; and an
// upload acknowledged just before Ctrl-C is not lost.
func TestDevUploadQueryRestart(t *testing.T) {
	dir := t.TempDir()
	base, stop := dev(t, dir)
	if code, body := post(t, base+"/v1/upload_features", `{"inputs": {"user.id": "u1", "user.age": 31}}`); code != 202 {
		t.Fatalf("upload: %d %s", code, body)
	}
	waitAge(t, base, "u1", 31)
	// Acknowledged, then stopped at once: the writer may or may not have
	// written it yet; either way it must be there after the restart.
	if code, body := post(t, base+"/v1/upload_features", `{"inputs": {"user.id": ["u2", "u3"], "user.age": [20, 30]}}`); code != 202 {
		t.Fatalf("upload: %d %s", code, body)
	}
	stop()

	base, stop = dev(t, dir)
	defer stop()
	if got := ageOf(t, base, "u1"); fmt.Sprint(got) != "31" {
		t.Errorf("after restart u1 age = %v, want 31 at once (from the store)", got)
	}
	waitAge(t, base, "u2", 20)
	waitAge(t, base, "u3", 30)
}

func TestConfigPrintsEveryKnob(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"config"}, config.FromMap(map[string]string{"DYNAMODB_MAX_RETRIES": "3"}), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, k := range config.Knobs {
		if !strings.Contains(out.String(), k.Name) {
			t.Errorf("cairn config lacks %s", k.Name)
		}
	}
}

func TestStartupErrorsAreClear(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--features", "../../examples/features.yaml"}, "no Kafka brokers"},
		{[]string{"write", "--features", "../../examples/features.yaml", "--brokers", "127.0.0.1:1"}, "no online store configured"},
		{[]string{"serve", "--features", "nope.yaml"}, "nope.yaml"},
		{[]string{"serve", "--features", "../../examples/features.yaml", "--brokers", "127.0.0.1:1", "--store", "mysql://x"}, `unknown scheme "mysql"`},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"serve", "--features", "../../examples/features.yaml", "--brokers", "127.0.0.1:1", "--store", "redis://127.0.0.1:1/0"},
			"set CAIRN_API_KEYS_FILE (see `cairn keys new`), or CAIRN_API_AUTH=none"},
		{[]string{"keys", "new", "--name", "x", "--scopes", "read"}, `unknown scope "read"`},
		{[]string{"keys", "new", "--scopes", "query"}, "no name"},
	}
	for _, tt := range tests {
		err := run(context.Background(), tt.args, config.FromMap(nil), io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("cairn %v: error %v, want one containing %q", tt.args, err, tt.want)
		}
	}
}

func TestMain(m *testing.M) {
	if os.Getenv(benchServerChild) == "1" {
		// This binary was started as `cairn bench-server` by a benchmark
		// under test (see startServerProcess).
		if err := run(context.Background(), os.Args[1:], config.FromOS(), os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "cairn:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(testserver.Run(m))
}

// `cairn dev --store dynamodb:///...` runs the same path against DynamoDB's
// API, creating the table on first start.
func TestDevOnDynamoDB(t *testing.T) {
	endpoint := testserver.Moto(t)
	table := fmt.Sprintf("cairn-dev-%d", time.Now().UnixNano())
	uri := "dynamodb:///" + table + "?region=us-east-1&endpoint=" + endpoint
	dir := t.TempDir()
	base, stop := dev(t, dir, "--store", uri)
	if code, body := post(t, base+"/v1/upload_features", `{"inputs": {"user.id": "d1", "user.age": 44}}`); code != 202 {
		t.Fatalf("upload: %d %s", code, body)
	}
	waitAge(t, base, "d1", 44)
	stop()
	base, stop = dev(t, dir, "--store", uri)
	defer stop()
	if got := ageOf(t, base, "d1"); fmt.Sprint(got) != "44" {
		t.Errorf("after restart d1 age = %v", got)
	}
}

// With the read-path accelerators on, a repeated query is answered from the
// cache and an unknown entity without a store read.
func TestDevWithCacheAndBloomFilter(t *testing.T) {
	base, stop := devEnv(t, t.TempDir(), map[string]string{
		"DYNAMODB_CACHED_NAMESPACES": `[{"namespace": "user", "ttl_seconds": 60}]`,
		"CAIRN_BLOOM_NAMESPACES":     `[{"namespace": "user", "expected_keys": 1000}]`,
		// Polling for the upload must not cache "absent" for a minute.
		"DYNAMODB_LRU_CACHE_CACHE_MISSES": "false",
	})
	defer stop()
	if code, body := post(t, base+"/v1/upload_features", `{"inputs": {"user.id": "c1", "user.age": 7}}`); code != 202 {
		t.Fatalf("upload: %d %s", code, body)
	}
	waitAge(t, base, "c1", 7)
	_, body := post(t, base+"/v1/query/online", `{"inputs": {"user.id": "c1"}, "outputs": ["user.age"], "include_meta": true}`)
	if !strings.Contains(body, `"cache_hit":true`) {
		t.Errorf("repeated query not answered from the cache: %s", body)
	}
	// Absent keys: once the filter is built, answered without store reads.
	deadline := time.Now().Add(10 * time.Second)
	for {
		for i := range 20 {
			ageOf(t, base, fmt.Sprintf("nobody-%d", i))
		}
		resp, err := http.Get(base + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		m, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(m), `cairn_bloom_reads_skipped_total{namespace="user"}`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no read was ever skipped by the Bloom filter:\n%s", m)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// `cairn dev --store redis://...` runs the same path against Valkey/Redis.
func TestDevOnRedis(t *testing.T) {
	addr := testserver.Redis(t)
	uri := fmt.Sprintf("redis://%s/0?prefix=cairn-dev-%d:", addr, time.Now().UnixNano())
	dir := t.TempDir()
	base, stop := dev(t, dir, "--store", uri)
	if code, body := post(t, base+"/v1/upload_features", `{"inputs": {"user.id": "r1", "user.age": 55}}`); code != 202 {
		t.Fatalf("upload: %d %s", code, body)
	}
	waitAge(t, base, "r1", 55)
	stop()
	base, stop = dev(t, dir, "--store", uri)
	defer stop()
	if got := ageOf(t, base, "r1"); fmt.Sprint(got) != "55" {
		t.Errorf("after restart r1 age = %v", got)
	}
}

// `cairn config` checks what it prints: an invalid knob, of any store,
// makes it exit non-zero with every problem listed.
func TestConfigReportsInvalidKnobs(t *testing.T) {
	var out bytes.Buffer
	env := config.FromMap(map[string]string{
		"CAIRN_ONLINE_STORE":             "redis://127.0.0.1:6379/0",
		"DYNAMODB_ENABLE_REQUEST_RACING": "true",
		"CAIRN_SHUTDOWN_TIMEOUT":         "soon",
	})
	err := run(context.Background(), []string{"config"}, env, &out, io.Discard)
	if err == nil {
		t.Fatal("cairn config accepted an invalid configuration")
	}
	for _, want := range []string{"DYNAMODB_REQUEST_RACING_WAIT_TIME", `CAIRN_SHUTDOWN_TIMEOUT="soon"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if !strings.Contains(out.String(), "DYNAMODB_ENABLE_REQUEST_RACING") {
		t.Error("cairn config printed no table before its verdict")
	}
}

// Regression: `cairn serve` logged "query server listening", then
// "shutting down", and exited 0 within milliseconds, because the process
// waited on the channel of a writer it does not run. A query server keeps
// serving until it is told to stop.
func TestServeStaysUp(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "cairn.persist", "cairn.metrics", "cairn.persist.dlq"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	p := startInProcess(t, []string{"serve", "--features", "../../examples/features.yaml", "--brokers", strings.Join(cluster.ListenAddrs(), ","),
		"--store", "embedded://" + t.TempDir(), "--addr", "127.0.0.1:0"}, map[string]string{"CAIRN_API_AUTH": "none"})
	base := "http://" + p.Addr
	select {
	case err := <-p.Done:
		t.Fatalf("cairn serve exited by itself: %v", err)
	case <-time.After(2 * time.Second):
	}
	// SIGHUP, which operators send to reload, does not stop a query
	// server with nothing to reload (Go's default would end the process,
	// and this test binary with it).
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.Done:
		t.Fatalf("cairn serve exited on SIGHUP: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
	resp, err := http.Post(base+"/v1/query/online", "application/json", strings.NewReader(`{"inputs": {"user.id": "u1"}, "outputs": ["user.age"]}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("query: status %d", resp.StatusCode)
	}
	p.stop(t)
}

// `cairn write` with Kafka credentials that cannot work ends within 10 s
// with one message naming the cause, instead of a consumer retrying for
// ever.
func TestWriteBadKafkaCredentials(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", "alice", "alice-secret"),
		kfake.SeedTopics(1, "cairn.persist", "cairn.metrics", "cairn.persist.dlq"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	env := config.FromMap(map[string]string{"CAIRN_KAFKA_SASL_USERNAME": "alice", "CAIRN_KAFKA_SASL_PASSWORD": "not-Zq9-secret"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	err = run(ctx, []string{"write", "--features", "../../examples/features.yaml", "--brokers", strings.Join(cluster.ListenAddrs(), ","),
		"--store", "embedded://" + t.TempDir(), "--addr", "127.0.0.1:0"}, env, io.Discard, io.Discard)
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("cairn write took %v to give up", took)
	}
	if err == nil || !strings.Contains(err.Error(), "SASL authentication failed") {
		t.Errorf("cairn write: %v; want the credentials named", err)
	}
	if strings.Contains(fmt.Sprint(err), "not-Zq9-secret") {
		t.Errorf("the error shows the password: %v", err)
	}
}

// inProcess is a cairn command run in this process, as `cairn ARGS`.
type inProcess struct {
	// Addr is the HTTP address it listens on.
	Addr string
	// Done receives run's result once it returns.
	Done chan error
	// Logs holds every line it logged.
	Logs   *logLines
	cancel context.CancelFunc
}

// startInProcess runs `cairn args...` with env in this process and waits
// until it listens (it logs "listening ... addr=ADDR"). It fails t if the
// command exits first or does not listen within 30 s.
func startInProcess(t *testing.T, args []string, env map[string]string) *inProcess {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &inProcess{Done: make(chan error, 1), Logs: &logLines{}, cancel: cancel}
	t.Cleanup(cancel)
	pr, pw := io.Pipe()
	go func() {
		p.Done <- run(ctx, args, config.FromMap(env), io.Discard, pw)
		pw.Close()
	}()
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			p.Logs.mu.Lock()
			p.Logs.lines = append(p.Logs.lines, line)
			p.Logs.mu.Unlock()
			if _, a, ok := strings.Cut(line, " addr="); ok && strings.Contains(line, "listening") {
				select {
				case addr <- strings.Fields(a)[0]:
				default:
				}
			}
		}
	}()
	select {
	case p.Addr = <-addr:
	case err := <-p.Done:
		t.Fatalf("cairn %s exited before listening: %v", args[0], err)
	case <-time.After(30 * time.Second):
		t.Fatalf("cairn %s did not listen within 30s", args[0])
	}
	return p
}

// stop interrupts the command and fails t unless it returns nil within
// 30 s.
func (p *inProcess) stop(t *testing.T) {
	t.Helper()
	p.cancel()
	select {
	case err := <-p.Done:
		if err != nil {
			t.Errorf("cairn stopped with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("cairn did not stop within 30s of its interrupt")
	}
}
