package config

import (
	"bytes"
	"fmt"
	"os"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestDefaultsAndOverrides(t *testing.T) {
	e := FromMap(map[string]string{"CAIRN_TOPIC_PARTITIONS": "24", "CAIRN_KAFKA_BROKERS": "a:9092, b:9092,"})
	if got := e.Int("CAIRN_TOPIC_PARTITIONS"); got != 24 {
		t.Errorf("partitions = %d", got)
	}
	if got := e.Duration("CAIRN_TOPIC_RETENTION"); got != 168*time.Hour {
		t.Errorf("retention = %v", got)
	}
	if got := e.List("CAIRN_KAFKA_BROKERS"); len(got) != 2 || got[1] != "b:9092" {
		t.Errorf("brokers = %q", got)
	}
	if !e.Bool("DYNAMODB_WARMUP_FQN_MAPPING") || e.Int("DYNAMODB_MAX_RETRIES") != 12 {
		t.Error("DynamoDB defaults differ from the documented ones")
	}
	if err := e.Err(); err != nil {
		t.Fatal(err)
	}
}

func TestEveryBadValueReported(t *testing.T) {
	e := FromMap(map[string]string{"CAIRN_TOPIC_PARTITIONS": "many", "CAIRN_KAFKA_TLS": "yes please", "CAIRN_TOPIC_RETENTION": "7"})
	e.Int("CAIRN_TOPIC_PARTITIONS")
	e.Bool("CAIRN_KAFKA_TLS")
	e.Duration("CAIRN_TOPIC_RETENTION")
	err := e.Err()
	for _, name := range []string{"CAIRN_TOPIC_PARTITIONS", "CAIRN_KAFKA_TLS", "CAIRN_TOPIC_RETENTION"} {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("error %v does not name %s", err, name)
		}
	}
}

func TestPrintRedactsSecrets(t *testing.T) {
	var buf bytes.Buffer
	if err := FromMap(map[string]string{"CAIRN_KAFKA_SASL_PASSWORD": "hunter2", "CAIRN_TOPIC_PARTITIONS": "6",
		"CAIRN_ONLINE_STORE": "redis://app:s3cr3t@cache:6379/0"}).Print(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if strings.Contains(out, "hunter2") || !hasRow(out, "CAIRN_KAFKA_SASL_PASSWORD", "(set)", "environment") {
		t.Errorf("secret not shown as (set):\n%s", out)
	}
	if strings.Contains(out, "s3cr3t") || !hasRow(out, "CAIRN_ONLINE_STORE", "redis://app:xxxxx@cache:6379/0", "environment") {
		t.Errorf("store URI password not masked:\n%s", out)
	}
	for _, k := range Knobs {
		if !strings.Contains(out, k.Name) {
			t.Errorf("%s not printed", k.Name)
		}
	}
	if !hasRow(out, "CAIRN_TOPIC_PARTITIONS", "6", "environment") {
		t.Errorf("override not shown with its source:\n%s", out)
	}
}

// hasRow reports whether a printed row starts with the given fields.
func hasRow(out string, fields ...string) bool {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= len(fields) && f[0] == fields[0] && f[1] == fields[1] && f[2] == fields[2] {
			return true
		}
	}
	return false
}

// docs/configuration.md is what operators read: it must list every knob
// with its default.
func TestDocsListEveryKnob(t *testing.T) {
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range Knobs {
		d := k.Default
		if d == "" {
			d = "(unset)"
		}
		row := "| `" + k.Name + "` | `" + d + "` |"
		if !strings.Contains(string(doc), row) {
			t.Errorf("docs/configuration.md lacks the row %q", row)
		}
	}
}

