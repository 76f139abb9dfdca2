// Package config is the only reader of cairn's environment. Every knob is a
// row of one table, Knobs, with its name, default and meaning; `cairn config`
// prints the table with the effective value of each knob and where it came
// from. The DynamoDB knobs keep their established DYNAMODB_* names; every
// other knob is CAIRN_*.
package config

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Knob is one configuration setting read from the environment.
type Knob struct {
	Name string
	// Default is the value used when the variable is unset or empty. For
	// a computed default it describes the computation, as in
	// "2 × GOMAXPROCS".
	Default string
	Doc     string
	// Secret knobs are printed as "(set)" when set, never their value.
	Secret bool
	// Redact, when set, returns the value as printed, with the secret it
	// may carry masked (the password of a URI).
	Redact func(string) string
	// Computed, when set, computes the default's value (Default then only
	// describes it).
	Computed func(e *Env) string
}

// twiceProcs and procs compute the defaults described as "2 × GOMAXPROCS"
// and "GOMAXPROCS".
func twiceProcs(*Env) string { return strconv.Itoa(2 * runtime.GOMAXPROCS(0)) }
func procs(*Env) string      { return strconv.Itoa(runtime.GOMAXPROCS(0)) }
func tenProcs(*Env) string   { return strconv.Itoa(10 * runtime.GOMAXPROCS(0)) }

// hostName computes the default "host name": this machine's, or empty
// when it cannot be read.
func hostName(*Env) string {
	h, err := os.Hostname()
	if err != nil {
		return ""
	}
	return h
}

// clientThreads computes the default "DYNAMODB_NUM_CLIENT_THREADS": that
// knob's effective value. (It cannot go through Value, which reads Knobs.)
func clientThreads(e *Env) string {
	if v, ok := e.lookup("DYNAMODB_NUM_CLIENT_THREADS"); ok && v != "" {
		if _, err := strconv.Atoi(v); err == nil {
			return v
		}
	}
	return twiceProcs(e)
}

