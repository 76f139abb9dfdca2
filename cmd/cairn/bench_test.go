package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"regexp"
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
var benchRow = regexp.MustCompile(`(?m)^\| (\([abcd]\)[^|]*) \| (\d+) \| (\d+) \|`)

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
		"the query server in another (`cairn bench-server`)", ": query server ", "load generator and floor client "} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
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
		"load generator, query server and floor client in one process"} {
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