// Defaults computed from GOMAXPROCS show their value, with the computation
// as their source; GETITEM_MIN_BATCH_CONCURRENCY follows the client
// threads, set or not.
func TestComputedDefaults(t *testing.T) {
	procs := runtime.GOMAXPROCS(0)
	e := FromMap(nil)
	if got := e.Int("DYNAMODB_NUM_CLIENT_THREADS"); got != 2*procs {
		t.Errorf("client threads = %d, want 2 × %d", got, procs)
	}
	if got := e.Int("DYNAMODB_NUM_SERDE_THREADS"); got != procs {
		t.Errorf("serde threads = %d, want %d", got, procs)
	}
	if got := e.Int("DYNAMODB_GETITEM_MIN_BATCH_CONCURRENCY"); got != 2*procs {
		t.Errorf("batch concurrency = %d, want the client threads, %d", got, 2*procs)
	}
	var buf bytes.Buffer
	if err := e.Print(&buf); err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile(fmt.Sprintf(`(?m)^DYNAMODB_NUM_CLIENT_THREADS +%d +default \(2 × GOMAXPROCS\) `, 2*procs))
	if !row.MatchString(buf.String()) {
		t.Errorf("computed default not shown with its value and computation:\n%s", buf.String())
	}

	e = FromMap(map[string]string{"DYNAMODB_NUM_CLIENT_THREADS": "24"})
	if got := e.Int("DYNAMODB_GETITEM_MIN_BATCH_CONCURRENCY"); got != 24 {
		t.Errorf("batch concurrency = %d, want the 24 client threads set", got)
	}
	if v, fromEnv := e.Value("DYNAMODB_GETITEM_MIN_BATCH_CONCURRENCY"); v != "24" || fromEnv {
		t.Errorf("Value = %q, %v; want 24 from the default", v, fromEnv)
	}
	if err := e.Err(); err != nil {
		t.Fatal(err)
	}
}

// Every DynamoDB knob of the design, with its documented default.
func TestDynamoDBDefaults(t *testing.T) {
	want := map[string]string{
		"DYNAMODB_NUM_CLIENT_THREADS":                          "2 × GOMAXPROCS",
		"DYNAMODB_NUM_CLIENT_CONNECTIONS":                      "2 × GOMAXPROCS",
		"DYNAMODB_NUM_SERDE_THREADS":                           "GOMAXPROCS",
		"DYNAMODB_GETITEM_MIN_BATCH_SIZE":                      "10",
		"DYNAMODB_GETITEM_MIN_BATCH_CONCURRENCY":               "DYNAMODB_NUM_CLIENT_THREADS",
		"DYNAMODB_CACHED_NAMESPACES":                           "",
		"DYNAMODB_LRU_CACHE_CACHE_MISSES":                      "true",
		"DYNAMODB_BLOOM_FILTER_DEBUG_MODE":                     "false",
		"DYNAMODB_ENABLE_REQUEST_RACING":                       "false",
		"DYNAMODB_REQUEST_RACING_WAIT_TIME":                    "",
		"DYNAMODB_CHECK_TS_FOR_BULK_WRITES":                    "true",
		"DYNAMODB_ONLY_WRITE_NEWER_VALUES":                     "true",
		"DYNAMODB_TRANSACTION_WRITE_CONFLICT_MIN_RETRY_MILLIS": "50",
		"DYNAMODB_TRANSACTION_WRITE_CONFLICT_MAX_RETRIES":      "5",
		"DYNAMODB_AGGREGATE_UPDATE_CACHE_SIZE":                 "256",
		"DYNAMODB_MAX_RETRIES":                                 "12",
		"DYNAMODB_RETRY_SCALE_FACTOR":                          "10",
		"DYNAMODB_REQUEST_TIMEOUT_MS":                          "",
		"DYNAMODB_WARMUP_FQN_MAPPING":                          "true",
		"DYNAMODB_CREATE_TABLES_IF_NOT_EXISTS":                 "false",
		// Beyond the design's table: the multi-region deployment (issue 12).
		"DYNAMODB_GLOBAL_TABLE_REGIONS": "",
	}
	seen := 0
	for _, k := range Knobs {
		if !strings.HasPrefix(k.Name, "DYNAMODB_") {
			continue
		}
		seen++
		if d, ok := want[k.Name]; !ok || d != k.Default {
			t.Errorf("%s: default %q, want %q (known: %v)", k.Name, k.Default, d, ok)
		}
	}
	if seen != len(want) {
		t.Errorf("%d DYNAMODB_* knobs, want %d", seen, len(want))
	}
}