// Knobs lists every environment variable cairn reads.
var Knobs = []Knob{
	{Name: "CAIRN_ONLINE_STORE", Redact: RedactURI, Doc: "Online store URI: embedded:///dir, dynamodb:///table?region=R[&endpoint=URL], redis://[:password@]host:port/db (the password is printed and logged masked). `cairn dev` defaults to an embedded store under its data directory."},
	{Name: "CAIRN_FEATURES", Default: "examples/features.yaml", Doc: "Path of the feature registry (YAML)."},
	{Name: "CAIRN_FEATURES_LOCK", Doc: "Path of the feature lock file (features.lock, written by `cairn features lock`): the DynamoDB store takes every feature's short id from it and never allocates one; every feature of the registry must be in it. Required with DYNAMODB_GLOBAL_TABLE_REGIONS; unset allocates ids at run time (docs/multi-region.md)."},
	{Name: "CAIRN_ADDR", Default: "127.0.0.1:8080", Doc: "HTTP listen address: the query server's API, or `cairn write`'s /healthz, /readyz and /metrics (give each process on a machine its own)."},
	{Name: "CAIRN_DATA_DIR", Default: "./cairn-data", Doc: "`cairn dev` only: directory of the embedded broker and store."},
	{Name: "CAIRN_MAX_BODY_BYTES", Default: "1048576", Doc: "Largest accepted HTTP request body, in bytes."},
	{Name: "CAIRN_SHUTDOWN_TIMEOUT", Default: "30s", Doc: "How long a stopping process waits for in-flight requests and writer batches."},
	{Name: "CAIRN_QUERY_TIMEOUT", Default: "1s", Doc: "Deadline of one online query: store reads, their retries and request racing stop at it, and each field not read by then answers null with a DEADLINE_EXCEEDED error (status 200)."},
	{Name: "CAIRN_HTTP_READ_HEADER_TIMEOUT", Default: "5s", Doc: "HTTP server: time allowed to read a request's line and headers, from its first byte (on a new connection, from its opening)."},
	{Name: "CAIRN_HTTP_READ_TIMEOUT", Default: "10s", Doc: "HTTP server: time allowed to read a request's body, from the end of its headers; a client sending its body slower is answered 408 and disconnected."},
	{Name: "CAIRN_HTTP_WRITE_TIMEOUT", Default: "30s", Doc: "HTTP server: time from the start of a request's handling (its body read) to the end of its response; more than CAIRN_QUERY_TIMEOUT (checked), and above CAIRN_KAFKA_PRODUCE_TIMEOUT so that a slow upload still gets its 503."},
	{Name: "CAIRN_HTTP_IDLE_TIMEOUT", Default: "120s", Doc: "HTTP server: how long an idle keep-alive connection stays open."},
	{Name: "CAIRN_API_KEYS_FILE", Doc: "YAML file of the query server's API keys: `keys: [{name, sha256, scopes}]`, each with the hex SHA-256 of its token (never the token) and scopes among query, upload, admin (`cairn keys new` makes one). Requests then need `Authorization: Bearer <token>` with the route's scope; reloaded on SIGHUP. See docs/security.md."},
	{Name: "CAIRN_API_AUTH", Default: "keys", Doc: "`keys`: `cairn serve` needs CAIRN_API_KEYS_FILE and refuses to start without it; `none`: serve the API without authentication, only behind something that authenticates for it. `cairn dev` runs without authentication unless CAIRN_API_KEYS_FILE is set."},
	{Name: "CAIRN_METRICS_REQUIRE_AUTH", Default: "false", Doc: "Make the query server's /metrics need an API key with the admin scope (needs CAIRN_API_KEYS_FILE); /healthz and /readyz stay open."},
	{Name: "CAIRN_UI_SOURCE", Default: "auto", Doc: "What /ui draws: auto (the fleet, from the per-minute rollups the writers' metrics consumers keep, once there are any; else this process's own metrics), fleet, or process."},
	{Name: "CAIRN_UI_SAMPLE_INTERVAL", Default: "5s", Doc: "Time between two samples of the query server's own metrics for the /ui page (kept for the last hour), and so the span of each point it draws when no fleet rollups are available."},
	{Name: "CAIRN_TLS_CERT_FILE", Doc: "PEM certificate chain (leaf first) of the HTTP listener of serve, write and dev; with CAIRN_TLS_KEY_FILE (both or neither) the listener serves TLS 1.2 or later only. Read at start (a pair that does not load stops the start) and again on SIGHUP: new connections get the new certificate; a reload that fails keeps the one in use and logs why. Unset: plain HTTP."},
	{Name: "CAIRN_TLS_KEY_FILE", Doc: "PEM private key of CAIRN_TLS_CERT_FILE's leaf certificate; reloaded with it on SIGHUP. Its contents are never printed or logged."},
	{Name: "CAIRN_HEALTH_PROBE_INTERVAL", Default: "5s", Doc: "Time between two health probes of the online store (a read of one reserved key); /healthz fails after CAIRN_HEALTH_FAILURE_THRESHOLD failed probes in a row and recovers after one success."},
	{Name: "CAIRN_HEALTH_PROBE_TIMEOUT", Default: "2s", Doc: "Time allowed to one health probe; at most CAIRN_HEALTH_PROBE_INTERVAL. Unset, it is 2s or the interval when that is shorter."},
	{Name: "CAIRN_HEALTH_FAILURE_THRESHOLD", Default: "3", Doc: "Failed probes in a row after which a check, and /healthz if the check is critical, is unhealthy."},
	{Name: "CAIRN_GC_HEAP_FLOOR_MIB", Default: "64", Doc: "Heap, in MiB, the Go garbage collector lets grow before collecting, however little is live: after each collection the GC percent is raised from GOGC's so that the next one comes at this size at the earliest (`cairn_gc_percent`). A query server without a cache keeps a few MiB live, and with Go's default alone collects every 100–200 ms under load, each time slowing the requests in flight; see [Garbage collection](#garbage-collection). 0 turns it off; GOMEMLIMIT still caps the heap, and GOGC=off turns the collector off."},

	{Name: "CAIRN_KAFKA_BROKERS", Doc: "Comma-separated Kafka bootstrap servers. Required by serve, write and topics."},
	{Name: "CAIRN_KAFKA_TLS", Default: "false", Doc: "Connect to Kafka over TLS (MSK: true), trusting the system roots unless CAIRN_KAFKA_TLS_CA_FILE is set."},
	{Name: "CAIRN_KAFKA_TLS_CA_FILE", Doc: "PEM bundle of the CAs that sign the brokers' certificates, trusted instead of the system roots (a private CA). Needs CAIRN_KAFKA_TLS=true; read at start-up."},
	{Name: "CAIRN_KAFKA_TLS_CERT_FILE", Doc: "PEM client certificate presented to brokers that require one (mutual TLS); set with CAIRN_KAFKA_TLS_KEY_FILE. Needs CAIRN_KAFKA_TLS=true; read at start-up."},
	{Name: "CAIRN_KAFKA_TLS_KEY_FILE", Doc: "PEM private key of CAIRN_KAFKA_TLS_CERT_FILE."},
	{Name: "CAIRN_KAFKA_SASL_MECHANISM", Default: "SCRAM-SHA-512", Doc: "SASL mechanism: SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN (used when a SASL user is set), or AWS_MSK_IAM (credentials from the AWS SDK's default chain, no user; needs TLS)."},
	{Name: "CAIRN_KAFKA_SASL_USERNAME", Doc: "SASL user; empty disables SASL (except AWS_MSK_IAM)."},
	{Name: "CAIRN_KAFKA_SASL_PASSWORD", Doc: "SASL password; or use CAIRN_KAFKA_SASL_PASSWORD_FILE, not both.", Secret: true},
	{Name: "CAIRN_KAFKA_SASL_PASSWORD_FILE", Doc: "File holding the SASL password (a mounted secret, such as an MSK SCRAM secret from AWS Secrets Manager); one trailing newline is ignored. Read at start-up."},
	{Name: "CAIRN_KAFKA_SASL_PLAIN_WITHOUT_TLS", Default: "false", Doc: "Allow SASL PLAIN without TLS, which sends the password in the clear: development only."},
	{Name: "CAIRN_KAFKA_PERSIST_TOPIC", Default: "cairn.persist", Doc: "Topic of uploads and cacheable query results."},
	{Name: "CAIRN_KAFKA_METRICS_TOPIC", Default: "cairn.metrics", Doc: "Topic of query metrics: one record per query server and interval (docs/metrics.md)."},
	{Name: "CAIRN_KAFKA_DEAD_LETTER_TOPIC", Default: "cairn.persist.dlq", Doc: "Topic where the writer sets aside records it cannot decode or store."},
	{Name: "CAIRN_KAFKA_WRITER_GROUP", Default: "cairn-writer", Doc: "Consumer group of the persistence writers."},
	{Name: "CAIRN_KAFKA_MAX_RECORD_BYTES", Default: "1000000", Doc: "Largest record produced; keep it under the brokers' message.max.bytes (1048588 by default). An upload is one record, accepted whole or not at all, so a larger upload is refused with REQUEST_TOO_LARGE."},
	{Name: "CAIRN_KAFKA_PRODUCE_TIMEOUT", Default: "10s", Doc: "How long an upload waits for Kafka to acknowledge its record before answering 503."},
	{Name: "CAIRN_KAFKA_PERSIST_BUFFER_RECORDS", Default: "10000", Doc: "Persistence records a query server holds waiting for Kafka's acknowledgement; an upload finding the buffer full answers 503 at once."},
	{Name: "CAIRN_KAFKA_PERSIST_BUFFER_BYTES", Default: "67108864", Doc: "Bytes of those records (64 MiB); at least CAIRN_KAFKA_MAX_RECORD_BYTES."},
	{Name: "CAIRN_KAFKA_RESULTS_BUFFER_RECORDS", Default: "10000", Doc: "Query-result records (values resolvers computed, one per entity) a query server holds for Kafka, in a producer of their own so that results never take the uploads' room; a result finding the buffer full is dropped and counted, and computed again at the next query."},
	{Name: "CAIRN_KAFKA_METRICS_BUFFER_RECORDS", Default: "1000", Doc: "Query metrics a query server holds for Kafka, in a producer of their own so that a slow metrics topic never delays uploads; a metric finding the buffer full is dropped and counted."},
	{Name: "CAIRN_KAFKA_METRICS_DELIVERY_TIMEOUT", Default: "5s", Doc: "How long a query metric may wait for Kafka before it is dropped and counted."},
	{Name: "CAIRN_KAFKA_SECONDARY_BROKERS", Doc: "Comma-separated bootstrap servers of the secondary Kafka cluster (MSK Replicator's target, docs/multi-region.md). Unset: no secondary, no failover."},
	{Name: "CAIRN_KAFKA_SECONDARY_TLS", Doc: "CAIRN_KAFKA_TLS of the secondary cluster. Unset: the primary's value (as for every CAIRN_KAFKA_SECONDARY_* security knob)."},
	{Name: "CAIRN_KAFKA_SECONDARY_TLS_CA_FILE", Doc: "CAIRN_KAFKA_TLS_CA_FILE of the secondary cluster. Unset: the primary's."},
	{Name: "CAIRN_KAFKA_SECONDARY_TLS_CERT_FILE", Doc: "CAIRN_KAFKA_TLS_CERT_FILE of the secondary cluster; set with CAIRN_KAFKA_SECONDARY_TLS_KEY_FILE. Unset: the primary's pair."},
	{Name: "CAIRN_KAFKA_SECONDARY_TLS_KEY_FILE", Doc: "CAIRN_KAFKA_TLS_KEY_FILE of the secondary cluster. Unset: the primary's."},
	{Name: "CAIRN_KAFKA_SECONDARY_SASL_MECHANISM", Doc: "CAIRN_KAFKA_SASL_MECHANISM of the secondary cluster. Unset: the primary's."},
	{Name: "CAIRN_KAFKA_SECONDARY_SASL_USERNAME", Doc: "CAIRN_KAFKA_SASL_USERNAME of the secondary cluster. Unset: the primary's user and password (a user set here takes its password from CAIRN_KAFKA_SECONDARY_SASL_PASSWORD or _FILE only)."},
	{Name: "CAIRN_KAFKA_SECONDARY_SASL_PASSWORD", Doc: "CAIRN_KAFKA_SASL_PASSWORD of the secondary cluster; or CAIRN_KAFKA_SECONDARY_SASL_PASSWORD_FILE, not both.", Secret: true},
	{Name: "CAIRN_KAFKA_SECONDARY_SASL_PASSWORD_FILE", Doc: "CAIRN_KAFKA_SASL_PASSWORD_FILE of the secondary cluster. Read at start-up."},
	{Name: "CAIRN_KAFKA_SECONDARY_SASL_PLAIN_WITHOUT_TLS", Doc: "CAIRN_KAFKA_SASL_PLAIN_WITHOUT_TLS of the secondary cluster. Unset: the primary's."},
	{Name: "CAIRN_KAFKA_SECONDARY_TOPIC_PREFIX", Doc: "Prefix of every topic name on the secondary cluster (persist, metrics, dead-letter): empty for MSK Replicator's IDENTICAL topic names, `<source alias>.` for PREFIXED_WITH_SOURCE_CLUSTER_ALIAS. Consumer group names are never prefixed."},
	{Name: "CAIRN_KAFKA_ACTIVE", Default: "primary", Doc: "Kafka cluster active at start: primary or secondary (needs CAIRN_KAFKA_SECONDARY_BROKERS). Switched at run time by POST /v1/admin/kafka/active or `cairn failover kafka`."},
	{Name: "CAIRN_KAFKA_FAILOVER_REWIND", Default: "5m", Doc: "Writers switching cluster start each partition from the group's replicated committed offset, or, where it is missing or older than the failover time minus this, from the first record at or after that time: replays are harmless (newest-wins writes)."},
	{Name: "CAIRN_KAFKA_AUTO_FAILOVER_AFTER", Default: "0", Doc: "Switch to the other cluster once the active one has been unreachable this long; 0 (off) leaves failover to an operator (docs/multi-region.md explains the trade-off)."},
	{Name: "CAIRN_ADMIN_TOKEN", Doc: "`cairn failover kafka`: API token with the admin scope sent to each target; or --token-file.", Secret: true},
	{Name: "CAIRN_METRICS_INTERVAL", Default: "10s", Doc: "Query servers send one metrics record per interval, with their query figures per namespace; a whole divisor of a minute (docs/metrics.md)."},
	{Name: "CAIRN_METRICS_GROUP", Default: "cairn-metrics", Doc: "Consumer group of the metrics consumers (`cairn write`, unless --metrics=false)."},
	{Name: "CAIRN_METRICS_RETENTION", Default: "24h", Doc: "How long the per-minute metrics rollups are kept in the online store (at least 1h)."},
	{Name: "CAIRN_TOPIC_PARTITIONS", Default: "12", Doc: "`cairn topics create`: partitions per topic. The metrics rollup reader reads one item per minute and partition of the metrics topic: keep it the metrics topic's partition count."},
	{Name: "CAIRN_TOPIC_REPLICATION_FACTOR", Default: "3", Doc: "`cairn topics create`: replication factor."},
	{Name: "CAIRN_TOPIC_MIN_INSYNC_REPLICAS", Default: "2", Doc: "`cairn topics create`: min.insync.replicas (acks=all needs this many replicas)."},
	{Name: "CAIRN_TOPIC_RETENTION", Default: "168h", Doc: "`cairn topics create`: retention, the replay window after a writer outage; the main driver of broker storage."},
	{Name: "CAIRN_TOPIC_CREATE_TIMEOUT", Default: "15s", Doc: "`cairn topics create` and `cairn dev`: how long topic creation may wait for the brokers before failing with the cause."},
	{Name: "CAIRN_STATUS_TIMEOUT", Default: "10s", Doc: "`cairn status`: how long it may wait for Kafka, the store and the rollups; a section without an answer by then says so."},

	{Name: "CAIRN_WRITER_MAX_BATCH_RECORDS", Default: "1000", Doc: "Most records the writer coalesces into one store write."},
	{Name: "CAIRN_WRITER_MAX_BACKOFF", Default: "30s", Doc: "Longest pause between the writer's attempts at a failing store write."},
	{Name: "CAIRN_WRITER_INSTANCE_ID", Default: "host name", Computed: hostName, Doc: "Static consumer-group membership of `cairn write`: a writer restarted with the same id takes its partitions back at once instead of after the session timeout. Stable across restarts, unique per writer; empty disables static membership. A writer stopped for good leaves its partitions idle for CAIRN_WRITER_SESSION_TIMEOUT (docs/queue.md)."},
	{Name: "CAIRN_WRITER_SESSION_TIMEOUT", Default: "30s", Doc: "How long the writers' group waits for a writer that stopped heartbeating (killed, or a static member gone) before moving its partitions; within the brokers' group.min/max.session.timeout.ms (6s..30m)."},
	{Name: "CAIRN_WRITER_STORE_WRITES", Default: "active", Doc: "`cairn write`: active consumes and writes the store; standby consumes and writes nothing, and is no member of its consumer group, until switched to active at failover. Standby is for the passive region of a DynamoDB global table only (docs/multi-region.md)."},
	{Name: "CAIRN_WRITER_HEALTH_WINDOW", Default: "15s", Doc: "`cairn write`: /healthz fails once store writes, or Kafka requests, have failed with no success in between for this long."},

	// The DynamoDB online store (docs/dynamodb.md), and the read-path
	// accelerators in front of any store that keep their DYNAMODB_* names.
	{Name: "CAIRN_BLOOM_NAMESPACES", Doc: `Bloom filters of present keys, per namespace: JSON [{"namespace": "user", "expected_keys": 1000000, "false_positive_rate": 0.01}] (docs/bloom.md). Unset: no filters.`},
	{Name: "CAIRN_BLOOM_LEASE", Default: "10s", Doc: "How long writers wait for a query server whose filter stopped reporting its position or stopped reading past their batch; that server renews its lease only while within a quarter of it of the topic's end, and stops answering from its filter half a lease after its last renewal. Query servers and writers must agree."},

	{Name: "CAIRN_REDIS_POOL_SIZE", Default: "10 × GOMAXPROCS", Computed: tenProcs, Doc: "Valkey/Redis connections per node, and as many again for reads of a single server (docs/redis.md)."},
	{Name: "CAIRN_REDIS_DIAL_TIMEOUT", Default: "1s", Doc: "Valkey/Redis: time to open a connection."},
	{Name: "CAIRN_REDIS_READ_TIMEOUT", Default: "1s", Doc: "Valkey/Redis: time to wait for a reply; bounds how long a query waits on an unresponsive server."},
	{Name: "CAIRN_REDIS_WRITE_TIMEOUT", Default: "1s", Doc: "Valkey/Redis: time to send a command."},
	{Name: "CAIRN_REDIS_MAX_RETRIES", Default: "2", Doc: "Valkey/Redis: retries of a failed command (8–512 ms backoff) before the error is returned."},

	{Name: "DYNAMODB_NUM_CLIENT_THREADS", Default: "2 × GOMAXPROCS", Computed: twiceProcs,
		Doc: "Most DynamoDB requests in flight at once (BatchGetItem, TransactWriteItems, UpdateItem, ...); an attempt holds a slot while on the wire, not while it backs off."},
	{Name: "DYNAMODB_NUM_CLIENT_CONNECTIONS", Default: "2 × GOMAXPROCS", Computed: twiceProcs,
		Doc: "HTTP connections to DynamoDB: most open, and most kept idle. Equal to or slightly above DYNAMODB_NUM_CLIENT_THREADS."},
	{Name: "DYNAMODB_NUM_SERDE_THREADS", Default: "GOMAXPROCS", Computed: procs,
		Doc: "Goroutines encoding and decoding items at once; this CPU work never holds a client thread."},
	{Name: "DYNAMODB_GETITEM_MIN_BATCH_SIZE", Default: "10",
		Doc: "Fewest keys per BatchGetItem sub-batch of a read (unless the read has fewer); 1 to 100, the protocol's limit."},
	{Name: "DYNAMODB_GETITEM_MIN_BATCH_CONCURRENCY", Default: "DYNAMODB_NUM_CLIENT_THREADS",
		Computed: clientThreads,
		Doc:      "Most sub-batches of one read in flight at once; lower it when many queries run concurrently, so each takes fewer, larger batches."},
	{Name: "DYNAMODB_CACHED_NAMESPACES",
		Doc: `Per-namespace LRU cache in front of the online store, JSON: [{"namespace": "user", "ttl_seconds": 86400, "max_lru_size": 10000}] (max_lru_size optional; every namespace is bounded in bytes by CAIRN_CACHE_MAX_BYTES). A cached read may be stale by up to ttl_seconds.`},
	{Name: "DYNAMODB_LRU_CACHE_CACHE_MISSES", Default: "true",
		Doc: "The namespace cache also remembers entities found absent; false reads the store again on every miss."},
	{Name: "CAIRN_CACHE_MAX_BYTES", Default: "268435456",
		Doc: "Bound on the estimated memory of each namespace in DYNAMODB_CACHED_NAMESPACES, in bytes (256 MiB); least recently used entities are evicted beyond it. Entities cached as absent get at most an eighth of it. max_lru_size, when set, bounds the number of entities as well; it does not lift this bound."},
	{Name: "DYNAMODB_BLOOM_FILTER_DEBUG_MODE", Default: "false",
		Doc: "Read the store even when the Bloom filter answers, and count disagreements; forgoes the filter's savings."},
	{Name: "DYNAMODB_ENABLE_REQUEST_RACING", Default: "false",
		Doc: "Send a read sub-batch again when it is unanswered after DYNAMODB_REQUEST_RACING_WAIT_TIME; the first answer wins, the other is cancelled. Requires the wait time."},
	{Name: "DYNAMODB_REQUEST_RACING_WAIT_TIME",
		Doc: "Milliseconds a read sub-batch runs before it is raced; about the p95 of BatchGetItem latency (cairn_dynamo_request_duration_seconds)."},
	{Name: "DYNAMODB_CHECK_TS_FOR_BULK_WRITES", Default: "true",
		Doc: "Writes of several entities are transactions that skip values older than the stored ones (2× write units); false writes them unconditionally, safe only if observed-at times only increase."},
	{Name: "DYNAMODB_ONLY_WRITE_NEWER_VALUES", Default: "true",
		Doc: "Single-entity writes are conditional updates that skip values older than the stored ones; false writes them unconditionally."},
	{Name: "DYNAMODB_TRANSACTION_WRITE_CONFLICT_MIN_RETRY_MILLIS", Default: "50",
		Doc: "First backoff, in milliseconds, after a write meets a transaction conflict; it doubles with each retry, with jitter."},
	{Name: "DYNAMODB_TRANSACTION_WRITE_CONFLICT_MAX_RETRIES", Default: "5",
		Doc: "Retries of a write meeting transaction conflicts before the error is returned."},
	{Name: "DYNAMODB_AGGREGATE_UPDATE_CACHE_SIZE", Default: "256",
		Doc: "Buckets of windowed features each writer keeps as it last wrote them (least recently updated evicted first), so that updating a hot bucket needs no read first; a bucket another writer updated since is caught by the bucket's version check and read again. Applies to every store; 0 turns the cache off. Metrics: cairn_dynamo_num_update_cache_{hits,misses,evictions}_total."},
	{Name: "DYNAMODB_MAX_RETRIES", Default: "12",
		Doc: "Retries of a DynamoDB request that was throttled, answered 5xx, timed out or lost its connection (and rounds of unprocessed keys without progress)."},
	{Name: "DYNAMODB_RETRY_SCALE_FACTOR", Default: "10",
		Doc: "Backoff unit, in milliseconds: retry k waits between factor × 2^(k-1) and factor × 2^k ms, at most 20 s."},
	{Name: "DYNAMODB_REQUEST_TIMEOUT_MS",
		Doc: "Bound on each attempt of a DynamoDB request, in milliseconds (an attempt over it is retried); unset keeps the AWS SDK's default, no bound."},
	{Name: "DYNAMODB_WARMUP_FQN_MAPPING", Default: "true", Doc: "Load the whole feature-name to short-id mapping at start; false loads each on first use."},
	{Name: "DYNAMODB_CREATE_TABLES_IF_NOT_EXISTS", Default: "false", Doc: "Create the table at start when it is missing (production tables come from Terraform)."},
	{Name: "DYNAMODB_GLOBAL_TABLE_REGIONS", Doc: "Comma-separated regions of a DynamoDB global table, this one among them: start checks the replicas and the NEW_AND_OLD_IMAGES stream, and requires CAIRN_FEATURES_LOCK. Unset: a table in one region."},
}

