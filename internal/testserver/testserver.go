// Package testserver starts the real servers that cairn's tests run against:
// moto's DynamoDB API ([Moto]) and redis-server ([Redis]), shared by the
// tests of one binary; and, for tests of the production topology, servers
// of one test's own in processes that the test kills, hangs and restarts by
// process id: a Kafka-protocol broker ([StartKafka]), redis-server
// ([StartRedisProcess]), moto_server ([StartMotoProcess]) and the roles of
// the cairn binary ([BuildCairn], [StartRole]), all built on [Process] and
// [Server].
//
// Each server is started at most once per test binary, on 127.0.0.1 and a
// free port, the first time a test asks for it, and stopped (by its own
// process id) when the binary's tests are over. A package that uses this one
// must therefore route its tests through [Run]:
//
//	func TestMain(m *testing.M) { os.Exit(testserver.Run(m)) }
//
// An already running server can be named instead through the environment:
// CAIRN_TEST_DYNAMODB_ENDPOINT (for example http://127.0.0.1:5055) and
// CAIRN_TEST_REDIS_ADDR (for example 127.0.0.1:6379). Tests never reset a
// server as a whole; they use names of their own (tables, key prefixes,
// databases). A Redis server may be shared by several test binaries at once;
// a moto server should not be (see [Moto]), so scripts/test lets each binary
// start its own.
//
// When a server is neither named nor installed, the test asking for it is
// skipped, unless CAIRN_REQUIRE_SERVERS=1, in which case it fails: CI sets it
// so that a missing server can never pass as green.
//
// A [Server] keeps its address over restarts, so its clients reconnect as
// they would to a rebooted machine; its output goes to a log file whose last
// lines are logged when the test fails. Binaries (the cairn command, the
// broker of ./internal/testserver/kafkabroker) are built once per test
// binary, without the race detector, and removed by [Run].
//
// This package is imported only by _test files.
package testserver

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Environment variables read by this package.
const (
	// EnvDynamoDBEndpoint names a running DynamoDB-compatible endpoint to
	// use instead of starting moto_server.
	EnvDynamoDBEndpoint = "CAIRN_TEST_DYNAMODB_ENDPOINT"
	// EnvRedisAddr names a running Redis-compatible server (host:port) to
	// use instead of starting redis-server.
	EnvRedisAddr = "CAIRN_TEST_REDIS_ADDR"
	// EnvRequireServers, when "1", turns a missing server into a test
	// failure instead of a skip.
	EnvRequireServers = "CAIRN_REQUIRE_SERVERS"
)

const (
	// startTimeout bounds how long a server may take to answer after start.
	startTimeout = 30 * time.Second
	// stopTimeout is how long a server gets to exit after SIGTERM before it
	// is killed.
	stopTimeout = 5 * time.Second
	// startAttempts is how many ports are tried: a free port found by the
	// kernel can be taken by someone else before the server binds it.
	startAttempts = 3
)

var (
	// running is set by Run; servers are only started inside it, so that
	// they are always stopped.
	running atomic.Bool

	motoServer  = &lazyServer{spec: motoSpec}
	redisServer = &lazyServer{spec: redisSpec}
)

// Run runs the package's tests and then stops every server they started.
// It returns the exit code for os.Exit.
func Run(m *testing.M) int {
	running.Store(true)
	code := m.Run()
	motoGate.close()
	for _, ls := range []*lazyServer{motoServer, redisServer} {
		if err := ls.stop(); err != nil {
			fmt.Fprintf(os.Stderr, "testserver: %v\n", err)
		}
	}
	if err := pgServer.stop(); err != nil {
		fmt.Fprintf(os.Stderr, "testserver: PostgreSQL: %v\n", err)
	}
	if err := removeBuilds(); err != nil {
		fmt.Fprintf(os.Stderr, "testserver: %v\n", err)
	}
	return code
}

// Moto returns the endpoint URL of a DynamoDB API served by moto, such as
// http://127.0.0.1:41234. It uses CAIRN_TEST_DYNAMODB_ENDPOINT when set, else
// starts moto_server from PATH. moto answers one request at a time: keep the
// tests that share it small.
//
// The URL is that of a small proxy in this test binary which lets each
// write (PutItem, UpdateItem, DeleteItem, BatchWriteItem,
// TransactWriteItems) run alone. moto serves requests on several threads,
// and its writes are not atomic as DynamoDB's are: a conditional write
// checks its condition and then writes, so that two writes conditioned on
// the same version could both succeed (a lost update, seen in the bucket
// conformance test); and when it cancels a transaction it restores a copy
// of every table taken when the transaction began, undoing what other
// requests wrote meanwhile, where DynamoDB undoes only the transaction's
// own actions. Reads still run side by side. A request holds the gate until moto has answered it, even
// when its client gave up first (a raced read, a deadline): moto carries on
// with a request whose client left, and a transaction it cancels meanwhile
// would undo the write.
func Moto(t testing.TB) string {
	t.Helper()
	upstream := os.Getenv(EnvDynamoDBEndpoint)
	if upstream == "" {
		upstream = "http://" + motoServer.addr(t)
	}
	return motoGate.url(t, upstream)
}

// motoRequestTimeout bounds a request the gate forwards to moto after its
// client gave up.
const motoRequestTimeout = time.Minute

// motoGate is the transaction gate in front of moto.
var motoGate gate

type gate struct {
	mu  sync.Mutex
	srv *httptest.Server
}

