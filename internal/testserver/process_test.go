package testserver

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestProcessWaitReportsExitStatusAndOutput(t *testing.T) {
	t.Parallel()
	p := StartProcess(t, Command{Path: "/bin/sh", Args: []string{"-c", "echo hello; echo oops >&2; exit 3"}})
	code, err := p.Wait(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if code != 3 {
		t.Errorf("exit status %d, want 3", code)
	}
	if out := p.Output(); !strings.Contains(out, "hello\n") || !strings.Contains(out, "oops\n") {
		t.Errorf("output %q lacks stdout or stderr", out)
	}
	if got := p.Tail(1); got != "oops\n" {
		t.Errorf("Tail(1) = %q, want %q", got, "oops\n")
	}
}

func TestProcessKillAndWaitTimeout(t *testing.T) {
	t.Parallel()
	p := StartProcess(t, Command{Path: "/bin/sleep", Args: []string{"60"}})
	if _, err := p.Wait(50 * time.Millisecond); !errors.Is(err, ErrWaitTimeout) {
		t.Fatalf("Wait on a running process: %v, want ErrWaitTimeout", err)
	}
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	code, err := p.Wait(time.Second)
	if err != nil || code != -1 {
		t.Errorf("after Kill: status %d, err %v; want -1 (ended by a signal), nil", code, err)
	}
	if err := p.Kill(); err != nil {
		t.Errorf("Kill of an exited process: %v", err)
	}
}

// Stop must wake a paused (SIGSTOPped) process, or its SIGTERM is acted on
// only after the grace period and the process is killed instead of exiting
// cleanly.
func TestProcessStopResumesAPausedProcess(t *testing.T) {
	t.Parallel()
	p := StartProcess(t, Command{Path: "/bin/sh", Args: []string{"-c", `trap 'echo bye; exit 0' TERM; echo ready; while :; do sleep 0.05; done`}})
	if _, err := p.WaitForOutput("ready", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := p.Signal(pauseSignal); err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	code, _ := p.Wait(0)
	if code != 0 {
		t.Errorf("exit status %d after Stop of a paused process, want 0 (a clean exit on SIGTERM); output:\n%s", code, p.Output())
	}
}
