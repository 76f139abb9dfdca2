package testserver

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// restartAttempts is how many times a restart on the same port is tried:
// the port may still be held for a moment by the process that just died.
const restartAttempts = 5

// Server is a server in a process of its own, started for one test, which
// the test may stop, kill, hang and restart through its process id. A
// restart keeps the address (and whatever data directory the server has),
// so that clients reconnect to it as they would to a rebooted machine.
//
// Its output, over every restart, goes to one log file in the test's
// temporary directory; when the test fails its last lines are logged. The
// server is stopped when the test is over.
//
// Methods that change the process (Kill, Term, Pause, Resume, Restart) call
// t.Fatal on failure, so call them from the test's goroutine.
type Server struct {
	t       testing.TB
	name    string
	port    int
	logPath string
	command func(port int) Command
	ready   readyFunc
	timeout time.Duration

	mu struct {
		sync.Mutex
		proc   *Process
		starts int
	}
}

// readyFunc returns nil once the server p started on addr answers, or an
// error once timeout has passed or p has exited.
type readyFunc func(p *Process, addr string, timeout time.Duration) error

// pollReady makes a readyFunc of a check that is retried until it passes.
func pollReady(check func(addr string) error) readyFunc {
	return func(p *Process, addr string, timeout time.Duration) error {
		return waitReady(p, addr, check, timeout)
	}
}

// startServer starts a Server on a free port, trying other ports when the
// first is taken.
func startServer(t testing.TB, name string, command func(port int) Command, ready readyFunc, timeout time.Duration) *Server {
	t.Helper()
	s := &Server{
		t:       t,
		name:    name,
		logPath: filepath.Join(t.TempDir(), name+".log"),
		command: command,
		ready:   ready,
		timeout: timeout,
	}
	t.Cleanup(s.cleanup)
	var errs []string
	for range startAttempts {
		port, err := freePort()
		if err != nil {
			t.Fatalf("testserver: find a free port for %s: %v", name, err)
		}
		s.port = port
		if err := s.start(); err != nil {
			errs = append(errs, err.Error())
			continue
		}
		return s
	}
	t.Fatalf("testserver: start %s:\n%s", name, strings.Join(errs, "\n"))
	return nil
}

// start starts the server on s.port and waits until it answers.
func (s *Server) start() error {
	s.mu.Lock()
	s.mu.starts++
	n := s.mu.starts
	s.mu.Unlock()
	if f, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err == nil {
		fmt.Fprintf(f, "=== testserver: start %d of %s on %s\n", n, s.name, s.Addr())
		f.Close()
	}
	p, err := spawn(s.command(s.port), s.logPath)
	if err != nil {
		return err
	}
	if err := s.ready(p, s.Addr(), s.timeout); err != nil {
		_ = p.Stop(stopTimeout)
		p.closeLog()
		return err
	}
	s.mu.Lock()
	s.mu.proc = p
	s.mu.Unlock()
	return nil
}

// Addr returns the server's host:port on 127.0.0.1; it does not change on
// restart.
func (s *Server) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// Process returns the server's current process.
func (s *Server) Process() *Process {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.proc
}

// PID returns the process id of the server's current process.
func (s *Server) PID() int { return s.Process().PID() }

// Kill sends SIGKILL and waits until the process is gone: a crash, with
// nothing flushed that was not already on disk.
func (s *Server) Kill() {
	s.t.Helper()
	if err := s.Process().Kill(); err != nil {
		s.t.Fatalf("testserver: %v", err)
	}
}

// Term sends SIGTERM (os.Interrupt outside Linux), waits at most grace for the process to exit, and
// returns its exit status (-1 when a signal ended it). The test fails if it
// has not exited by then; the process is then killed.
func (s *Server) Term(grace time.Duration) int {
	s.t.Helper()
	p := s.Process()
	if err := p.Signal(stopSignal); err != nil {
		s.t.Fatalf("testserver: %v", err)
	}
	code, err := p.Wait(grace)
	if err != nil {
		_ = p.Kill()
		s.t.Fatalf("testserver: after SIGTERM: %v", err)
	}
	return code
}

// Pause sends SIGSTOP: the process keeps its sockets open but answers
// nothing, like a hung machine or a network partition that drops packets.
func (s *Server) Pause() {
	s.t.Helper()
	if err := s.Process().Signal(pauseSignal); err != nil {
		s.t.Fatalf("testserver: %v", err)
	}
}

// Resume sends SIGCONT to a paused process.
func (s *Server) Resume() {
	s.t.Helper()
	if err := s.Process().Signal(resumeSignal); err != nil {
		s.t.Fatalf("testserver: %v", err)
	}
}

