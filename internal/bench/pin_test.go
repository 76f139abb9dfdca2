//go:build linux

package bench

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// cpusAllowed returns the Cpus_allowed_list of process pid.
func cpusAllowed(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Cpus_allowed_list:"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no Cpus_allowed_list for process %d", pid)
	return ""
}

// pinProcess pins a process of several threads: every one of them, so
// the process as /proc reports it.
func TestPinProcess(t *testing.T) {
	cpus, err := allowedCPUs()
	if err != nil {
		t.Fatal(err)
	}
	if len(cpus) < 2 {
		t.Skipf("%d CPU allowed: nothing to pin apart", len(cpus))
	}
	p, err := planPinning()
	if err != nil {
		t.Fatal(err)
	}
	if len(p.gen) != 1 || len(p.servers) != len(cpus)-1 || p.gen[0] == p.servers[0] {
		t.Fatalf("plan %+v for CPUs %v", p, cpus)
	}
	// A Go child (this test binary as a query server process, TestMain)
	// has several threads by the time it announces itself.
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), ServerChildEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); _ = cmd.Wait() }()
	if _, err := bufio.NewReader(stdout).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	if err := pinProcess(cmd.Process.Pid, p.gen); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprint(p.gen[0])
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", cmd.Process.Pid))
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", cmd.Process.Pid, task.Name()))
		if err != nil {
			continue // gone
		}
		if !strings.Contains(string(b), "Cpus_allowed_list:\t"+want+"\n") {
			t.Errorf("thread %s not pinned to CPU %s", task.Name(), want)
		}
	}
	if got := cpusAllowed(t, cmd.Process.Pid); got != want {
		t.Errorf("process on CPUs %q, want %q", got, want)
	}
	if err := pinProcess(1<<22+7, p.gen); err == nil {
		t.Error("pinning a process that does not exist: no error")
	}
}