// Env is a view of the environment through the knob table.
type Env struct {
	lookup func(string) (string, bool)
	errs   []error
	// bad records the knobs already in errs: a knob read twice (by two
	// components) is reported once.
	bad map[string]bool
}

// Raw returns the variable name as the environment holds it, "" when it is
// unset: for the values the feature file names as ${NAME} (a resolver's
// URL, headers, DSN), which are the user's, not knobs.
func (e *Env) Raw(name string) string {
	v, _ := e.lookup(name)
	return v
}

// FromOS reads the process environment.
func FromOS() *Env { return &Env{lookup: os.LookupEnv} }

// FromMap reads a fixed map, for tests.
func FromMap(m map[string]string) *Env {
	return &Env{lookup: func(k string) (string, bool) { v, ok := m[k]; return v, ok }}
}

func knob(name string) Knob {
	for _, k := range Knobs {
		if k.Name == name {
			return k
		}
	}
	panic("config: unknown knob " + name) // a programming error caught by every test that loads config
}

// Value returns the effective value of a knob and whether it came from the
// environment.
func (e *Env) Value(name string) (string, bool) {
	k := knob(name)
	if v, ok := e.lookup(name); ok && v != "" {
		return v, true
	}
	return e.defaultValue(k), false
}

// defaultValue returns the value of k's default, computed if need be.
func (e *Env) defaultValue(k Knob) string {
	if k.Computed != nil {
		return k.Computed(e)
	}
	return k.Default
}