func TestMillis(t *testing.T) {
	e := FromMap(map[string]string{"DYNAMODB_REQUEST_TIMEOUT_MS": "250", "DYNAMODB_REQUEST_RACING_WAIT_TIME": "soon"})
	if d, set := e.Millis("DYNAMODB_REQUEST_TIMEOUT_MS"); d != 250*time.Millisecond || !set {
		t.Errorf("timeout = %v, %v", d, set)
	}
	if _, set := e.Millis("DYNAMODB_TRANSACTION_WRITE_CONFLICT_MIN_RETRY_MILLIS"); !set {
		t.Error("a knob with a default reads as unset")
	}
	if d, set := e.Millis("DYNAMODB_REQUEST_RACING_WAIT_TIME"); set || d != 0 {
		t.Errorf("bad value read as %v, %v", d, set)
	}
	if err := e.Err(); err == nil || !strings.Contains(err.Error(), `DYNAMODB_REQUEST_RACING_WAIT_TIME="soon"`) {
		t.Errorf("error %v does not name the bad value", err)
	}
	if _, set := FromMap(nil).Millis("DYNAMODB_REQUEST_TIMEOUT_MS"); set {
		t.Error("unset knob reads as set")
	}
}

// A value that does not parse is reported, and the default's value used
// in its place, so that no second complaint follows about the zero value.
func TestBadValueFallsBackToDefault(t *testing.T) {
	e := FromMap(map[string]string{"DYNAMODB_NUM_CLIENT_THREADS": "lots", "DYNAMODB_WARMUP_FQN_MAPPING": "perhaps", "CAIRN_TOPIC_RETENTION": "7"})
	if got := e.Int("DYNAMODB_NUM_CLIENT_THREADS"); got != 2*runtime.GOMAXPROCS(0) {
		t.Errorf("client threads = %d, want the computed default", got)
	}
	if !e.Bool("DYNAMODB_WARMUP_FQN_MAPPING") {
		t.Error("warmup = false, want the default true")
	}
	if got := e.Duration("CAIRN_TOPIC_RETENTION"); got != 168*time.Hour {
		t.Errorf("retention = %v, want the default", got)
	}
	if err := e.Err(); err == nil || strings.Count(err.Error(), "\n") != 2 {
		t.Errorf("want three problems reported, got %v", err)
	}
}

func TestRedactURI(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"redis://:pw@h:6379/0", "redis://:xxxxx@h:6379/0"},
		{"rediss://user:pw@h:6379/0?prefix=a", "rediss://user:xxxxx@h:6379/0?prefix=a"},
		{"redis://user@h:6379", "redis://user@h:6379"},
		{"redis://h:6379/0", "redis://h:6379/0"},
		{"dynamodb:///features?region=eu-west-1", "dynamodb:///features?region=eu-west-1"},
		{"embedded:///var/lib/cairn", "embedded:///var/lib/cairn"},
		// Passwords that do not parse are masked whole.
		{"redis://:pa/ss@h", "redis://:xxxxx@h"},
		{"redis://:pa#ss@h", "redis://:xxxxx@h"},
		{"redis://:p@ss@h", "redis://:xxxxx@h"},
		{"redis2//u:pw@h", "redis2//u:xxxxx@h"},
		{"", ""},
	} {
		if got := RedactURI(tc.in); got != tc.want {
			t.Errorf("RedactURI(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// A password written in a URI never survives redaction, whatever the
// characters around it.
func FuzzRedactURI(f *testing.F) {
	f.Add("redis", "user", "hunter2", "cache:6379", "/0")
	f.Add("rediss", "", "p/a#s?s@", "h", "?prefix=x")
	f.Add("valkey", "a", "pw", "[::1]:6379", "")
	f.Fuzz(func(t *testing.T, scheme, user, pass, host, rest string) {
		if len(pass) < 4 || strings.Contains(user, ":") || strings.ContainsAny(host+rest, "@") ||
			strings.Contains(scheme+"://"+user+":", pass) || strings.Contains(":xxxxx@"+host+rest, pass) {
			return // not a password, or one the rest of the URI spells out anyway
		}
		uri := scheme + "://" + user + ":" + pass + "@" + host + rest
		if got := RedactURI(uri); strings.Contains(got, pass) {
			t.Fatalf("RedactURI(%q) = %q keeps the password %q", uri, got, pass)
		}
	})
}
