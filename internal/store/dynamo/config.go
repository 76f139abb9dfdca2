package dynamo

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Config configures a [Store]. Start from [DefaultConfig] (or [ParseURI],
// which does); a field's zero value means what it says (zero retries, no
// warmup), not "the default", unless its comment says otherwise.
//
// Each tuning field is read from the environment variable its comment
// names (by package config, through cmd/cairn); their meanings and defaults
// are those of the DynamoDB online store's established knobs.
type Config struct {
	// Table is the table holding every namespace's entities and the
	// feature-name mapping. Required.
	Table string

	// Region is the table's AWS region. When empty, the AWS SDK's usual
	// resolution applies (AWS_REGION, then the shared config profile), and
	// Open fails if that finds none: cairn never guesses a region, since a
	// guessed one would read or create a table somewhere unintended.
	// Default: empty.
	Region string

	// Endpoint, when set, replaces the regional DynamoDB endpoint, as in
	// http://127.0.0.1:5055 for moto or DynamoDB Local. If the environment
	// then holds no AWS credentials (no access keys, web identity, container
	// credentials or profile), the static credentials "test"/"test" are used,
	// which local servers accept. Default: empty.
	Endpoint string

	// NumClientThreads bounds the requests to DynamoDB in flight at once,
	// across every call on the Store: each attempt of a BatchGetItem,
	// TransactWriteItems, UpdateItem (or any other request) holds one of
	// these slots while it is on the wire, and not while it backs off
	// before a retry. Raise it for read-heavy workloads that wait on I/O.
	// Environment: DYNAMODB_NUM_CLIENT_THREADS. Default: 2 × GOMAXPROCS.
	NumClientThreads int

	// NumClientConnections is the HTTP connection pool: the most
	// connections open to the DynamoDB endpoint, and the most kept idle
	// for reuse. Best equal to or slightly above NumClientThreads.
	// Environment: DYNAMODB_NUM_CLIENT_CONNECTIONS. Default: 2 × GOMAXPROCS.
	NumClientConnections int

	// NumSerdeThreads bounds the goroutines encoding values into items and
	// decoding items into values at once. This CPU work never holds one of
	// the NumClientThreads slots. Environment: DYNAMODB_NUM_SERDE_THREADS.
	// Default: GOMAXPROCS.
	NumSerdeThreads int

	// GetItemMinBatchSize is the fewest keys a BatchGetItem sub-batch of a
	// read carries, unless the read has fewer keys (the split is written
	// out in docs/dynamodb.md). Batches smaller than about 10 keys are no
	// faster than a 10-key batch, so splitting finer only adds requests.
	// 1 to 100.
	// Environment: DYNAMODB_GETITEM_MIN_BATCH_SIZE. Default: 10.
	GetItemMinBatchSize int

	// GetItemMinBatchConcurrency is the most sub-batches of one read in
	// flight at once. Lower it when many reads run concurrently, so that
	// each is served by fewer, larger batches. Zero means NumClientThreads.
	// Environment: DYNAMODB_GETITEM_MIN_BATCH_CONCURRENCY.
	// Default: 0, that is NumClientThreads.
	GetItemMinBatchConcurrency int

	// EnableRequestRacing sends a read sub-batch a second time when it is
	// still unanswered after RequestRacingWaitTime; the first answer wins
	// and the other request is cancelled. It needs RequestRacingWaitTime.
	// Environment: DYNAMODB_ENABLE_REQUEST_RACING. Default: false.
	EnableRequestRacing bool

	// RequestRacingWaitTime is how long a read sub-batch runs alone before
	// it is raced; about the 95th percentile of BatchGetItem latency
	// (cairn_dynamo_request_duration_seconds) is best. Environment:
	// DYNAMODB_REQUEST_RACING_WAIT_TIME, in milliseconds. Default: unset
	// (required when racing is enabled).
	RequestRacingWaitTime time.Duration

	// CheckTSForBulkWrites makes a Write of more than one entity a set of
	// TransactWriteItems requests that skip, per feature, any value older
	// than the stored one (at twice the write units of plain writes). When
	// false, such writes are unconditional UpdateItems: safe only if every
	// writer's observed-at times for an entity only ever increase.
	// Environment: DYNAMODB_CHECK_TS_FOR_BULK_WRITES. Default: true.
	CheckTSForBulkWrites bool

	// OnlyWriteNewerValues makes a Write of one entity a conditional
	// UpdateItem that skips, per feature, any value older than the stored
	// one. When false, the update is unconditional: safe only if every
	// writer's observed-at times only ever increase. Environment:
	// DYNAMODB_ONLY_WRITE_NEWER_VALUES. Default: true.
	OnlyWriteNewerValues bool

	// TransactionWriteConflictMinRetry is the first backoff after a write
	// fails with a transaction conflict (another transaction holds the
	// item); each further retry doubles it, with jitter (the formula is in
	// docs/dynamodb.md). Environment:
	// DYNAMODB_TRANSACTION_WRITE_CONFLICT_MIN_RETRY_MILLIS, in
	// milliseconds. Default: 50 ms.
	TransactionWriteConflictMinRetry time.Duration

	// TransactionWriteConflictMaxRetries is how many times a write failing
	// with a transaction conflict is retried before the error is returned.
	// Environment: DYNAMODB_TRANSACTION_WRITE_CONFLICT_MAX_RETRIES.
	// Default: 5.
	TransactionWriteConflictMaxRetries int

	// AggregateUpdateCacheSize is reserved for the in-memory cache, in
	// entries, of materialized aggregation buckets of windowed features.
	// cairn does not materialize windowed aggregations yet, so it has no
	// effect; it is validated so that a value set today keeps working.
	// Environment: DYNAMODB_AGGREGATE_UPDATE_CACHE_SIZE. Default: 256.
	AggregateUpdateCacheSize int

	// MaxRetries is how many times a request failing with a retryable
	// error (throttling, a 5xx answer, a timed-out attempt, a dropped
	// connection) is retried before the error is returned, with the
	// backoff of RetryScaleFactor. It also bounds the rounds without
	// progress of retrying keys BatchGetItem left unprocessed.
	// Environment: DYNAMODB_MAX_RETRIES. Default: 12.
	MaxRetries int

	// RetryScaleFactor scales the exponential backoff between retries, in
	// milliseconds: retry k waits between RetryScaleFactor × 2^(k-1) and
	// RetryScaleFactor × 2^k ms, at most 20 s (docs/dynamodb.md). Higher
	// values spread retries out under sustained throttling, at the cost of
	// latency. At least 1. Environment: DYNAMODB_RETRY_SCALE_FACTOR.
	// Default: 10.
	RetryScaleFactor int

	// RequestTimeout bounds each attempt of a request (not the attempts and
	// backoffs together); an attempt timing out is retried like a 5xx
	// answer. Zero leaves the AWS SDK's default: no bound but the
	// connection's dial and TLS handshake timeouts. Environment:
	// DYNAMODB_REQUEST_TIMEOUT_MS, in milliseconds. Default: unset.
	RequestTimeout time.Duration

	// WarmupFQNMapping makes Open load the whole feature-name mapping, so
	// the first reads and writes pay nothing for it. When false, it is
	// loaded on first use. Environment: DYNAMODB_WARMUP_FQN_MAPPING.
	// Default: true.
	WarmupFQNMapping bool

	// CreateTableIfNotExists makes Open create the table (on-demand
	// capacity, keys pk and sk) when it does not exist. Production tables
	// are better provisioned with the rest of the infrastructure.
	// Environment: DYNAMODB_CREATE_TABLES_IF_NOT_EXISTS. Default: false.
	CreateTableIfNotExists bool

	// GlobalTableRegions, when not empty, declares the table a DynamoDB
	// global table replicated in these regions, Region among them: Open
	// then checks that DescribeTable shows a replica in every other one
	// and a stream of new and old images, naming what is missing, and
	// requires FeatureIDs, since ids allocated at run time are not safe
	// across regions (docs/multi-region.md, DynamoDB Global Tables). Environment:
	// DYNAMODB_GLOBAL_TABLE_REGIONS, comma-separated. Default: empty, a
	// table in one region.
	GlobalTableRegions []string

	// FeatureIDs, when set, is the feature lock file: the Store takes every
	// short id from it and never allocates one, and Open fails if the
	// table's mapping disagrees with it. Required with GlobalTableRegions.
	// The process reads it from the file CAIRN_FEATURES_LOCK names.
	// Default: nil, ids allocated at run time from the table's counter.
	FeatureIDs *LockFile
}

// Defaults of the Config fields that are not computed from GOMAXPROCS.
const (
	DefaultGetItemMinBatchSize                = 10
	DefaultTransactionWriteConflictMinRetry   = 50 * time.Millisecond
	DefaultTransactionWriteConflictMaxRetries = 5
	DefaultAggregateUpdateCacheSize           = 256
	DefaultMaxRetries                         = 12
	DefaultRetryScaleFactor                   = 10
)

// Bounds of Config fields, beyond which a value is surely a mistake.
const (
	// maxMaxRetries bounds MaxRetries and TransactionWriteConflictMaxRetries:
	// with backoff capped at 20 seconds, more retries than this would hold
	// a request for over half an hour.
	maxMaxRetries = 100
	// maxPool bounds the pools: threads, connections, concurrency.
	maxPool = 4096
	// maxRetryScaleFactor is a minute, in milliseconds.
	maxRetryScaleFactor = 60_000
	// maxDuration bounds the durations of Config.
	maxDuration = time.Hour
)

// DefaultConfig returns a Config with every default filled in and no table.
// The pools follow GOMAXPROCS at the time of the call.
func DefaultConfig() Config {
	procs := runtime.GOMAXPROCS(0)
	return Config{
		NumClientThreads:                   2 * procs,
		NumClientConnections:               2 * procs,
		NumSerdeThreads:                    procs,
		GetItemMinBatchSize:                DefaultGetItemMinBatchSize,
		CheckTSForBulkWrites:               true,
		OnlyWriteNewerValues:               true,
		TransactionWriteConflictMinRetry:   DefaultTransactionWriteConflictMinRetry,
		TransactionWriteConflictMaxRetries: DefaultTransactionWriteConflictMaxRetries,
		AggregateUpdateCacheSize:           DefaultAggregateUpdateCacheSize,
		MaxRetries:                         DefaultMaxRetries,
		RetryScaleFactor:                   DefaultRetryScaleFactor,
		WarmupFQNMapping:                   true,
	}
}

// batchConcurrency returns the effective GetItemMinBatchConcurrency.
func (c Config) batchConcurrency() int {
	if c.GetItemMinBatchConcurrency == 0 {
		return c.NumClientThreads
	}
	return c.GetItemMinBatchConcurrency
}

// tableNameRE is DynamoDB's rule for table names.
var tableNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{3,255}$`)

// regionRE accepts the shape of AWS region names (us-east-1, local).
var regionRE = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)

// Validate reports every problem with c at once. Each names the
// environment variable of the field concerned.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("dynamo: "+format, args...)) }
	switch {
	case c.Table == "":
		bad("table is required")
	case !tableNameRE.MatchString(c.Table):
		bad("table %q: want 3 to 255 characters from A-Z a-z 0-9 _ . -", c.Table)
	}
	if c.Region != "" && !regionRE.MatchString(c.Region) {
		bad("region %q: want a region name such as us-east-1", c.Region)
	}
	if c.Endpoint != "" {
		if err := checkEndpoint(c.Endpoint); err != nil {
			bad("endpoint %q: %v", c.Endpoint, err)
		}
	}
	inRange := func(what, env string, v, lo, hi int) {
		if v < lo || v > hi {
			bad("%s %d (DYNAMODB_%s): want %d to %d", what, v, env, lo, hi)
		}
	}
	inRange("client threads", "NUM_CLIENT_THREADS", c.NumClientThreads, 1, maxPool)
	inRange("client connections", "NUM_CLIENT_CONNECTIONS", c.NumClientConnections, 1, maxPool)
	inRange("serde threads", "NUM_SERDE_THREADS", c.NumSerdeThreads, 1, maxPool)
	inRange("get-item min batch size", "GETITEM_MIN_BATCH_SIZE", c.GetItemMinBatchSize, 1, batchGetMaxKeys)
	inRange("get-item min batch concurrency", "GETITEM_MIN_BATCH_CONCURRENCY", c.GetItemMinBatchConcurrency, 0, maxPool)
	inRange("transaction write conflict max retries", "TRANSACTION_WRITE_CONFLICT_MAX_RETRIES", c.TransactionWriteConflictMaxRetries, 0, maxMaxRetries)
	inRange("aggregate update cache size", "AGGREGATE_UPDATE_CACHE_SIZE", c.AggregateUpdateCacheSize, 0, math.MaxInt32)
	inRange("max retries", "MAX_RETRIES", c.MaxRetries, 0, maxMaxRetries)
	inRange("retry scale factor", "RETRY_SCALE_FACTOR", c.RetryScaleFactor, 1, maxRetryScaleFactor)
	duration := func(what, env string, d time.Duration) {
		if d < 0 || d > maxDuration {
			bad("%s %v (DYNAMODB_%s): want 0 to %v", what, d, env, maxDuration)
		}
	}
	duration("request racing wait time", "REQUEST_RACING_WAIT_TIME", c.RequestRacingWaitTime)
	duration("transaction write conflict min retry", "TRANSACTION_WRITE_CONFLICT_MIN_RETRY_MILLIS", c.TransactionWriteConflictMinRetry)
	duration("request timeout", "REQUEST_TIMEOUT_MS", c.RequestTimeout)
	seen := map[string]bool{}
	for _, r := range c.GlobalTableRegions {
		switch {
		case !regionRE.MatchString(r):
			bad("global table region %q (DYNAMODB_GLOBAL_TABLE_REGIONS): want a region name such as us-east-1", r)
		case seen[r]:
			bad("global table region %q (DYNAMODB_GLOBAL_TABLE_REGIONS) listed twice", r)
		}
		seen[r] = true
	}
	if len(c.GlobalTableRegions) > 0 {
		if c.FeatureIDs == nil {
			bad("a global table (DYNAMODB_GLOBAL_TABLE_REGIONS=%s) needs the feature lock file: set CAIRN_FEATURES_LOCK "+
				"(ids allocated at run time can differ between regions)", strings.Join(c.GlobalTableRegions, ","))
		}
		if len(c.GlobalTableRegions) < 2 {
			bad("global table regions %q (DYNAMODB_GLOBAL_TABLE_REGIONS): want this region and at least one replica region",
				strings.Join(c.GlobalTableRegions, ","))
		}
		if c.Region != "" && !seen[c.Region] {
			bad("region %s is not among the global table regions %s (DYNAMODB_GLOBAL_TABLE_REGIONS)",
				c.Region, strings.Join(c.GlobalTableRegions, ","))
		}
	}
	if c.EnableRequestRacing && c.RequestRacingWaitTime <= 0 {
		bad("request racing is enabled (DYNAMODB_ENABLE_REQUEST_RACING) without a wait time: " +
			"set DYNAMODB_REQUEST_RACING_WAIT_TIME to about the p95 of BatchGetItem latency, in milliseconds")
	}
	return errors.Join(errs...)
}

func checkEndpoint(s string) error {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return errors.New("not a URL")
	case u.Scheme != "http" && u.Scheme != "https":
		return errors.New("want an http:// or https:// URL")
	case u.Host == "":
		return errors.New("no host")
	}
	return nil
}

// URIScheme is the scheme of a DynamoDB store URI.
const URIScheme = "dynamodb"

// ParseURI parses a store URI of the form
//
//	dynamodb:///table-name?region=us-east-1&endpoint=http://127.0.0.1:5055
//
// into DefaultConfig with Table, Region and Endpoint set. The table is
// required; region and endpoint are optional (see Config). Errors name the
// part of the URI that is wrong. The result is validated.
func ParseURI(uri string) (Config, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return Config{}, fmt.Errorf("dynamo: store URI %q: %w", uri, err)
	}
	if u.Scheme != URIScheme {
		return Config{}, fmt.Errorf("dynamo: store URI %q: scheme %q, want %s:///table-name", uri, u.Scheme, URIScheme)
	}
	if u.User != nil || u.Host != "" {
		return Config{}, fmt.Errorf("dynamo: store URI %q: unexpected host %q; the table goes in the path, as in %s:///%s",
			uri, u.Host, URIScheme, u.Host)
	}
	if u.Fragment != "" {
		return Config{}, fmt.Errorf("dynamo: store URI %q: unexpected fragment #%s", uri, u.Fragment)
	}
	c := DefaultConfig()
	c.Table = strings.TrimPrefix(u.Path, "/")
	if c.Table == "" {
		return Config{}, fmt.Errorf("dynamo: store URI %q: no table name; want %s:///table-name", uri, URIScheme)
	}
	if strings.Contains(c.Table, "/") {
		return Config{}, fmt.Errorf("dynamo: store URI %q: table %q contains a slash", uri, c.Table)
	}
	query, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return Config{}, fmt.Errorf("dynamo: store URI %q: query: %w", uri, err)
	}
	var unknown []string
	for name, vals := range query {
		if len(vals) != 1 {
			return Config{}, fmt.Errorf("dynamo: store URI %q: parameter %q given %d times", uri, name, len(vals))
		}
		switch name {
		case "region":
			c.Region = vals[0]
		case "endpoint":
			c.Endpoint = vals[0]
		default:
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return Config{}, fmt.Errorf("dynamo: store URI %q: unknown parameter(s) %s (known: region, endpoint)",
			uri, strings.Join(unknown, ", "))
	}
	if err := c.Validate(); err != nil {
		return Config{}, err // each problem names the part of the URI it concerns
	}
	return c, nil
}
