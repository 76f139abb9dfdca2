package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/cairnfs/cairn/internal/config"
	"github.com/cairnfs/cairn/internal/testserver"
)

// benchRow matches a row of the report's tables: path, achieved rate,
// errors.
var benchRow = regexp.MustCompile(`(?m)^\| (\([a-ir]\)[^|]*) \| (\d+) \| (\d+) \|`)

// cpuColumn matches a row of the report's two tables of percentiles:
// its path's name and its last column, the server CPU per query.
var cpuColumn = regexp.MustCompile(`(?m)^\| (\([a-ir]\))[^|]*(?:\|[^|]*){8}\| (\d+|n/a) \|$`)

// tailRow matches the row of (a) in the table of where the tail comes
// from, with its server's runtime statistics.
var tailRow = regexp.MustCompile(`(?m)^\| \(a\) HTTP[^|]*\| [\d.]+ \| \d+ / \d+ / \d+ \| \d+ \| \d+ \| (?:\d+ / \d+|n/a) \| \d+ \| \d+ / \d+ / \d+ \| \d+ \| \d+ \| \d+ \|$`)

// isUint reports whether s is a decimal number.
func isUint(s string) bool { _, err := strconv.ParseUint(s, 10, 64); return err == nil }

// foundRate matches the rate search's result in the report.
var foundRate = regexp.MustCompile(`Highest rate with p99 ≤ 1s: \*\*(\d+) q/s\*\*`)

// runBenchT runs `cairn bench` with a short load and returns its report.
func runBenchT(t *testing.T, args ...string) (report, progress string) {
	t.Helper()
	var out, errOut bytes.Buffer
	args = append([]string{"bench", "--rate", "100", "--duration", "200ms", "--slice", "100ms", "--warmup", "50ms",
		"--entities", "3", "--features", "12", "--pool", "20"}, args...)
	if err := run(context.Background(), args, config.FromMap(nil), &out, &errOut); err != nil {
		t.Fatalf("cairn %s: %v\n%s", strings.Join(args, " "), err, errOut.String())
	}
	return out.String(), errOut.String()
}

// checkRows checks that the report's tables have rows for paths, each
// with answers and without errors.
func checkRows(t *testing.T, report string, paths ...string) {
	t.Helper()
	rows := benchRow.FindAllStringSubmatch(report, -1)
	for _, p := range paths {
		n := 0
		for _, r := range rows {
			if !strings.HasPrefix(r[1], p) {
				continue
			}
			n++
			if rate, _ := strconv.Atoi(r[2]); rate == 0 || r[3] != "0" {
				t.Errorf("row %q: achieved %s q/s with %s errors", r[0], r[2], r[3])
			}
		}
		if n != 2 { // medians and pooled
			t.Errorf("%d rows for %s, want 2:\n%s", n, p, report)
		}
	}
}

// --security: beside (a) and (b), a server requiring an API key and one
// serving HTTPS answer every query without error (so the key and the
// certificate were accepted), and the report compares them with (a),
// with the CPU each used per query.
func TestBenchSecurity(t *testing.T) {
	addr := testserver.Redis(t)
	report, _ := runBenchT(t, "--store", fmt.Sprintf("redis://%s/0", addr), "--security")
	checkRows(t, report, "(a)", "(b)", "(c)", "(d)")
	for _, want := range []string{"(a), (b), (c), (d) in turn", "Each query server against the plain one", "| (c) HTTP with an API key |",
		"| (d) HTTPS (TLS 1.3, keep-alive) |", "query servers (a) ", " (c) ", " (d) "} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	if m := regexp.MustCompile(`\| \(d\) HTTPS[^|]*\|( [^|]* \|){5} (\d+) \|`).FindStringSubmatch(report); m == nil {
		t.Errorf("no CPU per query for (d):\n%s", report)
	}
	if _, err := runBenchE("--store", fmt.Sprintf("redis://%s/0", addr), "--security", "--in-process"); err == nil ||
		!strings.Contains(err.Error(), "--security with --in-process") {
		t.Errorf("--security --in-process: %v, want an error naming both", err)
	}
}

