package node

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cairnfs/cairn/internal/config"
	"github.com/cairnfs/cairn/internal/store/dynamo"
	"github.com/cairnfs/cairn/internal/tlscert/tlscerttest"
)

const features = "../../examples/features.yaml"

func flagsFor(store string) Flags {
	return Flags{Features: features, Store: store, Brokers: "127.0.0.1:1", Addr: "127.0.0.1:0"}
}

// Unset knobs give the DynamoDB store its documented defaults.
func TestDynamoConfigDefaults(t *testing.T) {
	cfg, err := Load(Write, config.FromMap(nil), flagsFor("dynamodb:///features?region=eu-west-1"))
	if err != nil {
		t.Fatal(err)
	}
	want := dynamo.DefaultConfig()
	want.Table, want.Region = "features", "eu-west-1"
	// The knob's default is computed: the client threads.
	want.GetItemMinBatchConcurrency = 2 * runtime.GOMAXPROCS(0)
	if got := cfg.Store.Dynamo; !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%+v\nwant\n%+v", got, want)
	}
}

// Every knob reaches its field, milliseconds as durations.
func TestDynamoConfigKnobs(t *testing.T) {
	env := config.FromMap(map[string]string{
		"DYNAMODB_NUM_CLIENT_THREADS":                          "16",
		"DYNAMODB_NUM_CLIENT_CONNECTIONS":                      "20",
		"DYNAMODB_NUM_SERDE_THREADS":                           "3",
		"DYNAMODB_GETITEM_MIN_BATCH_SIZE":                      "25",
		"DYNAMODB_ENABLE_REQUEST_RACING":                       "true",
		"DYNAMODB_REQUEST_RACING_WAIT_TIME":                    "12",
		"DYNAMODB_CHECK_TS_FOR_BULK_WRITES":                    "false",
		"DYNAMODB_ONLY_WRITE_NEWER_VALUES":                     "false",
		"DYNAMODB_TRANSACTION_WRITE_CONFLICT_MIN_RETRY_MILLIS": "80",
		"DYNAMODB_TRANSACTION_WRITE_CONFLICT_MAX_RETRIES":      "9",
		"DYNAMODB_AGGREGATE_UPDATE_CACHE_SIZE":                 "1024",
		"DYNAMODB_MAX_RETRIES":                                 "4",
		"DYNAMODB_RETRY_SCALE_FACTOR":                          "25",
		"DYNAMODB_REQUEST_TIMEOUT_MS":                          "1500",
		"DYNAMODB_WARMUP_FQN_MAPPING":                          "false",
		"DYNAMODB_CREATE_TABLES_IF_NOT_EXISTS":                 "true",
		"CAIRN_API_AUTH":                                       "none",
	})
	cfg, err := Load(Serve, env, flagsFor("dynamodb:///features?region=us-east-1&endpoint=http://127.0.0.1:5055"))
	if err != nil {
		t.Fatal(err)
	}
	want := dynamo.Config{
		Table: "features", Region: "us-east-1", Endpoint: "http://127.0.0.1:5055",
		NumClientThreads: 16, NumClientConnections: 20, NumSerdeThreads: 3,
		GetItemMinBatchSize: 25, GetItemMinBatchConcurrency: 16,
		EnableRequestRacing: true, RequestRacingWaitTime: 12 * time.Millisecond,
		CheckTSForBulkWrites: false, OnlyWriteNewerValues: false,
		TransactionWriteConflictMinRetry: 80 * time.Millisecond, TransactionWriteConflictMaxRetries: 9,
		AggregateUpdateCacheSize: 1024, MaxRetries: 4, RetryScaleFactor: 25,
		RequestTimeout: 1500 * time.Millisecond, WarmupFQNMapping: false, CreateTableIfNotExists: true,
	}
	if got := cfg.Store.Dynamo; !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%+v\nwant\n%+v", got, want)
	}
}