// String returns a knob's effective value.
func (e *Env) String(name string) string { v, _ := e.Value(name); return v }

// Int returns a knob as an integer, recording an error if it is not one
// (the default's value is then returned, so that the one problem is not
// reported again by a check of the value).
func (e *Env) Int(name string) int {
	v := e.String(name)
	n, err := strconv.Atoi(v)
	if err != nil {
		e.fail(name, fmt.Errorf("%s=%q: want an integer", name, v))
		n, _ = strconv.Atoi(e.defaultValue(knob(name)))
	}
	return n
}

// Bool returns a knob as a boolean, recording an error if it is not one
// (and returning the default's value).
func (e *Env) Bool(name string) bool {
	v := e.String(name)
	b, err := strconv.ParseBool(v)
	if err != nil {
		e.fail(name, fmt.Errorf("%s=%q: want true or false", name, v))
		b, _ = strconv.ParseBool(e.defaultValue(knob(name)))
	}
	return b
}

// Duration returns a knob as a duration, recording an error if it is not
// one (and returning the default's value).
func (e *Env) Duration(name string) time.Duration {
	v := e.String(name)
	d, err := time.ParseDuration(v)
	if err != nil {
		e.fail(name, fmt.Errorf("%s=%q: want a duration such as 10s", name, v))
		d, _ = time.ParseDuration(e.defaultValue(knob(name)))
	}
	return d
}

