package redis

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/store/storetest"
	"github.com/cairnfs/cairn/internal/tlscert/tlscerttest"
)

// readStore opens a store of its own on srv, registering its metrics.
func readStore(t *testing.T, srv *ownServer, mod func(*Config)) (*Store, *feature.Namespace, *feature.Feature) {
	t.Helper()
	cfg := ownConfig(srv, "rc:")
	if mod != nil {
		mod(&cfg)
	}
	s, reg := openReg(t, cfg)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("dials ok %v error %v, retries %v", metricValue(t, reg, "cairn_redis_read_connection_dials_total", "outcome", "ok"),
				metricValue(t, reg, "cairn_redis_read_connection_dials_total", "outcome", "error"), metricValue(t, reg, "cairn_redis_read_retries_total"))
		}
	})
	r := storetest.Registry()
	ns, _ := r.Namespace("user")
	return s, ns, feat(t, r, "user.age")
}

// An idle read connection the server closed is replaced at once: the read
// succeeds, and the retry is counted.
func TestReadConnClosedWhileIdle(t *testing.T) {
	srv := startOwnServer(t, freePort(t), "--appendonly", "no")
	cfg := ownConfig(srv, "rc:")
	s, reg := openReg(t, cfg)
	r := storetest.Registry()
	ns, _ := r.Namespace("user")
	age := feat(t, r, "user.age")
	ctx := context.Background()
	write(t, s, entity(ns, "k", time.Now(), age, int64(7)))
	if got := read(t, s, ns, []string{"k"}, age)[0].Cells[0].Value; got != int64(7) {
		t.Fatalf("read %v, want 7", got)
	}
	admin := goredis.NewClient(&goredis.Options{Addr: srv.addr()})
	defer admin.Close()
	if n, err := admin.ClientKillByFilter(ctx, "TYPE", "normal", "SKIPME", "yes").Result(); err != nil || n < 1 {
		t.Fatalf("CLIENT KILL: %d killed, %v", n, err)
	}
	if got := read(t, s, ns, []string{"k"}, age)[0].Cells[0].Value; got != int64(7) {
		t.Fatalf("read after the server closed the connection: %v, want 7", got)
	}
	if n := metricValue(t, reg, "cairn_redis_read_retries_total"); n != 1 {
		t.Errorf("cairn_redis_read_retries_total = %v, want 1", n)
	}
	if n := metricValue(t, reg, "cairn_redis_read_connection_dials_total", "outcome", "ok"); n != 2 {
		t.Errorf("read connections dialled: %v, want 2", n)
	}
}

