package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"runtime/metrics"
	"strconv"
	"strings"
	"time"
)

// Where a path's tail comes from is read from the Go runtimes involved,
// over the path's own slices, as its CPU is (cpu.go): before and after
// each slice, the measurement reads runtime/metrics of the query server
// process answering the path (asked over its standard input, below) and
// of its own process (the load generator), and adds up the differences:
//
//   - /sched/latencies:seconds, how long goroutines waited runnable
//     before running: a request whose goroutines wait for a CPU (the
//     server's, or the load generator's to send it and read its answer)
//     waits as long;
//   - /sched/pauses/total/gc:seconds, the collector's stop-the-world
//     pauses (formerly /gc/pauses:seconds), and /gc/cycles/total:gc-cycles,
//     its cycles: assists and background marking between pauses take CPU
//     from the requests too.
//
// The protocol on the query server process's pipes: after its address,
// the parent may write the line "runtime"; the child answers with one
// line, "runtime " and the JSON of its [RuntimeStats]. The parent asks
// between slices only, one request at a time.

// Names of the runtime metrics read.
const (
	schedLatencies = "/sched/latencies:seconds"
	gcPauses       = "/sched/pauses/total/gc:seconds"
	gcCycles       = "/gc/cycles/total:gc-cycles"
)

// runtimeRequest is the line asking a query server process for its
// runtime statistics; runtimeAnswer starts its answer.
const (
	runtimeRequest = "runtime"
	runtimeAnswer  = "runtime "
)

// runtimeTimeout bounds the wait for a query server process's answer.
const runtimeTimeout = 5 * time.Second

// Hist is a cumulative histogram of runtime/metrics: Counts[i] values
// fell in [Buckets[i], Buckets[i+1]), in seconds; an unbounded end is
// ±[math.MaxFloat64].
type Hist struct {
	Buckets []float64 `json:"buckets"`
	Counts  []uint64  `json:"counts"`
}

// RuntimeStats are the runtime statistics of a process that say where
// its latency goes: scheduling delays, the collector's pauses and its
// cycles, since the process started (or, as a difference, over a span).
type RuntimeStats struct {
	Sched    Hist   `json:"sched"`
	GCPauses Hist   `json:"gc_pauses"`
	GCCycles uint64 `json:"gc_cycles"`
}

// ReadRuntime reads this process's runtime statistics.
func ReadRuntime() RuntimeStats {
	s := []metrics.Sample{{Name: schedLatencies}, {Name: gcPauses}, {Name: gcCycles}}
	metrics.Read(s)
	var r RuntimeStats
	if s[0].Value.Kind() == metrics.KindFloat64Histogram {
		r.Sched = hist(s[0].Value.Float64Histogram())
	}
	if s[1].Value.Kind() == metrics.KindFloat64Histogram {
		r.GCPauses = hist(s[1].Value.Float64Histogram())
	}
	if s[2].Value.Kind() == metrics.KindUint64 {
		r.GCCycles = s[2].Value.Uint64()
	}
	return r
}

// hist copies h, its infinite bounds made ±[math.MaxFloat64], which
// JSON can carry.
func hist(h *metrics.Float64Histogram) Hist {
	b := make([]float64, len(h.Buckets))
	for i, v := range h.Buckets {
		switch {
		case math.IsInf(v, 1):
			v = math.MaxFloat64
		case math.IsInf(v, -1):
			v = -math.MaxFloat64
		}
		b[i] = v
	}
	return Hist{Buckets: b, Counts: append([]uint64(nil), h.Counts...)}
}

// sub returns h − before, bucket by bucket; a before of other buckets
// (none yet) counts as empty.
func (h Hist) sub(before Hist) Hist {
	out := Hist{Buckets: h.Buckets, Counts: append([]uint64(nil), h.Counts...)}
	if len(before.Counts) != len(h.Counts) {
		return out
	}
	for i, c := range before.Counts {
		out.Counts[i] -= min(c, out.Counts[i])
	}
	return out
}