// formatRow matches a row of the answer forms' table: path, queries,
// p50, p99, server CPU in all, per query, answer size, Content-Types.
var formatRow = regexp.MustCompile(`(?m)^\| (\([agh]\)[^|]*) \| (\d+) \| ([\d.]+) \| ([\d.]+) \| (?:\d+|n/a) \| (\d+|n/a) \| (\d+) \| ([^|]+) \|$`)

// --formats: beside (a) and (b), the same queries asking for the
// columnar JSON (g) and Arrow (h) answers of the same server answer
// without error, each answer well-formed for its Content-Type, and the
// report gives each form its queries, server CPU per query and size.
// Until the server knows the forms, all three answer row JSON.
func TestBenchFormats(t *testing.T) {
	addr := testserver.Redis(t)
	report, _ := runBenchT(t, "--store", fmt.Sprintf("redis://%s/0", addr), "--formats")
	checkRows(t, report, "(a)", "(b)", "(g)", "(h)")
	for _, want := range []string{"(a), (b), (g), (h) in turn", "Answer forms, one query server",
		`| (g) columnar JSON: "format": "columnar" |`, "| (h) Arrow: Accept: application/vnd.apache.arrow.stream |"} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	rows := formatRow.FindAllStringSubmatch(report, -1)
	if len(rows) != 3 {
		t.Fatalf("%d rows in the answer forms' table, want 3 ((a), (g), (h)):\n%s", len(rows), report)
	}
	for _, r := range rows {
		if q, _ := strconv.Atoi(r[2]); q == 0 {
			t.Errorf("%s: no queries", r[1])
		}
		if r[5] == "n/a" {
			t.Errorf("%s: no server CPU per query, with the server in a process of its own", r[1])
		}
		if size, _ := strconv.Atoi(r[6]); size == 0 {
			t.Errorf("%s: answer size 0", r[1])
		}
		if !strings.Contains(r[7], "`") {
			t.Errorf("%s: no Content-Type seen: %q", r[1], r[7])
		}
	}
}

// runBenchE runs `cairn bench` and returns its error.
func runBenchE(args ...string) (string, error) {
	var out, errOut bytes.Buffer
	err := run(context.Background(), append([]string{"bench"}, args...), config.FromMap(nil), &out, &errOut)
	return out.String(), err
}

func TestBenchEmbedded(t *testing.T) {
	report, progress := runBenchT(t, "--store", "embedded://"+t.TempDir())
	checkRows(t, report, "(a)")
	if !strings.Contains(report, "(b) skipped") {
		t.Errorf("no note that the floor is skipped:\n%s", report)
	}
	if !strings.Contains(progress, "round 2/2 (a)") {
		t.Errorf("no progress of the rounds:\n%s", progress)
	}
}

