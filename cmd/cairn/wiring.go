package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairnfs/cairn/internal/config"
	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/queue"
	"github.com/cairnfs/cairn/internal/store"
	"github.com/cairnfs/cairn/internal/store/dynamo"
	"github.com/cairnfs/cairn/internal/store/embedded"
	"github.com/cairnfs/cairn/internal/store/redis"
)

// onlineStore is what the commands need of a store: the query engine reads
// it, the writer writes it, and the command closes it.
type onlineStore interface {
	Read(ctx context.Context, ns *feature.Namespace, keys []string, feats []*feature.Feature) ([]store.Row, error)
	Write(ctx context.Context, writes []store.EntityWrite) error
	Close() error
}

// openStore opens the store a URI names. createTable makes a missing
// DynamoDB table be created unless the environment says otherwise (`cairn
// dev` sets it so that the demo runs against an empty local endpoint).
func openStore(ctx context.Context, uri string, env *config.Env, createTable bool, reg prometheus.Registerer, log *slog.Logger) (onlineStore, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return nil, fmt.Errorf("store URI %q: %w", uri, err)
	}
	switch u.Scheme {
	case "embedded":
		dir := u.Path
		if u.Opaque != "" {
			dir = u.Opaque
		}
		if u.Host != "" && u.Host != "localhost" {
			dir = filepath.Join(u.Host, dir) // embedded://relative/dir
		}
		if dir == "" {
			return nil, fmt.Errorf("store URI %q: no directory (want embedded:///path/to/dir)", uri)
		}
		return embedded.Open(dir, embedded.Options{Logger: log})
	case dynamo.URIScheme:
		cfg, err := dynamoConfig(env, uri)
		if err != nil {
			return nil, err
		}
		if _, fromEnv := env.Value("DYNAMODB_CREATE_TABLES_IF_NOT_EXISTS"); !fromEnv && createTable {
			cfg.CreateTableIfNotExists = true
		}
		return dynamo.Open(ctx, cfg, reg, log)
	case "redis", "rediss", "valkey", "valkeys":
		cfg, err := redisConfig(env, uri)
		if err != nil {
			return nil, err
		}
		return redis.Open(ctx, cfg, reg, log)
	case "":
		return nil, errors.New("no online store configured (--store or CAIRN_ONLINE_STORE): want embedded:///dir, dynamodb:///table?region=R or redis://host:port/db")
	}
	return nil, fmt.Errorf("store URI %q: unknown scheme %q (want embedded, dynamodb, redis, rediss, valkey or valkeys)", uri, u.Scheme)
}

// dynamoConfig returns the DynamoDB store's configuration: the table,
// region and endpoint from the store URI, every DYNAMODB_* knob of the store
// from env. Every problem, in the URI, in a knob's syntax or in its value,
// is reported in one error.
func dynamoConfig(env *config.Env, uri string) (dynamo.Config, error) {
	cfg, uriErr := dynamo.ParseURI(uri)
	if uriErr != nil {
		cfg = dynamo.DefaultConfig() // still read the knobs, to report their problems too
	}
	cfg.NumClientThreads = env.Int("DYNAMODB_NUM_CLIENT_THREADS")
	cfg.NumClientConnections = env.Int("DYNAMODB_NUM_CLIENT_CONNECTIONS")
	cfg.NumSerdeThreads = env.Int("DYNAMODB_NUM_SERDE_THREADS")
	cfg.GetItemMinBatchSize = env.Int("DYNAMODB_GETITEM_MIN_BATCH_SIZE")
	cfg.GetItemMinBatchConcurrency = env.Int("DYNAMODB_GETITEM_MIN_BATCH_CONCURRENCY")
	cfg.EnableRequestRacing = env.Bool("DYNAMODB_ENABLE_REQUEST_RACING")
	cfg.RequestRacingWaitTime, _ = env.Millis("DYNAMODB_REQUEST_RACING_WAIT_TIME")
	cfg.CheckTSForBulkWrites = env.Bool("DYNAMODB_CHECK_TS_FOR_BULK_WRITES")
	cfg.OnlyWriteNewerValues = env.Bool("DYNAMODB_ONLY_WRITE_NEWER_VALUES")
	if d, ok := env.Millis("DYNAMODB_TRANSACTION_WRITE_CONFLICT_MIN_RETRY_MILLIS"); ok {
		cfg.TransactionWriteConflictMinRetry = d
	}
	cfg.TransactionWriteConflictMaxRetries = env.Int("DYNAMODB_TRANSACTION_WRITE_CONFLICT_MAX_RETRIES")
	cfg.AggregateUpdateCacheSize = env.Int("DYNAMODB_AGGREGATE_UPDATE_CACHE_SIZE")
	cfg.MaxRetries = env.Int("DYNAMODB_MAX_RETRIES")
	cfg.RetryScaleFactor = env.Int("DYNAMODB_RETRY_SCALE_FACTOR")
	cfg.RequestTimeout, _ = env.Millis("DYNAMODB_REQUEST_TIMEOUT_MS")
	cfg.WarmupFQNMapping = env.Bool("DYNAMODB_WARMUP_FQN_MAPPING")
	cfg.CreateTableIfNotExists = env.Bool("DYNAMODB_CREATE_TABLES_IF_NOT_EXISTS")
	if uriErr != nil {
		return cfg, errors.Join(uriErr, env.Err())
	}
	return cfg, errors.Join(env.Err(), cfg.Validate())
}

// queueConfig reads the Kafka settings; brokers come from the flag.
func queueConfig(env *config.Env, brokers []string) (queue.Config, error) {
	c := queue.Config{
		Brokers:         brokers,
		TLS:             env.Bool("CAIRN_KAFKA_TLS"),
		SASLMechanism:   strings.ToUpper(env.String("CAIRN_KAFKA_SASL_MECHANISM")),
		SASLUser:        env.String("CAIRN_KAFKA_SASL_USERNAME"),
		SASLPassword:    env.String("CAIRN_KAFKA_SASL_PASSWORD"),
		PersistTopic:    env.String("CAIRN_KAFKA_PERSIST_TOPIC"),
		MetricsTopic:    env.String("CAIRN_KAFKA_METRICS_TOPIC"),
		DeadLetterTopic: env.String("CAIRN_KAFKA_DEAD_LETTER_TOPIC"),
		WriterGroup:     env.String("CAIRN_KAFKA_WRITER_GROUP"),
		ProduceTimeout:  env.Duration("CAIRN_KAFKA_PRODUCE_TIMEOUT"),
		MaxRecordBytes:  env.Int("CAIRN_KAFKA_MAX_RECORD_BYTES"),
	}
	if err := env.Err(); err != nil {
		return c, err
	}
	c.EnsureDefaults()
	return c, c.Validate()
}

// redisConfig maps the URI and the CAIRN_REDIS_* knobs onto redis.Config,
// reporting every problem at once.
func redisConfig(env *config.Env, uri string) (redis.Config, error) {
	cfg, err := redis.ParseURI(uri)
	if err != nil {
		return cfg, err
	}
	cfg.PoolSize = env.Int("CAIRN_REDIS_POOL_SIZE")
	cfg.DialTimeout = env.Duration("CAIRN_REDIS_DIAL_TIMEOUT")
	cfg.ReadTimeout = env.Duration("CAIRN_REDIS_READ_TIMEOUT")
	cfg.WriteTimeout = env.Duration("CAIRN_REDIS_WRITE_TIMEOUT")
	cfg.MaxRetries = env.Int("CAIRN_REDIS_MAX_RETRIES")
	if err := env.Err(); err != nil {
		return cfg, err
	}
	return cfg, cfg.Validate()
}