// add adds d to h, bucket by bucket; h takes d's buckets when empty.
func (h *Hist) add(d Hist) {
	if len(h.Counts) == 0 {
		h.Buckets, h.Counts = d.Buckets, append([]uint64(nil), d.Counts...)
		return
	}
	if len(d.Counts) != len(h.Counts) {
		return
	}
	for i, c := range d.Counts {
		h.Counts[i] += c
	}
}

// total returns the number of values in h.
func (h Hist) total() uint64 {
	var n uint64
	for _, c := range h.Counts {
		n += c
	}
	return n
}

// quantile returns the upper bound of the bucket holding quantile q of
// h's values (the lower bound for the last, unbounded, bucket), and
// false when h is empty.
func (h Hist) quantile(q float64) (time.Duration, bool) {
	n := h.total()
	if n == 0 {
		return 0, false
	}
	rank := uint64(math.Ceil(q * float64(n)))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.Counts {
		seen += c
		if seen >= rank {
			hi := h.Buckets[i+1]
			if hi >= math.MaxFloat64 {
				hi = h.Buckets[i]
			}
			return time.Duration(hi * float64(time.Second)), true
		}
	}
	return 0, false
}

// above returns the number of values of h of at least d (counting the
// buckets whose lower bound is at least d).
func (h Hist) above(d time.Duration) uint64 {
	var n uint64
	for i, c := range h.Counts {
		if h.Buckets[i] >= d.Seconds() {
			n += c
		}
	}
	return n
}

// sub returns the statistics over the span from before to s.
func (s RuntimeStats) sub(before RuntimeStats) RuntimeStats {
	return RuntimeStats{Sched: s.Sched.sub(before.Sched), GCPauses: s.GCPauses.sub(before.GCPauses), GCCycles: s.GCCycles - min(before.GCCycles, s.GCCycles)}
}

// add adds the statistics of a span d to s.
func (s *RuntimeStats) add(d RuntimeStats) {
	s.Sched.add(d.Sched)
	s.GCPauses.add(d.GCPauses)
	s.GCCycles += d.GCCycles
}

// ServeParent is the query server process's side of the protocol with
// `cairn bench`: it answers each "runtime" line of stdin with the
// process's [RuntimeStats] on stdout, and returns nil once stdin closes
// (the parent asks the process to stop), or ctx's error once ctx ends.
// The read of stdin outlives a return through ctx until stdin closes.
func ServeParent(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
	closed := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdin)
		for sc.Scan() {
			if strings.TrimSpace(sc.Text()) != runtimeRequest {
				continue
			}
			b, err := json.Marshal(ReadRuntime())
			if err == nil {
				_, err = fmt.Fprintf(stdout, "%s%s\n", runtimeAnswer, b)
			}
			if err != nil {
				closed <- fmt.Errorf("bench-server: answer the runtime statistics: %w", err)
				return
			}
		}
		closed <- nil
	}()
	select {
	case err := <-closed:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// parseRuntimeAnswer parses a line of a query server process's answer.
func parseRuntimeAnswer(line string) (RuntimeStats, error) {
	body, ok := strings.CutPrefix(strings.TrimSpace(line), runtimeAnswer)
	if !ok {
		return RuntimeStats{}, fmt.Errorf("bench: runtime statistics: want a line starting %q, got %.100q", runtimeAnswer, line)
	}
	var s RuntimeStats
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		return RuntimeStats{}, fmt.Errorf("bench: runtime statistics: %w", err)
	}
	for _, h := range []Hist{s.Sched, s.GCPauses} {
		if len(h.Counts) > 0 && len(h.Buckets) != len(h.Counts)+1 {
			return RuntimeStats{}, fmt.Errorf("bench: runtime statistics: %d buckets for %d counts, want one more", len(h.Buckets), len(h.Counts))
		}
	}
	return s, nil
}

