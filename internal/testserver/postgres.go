package testserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvPostgresDSN names a running PostgreSQL server to use instead of
// starting one, as a URL whose user may create databases, for example
// postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable.
const EnvPostgresDSN = "CAIRN_TEST_POSTGRES_DSN"

// pgUser is the role the started server's initdb creates, with trust
// authentication on 127.0.0.1 only.
const pgUser = "postgres"

// PG is one test's own database on a PostgreSQL server shared by the tests
// of the binary.
type PG struct {
	// DSN connects to the test's database as a superuser, in URL form.
	DSN string
	// Database is the name of the test's database.
	Database string
}

// Exec runs statements in the test's database, failing t on an error.
func (p *PG) Exec(t testing.TB, statements ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.DSN)
	if err != nil {
		t.Fatalf("testserver: connect to %s: %v", p.Database, err)
	}
	defer conn.Close(ctx)
	for _, s := range statements {
		if _, err := conn.Exec(ctx, s); err != nil {
			t.Fatalf("testserver: %s: %v", s, err)
		}
	}
}

// Postgres returns a fresh database, dropped when t's test is over, on a
// PostgreSQL server. It uses CAIRN_TEST_POSTGRES_DSN when set; otherwise it
// starts, once per test binary, the newest server installed under
// /usr/lib/postgresql/*/bin (Debian's layout) or on PATH: initdb into a
// temporary directory with trust authentication, then postgres listening on
// 127.0.0.1 and a free port, with fsync off. Run as root, both run as the
// system user postgres (or nobody), since PostgreSQL refuses to run as
// root. The server is stopped by its process id when the binary's tests
// are over. When PostgreSQL is not installed, t is skipped, unless
// CAIRN_REQUIRE_SERVERS=1.
func Postgres(t testing.TB) *PG {
	t.Helper()
	admin := os.Getenv(EnvPostgresDSN)
	if admin == "" {
		admin = pgServer.dsn(t)
	}
	u, err := url.Parse(admin)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("testserver: %s=%q: want a postgres:// URL", EnvPostgresDSN, admin)
	}
	name := fmt.Sprintf("cairn_%d_%d", os.Getpid(), pgDatabases.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatalf("testserver: connect to PostgreSQL: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("testserver: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
		defer cancel()
		conn, err := pgx.Connect(ctx, admin)
		if err != nil {
			t.Logf("testserver: drop database %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("testserver: drop database %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	return &PG{DSN: u.String(), Database: name}
}

var (
	pgServer    = &postgresServer{}
	pgDatabases atomic.Int64
)

// postgresServer is the PostgreSQL server shared by a binary's tests,
// started on first use.
type postgresServer struct {
	once    sync.Once
	missing bool
	err     error
	dir     string // temporary directory: data directory and socket
	proc    *Process
	addr    string
}

func (s *postgresServer) dsn(t testing.TB) string {
	t.Helper()
	if !running.Load() {
		t.Fatalf("testserver: PostgreSQL needs the package's TestMain to call os.Exit(testserver.Run(m))")
	}
	s.once.Do(s.start)
	switch {
	case s.missing && os.Getenv(EnvRequireServers) != "1":
		t.Skipf("testserver: %v (set %s=1 to fail instead)", s.err, EnvRequireServers)
	case s.err != nil:
		t.Fatalf("testserver: %v", s.err)
	}
	return "postgres://" + pgUser + "@" + s.addr + "/postgres?sslmode=disable"
}

// postgresBin returns the directory of the newest installed PostgreSQL's
// initdb and postgres.
func postgresBin() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	var found []string
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "postgres")); err == nil {
			found = append(found, d)
		}
	}
	if len(found) > 0 {
		version := func(d string) int {
			n, _ := strconv.Atoi(filepath.Base(filepath.Dir(d)))
			return n
		}
		sort.Slice(found, func(i, j int) bool { return version(found[i]) > version(found[j]) })
		return found[0], nil
	}
	if p, err := exec.LookPath("postgres"); err == nil {
		if _, err := exec.LookPath("initdb"); err == nil {
			return filepath.Dir(p), nil
		}
	}
	return "", fmt.Errorf("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/postgres, no postgres and initdb on PATH) and %s is not set", EnvPostgresDSN)
}