// Against Redis: both paths side by side, a short rate search first, and
// the keys of the benchmark's own prefix gone afterwards.
func TestBenchRedis(t *testing.T) {
	addr := testserver.Redis(t)
	report, progress := runBenchT(t, "--store", fmt.Sprintf("redis://%s/0", addr),
		"--find-max-p99", "1s", "--search-step", "100ms", "--max-rate", "200")
	checkRows(t, report, "(a)", "(b)")
	// Every feature asked: the store, and so the floor, read whole hashes.
	for _, want := range []string{"pipeline of 3 × HGETALL", "for all 12 features", "(a)/(b): p50", "### Highest rate of (a) with p99 ≤ 1s: 3 × 12",
		"the query server in another (`cairn bench-server`, GOMAXPROCS Go's default)", ": query server ", "load generator and floor client "} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	// (a)'s query server runs in a process of its own, whose CPU per
	// query ends each of its rows; the floor has no server.
	if m := cpuColumn.FindAllStringSubmatch(report, -1); len(m) != 4 || m[0][1] != "(a)" || !isUint(m[0][2]) || m[1][1] != "(b)" || m[1][2] != "n/a" {
		t.Errorf("rows of (a) and (b) do not end with the server CPU per query (a number for (a), n/a for (b)): %q\n%s", m, report)
	}
	// Where the tail comes from: (a)'s server answered with its runtime
	// statistics, the floor has none; the load generator's for both.
	if !tailRow.MatchString(report) || !regexp.MustCompile(`(?m)^\| \(b\) floor[^|]*\| [\d.]+ \| n/a \| n/a \| n/a \| n/a \| n/a \| \d+ / \d+ / \d+ \| \d+ \| \d+ \| \d+ \|$`).MatchString(report) {
		t.Errorf("no runtime statistics of (a)'s server and of the load generator:\n%s", report)
	}
	// Both paths are measured at the rate the search found. That rate is
	// not asserted: a step passes only when the answers keep up with the
	// rate, which a loaded machine may not do at 200 q/s in 100ms steps.
	if m := foundRate.FindStringSubmatch(report); m == nil {
		t.Errorf("report names no rate found:\n%s", report)
	} else if want := "### 3 × 12 at " + m[1] + " q/s"; !strings.Contains(report, want) {
		t.Errorf("report lacks %q, the rate the search found:\n%s", want, report)
	}
	// Some features asked: HMGET of the marker and their fields; the
	// query server in this process.
	some, _ := runBenchT(t, "--store", fmt.Sprintf("redis://%s/0", addr), "--ask", "5", "--in-process")
	checkRows(t, some, "(a)", "(b)")
	for _, want := range []string{"### 3 × 5 of 12 at", "pipeline of 3 × HMGET of 6 fields", "for the first 5 of 12 features",
		"load generator, query server and floor client in one process", "Server CPU per query n/a: with --in-process"} {
		if !strings.Contains(some, want) {
			t.Errorf("report lacks %q:\n%s", want, some)
		}
	}
	if !strings.Contains(progress, "searching the highest rate") {
		t.Errorf("no progress of the search:\n%s", progress)
	}
	c := goredis.NewClient(&goredis.Options{Addr: addr})
	defer c.Close()
	left, err := c.Keys(context.Background(), "cairn-bench-*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("keys left behind: %q", left)
	}
}

// --resolvers: beside (a) and (b), a server computing the last 10
// features with an http resolver and one with a sql resolver answer
// every query, every value present (the first query checks it), and the
// resolvers were called: by their servers' own count and by the http
// service's.
func TestBenchResolvers(t *testing.T) {
	addr := testserver.Redis(t)
	pg := testserver.Postgres(t)
	report, _ := runBenchT(t, "--store", fmt.Sprintf("redis://%s/0", addr), "--resolvers", "--pg-dsn", pg.DSN)
	checkRows(t, report, "(a)", "(b)", "(e)", "(f)")
	for _, want := range []string{"(a), (b), (e), (f) in turn", "Each query server against the plain one", "| (e) 10 of 12 from an http resolver |",
		"| (f) 10 of 12 from a sql resolver |", "query servers (a) ", " (e) ", " (f) ", "features f002 to f011",
		"SELECT id, f002, f003, f004, f005, f006, f007, f008, f009, f010, f011 FROM cairn_bench_resolved WHERE id = ANY($1)"} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	for _, p := range []string{"(e)", "(f)"} {
		m := regexp.MustCompile(`- ` + regexp.QuoteMeta(p) + `: resolver calls [^:]*: ok (\d+), error (\d+), timeout (\d+); (\d+) queries measured`).FindStringSubmatch(report)
		if m == nil {
			t.Errorf("no resolver calls for %s:\n%s", p, report)
			continue
		}
		// Each query asks for 3 entities: at least one call per query.
		if ok, _ := strconv.Atoi(m[1]); ok == 0 || m[2] != "0" || m[3] != "0" {
			t.Errorf("%s: resolver calls ok %s, error %s, timeout %s: want some, all ok", p, m[1], m[2], m[3])
		}
		if q, _ := strconv.Atoi(m[4]); q == 0 {
			t.Errorf("%s: no queries measured", p)
		}
	}
	if m := regexp.MustCompile(`the http resolver service answered (\d+) calls`).FindStringSubmatch(report); m == nil || m[1] == "0" {
		t.Errorf("the http resolver service was not called:\n%s", report)
	}
	if m := regexp.MustCompile(`\| \(f\) 10 of 12[^|]*\|( [^|]* \|){5} (\d+) \|`).FindStringSubmatch(report); m == nil {
		t.Errorf("no CPU per query for (f):\n%s", report)
	}
}

