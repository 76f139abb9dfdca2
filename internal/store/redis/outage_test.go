package redis

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	goredis "github.com/redis/go-redis/v9"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/store"
	"github.com/cairnfs/cairn/internal/store/storetest"
	"github.com/cairnfs/cairn/internal/testserver"
)

// ownServer is a redis-server started by one test, unlike the shared one of
// package testserver, so that the test can stop and restart it.
type ownServer struct {
	t      *testing.T
	bin    string
	port   int
	args   []string
	pid    int
	kill   func() error
	signal func(os.Signal) error
	exited chan struct{}
	out    strings.Builder
}

// startOwnServer starts redis-server on 127.0.0.1:port with args added.
func startOwnServer(t *testing.T, port int, args ...string) *ownServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv(testserver.EnvRequireServers) == "1" {
			t.Fatalf("redis-server is not on PATH")
		}
		t.Skip("redis-server is not on PATH")
	}
	s := &ownServer{t: t, bin: bin, port: port, args: args}
	s.start()
	return s
}

func (s *ownServer) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

func (s *ownServer) start() {
	s.t.Helper()
	args := append([]string{"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1", "--save", ""}, s.args...)
	cmd := exec.Command(s.bin, args...)
	s.out.Reset()
	cmd.Stdout, cmd.Stderr = &s.out, &s.out
	cmd.SysProcAttr = serverProcAttr()
	s.exited = make(chan struct{})
	started := make(chan error, 1)
	exited := s.exited
	// Started and waited for on one locked thread: on Linux the server
	// dies with it (see serverProcAttr).
	go func() {
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			runtime.UnlockOSThread()
			return
		}
		started <- nil
		_ = cmd.Wait()
		close(exited)
	}()
	if err := <-started; err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	s.pid, s.kill, s.signal = cmd.Process.Pid, cmd.Process.Kill, cmd.Process.Signal
	s.t.Cleanup(s.stop)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := ping(s.addr()); err == nil {
			return
		} else if time.Now().After(deadline) {
			s.stop()
			s.t.Fatalf("redis-server on %s (pid %d) did not answer: %v", s.addr(), s.pid, err)
		}
		select {
		case <-exited:
			s.t.Fatalf("redis-server on %s exited", s.addr())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// stop kills the server, by its process id, and waits for it to exit.
func (s *ownServer) stop() {
	select {
	case <-s.exited:
		return
	default:
	}
	if err := s.kill(); err != nil {
		s.t.Errorf("kill redis-server (pid %d): %v", s.pid, err)
	}
	<-s.exited
}

// ping sends PING to addr and expects PONG.
func ping(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// A killed server gives reads and writes fast errors; once it is back on
// the same address, the same Store serves again, loading its scripts
// anew. With persistence the data survives; without, the mapping is lost
// too and a new generation starts.
func TestOutage(t *testing.T) {
	for _, tc := range []struct {
		name       string
		args       []string
		persistent bool
	}{
		{"persistent", []string{"--appendonly", "yes", "--appendfsync", "always", "--dir", ""}, true},
		{"ephemeral", []string{"--appendonly", "no"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if tc.persistent {
				args = append(args[:len(args)-1:len(args)-1], t.TempDir())
			}
			testOutage(t, startOwnServer(t, freePort(t), args...), tc.persistent)
		})
	}
}

func testOutage(t *testing.T, srv *ownServer, persistent bool) {
	ctx := context.Background()
	cfg := DefaultConfig()
	cfg.Addr = srv.addr()
	cfg.PoolSize = 4
	cfg.DialTimeout = 250 * time.Millisecond
	cfg.ReadTimeout = 250 * time.Millisecond
	cfg.WriteTimeout = 250 * time.Millisecond
	reg := prometheus.NewRegistry()
	s, err := Open(ctx, cfg, reg, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	sreg := storetest.Registry()
	ns, _ := sreg.Namespace("user")
	age, name := feat(t, sreg, "user.age"), feat(t, sreg, "user.name")
	ts := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	write(t, s, entity(ns, "before", ts, age, int64(1), name, "before"))
	read(t, s, ns, []string{"before"}, age)

	srv.stop()
	for i := range 5 {
		start := time.Now()
		_, err := s.Read(ctx, ns, []string{"before"}, []*feature.Feature{age})
		d := time.Since(start)
		if err == nil {
			t.Fatalf("read %d while the server is down: no error", i)
		}
		if d > time.Second {
			t.Errorf("read %d while the server is down took %v to fail: %v", i, d, err)
		}
		if !strings.Contains(err.Error(), srv.addr()) {
			t.Errorf("read error %q does not name the server %s", err, srv.addr())
		}
	}
	start := time.Now()
	err = s.Write(ctx, []store.EntityWrite{entity(ns, "during", ts, age, int64(2))})
	if err == nil || errors.Is(err, store.ErrRejected) {
		t.Fatalf("write while the server is down: %v, want an error that retrying can cure", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("write while the server is down took %v to fail", d)
	}

	srv.start()
	// The pool probes a node it could not reach once a second.
	deadline := time.Now().Add(5 * time.Second)
	var rows []store.Row
	for {
		rows, err = s.Read(ctx, ns, []string{"before"}, []*feature.Feature{age, name})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("reads did not recover: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("reads recovered %v after the restart", time.Since(deadline.Add(-5*time.Second)).Round(time.Millisecond))
	if rows[0].Found != persistent {
		t.Errorf("entity written before the restart: %+v, want found = %v", rows[0], persistent)
	}
	if persistent && (rows[0].Cells[0].Value != int64(1) || rows[0].Cells[1].Value != "before") {
		t.Errorf("entity written before the restart: %+v", rows[0])
	}
	if n := metricValue(t, reg, "cairn_redis_script_reloads_total"); n != 0 {
		t.Errorf("scripts reloaded %v times before any write", n)
	}

	// The first write finds the scripts gone and loads them.
	write(t, s, entity(ns, "after", ts, age, int64(3), name, "after"), entity(ns, "before", ts.Add(time.Second), age, int64(4)))
	if n := metricValue(t, reg, "cairn_redis_script_reloads_total"); n != 1 {
		t.Errorf("scripts reloaded %v times, want 1", n)
	}
	rows = read(t, s, ns, []string{"after", "before"}, age, name)
	if r := rows[0]; !r.Found || r.Cells[0].Value != int64(3) || r.Cells[1].Value != "after" {
		t.Errorf("entity written after the restart: %+v", r)
	}
	if r := rows[1]; r.Cells[0].Value != int64(4) || r.Cells[1].Found != persistent {
		t.Errorf("entity written before and after the restart: %+v", r)
	}
	gens := metricValue(t, reg, "cairn_redis_mapping_generation_changes_total")
	if persistent && gens != 0 || !persistent && gens != 1 {
		t.Errorf("mapping generation changes: %v, want %v", gens, map[bool]int{true: 0, false: 1}[persistent])
	}
}

// The ACL of docs/redis.md is enough for every operation.
func TestACL(t *testing.T) {
	srv := startOwnServer(t, freePort(t), "--appendonly", "no")
	ctx := context.Background()
	admin := goredis.NewClient(&goredis.Options{Addr: srv.addr()})
	defer admin.Close()
	acl := strings.Fields("ACL SETUSER cairn on >pw ~cairn:* +@connection +hget +hmget +hgetall +hset +hdel +hincrby +del +pttl +pexpire +expireat +persist +zadd +zscore +zrange +zrangebyscore +zremrangebyscore +time +scan +evalsha +script|load")
	args := make([]any, len(acl))
	for i, a := range acl {
		args[i] = a
	}
	if err := admin.Do(ctx, args...).Err(); err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseURI("redis://cairn:pw@" + srv.addr())
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, cfg, nil, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	reg := storetest.Registry()
	ns, _ := reg.Namespace("merchant") // expires: PEXPIRE
	age := feat(t, reg, "merchant.age")
	write(t, s, entity(ns, "1", time.Now(), age, int64(1)))
	if r := read(t, s, ns, []string{"1"}, age)[0]; r.Cells[0].Value != int64(1) {
		t.Fatalf("read: %+v", r)
	}
	if err := s.ScanKeys(ctx, ns, func(string) error { return nil }); err != nil {
		t.Fatal(err)
	}
	// Buckets: puts (the third trims the second, expired when put),
	// reads.
	bk := store.BucketKey{Namespace: ns, Key: "1", Feature: age, Start: time.Unix(3600, 0)}
	for i, expireAt := range []time.Time{time.Now().Add(time.Hour), time.Now().Add(-time.Minute), time.Now().Add(time.Hour)} {
		bk.Start = bk.Start.Add(time.Hour)
		if ok, err := s.PutBucket(ctx, bk, []byte("s"), 0, expireAt); !ok || err != nil {
			t.Fatalf("put bucket %d: %v %v", i, ok, err)
		}
	}
	if b, err := s.GetBucket(ctx, bk); err != nil || b.Version != 1 {
		t.Fatalf("get bucket: %+v %v", b, err)
	}
	if bs, err := s.ReadBuckets(ctx, ns, "1", age, time.Unix(0, 0), bk.Start); err != nil || len(bs) != 2 {
		t.Fatalf("read buckets: %+v %v", bs, err)
	}
	if err := admin.ScriptFlush(ctx).Err(); err != nil { // NOSCRIPT path
		t.Fatal(err)
	}
	write(t, s, entity(ns, "1", time.Now(), age, int64(2)))
	un := feat(t, reg, "merchant.name") // a lookup of an unknown id
	if r := read(t, s, ns, []string{"1"}, un, age)[0]; r.Cells[1].Value != int64(2) {
		t.Fatalf("read: %+v", r)
	}
}