func (g *gate) url(t testing.TB, upstream string) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.srv != nil {
		return g.srv.URL
	}
	target, err := url.Parse(upstream)
	if err != nil {
		t.Fatalf("testserver: moto endpoint %q: %v", upstream, err)
	}
	forward := httputil.NewSingleHostReverseProxy(target)
	forward.ErrorLog = log.New(io.Discard, "", 0) // requests cancelled by raced reads
	var tx sync.RWMutex
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isMotoWrite(r.Header.Get("X-Amz-Target")) {
			tx.Lock()
			defer tx.Unlock()
		} else {
			tx.RLock()
			defer tx.RUnlock()
		}
		// Detached from the client: the gate is held until moto answers.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), motoRequestTimeout)
		defer cancel()
		forward.ServeHTTP(w, r.WithContext(ctx))
	}))
	return g.srv.URL
}

// isMotoWrite reports whether the DynamoDB operation named by target (the
// X-Amz-Target header, "DynamoDB_20120810.PutItem") writes items.
func isMotoWrite(target string) bool {
	_, op, _ := strings.Cut(target, ".")
	switch op {
	case "PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems":
		return true
	}
	return false
}

func (g *gate) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.srv != nil {
		g.srv.Close()
		g.srv = nil
	}
}

// Redis returns the host:port of a Redis server. It uses
// CAIRN_TEST_REDIS_ADDR when set, else starts redis-server from PATH with
// persistence off.
func Redis(t testing.TB) string {
	t.Helper()
	if addr := os.Getenv(EnvRedisAddr); addr != "" {
		return addr
	}
	return redisServer.addr(t)
}

// spec says how to start one kind of server and how to tell it is up.
type spec struct {
	// binary is looked up on PATH.
	binary string
	// env names the variable that would have named a running server.
	env  string
	args func(port int) []string
	// ready returns nil once the server at addr answers.
	ready func(addr string) error
}

var motoSpec = spec{
	binary: "moto_server",
	env:    EnvDynamoDBEndpoint,
	args: func(port int) []string {
		return []string{"-H", "127.0.0.1", "-p", strconv.Itoa(port)}
	},
	ready: func(addr string) error {
		c := &http.Client{Timeout: time.Second}
		resp, err := c.Get("http://" + addr + "/")
		if err != nil {
			return err
		}
		return resp.Body.Close()
	},
}

var redisSpec = spec{
	binary: "redis-server",
	env:    EnvRedisAddr,
	args: func(port int) []string {
		return []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"}
	},
	ready: func(addr string) error {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err
		}
		defer conn.Close()
		if err := conn.SetDeadline(time.Now().Add(time.Second)); err != nil {
			return err
		}
		if _, err := conn.Write([]byte("PING\r\n")); err != nil {
			return err
		}
		line, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil {
			return err
		}
		if strings.TrimSpace(line) != "+PONG" {
			return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
		}
		return nil
	},
}

// lazyServer is one server, started on first use.
type lazyServer struct {
	spec spec

	once    sync.Once
	missing bool // the binary is not installed
	err     error
	proc    *process
}

// addr returns the started server's address, or skips or fails t.
func (ls *lazyServer) addr(t testing.TB) string {
	t.Helper()
	if !running.Load() {
		t.Fatalf("testserver: %s needs the package's TestMain to call os.Exit(testserver.Run(m))", ls.spec.binary)
	}
	ls.once.Do(func() {
		path, err := exec.LookPath(ls.spec.binary)
		if err != nil {
			ls.missing = true
			ls.err = fmt.Errorf("%s is not on PATH and %s is not set", ls.spec.binary, ls.spec.env)
			return
		}
		ls.proc, ls.err = startProcess(path, ls.spec)
	})
	switch {
	case ls.missing && os.Getenv(EnvRequireServers) != "1":
		t.Skipf("testserver: %v (set %s=1 to fail instead)", ls.err, EnvRequireServers)
	case ls.err != nil:
		t.Fatalf("testserver: %v", ls.err)
	}
	return ls.proc.addr
}

// stop stops the server if it was started.
func (ls *lazyServer) stop() error {
	if ls.proc == nil {
		return nil
	}
	return ls.proc.stop()
}

// process is a started server.
type process struct {
	*Process
	addr string
}

// startProcess starts the server, trying another port if the first one is
// taken, and waits until it answers.
func startProcess(path string, sp spec) (*process, error) {
	var errs []error
	for range startAttempts {
		p, err := startOnce(path, sp)
		if err == nil {
			return p, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

func startOnce(path string, sp spec) (*process, error) {
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("find a free port for %s: %w", sp.binary, err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	proc, err := spawn(Command{Name: sp.binary, Path: path, Args: sp.args(port)}, "")
	if err != nil {
		return nil, err
	}
	if err := waitReady(proc, addr, sp.ready, startTimeout); err != nil {
		_ = proc.Stop(stopTimeout)
		return nil, err
	}
	return &process{Process: proc, addr: addr}, nil
}

// waitReady polls ready until it succeeds, the process exits or timeout
// passes.
func waitReady(p *Process, addr string, ready func(addr string) error, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-p.Exited():
			return fmt.Errorf("%s on %s exited before answering; output:\n%s", p.Name(), addr, p.Tail(logTailLines))
		default:
		}
		err := ready(addr)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s on %s did not answer within %v (last error: %v); output:\n%s",
				p.Name(), addr, timeout, err, p.Tail(logTailLines))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop asks the process to exit, then kills it if it does not.
func (p *process) stop() error { return p.Stop(stopTimeout) }

// freePort asks the kernel for a port that is free right now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	return port, l.Close()
}

// tailBuffer keeps the last max bytes written to it, for error messages.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf bytes.Buffer
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if extra := b.buf.Len() - b.max; extra > 0 {
		b.buf.Next(extra)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