// --resolvers needs a PostgreSQL that answers; nothing is started or
// written before it is reached.
func TestBenchResolversErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"--store", "redis://127.0.0.1:1/0", "--resolvers"}, []string{"--resolvers needs --pg-dsn"}},
		{[]string{"--store", "redis://127.0.0.1:1/0", "--pg-dsn", "postgres://u@127.0.0.1:1/db"}, []string{"--pg-dsn without --resolvers"}},
		{[]string{"--store", "redis://127.0.0.1:1/0", "--formats", "--security", "--resolvers", "--pg-dsn", "postgres://u@h/db"},
			[]string{"--formats with --security", "--formats with --resolvers"}},
		{[]string{"--store", "redis://127.0.0.1:1/0", "--formats=maybe"}, []string{`invalid boolean value "maybe" for -formats`}},
		{[]string{"--store", "redis://127.0.0.1:1/0", "--resolvers", "--pg-dsn", "postgres://u@h/db", "--features", "9", "--ask", "3", "--in-process"},
			[]string{"--features 9 with --resolvers: want at least 10", "--ask 3 with --resolvers", "--resolvers with --in-process"}},
	} {
		_, err := runBenchE(c.args...)
		for _, want := range c.want {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("bench %q: %v, want an error with %q", c.args, err, want)
			}
		}
	}
	// A DSN nobody answers, with its password: the error names the flag
	// and hides the password, before the store is even opened.
	_, err := runBenchE("--store", "redis://127.0.0.1:1/0", "--resolvers", "--pg-dsn", "postgres://u:secret@127.0.0.1:1/db",
		"--rate", "10", "--duration", "100ms", "--slice", "100ms")
	if err == nil || !strings.Contains(err.Error(), "--pg-dsn postgres://u:xxxxx@127.0.0.1:1/db: connect") || strings.Contains(err.Error(), "secret") {
		t.Errorf("bench with an unreachable --pg-dsn: %v, want an error naming it, password hidden", err)
	}
}

// bench-server refuses a resolver kind it does not know, naming the flag.
func TestBenchServerResolverFlag(t *testing.T) {
	err := run(context.Background(), []string{"bench-server", "--store", "redis://127.0.0.1:1/0", "--features", "12", "--resolver", "grpc"},
		config.FromMap(nil), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), `--resolver "grpc": want "http" or "sql"`) {
		t.Errorf("bench-server --resolver grpc: %v, want an error naming the flag", err)
	}
}

