package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairnfs/cairn/internal/api"
	"github.com/cairnfs/cairn/internal/auth"
	"github.com/cairnfs/cairn/internal/config"
	"github.com/cairnfs/cairn/internal/queue"
)

// adminTarget serves the failover endpoint of a process whose one Kafka
// client fails to switch when fail is set, behind an admin key.
func adminTarget(t *testing.T, keys *auth.Keys, fail bool) (addr string, f *queue.Failover) {
	t.Helper()
	f, err := queue.NewFailover(queue.FailoverConfig{Primary: queue.Config{Brokers: []string{"p:1"}},
		Secondary: queue.Config{Brokers: []string{"s:1"}}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.Register("writer", func(context.Context, queue.Config, time.Time) error {
		if fail {
			return errors.New("secondary unreachable")
		}
		return nil
	})
	srv := httptest.NewServer(api.RequireScope(keys, auth.Admin, api.KafkaActiveHandler(f, 1<<10)))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), f
}

// `cairn failover kafka` asks every target, prints one line each, and
// fails when one did not switch or did not answer.
func TestFailoverKafka(t *testing.T) {
	const token = "cairn_ops-token"
	sum := sha256.Sum256([]byte(token))
	dir := t.TempDir()
	kf := filepath.Join(dir, "keys.yaml")
	if err := os.WriteFile(kf, []byte("keys:\n  - {name: ops, sha256: "+hex.EncodeToString(sum[:])+", scopes: [admin]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	keys, err := auth.Open(kf, nil)
	if err != nil {
		t.Fatal(err)
	}
	good1, f1 := adminTarget(t, keys, false)
	good2, f2 := adminTarget(t, keys, false)
	bad, _ := adminTarget(t, keys, true)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := ln.Addr().String()
	ln.Close()
	env := config.FromMap(map[string]string{"CAIRN_ADMIN_TOKEN": token})

	var out strings.Builder
	err = run(context.Background(), []string{"failover", "kafka", "--to", "secondary", "--targets", good1 + "," + good2}, env, &out, io.Discard)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, want := range []string{good1 + ": secondary active (writer=secondary)", good2 + ": secondary active (writer=secondary)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if f1.Active() != queue.Secondary || f2.Active() != queue.Secondary {
		t.Error("a target was not switched")
	}

	// From a file, with one target failing to switch and one gone.
	tf := filepath.Join(dir, "targets")
	if err := os.WriteFile(tf, []byte("# the fleet\n"+good1+"\n"+bad+"  # writer b\n\n"+gone+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	err = run(context.Background(), []string{"failover", "kafka", "--to", "secondary", "--targets-file", tf, "--timeout", "5s"}, env, &out, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "2 of 3 targets failed") {
		t.Errorf("err %v: want 2 of 3 targets failed", err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], good1+": secondary active") ||
		!strings.Contains(lines[1], "writer did not switch to secondary: secondary unreachable") ||
		!strings.HasPrefix(lines[2], gone+": error:") {
		t.Errorf("output:\n%s", out.String())
	}

	// Without a token, the targets refuse; without --to, it only reads.
	out.Reset()
	if err := run(context.Background(), []string{"failover", "kafka", "--to", "primary", "--targets", good1}, config.FromMap(nil), &out, io.Discard); err == nil ||
		!strings.Contains(out.String(), "UNAUTHENTICATED") {
		t.Errorf("without a token: %v\n%s", err, out.String())
	}
	tokf := filepath.Join(dir, "token")
	if err := os.WriteFile(tokf, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := run(context.Background(), []string{"failover", "kafka", "--targets", good1, "--token-file", tokf}, config.FromMap(nil), &out, io.Discard); err != nil ||
		!strings.Contains(out.String(), good1+": secondary active") || f1.Active() != queue.Secondary {
		t.Errorf("read only: %v\n%s", err, out.String())
	}
}

// Bad invocations are refused naming the flag.
func TestFailoverKafkaUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"failover"}, "usage: cairn failover kafka"},
		{[]string{"failover", "kafka", "--to", "tertiary", "--targets", "a:1"}, `--to "tertiary"`},
		{[]string{"failover", "kafka", "--to", "secondary"}, "no targets"},
		{[]string{"failover", "kafka", "--targets", "a:1", "--targets-file", "f"}, "both set"},
		{[]string{"failover", "kafka", "--targets-file", "/nonexistent"}, "--targets-file"},
	} {
		err := run(context.Background(), tc.args, config.FromMap(nil), io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
}