// Restart starts the server again on the same address, with the same
// arguments and data, and waits until it answers. A process still running
// is stopped first (SIGTERM, then SIGKILL after 5 seconds).
func (s *Server) Restart() {
	s.t.Helper()
	if err := s.Process().Stop(stopTimeout); err != nil {
		s.t.Fatalf("testserver: %v", err)
	}
	var errs []string
	for i := range restartAttempts {
		if i > 0 {
			time.Sleep(time.Duration(i) * 200 * time.Millisecond)
		}
		err := s.start()
		if err == nil {
			return
		}
		errs = append(errs, err.Error())
	}
	s.t.Fatalf("testserver: restart %s on %s:\n%s", s.name, s.Addr(), strings.Join(errs, "\n"))
}

// LogTail returns the last n lines the server wrote, over all its restarts.
func (s *Server) LogTail(n int) string {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return fmt.Sprintf("(log of %s unreadable: %v)", s.name, err)
	}
	lines := strings.SplitAfter(string(b), "\n")
	if len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "")
}

func (s *Server) cleanup() {
	if p := s.Process(); p != nil {
		if err := p.Stop(stopTimeout); err != nil {
			s.t.Errorf("testserver: %v", err)
		}
		p.closeLog()
	}
	if s.t.Failed() {
		s.t.Logf("testserver: last lines of %s (%s):\n%s", s.name, s.Addr(), s.LogTail(logTailLines))
	}
}

// lookPath finds binary on PATH, or skips t (fails it when
// CAIRN_REQUIRE_SERVERS=1).
func lookPath(t testing.TB, binary string) string {
	t.Helper()
	path, err := exec.LookPath(binary)
	if err == nil {
		return path
	}
	if os.Getenv(EnvRequireServers) == "1" {
		t.Fatalf("testserver: %s is not on PATH", binary)
	}
	t.Skipf("testserver: %s is not on PATH (set %s=1 to fail instead)", binary, EnvRequireServers)
	return ""
}

// RedisProcess is a redis-server of one test's own, which the test may
// kill and restart. It appends every write to its append-only file and
// fsyncs it before answering (--appendonly yes --appendfsync always), so a
// write it acknowledged survives SIGKILL and a restart.
type RedisProcess struct {
	*Server
}

// StartRedisProcess starts a redis-server for t alone, in a temporary
// directory of t's, on a free port of 127.0.0.1. It skips t when
// redis-server is not installed, unless CAIRN_REQUIRE_SERVERS=1.
func StartRedisProcess(t testing.TB) *RedisProcess {
	t.Helper()
	path := lookPath(t, redisSpec.binary)
	dir := t.TempDir()
	cmd := func(port int) Command {
		return Command{
			Name: "redis-server",
			Path: path,
			Args: []string{
				"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
				"--dir", dir, "--save", "",
				"--appendonly", "yes", "--appendfsync", "always",
			},
		}
	}
	return &RedisProcess{Server: startServer(t, "redis-server", cmd, pollReady(redisSpec.ready), startTimeout)}
}

// URI returns the store URI of database db, such as redis://127.0.0.1:6379/0.
func (r *RedisProcess) URI(db int) string {
	return fmt.Sprintf("redis://%s/%d", r.Addr(), db)
}

// MotoProcess is a moto_server of one test's own.
//
// moto keeps its data in memory only: a killed moto loses every table. An
// outage of DynamoDB is therefore simulated with [Server.Pause] and
// [Server.Resume] (SIGSTOP and SIGCONT: requests hang, as when the service
// or the network to it hangs), never with Kill or Restart, which would
// lose acknowledged writes for a reason no real DynamoDB has.
type MotoProcess struct {
	*Server
	gate *gate
}

// StartMotoProcess starts a moto_server for t alone, on a free port of
// 127.0.0.1, behind the same transaction gate as [Moto]. It skips t when
// moto_server is not installed, unless CAIRN_REQUIRE_SERVERS=1.
func StartMotoProcess(t testing.TB) *MotoProcess {
	t.Helper()
	path := lookPath(t, motoSpec.binary)
	m := &MotoProcess{gate: &gate{}}
	// Registered before the server's own cleanup, so run after it: closing
	// the gate waits for requests in flight, which a paused moto never
	// answers until it is resumed or stopped.
	t.Cleanup(m.gate.close)
	cmd := func(port int) Command {
		return Command{Name: "moto_server", Path: path, Args: motoSpec.args(port)}
	}
	m.Server = startServer(t, "moto_server", cmd, pollReady(motoSpec.ready), startTimeout)
	m.gate.url(t, "http://"+m.Addr())
	return m
}

// Endpoint returns the URL that DynamoDB clients use, such as
// http://127.0.0.1:41234: the transaction gate in front of the server (see
// [Moto]). It does not change over the test.
func (m *MotoProcess) Endpoint() string {
	return m.gate.url(m.t, "http://"+m.Addr())
}