// errNoRuntime is returned by a query server process that does not
// answer the request for runtime statistics in time.
var errNoRuntime = errors.New("bench: the query server process did not answer with its runtime statistics")

// tailStats are the runtime statistics of a path over its own slices:
// its query server process's (server, if it has one) and the load
// generator's (gen).
type tailStats struct {
	serverOK    bool
	server, gen RuntimeStats
	// serverErr is the first error asking the server.
	serverErr error
	// serverQueue and genQueue are how long the threads of the server
	// and of the load generator waited in the kernel's run queues over
	// the path's slices (runQueueWait), queueSlices the slices they cover;
	// serverQueueBad and genQueueBad are set when a read failed (no
	// server, not Linux): the figure then covers some slices only.
	serverQueue, genQueue       time.Duration
	queueSlices                 int
	serverQueueBad, genQueueBad bool
}

// runQueueWait returns how long the threads of process pid (0: this one)
// have waited in the kernel's run queues, runnable but not running, since
// they started: the sum over /proc/PID/task/*/schedstat of its second
// field (nanoseconds). The Go runtime's /sched/latencies:seconds sees a
// goroutine waiting for a thread of its own process; this sees a thread
// waiting for a CPU, which another process may hold. False elsewhere than
// on Linux, or without schedstats.
func runQueueWait(pid int) (time.Duration, bool) {
	dir := "/proc/self/task"
	if pid != 0 {
		dir = fmt.Sprintf("/proc/%d/task", pid)
	}
	tasks, err := os.ReadDir(dir)
	if err != nil || len(tasks) == 0 {
		return 0, false
	}
	var sum time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(dir + "/" + t.Name() + "/schedstat")
		if err != nil {
			continue // the thread exited meanwhile
		}
		f := strings.Fields(string(b))
		if len(f) < 2 {
			return 0, false
		}
		ns, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return 0, false
		}
		sum += time.Duration(ns)
	}
	return sum, true
}

// queueSpan is a read of the run-queue waits of a path's server (when it
// has one) and of the load generator, before a slice.
type queueSpan struct {
	server, gen     time.Duration
	serverOK, genOK bool
}

// startQueue reads the run-queue waits before a slice; serverPID is 0
// for a path without a query server process.
func startQueue(serverPID int) queueSpan {
	var q queueSpan
	if serverPID != 0 {
		q.server, q.serverOK = runQueueWait(serverPID)
	}
	q.gen, q.genOK = runQueueWait(0)
	return q
}

// addQueue adds the run-queue waits since q to t. A thread that exited
// during the slice takes its wait along; the difference is then counted
// as none rather than negative.
func (t *tailStats) addQueue(q queueSpan, serverPID int) {
	after := startQueue(serverPID)
	t.queueSlices++
	if q.serverOK && after.serverOK {
		t.serverQueue += max(0, after.server-q.server)
	} else {
		t.serverQueueBad = true
	}
	if q.genOK && after.genOK {
		t.genQueue += max(0, after.gen-q.gen)
	} else {
		t.genQueueBad = true
	}
}

// queuePerQuery formats a run-queue wait over a path's slices per query
// of them, in µs, or "n/a".
func queuePerQuery(d time.Duration, bad bool, slices, queries int) string {
	if bad || slices == 0 || queries == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.0f", float64(d)/float64(time.Microsecond)/float64(queries))
}

// addServer adds to t the server's statistics since before, which were
// read with error err.
func (t *tailStats) addServer(ctx context.Context, srv *serverProcess, before RuntimeStats, err error) {
	if t.serverErr != nil {
		return // the figures would cover some slices only
	}
	var after RuntimeStats
	if err == nil {
		after, err = srv.runtime(ctx)
	}
	if err != nil {
		t.serverErr, t.serverOK = err, false
		return
	}
	t.serverOK = true
	t.server.add(after.sub(before))
}
