package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"
)

// This file accounts for the CPU time used during a measurement, from
// Linux's counters: the machine's (/proc/stat), this process's and the
// query server process's (/proc/PID/stat), and the Redis server's (INFO
// cpu). Elsewhere than on Linux the report leaves the CPU line out.

// cpuSample is the CPU time counters of Linux, in clock ticks, the whole
// machine's and this process's, and the CPU time of the Redis server.
type cpuSample struct {
	ok                     bool
	cpus                   int // the machine's, from /proc/stat
	busy, total, selfTicks float64
	at                     time.Time
	storeOK                bool
	storeSecs              float64
	// serverTicks is the query server process's, when it has one;
	// pathTicks, each path's own query server process's, in the order of
	// setup.paths (NaN for a path without one).
	serverOK    bool
	serverTicks float64
	pathTicks   []float64
}

// sampleCPU samples the CPU counters, the Redis server's included when
// the store is Redis.
func (b *setup) sampleCPU(ctx context.Context) cpuSample {
	s := sampleCPU()
	s.at = time.Now()
	if b.floor != nil {
		s.storeSecs, s.storeOK = b.floor.serverCPU(ctx)
	}
	if b.server != nil {
		s.serverTicks, s.serverOK = processTicks(fmt.Sprintf("/proc/%d/stat", b.server.pid()))
	}
	for _, p := range b.paths {
		t, ok := math.NaN(), false
		if p.server != nil {
			t, ok = processTicks(fmt.Sprintf("/proc/%d/stat", p.server.pid()))
		}
		if !ok {
			t = math.NaN()
		}
		s.pathTicks = append(s.pathTicks, t)
	}
	return s
}

// sampleCPU reads /proc/stat and /proc/self/stat; elsewhere than on Linux
// the sample is not ok.
func sampleCPU() cpuSample {
	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuSample{}
	}
	line, _, _ := strings.Cut(string(stat), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return cpuSample{}
	}
	var s cpuSample
	for _, l := range strings.Split(string(stat), "\n") {
		if len(l) > 3 && strings.HasPrefix(l, "cpu") && l[3] >= '0' && l[3] <= '9' {
			s.cpus++
		}
	}
	for i, v := range f[1:8] { // user nice system idle iowait irq softirq
		n, _ := strconv.ParseFloat(v, 64)
		s.total += n
		if i != 3 && i != 4 {
			s.busy += n
		}
	}
	if len(f) > 8 { // steal
		n, _ := strconv.ParseFloat(f[8], 64)
		s.busy += n
		s.total += n
	}
	if s.selfTicks, s.ok = processTicks("/proc/self/stat"); !s.ok {
		return cpuSample{}
	}
	return s
}

// userHZ is the unit of processes' CPU times in /proc: clock ticks of
// USER_HZ, 100 a second on Linux whatever the kernel's own tick.
const userHZ = 100

// ProcessCPU returns the CPU time, user and system, that process pid has
// used so far, from /proc/PID/stat; false elsewhere than on Linux or when
// the process is gone.
func ProcessCPU(pid int) (time.Duration, bool) {
	ticks, ok := processTicks(fmt.Sprintf("/proc/%d/stat", pid))
	return time.Duration(ticks / userHZ * float64(time.Second)), ok
}

// processTicks returns the CPU time a process has used, in clock ticks,
// from its stat file.
func processTicks(path string) (float64, bool) {
	stat, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	// The fields after the command name, which is in parentheses: state
	// is the first, utime the 12th, stime the 13th.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, false
	}
	g := strings.Fields(string(stat[i+1:]))
	if len(g) < 13 {
		return 0, false
	}
	ut, _ := strconv.ParseFloat(g[11], 64)
	st, _ := strconv.ParseFloat(g[12], 64)
	return ut + st, true
}

// cpuUse is CPU time used over a span, in CPUs (CPU seconds per second).
type cpuUse struct {
	cpus          int // the machine's
	machine, self float64
	storeOK       bool
	store         float64
	serverOK      bool
	server        float64
	// paths is the CPU time, in seconds, of each path's own query
	// server process over the span (NaN for a path without one).
	paths []float64
}

// since returns the CPU used between start and s.
func (s cpuSample) since(start cpuSample) (cpuUse, bool) {
	total := s.total - start.total
	if !s.ok || !start.ok || total <= 0 {
		return cpuUse{}, false
	}
	wall := s.at.Sub(start.at).Seconds()
	if wall <= 0 {
		return cpuUse{}, false
	}
	// Processes' times are in clock ticks of userHZ; the machine's share
	// is taken over all its CPUs, whichever this process may run on.
	u := cpuUse{cpus: s.cpus, machine: float64(s.cpus) * (s.busy - start.busy) / total, self: (s.selfTicks - start.selfTicks) / (wall * userHZ)}
	if s.serverOK && start.serverOK {
		u.serverOK, u.server = true, (s.serverTicks-start.serverTicks)/(wall*userHZ)
	}
	if s.storeOK && start.storeOK {
		u.storeOK, u.store = true, (s.storeSecs-start.storeSecs)/wall
	}
	for i := range s.pathTicks {
		secs := math.NaN()
		if i < len(start.pathTicks) {
			secs = (s.pathTicks[i] - start.pathTicks[i]) / userHZ
		}
		u.paths = append(u.paths, secs)
	}
	return u, true
}

// cpuModel returns the CPU's model name from /proc/cpuinfo, or "CPU model
// unknown".
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "CPU model unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if name, val, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(name) == "model name" {
			return strings.TrimSpace(val)
		}
	}
	return "CPU model unknown"
}