// Millis returns a knob given in whole milliseconds as a duration, and
// whether it is set: an unset knob without a default gives (0, false).
// A value that is not an integer is recorded as an error.
func (e *Env) Millis(name string) (time.Duration, bool) {
	v := e.String(name)
	if v == "" {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n > math.MaxInt64/int64(time.Millisecond) || n < math.MinInt64/int64(time.Millisecond) {
		e.fail(name, fmt.Errorf("%s=%q: want a whole number of milliseconds", name, v))
		return 0, false
	}
	return time.Duration(n) * time.Millisecond, true
}

// List returns a comma-separated knob as its non-empty elements.
func (e *Env) List(name string) []string {
	var out []string
	for _, s := range strings.Split(e.String(name), ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// fail records that knob name's value is malformed, once per knob.
func (e *Env) fail(name string, err error) {
	if e.bad[name] {
		return
	}
	if e.bad == nil {
		e.bad = map[string]bool{}
	}
	e.bad[name] = true
	e.errs = append(e.errs, err)
}

// Err joins every problem met while reading knobs.
func (e *Env) Err() error { return errors.Join(e.errs...) }

// Print writes every knob with its effective value and source: a secret
// knob that is set shows "(set)", never its value, and a URI its password
// masked. A computed default shows its value, and its computation in the
// source column.
func (e *Env) Print(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tVALUE\tSOURCE\tMEANING")
	for _, k := range Knobs {
		v, fromEnv := e.Value(k.Name)
		src := "default"
		switch {
		case fromEnv:
			src = "environment"
		case k.Computed != nil:
			src = "default (" + k.Default + ")"
		}
		switch {
		case k.Secret && v != "":
			v = "(set)"
		case k.Redact != nil && v != "":
			v = k.Redact(v)
		case v == "":
			v = "(unset)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", k.Name, v, src, k.Doc)
	}
	return tw.Flush()
}

// RedactURI returns uri with the password of its user information, if it
// has one, replaced by "xxxxx" (as url.URL.Redacted does), also when uri does
// not parse: it is what messages and logs show of a URI that may carry
// credentials. Whatever lies between the first "//" and the last "@" is
// taken for user information, so that a password with an unescaped "/",
// "?", "#" or "@" is masked whole.
func RedactURI(uri string) string {
	i := strings.Index(uri, "//")
	if i < 0 {
		return uri
	}
	rest := uri[i+2:]
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return uri
	}
	user, _, hasPassword := strings.Cut(rest[:at], ":")
	if !hasPassword {
		return uri
	}
	return uri[:i+2] + user + ":xxxxx" + rest[at:]
}
