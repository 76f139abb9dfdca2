package dynamo

import (
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestParseURI(t *testing.T) {
	tests := []struct {
		uri     string
		want    Config // Table, Region, Endpoint compared
		wantErr string // substring of the error; "" for none
	}{
		{uri: "dynamodb:///features", want: Config{Table: "features"}},
		{uri: "dynamodb:///cairn-prod.v2_x?region=eu-west-1", want: Config{Table: "cairn-prod.v2_x", Region: "eu-west-1"}},
		{
			uri:  "dynamodb:///t12?region=us-east-1&endpoint=http://127.0.0.1:5055",
			want: Config{Table: "t12", Region: "us-east-1", Endpoint: "http://127.0.0.1:5055"},
		},
		{
			uri:  "dynamodb:///t12?endpoint=https%3A%2F%2Fvpce.example.com%2F",
			want: Config{Table: "t12", Endpoint: "https://vpce.example.com/"},
		},
		{uri: "dynamodb:///", wantErr: "no table name"},
		{uri: "dynamodb://", wantErr: "no table name"},
		{uri: "dynamodb://features", wantErr: `unexpected host "features"`},
		{uri: "dynamodb://features/x", wantErr: "the table goes in the path"},
		{uri: "redis:///features", wantErr: `scheme "redis"`},
		{uri: "dynamodb:///a/b", wantErr: "contains a slash"},
		{uri: "dynamodb:///ab", wantErr: `table "ab"`},
		{uri: "dynamodb:///bad$name", wantErr: `table "bad$name"`},
		{uri: "dynamodb:///t12?region=US%20East", wantErr: `region "US East"`},
		{uri: "dynamodb:///t12?endpoint=127.0.0.1:5055", wantErr: `endpoint "127.0.0.1:5055"`},
		{uri: "dynamodb:///t12?endpoint=ftp://x", wantErr: "want an http:// or https:// URL"},
		{uri: "dynamodb:///t12?region=us-east-1&region=us-west-2", wantErr: `parameter "region" given 2 times`},
		{uri: "dynamodb:///t12?regoin=us-east-1&zz=1", wantErr: "unknown parameter(s) regoin, zz"},
		{uri: "dynamodb:///t12#frag", wantErr: "unexpected fragment"},
		{uri: "dynamodb:///t12?%zz", wantErr: "query"},
	}
	for _, tc := range tests {
		t.Run(tc.uri, func(t *testing.T) {
			got, err := ParseURI(tc.uri)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := DefaultConfig()
			want.Table, want.Region, want.Endpoint = tc.want.Table, tc.want.Region, tc.want.Endpoint
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got %+v, want %+v", got, want)
			}
		})
	}
}

// The defaults are the documented ones of the DYNAMODB_* knobs.
func TestDefaultConfig(t *testing.T) {
	procs := runtime.GOMAXPROCS(0)
	want := Config{
		NumClientThreads:                   2 * procs,
		NumClientConnections:               2 * procs,
		NumSerdeThreads:                    procs,
		GetItemMinBatchSize:                10,
		GetItemMinBatchConcurrency:         0, // follows NumClientThreads
		EnableRequestRacing:                false,
		RequestRacingWaitTime:              0,
		CheckTSForBulkWrites:               true,
		OnlyWriteNewerValues:               true,
		TransactionWriteConflictMinRetry:   50 * time.Millisecond,
		TransactionWriteConflictMaxRetries: 5,
		AggregateUpdateCacheSize:           256,
		MaxRetries:                         12,
		RetryScaleFactor:                   10,
		RequestTimeout:                     0,
		WarmupFQNMapping:                   true,
		CreateTableIfNotExists:             false,
	}
	if got := DefaultConfig(); !reflect.DeepEqual(got, want) {
		t.Errorf("DefaultConfig() =\n%+v\nwant\n%+v", got, want)
	}
	c := DefaultConfig()
	if got := c.batchConcurrency(); got != 2*procs {
		t.Errorf("default batch concurrency %d, want NumClientThreads %d", got, 2*procs)
	}
	c.NumClientThreads = 32
	if got := c.batchConcurrency(); got != 32 {
		t.Errorf("batch concurrency %d after NumClientThreads = 32, want 32", got)
	}
	c.GetItemMinBatchConcurrency = 3
	if got := c.batchConcurrency(); got != 3 {
		t.Errorf("batch concurrency %d, want the 3 set", got)
	}
	c.Table = "features"
	if err := c.Validate(); err != nil {
		t.Errorf("defaults with a table do not validate: %v", err)
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	c := Config{
		Region: "Nowhere", Endpoint: "nope", MaxRetries: -1,
		NumClientThreads: 0, NumClientConnections: -2, NumSerdeThreads: 0,
		GetItemMinBatchSize: 101, GetItemMinBatchConcurrency: -1,
		EnableRequestRacing:                true,
		TransactionWriteConflictMinRetry:   -time.Millisecond,
		TransactionWriteConflictMaxRetries: -1,
		AggregateUpdateCacheSize:           -5,
		RetryScaleFactor:                   0,
		RequestTimeout:                     -time.Second,
	}
	err := c.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		"table is required", `region "Nowhere"`, `endpoint "nope"`, "max retries -1",
		"client threads 0 (DYNAMODB_NUM_CLIENT_THREADS)",
		"client connections -2 (DYNAMODB_NUM_CLIENT_CONNECTIONS)",
		"serde threads 0 (DYNAMODB_NUM_SERDE_THREADS)",
		"get-item min batch size 101 (DYNAMODB_GETITEM_MIN_BATCH_SIZE): want 1 to 100",
		"get-item min batch concurrency -1 (DYNAMODB_GETITEM_MIN_BATCH_CONCURRENCY)",
		"DYNAMODB_ENABLE_REQUEST_RACING) without a wait time",
		"DYNAMODB_TRANSACTION_WRITE_CONFLICT_MIN_RETRY_MILLIS",
		"DYNAMODB_TRANSACTION_WRITE_CONFLICT_MAX_RETRIES",
		"aggregate update cache size -5",
		"retry scale factor 0 (DYNAMODB_RETRY_SCALE_FACTOR)",
		"request timeout -1s (DYNAMODB_REQUEST_TIMEOUT_MS)",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}

	c = DefaultConfig()
	c.Table = "features"
	c.EnableRequestRacing = true
	c.RequestRacingWaitTime = 12 * time.Millisecond
	if err := c.Validate(); err != nil {
		t.Errorf("racing with a wait time: %v", err)
	}
}
