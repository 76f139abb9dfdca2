package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/cairnfs/cairn/internal/config"
)

// repoRoot is the repository's root, from this package's directory.
const repoRoot = "../.."

// runSizeArgs runs `cairn size args` in this process with env, and returns
// its standard output.
func runSizeArgs(t *testing.T, env map[string]string, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), append([]string{"size"}, args...), config.FromMap(env), &out, &errOut)
	return out.String(), err
}

// docExample is one command of docs/sizing.md and the output printed
// under it.
type docExample struct {
	line   int
	args   []string
	expect []string // lines; a line "..." stands for any lines
}

// docExamples reads the console blocks of docs/sizing.md: a command
// "$ cairn size ..." (continued over lines ending in a backslash), then
// its output up to the closing fence.
func docExamples(t *testing.T) []docExample {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "docs", "sizing.md"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	var out []docExample
	for i := 0; i < len(lines); i++ {
		if lines[i] != "```console" {
			continue
		}
		i++
		ex := docExample{line: i + 1}
		cmd := ""
		for ; ; i++ {
			l := strings.TrimSpace(lines[i])
			cont := strings.HasSuffix(l, `\`)
			cmd += " " + strings.TrimSuffix(l, `\`)
			if !cont {
				break
			}
		}
		fields := strings.Fields(cmd)
		if len(fields) < 3 || fields[0] != "$" || fields[1] != "cairn" || fields[2] != "size" {
			t.Fatalf("docs/sizing.md:%d: console block does not start with $ cairn size: %q", ex.line, cmd)
		}
		ex.args = fields[3:]
		for i++; lines[i] != "```"; i++ {
			ex.expect = append(ex.expect, lines[i])
		}
		out = append(out, ex)
	}
	return out
}

// matches reports whether got holds the expected lines in order, each run
// of them between "..." lines contiguous, and the whole of got when there
// is no "...".
func matches(got, expect []string) bool {
	if len(expect) > 0 && expect[0] != "..." && expect[len(expect)-1] != "..." && !strings.Contains(strings.Join(expect, "\n"), "\n...\n") {
		return strings.Join(got, "\n") == strings.Join(expect, "\n")
	}
	var chunks [][]string
	var cur []string
	for _, l := range expect {
		if l == "..." {
			chunks = append(chunks, cur)
			cur = nil
			continue
		}
		cur = append(cur, l)
	}
	chunks = append(chunks, cur)
	pos := 0
	for _, c := range chunks {
		if len(c) == 0 {
			continue
		}
		found := false
		for ; pos+len(c) <= len(got); pos++ {
			if strings.Join(got[pos:pos+len(c)], "\n") == strings.Join(c, "\n") {
				pos += len(c)
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// docs/sizing.md works its examples by hand and prints cairn size's output
// for each: every command there must print exactly what the page shows.
func TestSizeDoc(t *testing.T) {
	t.Parallel()
	examples := docExamples(t)
	if len(examples) < 5 {
		t.Fatalf("docs/sizing.md has %d examples, want the three deployments and the two retentions", len(examples))
	}
	for _, ex := range examples {
		args := append([]string(nil), ex.args...)
		for i := range args {
			if i > 0 && (args[i-1] == "--features" || args[i-1] == "--from") {
				args[i] = filepath.Join(repoRoot, args[i])
			}
		}
		out, err := runSizeArgs(t, nil, args...)
		if err != nil {
			t.Errorf("docs/sizing.md:%d: cairn size %s: %v", ex.line, strings.Join(ex.args, " "), err)
			continue
		}
		got := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if !matches(got, ex.expect) {
			t.Errorf("docs/sizing.md:%d: cairn size %s printed\n%s\nthe page shows\n%s", ex.line, strings.Join(ex.args, " "), out, strings.Join(ex.expect, "\n"))
		}
	}
}

// The comparison itself must be able to fail.
func TestSizeDocMatches(t *testing.T) {
	t.Parallel()
	got := []string{"a", "b", "c", "d"}
	for _, tc := range []struct {
		expect []string
		want   bool
	}{
		{[]string{"a", "b", "c", "d"}, true},
		{[]string{"a", "b", "c"}, false},
		{[]string{"...", "b", "c", "..."}, true},
		{[]string{"...", "b", "d", "..."}, false},
		{[]string{"a", "...", "d"}, true},
		{[]string{"...", "c", "...", "b"}, false},
	} {
		if matches(got, tc.expect) != tc.want {
			t.Errorf("matches(%q, %q) = %v", got, tc.expect, !tc.want)
		}
	}
}

// A --from file sets the inputs; flags on the command line win over it,
// and DYNAMODB_CHECK_TS_FOR_BULK_WRITES sets --bulk-transactions' default.
func TestSizeFromFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "typical.yaml")
	yaml := "features: " + filepath.Join(repoRoot, "examples", "features.yaml") + "\nqps: 500\npeak-qps: 1500\nentities-per-query: 10\nretention: 7d\n"
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	plan := func(env map[string]string, args ...string) map[string]any {
		t.Helper()
		out, err := runSizeArgs(t, env, append([]string{"--json", "--from", file}, args...)...)
		if err != nil {
			t.Fatal(err)
		}
		var p map[string]any
		if err := json.Unmarshal([]byte(out), &p); err != nil {
			t.Fatalf("--json printed %q: %v", out, err)
		}
		return p
	}
	get := func(p map[string]any, path string) any {
		var v any = p
		for _, k := range strings.Split(path, ".") {
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("%s: no such key in %v", path, p)
			}
			v, ok = m[k]
			if !ok {
				t.Fatalf("%s: no such key", path)
			}
		}
		return v
	}
	p := plan(nil)
	for _, key := range []string{"read_units.steady", "read_units.peak", "write_units.steady", "write_units.peak", "capacity_mode",
		"autoscaling.read.min", "autoscaling.read.max", "autoscaling.write.min", "autoscaling.write.max", "kafka.storage_per_broker_gib"} {
		get(p, key)
	}
	if get(p, "read_units.steady") != 2500.0 || get(p, "tfvars.log_retention_hours") != 168.0 {
		t.Errorf("from the file: read_units.steady %v, log_retention_hours %v; want 2500, 168", get(p, "read_units.steady"), get(p, "tfvars.log_retention_hours"))
	}
	p = plan(nil, "--qps", "1000", "--retention", "24h")
	if get(p, "read_units.steady") != 5000.0 || get(p, "read_units.peak") != 7500.0 || get(p, "tfvars.log_retention_hours") != 24.0 {
		t.Errorf("flags over the file: read_units %v, retention %v; want 5000/7500 and 24", get(p, "read_units"), get(p, "tfvars.log_retention_hours"))
	}
	p = plan(nil, "--uploads-per-second", "10")
	tx := get(p, "write_units.steady")
	p = plan(map[string]string{"DYNAMODB_CHECK_TS_FOR_BULK_WRITES": "false"}, "--uploads-per-second", "10")
	if plain := get(p, "write_units.steady"); plain.(float64)*2 != tx.(float64) {
		t.Errorf("write units %v with transactions, %v without: want half", tx, plain)
	}
	p = plan(map[string]string{"DYNAMODB_CHECK_TS_FOR_BULK_WRITES": "false"}, "--uploads-per-second", "10", "--bulk-transactions")
	if got := get(p, "write_units.steady"); got != tx {
		t.Errorf("--bulk-transactions over the knob: %v write units, want %v", got, tx)
	}

	// The metrics interval: CAIRN_METRICS_INTERVAL's value, then the
	// file, then the flag. Half the interval, twice the metrics bytes/s
	// (500 queries/s × 10 s / 3 servers and × 5 s / 3 both fill every
	// latency bucket, and their counts take as many uvarint bytes).
	metricsBPS := func(p map[string]any) float64 { return get(p, "kafka.metrics.bytes_per_second").(float64) }
	tenS := metricsBPS(plan(nil))
	fiveS := metricsBPS(plan(map[string]string{"CAIRN_METRICS_INTERVAL": "5s"}))
	if tenS <= 0 || fiveS <= 1.9*tenS || fiveS >= 2.1*tenS {
		t.Errorf("metrics %v B/s at 10s, %v at CAIRN_METRICS_INTERVAL=5s: want about twice", tenS, fiveS)
	}
	if got := metricsBPS(plan(map[string]string{"CAIRN_METRICS_INTERVAL": "5s"}, "--metrics-interval", "10s")); got != tenS {
		t.Errorf("--metrics-interval 10s over the knob's 5s: %v B/s, want %v", got, tenS)
	}
	if got := metricsBPS(plan(nil, "--query-servers", "6")); got <= tenS {
		t.Errorf("6 query servers: %v B/s, want more than 3's %v", got, tenS)
	}
	if _, err := runSizeArgs(t, nil, "--from", file, "--metrics-interval", "7s"); err == nil || !strings.Contains(err.Error(), "--metrics-interval:") {
		t.Errorf("--metrics-interval 7s: %v, want an error naming the flag", err)
	}

	out, err := runSizeArgs(t, nil, "--tfvars", "--from", file)
	if err != nil || !strings.HasPrefix(out, "capacity_mode              = \"autoscaled\"\n") || !strings.Contains(out, "log_retention_hours        = 168\n") {
		t.Errorf("--tfvars printed %q (%v)", out, err)
	}
}

// Bad input is refused with an error naming the flag (or the file).
func TestSizeBadInput(t *testing.T) {
	t.Parallel()
	features := filepath.Join(repoRoot, "examples", "features.yaml")
	dir := t.TempDir()
	badYAML := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(badYAML, []byte("qps: 5\nqpz: 6\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--features", features, "--qps", "-5"}, nil, "--qps"},
		{[]string{"--features", features, "--qps", "5", "--persist-fraction", "2"}, nil, "--persist-fraction"},
		{[]string{"--features", features, "--qps", "5", "--retention", "1 week"}, nil, "retention"},
		{[]string{"--features", features, "--qps", "5", "--replication-factor", "5"}, nil, "--replication-factor"},
		{[]string{"--qps", "5"}, nil, "--features"},
		{[]string{"--features", filepath.Join(dir, "none.yaml"), "--qps", "5"}, nil, "--features"},
		{[]string{"--from", badYAML}, nil, "--from"},
		{[]string{"--from", filepath.Join(dir, "none.yaml")}, nil, "--from"},
		{[]string{"--features", features, "--qps", "5"}, map[string]string{"DYNAMODB_CHECK_TS_FOR_BULK_WRITES": "maybe"}, "DYNAMODB_CHECK_TS_FOR_BULK_WRITES"},
		{[]string{"--features", features, "--qps", "5", "extra"}, nil, "extra"},
	} {
		_, err := runSizeArgs(t, tc.env, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("cairn size %s: %v, want an error naming %s", strings.Join(tc.args, " "), err, tc.want)
		}
	}
}

// numberRE matches a number as docs/sizing.md writes them.
var numberRE = regexp.MustCompile(`\d+(?:\.\d+)?`)

// The worked examples' prose does the arithmetic by hand: every number in
// it must be one that cairn size prints for that example (or one of its
// inputs), so that the prose cannot drift from the tool either.
func TestSizeDocProse(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(filepath.Join(repoRoot, "docs", "sizing.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	start := strings.Index(doc, "### Small")
	end := strings.Index(doc, "## Retention")
	if start < 0 || end < start {
		t.Fatal("docs/sizing.md: no worked examples between ### Small and ## Retention")
	}
	sections := strings.Split(doc[start:end], "### ")[1:]
	if len(sections) != 3 {
		t.Fatalf("docs/sizing.md: %d worked examples, want 3", len(sections))
	}
	for _, sec := range sections {
		title, _, _ := strings.Cut(sec, "\n")
		prose, block, ok := strings.Cut(sec, "```console\n")
		if !ok {
			t.Fatalf("%s: no console block", title)
		}
		known := map[string]bool{}
		for _, n := range numberRE.FindAllString(block, -1) {
			known[n] = true
		}
		for _, n := range numberRE.FindAllString(prose, -1) {
			if !known[n] {
				t.Errorf("docs/sizing.md, %s: the prose's %s is not a number cairn size prints for the example", title, n)
			}
		}
	}
}

// The page's attribute-by-attribute count of the user item must add up,
// and to the size cairn size finds for it.
func TestSizeDocItemTable(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(filepath.Join(repoRoot, "docs", "sizing.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(data), "| attribute | name + value bytes | total |\n|---|---|---|\n")
	if !ok {
		t.Fatal("docs/sizing.md: no item table")
	}
	sum, total := 0, -1
	for _, row := range strings.Split(table, "\n") {
		if !strings.HasPrefix(row, "|") {
			break
		}
		cells := strings.Split(strings.Trim(row, "|"), "|")
		last := strings.Trim(strings.TrimSpace(cells[len(cells)-1]), "*")
		n, err := strconv.Atoi(last)
		if err != nil {
			t.Fatalf("item table row %q: total %q is not a number", row, last)
		}
		if strings.Contains(row, "**item**") {
			total = n
			break
		}
		sum += n
	}
	if total != sum {
		t.Errorf("item table: rows add up to %d, the total says %d", sum, total)
	}
	out, err := runSizeArgs(t, nil, "--json", "--features", filepath.Join(repoRoot, "examples", "sizing.yaml"), "--qps", "1", "--namespace", "user")
	if err != nil {
		t.Fatal(err)
	}
	var p struct{ Item struct{ Bytes int } }
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatal(err)
	}
	if p.Item.Bytes != total {
		t.Errorf("item table: %d bytes, cairn size: %d", total, p.Item.Bytes)
	}
}
