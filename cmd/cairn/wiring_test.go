package main

import (
	"context"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cairnfs/cairn/internal/config"
	"github.com/cairnfs/cairn/internal/store/dynamo"
)

// Unset knobs give the DynamoDB store its documented defaults.
func TestDynamoConfigDefaults(t *testing.T) {
	got, err := dynamoConfig(config.FromMap(nil), "dynamodb:///features?region=eu-west-1")
	if err != nil {
		t.Fatal(err)
	}
	want := dynamo.DefaultConfig()
	want.Table, want.Region = "features", "eu-west-1"
	// The knob's default is computed: the client threads.
	want.GetItemMinBatchConcurrency = 2 * runtime.GOMAXPROCS(0)
	if got != want {
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
	})
	got, err := dynamoConfig(env, "dynamodb:///features?region=us-east-1&endpoint=http://127.0.0.1:5055")
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
	if got != want {
		t.Errorf("got\n%+v\nwant\n%+v", got, want)
	}
}

// Bad values stop the start with one error naming every problem.
func TestDynamoConfigEveryProblem(t *testing.T) {
	env := config.FromMap(map[string]string{
		"DYNAMODB_NUM_CLIENT_THREADS":     "many",
		"DYNAMODB_GETITEM_MIN_BATCH_SIZE": "0",
		"DYNAMODB_ENABLE_REQUEST_RACING":  "true",
		"DYNAMODB_REQUEST_TIMEOUT_MS":     "2s",
		"DYNAMODB_MAX_RETRIES":            "-3",
	})
	_, err := dynamoConfig(env, "dynamodb:///features")
	for _, want := range []string{
		`DYNAMODB_NUM_CLIENT_THREADS="many": want an integer`,
		"get-item min batch size 0 (DYNAMODB_GETITEM_MIN_BATCH_SIZE)",
		"DYNAMODB_REQUEST_RACING_WAIT_TIME",
		`DYNAMODB_REQUEST_TIMEOUT_MS="2s"`,
		"max retries -3",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}

	// A bad URI and a bad knob: both reported.
	env = config.FromMap(map[string]string{"DYNAMODB_WARMUP_FQN_MAPPING": "sometimes"})
	_, err = dynamoConfig(env, "dynamodb://features")
	for _, want := range []string{`unexpected host "features"`, "DYNAMODB_WARMUP_FQN_MAPPING"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
}

// Every bad knob is reported at start, once, in one message, before
// anything is opened.
func TestPreflightReportsEveryProblemOnce(t *testing.T) {
	env := config.FromMap(map[string]string{
		"DYNAMODB_NUM_CLIENT_THREADS":    "-1",
		"DYNAMODB_ENABLE_REQUEST_RACING": "true",
		"DYNAMODB_CACHED_NAMESPACES":     `[{"namespace": "user"`,
		"CAIRN_BLOOM_NAMESPACES":         `[{"namespace": "user", "false_positive_rate": 3}]`,
		"CAIRN_WRITER_MAX_BATCH_RECORDS": "lots",
	})
	err := run(context.Background(), []string{"serve", "--features", "../../examples/features.yaml", "--brokers", "127.0.0.1:1",
		"--store", "dynamodb:///features?region=us-east-1"}, env, io.Discard, io.Discard)
	if err == nil {
		t.Fatal("serve started with bad knobs")
	}
	msg := err.Error()
	for _, want := range []string{"DYNAMODB_NUM_CLIENT_THREADS", "DYNAMODB_REQUEST_RACING_WAIT_TIME", "DYNAMODB_CACHED_NAMESPACES", "false_positive_rate 3"} {
		if strings.Count(msg, want) == 0 {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if strings.Count(msg, `"-1"`) > 1 {
		t.Errorf("a problem is reported twice:\n%s", msg)
	}
	err = run(context.Background(), []string{"write", "--features", "../../examples/features.yaml", "--brokers", "127.0.0.1:1",
		"--store", "dynamodb:///features?region=us-east-1"}, env, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "CAIRN_WRITER_MAX_BATCH_RECORDS") {
		t.Errorf("write: %v", err)
	}
}