// Concurrent reads share at most PoolSize read connections, and each gets
// its own entities' values.
func TestReadConnPoolBound(t *testing.T) {
	srv := startOwnServer(t, freePort(t), "--appendonly", "no")
	cfg := ownConfig(srv, "rc:")
	cfg.PoolSize = 2
	s, reg := openReg(t, cfg)
	r := storetest.Registry()
	ns, _ := r.Namespace("user")
	age := feat(t, r, "user.age")
	now := time.Now()
	const n = 40
	for i := range n {
		write(t, s, entity(ns, fmt.Sprint("k", i), now, age, int64(i)))
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			keys := []string{fmt.Sprint("k", i), fmt.Sprint("k", (i+1)%n), "absent"}
			rows, err := s.Read(context.Background(), ns, keys, []*feature.Feature{age})
			switch {
			case err != nil:
				errs <- err
			case rows[0].Cells[0].Value != int64(i) || rows[1].Cells[0].Value != int64((i+1)%n) || rows[2].Found:
				errs <- fmt.Errorf("read %v: %+v", keys, rows)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if d := metricValue(t, reg, "cairn_redis_read_connection_dials_total", "outcome", "ok"); d < 1 || d > 2 {
		t.Errorf("read connections dialled: %v, want 1 or 2 (CAIRN_REDIS_POOL_SIZE 2)", d)
	}
}

// A read connection authenticates as go-redis does, selects the database,
// and a refused authentication is reported without the password.
func TestReadConnAuthAndDatabase(t *testing.T) {
	srv := startOwnServer(t, freePort(t), "--appendonly", "no")
	ctx := context.Background()
	if err := goredis.NewClient(&goredis.Options{Addr: srv.addr()}).ConfigSet(ctx, "requirepass", "first-secret").Err(); err != nil {
		t.Fatal(err)
	}
	s, ns, age := readStore(t, srv, func(c *Config) { c.Password, c.DB = "first-secret", 3 })
	write(t, s, entity(ns, "k", time.Now(), age, int64(5)))
	if got := read(t, s, ns, []string{"k"}, age)[0].Cells[0].Value; got != int64(5) {
		t.Fatalf("read %v, want 5", got)
	}
	admin := goredis.NewClient(&goredis.Options{Addr: srv.addr(), Password: "first-secret", DB: 3})
	defer admin.Close()
	if n, err := admin.Exists(ctx, s.entityKey(ns.Name, "k")).Result(); err != nil || n != 1 {
		t.Fatalf("entity in database 3: %d, %v", n, err)
	}
	// The password changes under the store: new connections are refused.
	if err := admin.ConfigSet(ctx, "requirepass", "second-secret").Err(); err != nil {
		t.Fatal(err)
	}
	if err := admin.ClientKillByFilter(ctx, "TYPE", "normal").Err(); err != nil && !strings.Contains(err.Error(), "EOF") {
		t.Fatal(err)
	}
	_, err := s.Read(ctx, ns, []string{"k"}, []*feature.Feature{age})
	if err == nil {
		t.Fatal("read with a refused password: no error")
	}
	if msg := err.Error(); !strings.Contains(msg, "WRONGPASS") || strings.Contains(msg, "secret") {
		t.Errorf("error %q: want WRONGPASS named, and no password", msg)
	}
}

// A read's context ending without a deadline ends it on a server that does
// not answer.
func TestReadConnCancel(t *testing.T) {
	srv := startOwnServer(t, freePort(t), "--appendonly", "no")
	s, ns, age := readStore(t, srv, func(c *Config) { c.ReadTimeout = 10 * time.Second; c.MaxRetries = 0 })
	write(t, s, entity(ns, "k", time.Now(), age, int64(1)))
	read(t, s, ns, []string{"k"}, age) // a connection, idle
	if err := srv.signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = srv.signal(syscall.SIGCONT) }()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	if _, err := s.Read(ctx, ns, []string{"k"}, []*feature.Feature{age}); !errors.Is(err, context.Canceled) {
		t.Fatalf("read cancelled: %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("cancelled read returned after %v", d)
	}
}

// readFlat and appendFlat agree on RESP2 flat replies: readFlat succeeds
// only on what appendFlat parses to the same elements, and never panics.
func FuzzReadFlat(f *testing.F) {
	for _, seed := range []string{
		"*2\r\n$1\r\na\r\n$-1\r\n",
		"*0\r\n",
		"*3\r\n$0\r\n\r\n$3\r\nabc\r\n$2\r\n\r\n\r\n",
		"-WRONGTYPE Operation against a key\r\n",
		"*1\r\n:1\r\n",
		"*-1\r\n",
		"*2\r\n$5\r\nab\r\n",
		"$3\r\nabc\r\n",
		"*1\r\n$4\r\nabc\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		// Reads of at most 7 bytes, into a buffer of 3 grown 3 bytes at
		// least, cut elements anywhere and make the buffer grow while a
		// reply is read.
		rd := respReader{r: &chunkReader{b: raw, n: 7}, room: 3}
		rd.reset(make([]byte, 0, 3))
		spans, err := readFlat(&rd, nil)
		if err != nil {
			return
		}
		arena := rd.buf[:rd.end]
		want, werr := appendFlat(nil, raw[:replyLength(t, raw, len(spans))])
		if werr != nil {
			t.Fatalf("readFlat read %d elements of %q; appendFlat: %v", len(spans), raw, werr)
		}
		if len(want) != len(spans) {
			t.Fatalf("readFlat %d elements, appendFlat %d", len(spans), len(want))
		}
		for i, sp := range spans {
			switch {
			case sp.n < 0 && want[i] != nil, sp.n >= 0 && want[i] == nil:
				t.Fatalf("element %d: null disagrees", i)
			case sp.n >= 0 && !bytes.Equal(arena[sp.off:sp.off+sp.n], want[i]):
				t.Fatalf("element %d: %q, appendFlat %q", i, arena[sp.off:sp.off+sp.n], want[i])
			}
		}
	})
}

// chunkReader reads b at most n bytes at a time.
type chunkReader struct {
	b []byte
	n int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	k := copy(p[:min(len(p), r.n)], r.b)
	r.b = r.b[k:]
	return k, nil
}

// replyLength returns the length of the first reply of raw, an array of n
// elements that readFlat read, by walking it again.
func replyLength(t *testing.T, raw []byte, n int) int {
	i := bytes.Index(raw, []byte("\r\n")) + 2
	for range n {
		j := bytes.Index(raw[i:], []byte("\r\n"))
		l := parseLen(raw[i+1 : i+j])
		i += j + 2
		if l >= 0 {
			i += l + 2
		}
	}
	if i > len(raw) {
		t.Fatalf("reply of %d elements longer than the input", n)
	}
	return i
}

// envTLSRedis names, in the test's second run, the TLS address of the
// server TestReadConnTLS started.
const envTLSRedis = "CAIRN_TEST_TLS_REDIS_ADDR"

// Over TLS (rediss://), read connections verify the server against the
// system's roots, as go-redis's do. The system's roots cannot be replaced
// within a process once read, so the test runs itself a second time with
// SSL_CERT_FILE naming a CA of its own, which Go takes as the system's
// roots; in this run, the same server, unknown to the real roots, is
// refused.
func TestReadConnTLS(t *testing.T) {
	if addr := os.Getenv(envTLSRedis); addr != "" {
		tlsRun(t, addr)
		return
	}
	ca := tlscerttest.NewCA(t)
	dir := t.TempDir()
	cert, key, caFile := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"), filepath.Join(dir, "ca.pem")
	ca.Issue(t, 1, cert, key)
	if err := os.WriteFile(caFile, ca.PEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	tlsPort := freePort(t)
	startOwnServer(t, freePort(t), "--appendonly", "no", "--tls-port", strconv.Itoa(tlsPort),
		"--tls-cert-file", cert, "--tls-key-file", key, "--tls-ca-cert-file", caFile, "--tls-auth-clients", "no")
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(tlsPort))

	// Not trusted by this process's roots: refused, naming why.
	cfg := DefaultConfig()
	cfg.Addr, cfg.TLS, cfg.MaxRetries = addr, true, 0
	raw, err := NewRawReads(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Read(context.Background(), []string{"k"}, nil, nil); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("read over TLS from a server no root trusts: %v, want a certificate error", err)
	}

	cmd := exec.Command(os.Args[0], "-test.run", "^TestReadConnTLS$", "-test.count", "1", "-test.v")
	cmd.Env = append(os.Environ(), envTLSRedis+"="+addr, "SSL_CERT_FILE="+caFile, "SSL_CERT_DIR="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestReadConnTLS") {
		t.Fatalf("second run, trusting the test's CA: %v\n%s", err, out)
	}
}

// tlsRun is TestReadConnTLS's second run: the store writes and reads
// through the server at addr over TLS.
func tlsRun(t *testing.T, addr string) {
	cfg := DefaultConfig()
	cfg.Addr, cfg.TLS, cfg.KeyPrefix = addr, true, "tls:"
	s, reg := openReg(t, cfg)
	r := storetest.Registry()
	ns, _ := r.Namespace("user")
	age := feat(t, r, "user.age")
	write(t, s, entity(ns, "k", time.Now(), age, int64(42)))
	if got := read(t, s, ns, []string{"k"}, age)[0].Cells[0].Value; got != int64(42) {
		t.Fatalf("read over TLS: %v, want 42", got)
	}
	if n := metricValue(t, reg, "cairn_redis_read_connection_dials_total", "outcome", "ok"); n < 1 {
		t.Errorf("read connections dialled over TLS: %v, want at least 1", n)
	}
}