// --relay: beside (a) and (b), the floor's read made by a relay process
// over HTTP, (r), answers every request without error (so the relay read
// every entity, with HMGET here: --ask), has its process's CPU per query
// and runtime statistics like (a)'s server, and the report says how (a)
// and (r) compare, and (r) and (b).
func TestBenchRelay(t *testing.T) {
	addr := testserver.Redis(t)
	report, _ := runBenchT(t, "--store", fmt.Sprintf("redis://%s/0", addr), "--relay", "--ask", "5")
	checkRows(t, report, "(a)", "(b)", "(r)")
	for _, want := range []string{"(a), (b), (r) in turn", "| (r) relay: bare pipeline of 3 × HMGET of 6 fields through a process of its own over HTTP |",
		"the relay of (r) in a process of its own", ", relay (r) "} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	n := 0
	for _, m := range cpuColumn.FindAllStringSubmatch(report, -1) {
		if m[1] == "(r)" {
			n++
			if !isUint(m[2]) {
				t.Errorf("(r)'s row ends with %q, want its relay process's CPU per query", m[2])
			}
		}
	}
	if n != 2 {
		t.Errorf("%d rows of (r) with a server CPU per query, want 2:\n%s", n, report)
	}
	if !regexp.MustCompile(`(?m)^\| \(r\) relay[^|]*\| [\d.]+ \| \d+ / \d+ / \d+ \| \d+ \| \d+ \| (?:\d+ / \d+|n/a) \| \d+ \| \d+ / \d+ / \d+ \| \d+ \| \d+ \| \d+ \|$`).MatchString(report) {
		t.Errorf("no runtime statistics of (r)'s relay process in the tail table:\n%s", report)
	}
	for _, pair := range []string{`\(a\)/\(r\)`, `\(r\)/\(b\)`} {
		m := regexp.MustCompile(`(?m)^` + pair + `: p50 \*\*([\d.]+)×\*\*, p99 \*\*([\d.]+)×\*\*; .* adds -?[\d.]+ ms at p50 and -?[\d.]+ ms at p99 `).FindStringSubmatch(report)
		if m == nil {
			t.Errorf("no line %s with its ratios:\n%s", pair, report)
			continue
		}
		for _, r := range m[1:] {
			if v, _ := strconv.ParseFloat(r, 64); !(v > 0) {
				t.Errorf("line %s: ratio %s, want more than 0", pair, r)
			}
		}
	}
}

// --trace has the query server process write its execution trace, which
// holds the run's goroutines and scheduling.
func TestBenchTrace(t *testing.T) {
	addr := testserver.Redis(t)
	path := filepath.Join(t.TempDir(), "server.trace")
	runBenchT(t, "--store", fmt.Sprintf("redis://%s/0", addr), "--trace", path)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// An execution trace starts "go 1.N trace" and, for a run serving
	// queries, has far more than its header.
	if !regexp.MustCompile(`^go 1\.\d+ trace\x00`).Match(b) || len(b) < 4096 {
		t.Fatalf("trace file of %d bytes starting %q, want an execution trace", len(b), b[:min(len(b), 16)])
	}
}

