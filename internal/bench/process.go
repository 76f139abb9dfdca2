package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The query server of a measurement runs, unless Options.InProcess, in a
// process of its own, `cairn bench-server`, so that it has a Go runtime of
// its own (its scheduler, its collector), as in production, rather than
// sharing one with the load generator. The protocol between the two:
//
//   - the parent runs Options.Executable with the arguments
//     bench-server --store URI --features N --log-level L
//     [--cpuprofile FILE] [--memprofile FILE] [--trace FILE] [--resolver http|sql]
//     [--brokers LIST] (metrics.go) [--relay --ask N] (relay.go), its
//     own environment, then Options.ServerEnv, then the knobs of its
//     variant (security.go, resolvers.go), then ServerChildEnv=1, then
//     GOMAXPROCS with Options.ServerProcs;
//   - the child serves namespace [Namespace] of [RegistryWith](N, kind)
//     from the store on a loopback address (with --relay, the relay of
//     path (r), [RunRelay]), and once it serves writes
//     "listening ADDR" and a newline on its standard output ([Announce]);
//   - the parent may ask for the child's runtime statistics, one line at
//     a time on its standard input, which the child answers on its
//     standard output ([ServeParent], tail.go);
//   - the child stops when its standard input closes ([ServeParent]);
//     the parent closes it to stop the child and kills the child if it
//     has not exited 10s later.

// ServerCommand is the cairn command that runs a measurement's query
// server in a process of its own.
const ServerCommand = "bench-server"

// ServerChildEnv is set to "1" in the query server process's environment.
// A test binary, which has no ServerCommand of its own, runs the command
// when it sees it (in TestMain).
const ServerChildEnv = "CAIRN_BENCH_SERVER_CHILD"

// listening starts the line a query server process writes once it serves.
const listening = "listening "

// serverStartTimeout bounds the wait for a query server process to serve.
const serverStartTimeout = 30 * time.Second

// serverStopTimeout bounds the wait for a query server process to exit
// once its standard input is closed; it is killed after it.
const serverStopTimeout = 10 * time.Second

// Announce writes the line telling the parent that the query server
// serves on addr.
func Announce(w io.Writer, addr string) error {
	_, err := fmt.Fprintf(w, "%s%s\n", listening, addr)
	return err
}

// WaitForParent returns nil once stdin, the query server process's
// standard input, is closed (the parent asks it to stop), or ctx's error
// once ctx ends. The read of stdin outlives a return through ctx until
// stdin closes.
func WaitForParent(ctx context.Context, stdin io.Reader) error {
	closed := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, stdin)
		close(closed)
	}()
	select {
	case <-closed:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// serverProcess is a running `cairn bench-server`.
type serverProcess struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	addr  string
	done  chan error
	// lines carries the answers to requests for runtime statistics;
	// closed when the process's standard output is. mu serializes the
	// requests.
	lines chan string
	mu    sync.Mutex
	// stopped makes stop run once: the server of (i) is stopped before
	// the report, and again with the rest.
	stopped sync.Once
}

// startServerProcess starts the query server of variant v of o's
// measurement on uri in a process of its own, with v's environment after
// o.ServerEnv and v's arguments after the common ones, and waits for its
// address.
func startServerProcess(ctx context.Context, o Options, uri string, v serverVariant) (*serverProcess, error) {
	exe := o.Executable
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("bench: start the query server: %w", err)
		}
	}
	args := []string{ServerCommand, "--store", uri, "--features", strconv.Itoa(o.Features), "--log-level", o.LogLevel}
	if o.CPUProfile != "" {
		args = append(args, "--cpuprofile", o.CPUProfile)
	}
	if o.MemProfile != "" {
		args = append(args, "--memprofile", o.MemProfile)
	}
	if o.Trace != "" {
		args = append(args, "--trace", o.Trace)
	}
	args = append(args, v.args...)
	cmd := exec.Command(exe, args...)
	cmd.Env = append(append(append(os.Environ(), o.ServerEnv...), v.env...), ServerChildEnv+"=1")
	if o.ServerProcs > 0 {
		cmd.Env = append(cmd.Env, "GOMAXPROCS="+strconv.Itoa(o.ServerProcs))
	}
	cmd.Stderr = o.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		stdin.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start the query server: %w", err)
	}
	p := &serverProcess{cmd: cmd, stdin: stdin, done: make(chan error, 1), lines: make(chan string, 1)}
	addr := make(chan string, 1)
	go func() {
		r := bufio.NewReader(stdout)
		line, err := r.ReadString('\n')
		if a, ok := strings.CutPrefix(strings.TrimSpace(line), listening); ok && err == nil {
			addr <- a
		}
		close(addr)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				break
			}
			if strings.HasPrefix(line, runtimeAnswer) {
				select {
				case p.lines <- line:
				default: // an answer nobody waits for any more
				}
			}
		}
		close(p.lines)
		p.done <- cmd.Wait()
	}()
	timeout := time.NewTimer(serverStartTimeout)
	defer timeout.Stop()
	select {
	case a, ok := <-addr:
		if ok {
			p.addr = a
			return p, nil
		}
		// It exited, or said something else first: either way it is
		// not serving.
		_ = cmd.Process.Kill()
		err = <-p.done
		return nil, fmt.Errorf("bench: the query server process did not start listening: %v", err)
	case <-timeout.C:
		err = fmt.Errorf("bench: the query server process did not start listening within %v", serverStartTimeout)
	case <-ctx.Done():
		err = ctx.Err()
	}
	_ = cmd.Process.Kill()
	<-p.done
	return nil, err
}

// runtime asks the server process for its runtime statistics (tail.go).
func (p *serverProcess) runtime(ctx context.Context) (RuntimeStats, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.lines: // a late answer to an earlier request
	default:
	}
	if _, err := io.WriteString(p.stdin, runtimeRequest+"\n"); err != nil {
		return RuntimeStats{}, fmt.Errorf("bench: ask the query server for its runtime statistics: %w", err)
	}
	t := time.NewTimer(runtimeTimeout)
	defer t.Stop()
	select {
	case line, ok := <-p.lines:
		if !ok {
			return RuntimeStats{}, errNoRuntime
		}
		return parseRuntimeAnswer(line)
	case <-t.C:
		return RuntimeStats{}, errNoRuntime
	case <-ctx.Done():
		return RuntimeStats{}, ctx.Err()
	}
}

// pid returns the server process's id.
func (p *serverProcess) pid() int { return p.cmd.Process.Pid }

// stop closes the server's standard input, which makes it shut down, and
// waits for it, killing it after serverStopTimeout.
func (p *serverProcess) stop() { p.stopped.Do(p.stopOnce) }

func (p *serverProcess) stopOnce() {
	_ = p.stdin.Close()
	t := time.NewTimer(serverStopTimeout)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}
