package testserver

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// logTailLines is how many lines of a process's output a failed test logs.
const logTailLines = 60

// ErrWaitTimeout is returned by [Process.Wait] when the process has not
// exited within the time given.
var ErrWaitTimeout = errors.New("testserver: process did not exit in time")

// Command says how to start a process.
type Command struct {
	// Name names the process in messages and log files. The default is the
	// base name of Path.
	Name string
	// Path is the executable, a path or a name looked up on PATH.
	Path string
	// Args are the arguments after the program name.
	Args []string
	// Env is the whole environment of the process. A nil Env inherits the
	// test binary's environment.
	Env []string
	// Dir is the working directory. The default is the test binary's.
	Dir string
}

func (c Command) name() string {
	if c.Name != "" {
		return c.Name
	}
	return filepath.Base(c.Path)
}

// Process is a started process. Its output (stdout and stderr together) is
// kept in a log: the last bytes in memory, all of it in a file when the
// process was started by [StartProcess] or by a [Server].
//
// Its methods may be called from any goroutine.
type Process struct {
	name   string
	pid    int
	proc   *os.Process
	out    *tailBuffer
	file   *os.File // nil when the output is kept in memory only
	exited chan struct{}

	// Set before exited is closed.
	state   *os.ProcessState
	waitErr error
}

// StartProcess starts c and stops it when t's test is over: SIGCONT (in case
// it was paused), then SIGTERM, then SIGKILL after 5 seconds. Its output is
// written to a file in t's temporary directory; when t failed, the last lines
// are logged.
func StartProcess(t testing.TB, c Command) *Process {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), c.name()+".log")
	p, err := spawn(c, logPath)
	if err != nil {
		t.Fatalf("testserver: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Stop(stopTimeout); err != nil {
			t.Errorf("testserver: %v", err)
		}
		p.closeLog()
		if t.Failed() {
			t.Logf("testserver: last lines of %s (pid %d):\n%s", p.name, p.pid, p.Tail(logTailLines))
		}
	})
	return p
}

// spawn starts c. With a logPath, the output is appended to that file too.
//
// The process is started and waited for on one locked OS thread: on Linux
// the child gets SIGKILL when the thread that started it exits (see
// sysProcAttr), so a test binary that dies without running its cleanup
// leaves no process behind, and a locked thread outlives the child.
func spawn(c Command, logPath string) (*Process, error) {
	p := &Process{
		name:   c.name(),
		out:    &tailBuffer{max: 64 << 10},
		exited: make(chan struct{}),
	}
	var w io.Writer = p.out
	if logPath != "" {
		f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, fmt.Errorf("open log of %s: %w", p.name, err)
		}
		p.file = f
		w = io.MultiWriter(p.out, f)
	}
	cmd := exec.Command(c.Path, c.Args...)
	cmd.Env = c.Env
	cmd.Dir = c.Dir
	cmd.Stdout = w
	cmd.Stderr = w
	cmd.SysProcAttr = sysProcAttr()
	// Output copying stops this long after the process exits, even if a
	// child of it still holds the pipe.
	cmd.WaitDelay = time.Second
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			runtime.UnlockOSThread()
			return
		}
		started <- nil
		p.waitErr = cmd.Wait()
		p.state = cmd.ProcessState
		close(p.exited)
	}()
	if err := <-started; err != nil {
		p.closeLog()
		return nil, fmt.Errorf("start %s: %w", p.name, err)
	}
	p.proc = cmd.Process
	p.pid = cmd.Process.Pid
	return p, nil
}

// PID returns the process id.
func (p *Process) PID() int { return p.pid }

// Name returns the name the process is known by in messages.
func (p *Process) Name() string { return p.name }

// Exited returns a channel closed once the process has exited.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Signal sends sig to the process. Signalling a process that has exited is
// not an error.
func (p *Process) Signal(sig os.Signal) error {
	select {
	case <-p.exited:
		return nil
	default:
	}
	if err := p.proc.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal %v to %s (pid %d): %w", sig, p.name, p.pid, err)
	}
	return nil
}

// Kill sends SIGKILL and waits until the process is gone.
func (p *Process) Kill() error {
	if err := p.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	<-p.exited
	return nil
}

// Wait waits at most timeout for the process to exit and returns its exit
// status, or -1 when a signal ended it. It returns [ErrWaitTimeout] (and
// -1) when the process is still running after timeout.
func (p *Process) Wait(timeout time.Duration) (int, error) {
	select {
	case <-p.exited:
	default:
		timer := time.NewTimer(timeout)
		defer timer.Stop()
		select {
		case <-p.exited:
		case <-timer.C:
			return -1, fmt.Errorf("%s (pid %d) still running after %v: %w", p.name, p.pid, timeout, ErrWaitTimeout)
		}
	}
	if p.state == nil {
		return -1, fmt.Errorf("wait for %s (pid %d): %w", p.name, p.pid, p.waitErr)
	}
	return p.state.ExitCode(), nil
}

// Stop ends the process: SIGCONT, so that a paused process can act on what
// follows, then SIGTERM, then SIGKILL if it has not exited within grace.
func (p *Process) Stop(grace time.Duration) error {
	select {
	case <-p.exited:
		return nil
	default:
	}
	_ = p.Signal(resumeSignal)
	if err := p.Signal(stopSignal); err != nil {
		return err
	}
	if _, err := p.Wait(grace); err == nil {
		return nil
	}
	return p.Kill()
}

// Output returns the last 64 KiB of the process's output.
func (p *Process) Output() string { return p.out.String() }

// Tail returns the last n lines of the process's output.
func (p *Process) Tail(n int) string {
	lines := strings.SplitAfter(p.out.String(), "\n")
	if len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "")
}

// WaitForOutput waits at most timeout for a line of output containing s and
// returns that line. It fails early when the process exits first.
func (p *Process) WaitForOutput(s string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		sc := bufio.NewScanner(strings.NewReader(p.out.String()))
		for sc.Scan() {
			if strings.Contains(sc.Text(), s) {
				return sc.Text(), nil
			}
		}
		select {
		case <-p.exited:
			return "", fmt.Errorf("%s (pid %d) exited before writing %q; output:\n%s", p.name, p.pid, s, p.Tail(logTailLines))
		default:
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("%s (pid %d) did not write %q within %v; output:\n%s", p.name, p.pid, s, timeout, p.Tail(logTailLines))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *Process) closeLog() {
	if p.file == nil {
		return
	}
	// Wait for the output copying to finish before closing the file it
	// writes to; spawn's WaitDelay bounds it.
	select {
	case <-p.exited:
		p.file.Close()
	default:
		// Still running (a start that failed half-way); let the garbage
		// collector close it rather than race the writer.
	}
}

// environ returns os.Environ() without the variables whose names start with
// one of prefixes, followed by extra.
func environ(prefixes []string, extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		drop := false
		for _, p := range prefixes {
			if strings.HasPrefix(name, p) {
				drop = true
				break
			}
		}
		if !drop {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}