// --relay needs the floor's raw reads of a single Redis server, and a
// process hop to measure: refused, before anything is started, with
// --in-process and for an embedded store.
func TestBenchRelayRefused(t *testing.T) {
	addr := testserver.Redis(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--store", fmt.Sprintf("redis://%s/0", addr), "--relay", "--in-process"}, "--relay with --in-process"},
		{[]string{"--store", "embedded://" + t.TempDir(), "--relay"}, `--relay with a store of scheme "embedded": want a single Redis or Valkey server`},
	} {
		if _, err := runBenchE(tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("cairn bench %s: %v, want an error with %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
}

func TestBenchFlagErrors(t *testing.T) {
	err := run(context.Background(), []string{"bench", "--entities", "0", "--pool", "0", "--rate", "-1", "--slice", "2s", "--duration", "1s", "--ask", "51"},
		config.FromMap(nil), io.Discard, io.Discard)
	for _, want := range []string{"--store is required", "--entities 0", "--rate -1", "--duration 1s", "--ask 51"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want it to mention %q", err, want)
		}
	}
}

// A bench whose store cannot be opened stops its heap floor: the GC
// percent is GOGC's again.
func TestBenchStoreFailureStopsFloor(t *testing.T) {
	if debug.SetGCPercent(100) < 0 {
		t.Skip("GOGC=off")
	}
	err := run(context.Background(), []string{"bench", "--store", "redis://127.0.0.1:1/0", "--rate", "10", "--duration", "100ms", "--slice", "100ms"},
		config.FromMap(nil), io.Discard, io.Discard)
	if err == nil {
		t.Fatal("bench on a store nobody listens for: no error")
	}
	if p := debug.SetGCPercent(100); p != 100 {
		t.Errorf("GC percent after a failed bench: %d, want GOGC's 100", p)
	}
}

// metricsSeen matches the report's line on the records of the metrics
// topic: records, intervals, queries counted, queries of (i)'s rounds.
var metricsSeen = regexp.MustCompile(`once \(i\)'s server had stopped \(sending its last, partial, interval\): \*\*(\d+)\*\*, of (\d+) distinct intervals; they count (\d+) queries of namespace bench, against (\d+) answered by \(i\) in the rounds`)

// --metrics: beside (a) and (b), (i) runs on a query server process
// with Kafka, a broker of the run's own: its aggregator sent at least a
// record for each interval in which (i) was driven, counting every
// query (i) answered, and both servers' CPU per query is reported.
func TestBenchMetrics(t *testing.T) {
	addr := testserver.Redis(t)
	var out, errOut bytes.Buffer
	args := []string{"bench", "--store", fmt.Sprintf("redis://%s/0", addr), "--rate", "200", "--duration", "2s", "--slice", "1s", "--warmup", "200ms",
		"--entities", "1", "--features", "12", "--pool", "20", "--metrics"}
	pinned := runtime.NumCPU() >= 2
	if pinned { // and so pinning on the way, where there is a CPU to spare
		args = append(args, "--pin", "--server-procs", "1")
	}
	env := config.FromMap(map[string]string{"CAIRN_METRICS_INTERVAL": "1s"})
	if err := run(context.Background(), args, env, &out, &errOut); err != nil {
		t.Fatalf("cairn %s: %v\n%s", strings.Join(args, " "), err, errOut.String())
	}
	report := out.String()
	checkRows(t, report, "(a)", "(b)", "(i)")
	for _, want := range []string{"(a), (b), (i) in turn", "| (i) as (a), with query metrics (one record per 1s to Kafka) |",
		"What the query metrics cost the server: ", "load generator, floor client and Kafka broker "} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	if want := "- pinned for the rounds (--pin): load generator and floor client (this process, GOMAXPROCS 1) on CPU ["; pinned && !strings.Contains(report, want) {
		t.Errorf("report lacks %q:\n%s", want, report)
	}
	if want := "`cairn bench-server`, GOMAXPROCS 1)"; pinned && !strings.Contains(report, want) {
		t.Errorf("report lacks %q:\n%s", want, report)
	}
	m := metricsSeen.FindStringSubmatch(report)
	if m == nil {
		t.Fatalf("report gives no records of the metrics topic:\n%s", report)
	}
	records, _ := strconv.Atoi(m[1])
	intervals, _ := strconv.Atoi(m[2])
	counted, _ := strconv.Atoi(m[3])
	answered, _ := strconv.Atoi(m[4])
	// Each of (i)'s two slices of 1s overlaps at least one interval.
	if records < intervals || intervals < 2 {
		t.Errorf("%d records of %d intervals: want at least one record for each of the 2 intervals (i) was driven in", records, intervals)
	}
	if answered == 0 || counted < answered {
		t.Errorf("the records count %d queries, (i) answered %d in the rounds: want every one counted", counted, answered)
	}
	rows := cpuColumn.FindAllStringSubmatch(report, -1)
	n := 0
	for _, r := range rows {
		if (r[1] == "(a)" || r[1] == "(i)") && isUint(r[2]) {
			n++
		}
	}
	if n != 4 { // both tables
		t.Errorf("%d rows of (a) and (i) with a server CPU per query, want 4: %q", n, rows)
	}
}
