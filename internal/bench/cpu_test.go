package bench

import (
	"math"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// A process's CPU time is read after its command name, which may hold
// spaces and parentheses.
func TestProcessTicks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stat")
	// pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime ...
	stat := "4242 (cairn (bench) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 9 0 1 0\n"
	if err := os.WriteFile(path, []byte(stat), 0o600); err != nil {
		t.Fatal(err)
	}
	if ticks, ok := processTicks(path); !ok || ticks != 325 {
		t.Errorf("processTicks = %v, %v; want 325 (utime 250 + stime 75)", ticks, ok)
	}
	if err := os.WriteFile(path, []byte("4242 (short) S 1 2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, ok := processTicks(path); ok {
		t.Error("processTicks of a truncated stat: ok")
	}
	if _, ok := processTicks(filepath.Join(t.TempDir(), "absent")); ok {
		t.Error("processTicks of no file: ok")
	}
}

func TestCPUSince(t *testing.T) {
	t0 := time.Unix(1000, 0)
	start := cpuSample{ok: true, cpus: 4, busy: 1000, total: 4000, selfTicks: 100, at: t0,
		storeOK: true, storeSecs: 10, serverOK: true, serverTicks: 50}
	// Two seconds later: 8 CPU-seconds passed (800 ticks over 4 CPUs),
	// 400 of them busy; this process 100 ticks, the server 150, Redis 0.5 s.
	end := cpuSample{ok: true, cpus: 4, busy: 1400, total: 4800, selfTicks: 200, at: t0.Add(2 * time.Second),
		storeOK: true, storeSecs: 10.5, serverOK: true, serverTicks: 200}
	u, ok := end.since(start)
	if !ok {
		t.Fatal("since: not ok")
	}
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
	if u.cpus != 4 || !near(u.machine, 2) || !near(u.self, 0.5) || !u.serverOK || !near(u.server, 0.75) || !u.storeOK || !near(u.store, 0.25) {
		t.Errorf("since = %+v; want 4 CPUs, machine 2, self 0.5, server 0.75, store 0.25", u)
	}
	if _, ok := end.since(cpuSample{}); ok {
		t.Error("since a sample that is not ok: ok")
	}
	end.serverOK = false
	if u, _ := end.since(start); u.serverOK {
		t.Error("since without the server's ticks: server ok")
	}
}

func TestSampleCPU(t *testing.T) {
	s := sampleCPU()
	if runtime.GOOS != "linux" {
		if s.ok {
			t.Error("a sample outside Linux is ok")
		}
		return
	}
	if !s.ok || s.cpus < 1 || s.total <= 0 || s.busy > s.total {
		t.Errorf("sampleCPU = %+v", s)
	}
}

// ProcessCPU reads this very process's CPU time, which grows as it works.
// The spin is bounded by the CPU time it gains, not by the wall clock: on
// a loaded machine 200ms of wall clock may bring only a few ticks.
func TestProcessCPU(t *testing.T) {
	before, ok := ProcessCPU(os.Getpid())
	if !ok {
		t.Skip("no /proc")
	}
	start := time.Now()
	var after time.Duration
	for x := 0; ; x++ {
		_ = x * x
		if x%1_000_000 == 0 {
			if after, _ = ProcessCPU(os.Getpid()); after-before >= 100*time.Millisecond || time.Since(start) > 20*time.Second {
				break
			}
		}
	}
	if d, wall := after-before, time.Since(start); d < 100*time.Millisecond || d > wall*time.Duration(runtime.NumCPU())+50*time.Millisecond {
		t.Errorf("spinning for %v used %v of CPU, want at least 100ms and at most the wall clock times the CPUs", wall, d)
	}
	if _, ok := ProcessCPU(1 << 30); ok {
		t.Error("a process that does not exist has a CPU time")
	}
}
