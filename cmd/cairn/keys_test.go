package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/cairnfs/cairn/internal/config"
)

// keysNew runs `cairn keys new` and returns the token and the entry's
// lines as printed.
func keysNew(t *testing.T, name, scopes string) (token, entry string) {
	t.Helper()
	var out strings.Builder
	if err := run(context.Background(), []string{"keys", "new", "--name", name, "--scopes", scopes}, config.FromMap(nil), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	_, after, _ := strings.Cut(out.String(), "SIGHUP to each cairn serve:\n\n")
	for _, line := range strings.Split(out.String(), "\n") {
		if l := strings.TrimSpace(line); strings.HasPrefix(l, "cairn_") {
			token = l
		}
	}
	if token == "" || after == "" || strings.Contains(after, token) {
		t.Fatalf("cairn keys new printed:\n%s", out.String())
	}
	return token, after
}

// logLines collects a process's log lines.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) has(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.lines {
		if strings.Contains(line, s) {
			return true
		}
	}
	return false
}

// TestServeWithKeysAndReload follows an operator: keys made with `cairn keys
// new`, a query server started on their file, a key added and the file
// reloaded on SIGHUP, then a bad edit reloaded, which keeps the keys.
func TestServeWithKeysAndReload(t *testing.T) {
	// The test process receives the SIGHUPs it sends itself: without a
	// channel of its own, one sent before the server listens for it
	// would end the process.
	hup := make(chan os.Signal, 8)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	ranker, rankerEntry := keysNew(t, "ranker", "query")
	loader, loaderEntry := keysNew(t, "loader", "upload")
	path := filepath.Join(t.TempDir(), "keys.yaml")
	write := func(content string) {
		if err := os.WriteFile(path+".tmp", []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			t.Fatal(err)
		}
	}
	write("keys:\n" + rankerEntry)

	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "cairn.persist", "cairn.metrics", "cairn.persist.dlq"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	p := startInProcess(t, []string{"serve", "--features", "../../examples/features.yaml", "--brokers", strings.Join(cluster.ListenAddrs(), ","),
		"--store", "embedded://" + t.TempDir(), "--addr", "127.0.0.1:0"}, map[string]string{"CAIRN_API_KEYS_FILE": path})
	logs, base := p.Logs, "http://"+p.Addr

	call := func(path, body, token string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", base+path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct {
			Errors []struct{ Code string } `json:"errors"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&out)
		if len(out.Errors) > 0 {
			return resp.StatusCode, out.Errors[0].Code
		}
		return resp.StatusCode, ""
	}
	const query = `{"inputs": {"user.id": "u1"}, "outputs": ["user.age"]}`
	const upload = `{"inputs": {"user.id": "u1", "user.age": 31}}`
	for _, c := range []struct {
		path, body, token string
		status            int
		code              string
	}{
		{"/v1/query/online", query, "", 401, "UNAUTHENTICATED"},
		{"/v1/query/online", query, ranker, 200, ""},
		{"/v1/upload_features", upload, ranker, 403, "UNAUTHORIZED"},
		{"/v1/upload_features", upload, loader, 401, "UNAUTHENTICATED"}, // not in the file yet
	} {
		if status, code := call(c.path, c.body, c.token); status != c.status || code != c.code {
			t.Fatalf("POST %s: %d %s, want %d %s", c.path, status, code, c.status, c.code)
		}
	}

	// A key added, the file reloaded: the new key works.
	write("keys:\n" + rankerEntry + loaderEntry)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		status, _ := call("/v1/upload_features", upload, loader)
		if status == http.StatusAccepted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the added key still answers %d 10s after SIGHUP", status)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// A bad edit: logged, and the keys in use are kept.
	write("keys:\n  - name: ranker\n    sha256: " + ranker + "\n    scopes: [query]\n")
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for !logs.has("reload failed, keeping the keys in use") {
		if time.Now().After(deadline.Add(10 * time.Second)) {
			t.Fatal("no log line of the failed reload")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if status, _ := call("/v1/query/online", query, ranker); status != 200 {
		t.Errorf("query after a failed reload: %d", status)
	}
	if logs.has(ranker) || logs.has(loader) {
		t.Error("the log shows a token")
	}

	p.stop(t)
}