// checkOnce fails t unless err names every wanted problem, and names no
// problem twice: the configuration is validated once, in one place, so a
// repeated line means a problem was checked twice.
func checkOnce(t *testing.T, err error, wants ...string) {
	t.Helper()
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	for _, want := range wants {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(msg, "\n") {
		if seen[line] {
			t.Errorf("problem reported twice: %q\n%s", line, msg)
		}
		seen[line] = true
	}
}

// Bad values stop the start with one error naming every problem, each
// once: knob syntax, knob values, the URI and the other roles' knobs.
func TestEveryProblemOnce(t *testing.T) {
	env := config.FromMap(map[string]string{
		"DYNAMODB_NUM_CLIENT_THREADS":     "many",
		"DYNAMODB_GETITEM_MIN_BATCH_SIZE": "0",
		"DYNAMODB_ENABLE_REQUEST_RACING":  "true",
		"DYNAMODB_REQUEST_TIMEOUT_MS":     "2s",
		"DYNAMODB_MAX_RETRIES":            "-3",
		"DYNAMODB_CACHED_NAMESPACES":      `[{"namespace": "user"`,
		"CAIRN_BLOOM_NAMESPACES":          `[{"namespace": "user", "false_positive_rate": 3}]`,
		"CAIRN_WRITER_MAX_BATCH_RECORDS":  "lots",
		"CAIRN_GC_HEAP_FLOOR_MIB":         "-1",
	})
	_, err := Load(Serve, env, flagsFor("dynamodb:///features"))
	checkOnce(t, err,
		`DYNAMODB_NUM_CLIENT_THREADS="many": want an integer`,
		"get-item min batch size 0 (DYNAMODB_GETITEM_MIN_BATCH_SIZE)",
		"DYNAMODB_REQUEST_RACING_WAIT_TIME",
		`DYNAMODB_REQUEST_TIMEOUT_MS="2s"`,
		"max retries -3",
		"DYNAMODB_CACHED_NAMESPACES",
		"false_positive_rate 3",
		"CAIRN_GC_HEAP_FLOOR_MIB=-1",
	)
	if strings.Contains(err.Error(), "CAIRN_WRITER_MAX_BATCH_RECORDS") {
		t.Errorf("serve reports a knob only writers read:\n%v", err)
	}

	_, err = Load(Write, env, flagsFor("dynamodb:///features"))
	checkOnce(t, err, "CAIRN_WRITER_MAX_BATCH_RECORDS", "DYNAMODB_REQUEST_RACING_WAIT_TIME")

	// A bad URI and a bad knob: both reported.
	env = config.FromMap(map[string]string{"DYNAMODB_WARMUP_FQN_MAPPING": "sometimes"})
	_, err = Load(Write, env, flagsFor("dynamodb://features"))
	checkOnce(t, err, `unexpected host "features"`, "DYNAMODB_WARMUP_FQN_MAPPING")

	// No store, no brokers, a missing feature file.
	_, err = Load(Write, config.FromMap(nil), Flags{Features: "no/such/file.yaml", Addr: "127.0.0.1:0"})
	checkOnce(t, err, "no online store configured", "no Kafka brokers", "no/such/file.yaml")
}

// `cairn config` checks every knob whatever the store: a DynamoDB knob
// that is wrong is reported on a Redis deployment too.
func TestCheckValidatesEveryStore(t *testing.T) {
	env := config.FromMap(map[string]string{
		"CAIRN_ONLINE_STORE":             "redis://127.0.0.1:6379/0",
		"DYNAMODB_ENABLE_REQUEST_RACING": "true",
		"CAIRN_REDIS_POOL_SIZE":          "none",
		"CAIRN_WRITER_MAX_BATCH_RECORDS": "-5",
	})
	_, err := Load(Check, env, Flags{Store: "redis://127.0.0.1:6379/0"})
	checkOnce(t, err, "DYNAMODB_REQUEST_RACING_WAIT_TIME", `CAIRN_REDIS_POOL_SIZE="none"`, "max batch records -5")

	if _, err := Load(Check, config.FromMap(nil), Flags{}); err != nil {
		t.Errorf("defaults are invalid: %v", err)
	}
}

// The roles read what they run: serve without a writer knob problem, write
// without an address problem of the API.
func TestRolesValidateTheirOwnKnobs(t *testing.T) {
	env := config.FromMap(map[string]string{"CAIRN_MAX_BODY_BYTES": "12"})
	if _, err := Load(Write, env, flagsFor("redis://127.0.0.1:6379/0")); err != nil {
		t.Errorf("write refuses an API knob: %v", err)
	}
	_, err := Load(Serve, env, flagsFor("redis://127.0.0.1:6379/0"))
	checkOnce(t, err, "max body bytes 12")
}

// `cairn serve` without API keys refuses to start unless told to serve
// the API open; `cairn dev` runs open.
func TestServeNeedsKeysOrAuthNone(t *testing.T) {
	store := "redis://127.0.0.1:6379/0"
	_, err := Load(Serve, config.FromMap(nil), flagsFor(store))
	checkOnce(t, err, "CAIRN_API_KEYS_FILE", "CAIRN_API_AUTH=none")

	cfg, err := Load(Serve, config.FromMap(map[string]string{"CAIRN_API_AUTH": "none"}), flagsFor(store))
	if err != nil || cfg.Auth.Mode != "none" || cfg.Auth.KeysFile != "" {
		t.Fatalf("CAIRN_API_AUTH=none: %+v, %v", cfg.Auth, err)
	}
	if _, err := Load(Dev, config.FromMap(nil), Flags{Features: features, Addr: "127.0.0.1:0", DataDir: t.TempDir()}); err != nil {
		t.Errorf("dev without keys: %v", err)
	}

	path := filepath.Join(t.TempDir(), "keys.yaml")
	h := sha256.Sum256([]byte("cairn_t"))
	if err := os.WriteFile(path, []byte("keys:\n  - {name: a, sha256: "+hex.EncodeToString(h[:])+", scopes: [query, admin]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := config.FromMap(map[string]string{"CAIRN_API_KEYS_FILE": path, "CAIRN_METRICS_REQUIRE_AUTH": "true"})
	cfg, err = Load(Serve, env, flagsFor(store))
	if err != nil || cfg.Auth.KeysFile != path || cfg.Auth.Mode != "keys" || !cfg.Auth.MetricsRequireAuth {
		t.Fatalf("with a keys file: %+v, %v", cfg.Auth, err)
	}

	// Contradictions and a bad file are reported, by `cairn config` too.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("keys:\n  - {name: a, sha256: 1234, scopes: [read]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, role := range []Role{Serve, Check} {
		_, err = Load(role, config.FromMap(map[string]string{"CAIRN_API_KEYS_FILE": bad, "CAIRN_API_AUTH": "none"}), flagsFor(store))
		checkOnce(t, err, "want one or the other", "64 hex digits", `unknown scope "read"`)
	}
	_, err = Load(Serve, config.FromMap(map[string]string{"CAIRN_API_AUTH": "off"}), flagsFor(store))
	checkOnce(t, err, `CAIRN_API_AUTH="off"`)
	_, err = Load(Serve, config.FromMap(map[string]string{"CAIRN_API_AUTH": "none", "CAIRN_METRICS_REQUIRE_AUTH": "true"}), flagsFor(store))
	checkOnce(t, err, "CAIRN_METRICS_REQUIRE_AUTH=true needs API keys")
}

// The TLS pair is checked where it is read: half a pair, or files that
// do not load, stop serve, write, dev and bench-server (which `cairn bench
// --security` starts with TLS), and `cairn config` reports them.
func TestTLSKnobs(t *testing.T) {
	ca := tlscerttest.NewCA(t)
	certFile, keyFile := tlscerttest.Files(t)
	ca.Issue(t, 1, certFile, keyFile)
	half := config.FromMap(map[string]string{"CAIRN_TLS_KEY_FILE": keyFile})
	for _, role := range []Role{Serve, Write, Check, BenchServer} {
		_, err := Load(role, half, flagsFor("redis://127.0.0.1:6379/0"))
		checkOnce(t, err, "CAIRN_TLS_KEY_FILE is set without CAIRN_TLS_CERT_FILE")
	}
	swapped := config.FromMap(map[string]string{"CAIRN_TLS_CERT_FILE": keyFile, "CAIRN_TLS_KEY_FILE": certFile})
	_, err := Load(Serve, swapped, flagsFor("redis://127.0.0.1:6379/0"))
	checkOnce(t, err, "tls: load certificate "+keyFile)

	good := config.FromMap(map[string]string{"CAIRN_TLS_CERT_FILE": certFile, "CAIRN_TLS_KEY_FILE": keyFile, "CAIRN_API_AUTH": "none"})
	c, err := Load(Serve, good, flagsFor("redis://127.0.0.1:6379/0"))
	if err != nil || c.TLS.CertFile != certFile || c.TLS.KeyFile != keyFile {
		t.Errorf("a good pair: %+v, %v", c.TLS, err)
	}
}