// runAs returns the command that runs path with args as the system user
// that will own the data directory: unchanged unless this process is
// root, else through setpriv, which changes the user and execs, so that
// the process id is the server's own. The parent-death signal is kept
// across the change of user (the kernel would clear it), so that the
// server dies with the test binary as every other test server does.
func runAs(u *user.User, path string, args ...string) Command {
	if u == nil {
		return Command{Path: path, Args: args}
	}
	return Command{
		Name: filepath.Base(path),
		Path: "setpriv",
		Args: append([]string{"--reuid=" + u.Uid, "--regid=" + u.Gid, "--init-groups", "--pdeathsig=keep", "--", path}, args...),
	}
}

// serverUser returns the system user to run PostgreSQL as, or nil when this
// process is not root.
func serverUser() (*user.User, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		if u, err := user.Lookup(name); err == nil {
			return u, nil
		}
	}
	return nil, errors.New("running as root, and neither the user postgres nor nobody exists to run PostgreSQL as")
}

func (s *postgresServer) start() {
	bin, err := postgresBin()
	if err != nil {
		s.missing, s.err = true, err
		return
	}
	u, err := serverUser()
	if err != nil {
		s.err = err
		return
	}
	if s.dir, err = os.MkdirTemp("", "cairn-postgres-"); err != nil {
		s.err = fmt.Errorf("PostgreSQL: %w", err)
		return
	}
	if u != nil {
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(s.dir, uid, gid); err != nil {
			s.err = fmt.Errorf("PostgreSQL: give %s to %s: %w", s.dir, u.Username, err)
			return
		}
	}
	data := filepath.Join(s.dir, "data")
	initdb := runAs(u, filepath.Join(bin, "initdb"), "-D", data, "-U", pgUser, "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")
	cmd := exec.Command(initdb.Path, initdb.Args...)
	cmd.Dir = s.dir
	if out, err := cmd.CombinedOutput(); err != nil {
		s.err = fmt.Errorf("PostgreSQL: initdb: %w\n%s", err, out)
		return
	}
	var errs []error
	for range startAttempts {
		if err = s.startOnce(u, bin, data); err == nil {
			return
		}
		errs = append(errs, err)
	}
	s.err = errors.Join(errs...)
}

func (s *postgresServer) startOnce(u *user.User, bin, data string) error {
	port, err := freePort()
	if err != nil {
		return fmt.Errorf("find a free port for PostgreSQL: %w", err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	c := runAs(u, filepath.Join(bin, "postgres"), "-D", data, "-F",
		"-h", "127.0.0.1", "-p", strconv.Itoa(port), "-k", s.dir,
		"-c", "full_page_writes=off", "-c", "synchronous_commit=off",
		"-c", "max_connections=200", "-c", "shared_buffers=16MB")
	c.Dir = s.dir
	proc, err := spawn(c, "")
	if err != nil {
		return err
	}
	ready := func(string) error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, "postgres://"+pgUser+"@"+addr+"/postgres?sslmode=disable")
		if err != nil {
			return err
		}
		return conn.Close(ctx)
	}
	if err := waitReady(proc, addr, ready, startTimeout); err != nil {
		_ = s.stopProc(proc)
		return fmt.Errorf("PostgreSQL: %w", err)
	}
	s.proc, s.addr = proc, addr
	return nil
}

// stopProc asks for a fast shutdown (SIGINT: sessions are ended, not
// waited for), then kills the server if it has not exited in time.
func (s *postgresServer) stopProc(p *Process) error {
	if err := p.Signal(syscall.SIGINT); err != nil {
		return err
	}
	if _, err := p.Wait(stopTimeout); err == nil {
		return nil
	}
	return p.Kill()
}

// stop stops the server if it was started and removes its directory.
func (s *postgresServer) stop() error {
	var err error
	if s.proc != nil {
		err = s.stopProc(s.proc)
	}
	if s.dir != "" && strings.HasPrefix(filepath.Base(s.dir), "cairn-postgres-") {
		if rerr := os.RemoveAll(s.dir); rerr != nil && err == nil {
			err = rerr
		}
	}
	return err
}
