package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairnfs/cairn/internal/config"
	"github.com/cairnfs/cairn/internal/node"
)

// `cairn bench` runs its query server in a process of its own, as
// `cairn bench-server`, so that the server has a Go runtime of its own, as
// in production, rather than sharing one (its scheduler, its collector)
// with the load generator. The child serves the benchmark's namespace
// from the store until its standard input closes.

// benchServerChild is set in the child's environment: a test binary, which
// has no `bench-server` command of its own, runs the command when it sees
// it (TestMain).
const benchServerChild = "CAIRN_BENCH_SERVER_CHILD"

// serverProcess is a running `cairn bench-server`.
type serverProcess struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	addr  string
	done  chan error
}

// startServerProcess starts the query server of f's benchmark on uri in a
// process of its own, with the knobs env sets, and waits for its address.
func startServerProcess(ctx context.Context, f benchFlags, uri string, env *config.Env, stderr io.Writer) (*serverProcess, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("bench: start the query server: %w", err)
	}
	args := []string{"bench-server", "--store", uri, "--features", strconv.Itoa(f.features), "--log-level", f.logLevel}
	if f.cpuProfile != "" {
		args = append(args, "--cpuprofile", f.cpuProfile)
	}
	if f.memProfile != "" {
		args = append(args, "--memprofile", f.memProfile)
	}
	cmd := exec.Command(exe, args...)
	// The child reads the knobs from its environment: it gets those set
	// for this command, whatever their source.
	cmd.Env = append(os.Environ(), benchServerChild+"=1")
	for _, k := range config.Knobs {
		if v, set := env.Value(k.Name); set {
			cmd.Env = append(cmd.Env, k.Name+"="+v)
		}
	}
	cmd.Stderr = stderr
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
	p := &serverProcess{cmd: cmd, stdin: stdin, done: make(chan error, 1)}
	addr := make(chan string, 1)
	go func() {
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if a, ok := strings.CutPrefix(strings.TrimSpace(line), "listening "); ok && err == nil {
			addr <- a
		}
		close(addr)
		_, _ = io.Copy(io.Discard, stdout)
		p.done <- cmd.Wait()
	}()
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
	case <-time.After(30 * time.Second):
		err = errors.New("bench: the query server process did not start listening within 30s")
	case <-ctx.Done():
		err = ctx.Err()
	}
	_ = cmd.Process.Kill()
	<-p.done
	return nil, err
}

// pid returns the server process's id.
func (p *serverProcess) pid() int { return p.cmd.Process.Pid }

// stop closes the server's standard input, which makes it shut down, and
// waits for it, killing it after 10s.
func (p *serverProcess) stop() {
	_ = p.stdin.Close()
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// runBenchServer is `cairn bench-server`: the query server of a benchmark,
// started by `cairn bench`. It prints "listening ADDR" when it serves and
// stops when its standard input closes.
func runBenchServer(ctx context.Context, args []string, env *config.Env, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench-server", stderr)
	var store, logLevel, cpuProfile, memProfile string
	var features int
	fs.StringVar(&store, "store", "", "online store URI")
	fs.IntVar(&features, "features", 50, "features of namespace bench")
	fs.StringVar(&logLevel, "log-level", "warn", "log level")
	fs.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the server to this file")
	fs.StringVar(&memProfile, "memprofile", "", "write a heap profile of the server to this file when it stops")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log, err := newLogger(stderr, logLevel)
	if err != nil {
		return err
	}
	reg, err := benchRegistry(features)
	if err != nil {
		return err
	}
	cfg, err := node.Load(node.BenchServer, env, node.Flags{Store: store, Registry: reg, Addr: "127.0.0.1:0"})
	if err != nil {
		return err
	}
	if cpuProfile != "" {
		stop, err := startCPUProfile(cpuProfile)
		if err != nil {
			return fmt.Errorf("bench-server: %w", err)
		}
		defer stop()
	}
	if memProfile != "" {
		defer func() {
			if err := writeHeapProfile(memProfile); err != nil {
				fmt.Fprintln(stderr, err)
			}
		}()
	}
	// The parent closes our standard input to stop us.
	stdinClosed := node.Component{Name: "standard input", Run: func(ctx context.Context) error {
		closed := make(chan struct{})
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			close(closed)
		}()
		select {
		case <-closed:
			return node.ErrStop
		case <-ctx.Done():
			return nil
		}
	}}
	return node.Run(ctx, cfg, node.Options{Log: log, Metrics: prometheus.NewRegistry(), Components: []node.Component{stdinClosed},
		OnListen: func(addr string) { fmt.Fprintf(stdout, "listening %s\n", addr) }})
}
