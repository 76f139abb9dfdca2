package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/cairnfs/cairn/internal/config"
	"github.com/cairnfs/cairn/internal/testserver"
)

// lockedBuffer collects a process's output while it writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func marker(t *testing.T, what string) string {
	t.Helper()
	b := make([]byte, 8)
	rand.Read(b)
	return what + "-" + hex.EncodeToString(b)
}

// No secret cairn is given is ever printed or logged: not by `cairn
// config`, not in help, not in the errors of a bad start, and not in the
// debug log of a whole `cairn dev` run that uploads to and queries a Redis
// store reached with a password.
func TestSecretsNeverShown(t *testing.T) {
	redisPass := marker(t, "redis-pass")
	kafkaPass := marker(t, "kafka-pass")
	addr := testserver.Redis(t)
	user := marker(t, "cairn-secrets")
	admin := goredis.NewClient(&goredis.Options{Addr: addr})
	defer admin.Close()
	ctx := context.Background()
	if err := admin.Do(ctx, "ACL", "SETUSER", user, "on", ">"+redisPass, "~*", "&*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	defer admin.Do(ctx, "ACL", "DELUSER", user)
	store := fmt.Sprintf("redis://%s:%s@%s/0?prefix=%s:", user, redisPass, addr, user)
	env := map[string]string{
		"CAIRN_ONLINE_STORE": store,
		// No SASL user: the password is read but not used, so that the
		// embedded broker (which has no users) accepts the run.
		"CAIRN_KAFKA_SASL_PASSWORD": kafkaPass,
	}
	secrets := []string{redisPass, kafkaPass}
	check := func(what, out string) {
		t.Helper()
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("%s shows the secret %s:\n%s", what, s, out)
			}
		}
	}

	var out bytes.Buffer
	if err := run(ctx, []string{"config"}, config.FromMap(env), &out, io.Discard); err != nil {
		t.Fatalf("cairn config: %v\n%s", err, out.String())
	}
	check("cairn config", out.String())
	if !hasField(out.String(), "CAIRN_KAFKA_SASL_PASSWORD", "(set)") || !strings.Contains(out.String(), user+":xxxxx@") {
		t.Errorf("cairn config does not say the secrets are set:\n%s", out.String())
	}

	for _, args := range [][]string{{"dev", "-h"}, {"serve", "-h"}, {"bench", "-h"}} {
		var help bytes.Buffer
		run(ctx, args, config.FromMap(env), &help, &help)
		check("cairn "+strings.Join(args, " "), help.String())
	}

	// A start refused for a mistyped scheme, or a URI that does not
	// parse, quotes the URI without its password.
	for _, uri := range []string{
		"redis2://" + user + ":" + redisPass + "@" + addr + "/0",
		"redis://" + user + ":" + redisPass + "%zz@" + addr + "/0",
	} {
		var stderr bytes.Buffer
		err := run(ctx, []string{"serve", "--features", "../../examples/features.yaml", "--brokers", "127.0.0.1:1", "--store", uri},
			config.FromMap(env), io.Discard, &stderr)
		if err == nil {
			t.Fatalf("serve started with store %s", uri)
		}
		check("a refused start", err.Error()+"\n"+stderr.String())
	}

	// A whole dev run at debug level.
	logs := &lockedBuffer{}
	base, stop := devLogged(t, t.TempDir(), env, logs)
	if code, body := post(t, base+"/v1/upload_features", `{"inputs": {"user.id": "s1", "user.age": 44}}`); code != 202 {
		t.Fatalf("upload: %d %s", code, body)
	}
	waitAge(t, base, "s1", 44)
	stop()
	check("the log of cairn dev", logs.String())
	if !strings.Contains(logs.String(), "online store opened") || !strings.Contains(logs.String(), user+":xxxxx@") {
		t.Errorf("the log does not name the store, masked:\n%s", logs.String())
	}
}

// hasField reports whether a line of out starts with name followed by
// value.
func hasField(out, name, value string) bool {
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == name && f[1] == value {
			return true
		}
	}
	return false
}

// devLogged is devEnv at debug level, with every line of the log copied to
// logs.
func devLogged(t *testing.T, dataDir string, env map[string]string, logs io.Writer) (string, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	args := []string{"dev", "--data-dir", dataDir, "--addr", "127.0.0.1:0", "--features", "../../examples/features.yaml", "--log-level", "debug"}
	done := make(chan error, 1)
	go func() {
		err := run(ctx, args, config.FromMap(env), logs, pw)
		pw.CloseWithError(io.EOF)
		done <- err
	}()
	urls := make(chan string, 1)
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(pr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logs, line)
			if _, rest, ok := strings.Cut(line, "cairn dev is ready: "); ok {
				urls <- strings.Fields(rest)[0]
			}
		}
	}()
	select {
	case u := <-urls:
		return u, func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("cairn dev exited with %v", err)
			}
			<-scanned // every line is in logs
		}
	case err := <-done:
		cancel()
		t.Fatalf("cairn dev exited before it was ready: %v\n%s", err, logs)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("cairn dev not ready after 30s")
	}
	return "", nil
}
