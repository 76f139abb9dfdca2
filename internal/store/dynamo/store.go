package dynamo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairnfs/cairn/internal/hedge"
)

const (
	// batchGetMaxKeys is the protocol's limit on keys per BatchGetItem.
	batchGetMaxKeys = 100
	// tableWaitTimeout bounds the wait for a created table to become active.
	tableWaitTimeout = 2 * time.Minute
)

// errClosed is returned by calls on a closed Store.
var errClosed = errors.New("dynamo: store is closed")

// Store is a client of one DynamoDB table holding cairn's online store. It
// is safe for concurrent use.
type Store struct {
	cfg       Config
	region    string
	tbl       *table
	transport *http.Transport
	names     *names
	// serde bounds the goroutines encoding and decoding items
	// (Config.NumSerdeThreads).
	serde semaphore
	// hedger races read sub-batches; nil unless EnableRequestRacing.
	hedger *hedge.Hedger
	m      *metrics
	log    *slog.Logger
	closed atomic.Bool
}

// Open connects to the table cfg names, checks (or, with
// CreateTableIfNotExists, creates) it, and loads the feature-name mapping
// when WarmupFQNMapping is set. Metrics are registered with reg unless it is
// nil.
func Open(ctx context.Context, cfg Config, reg prometheus.Registerer, log *slog.Logger) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	client, transport, region, err := newClient(ctx, cfg, m)
	if err != nil {
		m.unregister(reg)
		return nil, err
	}

	tbl := &table{name: cfg.Table, client: client, m: m, maxStalled: cfg.MaxRetries,
		retryBase: time.Duration(cfg.RetryScaleFactor) * time.Millisecond}
	s := &Store{
		cfg:       cfg,
		region:    region,
		tbl:       tbl,
		transport: transport,
		names:     newNames(tbl, cfg.FeatureIDs),
		serde:     newSemaphore(cfg.NumSerdeThreads),
		m:         m,
		log:       log.With("component", "dynamo", "table", cfg.Table),
	}
	fail := func(err error) (*Store, error) {
		s.transport.CloseIdleConnections()
		m.unregister(reg)
		return nil, err
	}
	desc, err := s.ensureTable(ctx)
	if err != nil {
		return fail(err)
	}
	if len(cfg.GlobalTableRegions) > 0 {
		if err := checkGlobalTable(desc, s.region, cfg.GlobalTableRegions); err != nil {
			return fail(err)
		}
	}
	// With a lock file the table's mapping is checked against it at once,
	// warmup or not: a disagreement is a start-up error, not a surprise at
	// the first read.
	if cfg.WarmupFQNMapping || cfg.FeatureIDs != nil {
		if err := s.names.ensureLoaded(ctx); err != nil {
			return fail(err)
		}
	}
	if cfg.EnableRequestRacing {
		// Last, so that a failed Open leaves nothing registered.
		s.hedger, err = hedge.New("dynamo_batch_get", hedge.Config{
			Wait:        cfg.RequestRacingWaitTime,
			MaxInFlight: maxHedges(cfg),
		}, reg)
		if err != nil {
			return fail(err)
		}
	}
	if cfg.NumClientConnections < cfg.NumClientThreads {
		s.log.Warn("fewer connections than client threads: requests will wait for a connection",
			"DYNAMODB_NUM_CLIENT_CONNECTIONS", cfg.NumClientConnections, "DYNAMODB_NUM_CLIENT_THREADS", cfg.NumClientThreads)
	}
	s.log.Info("dynamo store open", "region", s.region, "endpoint", cfg.Endpoint,
		"mapped_features", s.names.size(), "warmup", cfg.WarmupFQNMapping,
		"client_threads", cfg.NumClientThreads, "connections", cfg.NumClientConnections, "serde_threads", cfg.NumSerdeThreads,
		"request_racing", cfg.EnableRequestRacing)
	return s, nil
}

// maxHedges bounds the raced read sub-batches in flight at once: half the
// client threads, so that racing never takes more than half the request
// slots from first sends, however slow DynamoDB gets.
func maxHedges(cfg Config) int { return max(1, cfg.NumClientThreads/2) }

// Close releases the Store's connections. Data written stays in the table.
// Calls after Close fail.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.transport.CloseIdleConnections()
	return nil
}

// ensureTable checks that the table exists with cairn's key schema, creating
// it if allowed, and returns its description.
func (s *Store) ensureTable(ctx context.Context) (*types.TableDescription, error) {
	out, err := s.tbl.client.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(s.cfg.Table)})
	s.m.request(opDescribeTable, err)
	var notFound *types.ResourceNotFoundException
	switch {
	case errors.As(err, &notFound):
		if !s.cfg.CreateTableIfNotExists {
			return nil, fmt.Errorf("dynamo: table %q does not exist in region %s (create it with keys pk and sk, both strings, "+
				"or set DYNAMODB_CREATE_TABLES_IF_NOT_EXISTS=true)", s.cfg.Table, s.region)
		}
		return s.createTable(ctx)
	case err != nil:
		return nil, fmt.Errorf("dynamo: describe table %q in region %s: %w", s.cfg.Table, s.region, err)
	}
	return out.Table, checkKeySchema(out.Table)
}

// checkKeySchema reports whether t has cairn's keys: pk (string, hash) and
// sk (string, range).
func checkKeySchema(t *types.TableDescription) error {
	keys := map[string]types.KeyType{}
	for _, k := range t.KeySchema {
		keys[aws.ToString(k.AttributeName)] = k.KeyType
	}
	attrTypes := map[string]types.ScalarAttributeType{}
	for _, a := range t.AttributeDefinitions {
		attrTypes[aws.ToString(a.AttributeName)] = a.AttributeType
	}
	if len(keys) != 2 || keys["pk"] != types.KeyTypeHash || keys["sk"] != types.KeyTypeRange ||
		attrTypes["pk"] != types.ScalarAttributeTypeS || attrTypes["sk"] != types.ScalarAttributeTypeS {
		return fmt.Errorf("dynamo: table %q has key schema %v (attribute types %v); want hash key pk and range key sk, both strings",
			aws.ToString(t.TableName), keys, attrTypes)
	}
	return nil
}

// createTable creates the table with on-demand capacity and waits until it
// is active. A concurrent creation by another process is not an error.
func (s *Store) createTable(ctx context.Context) (*types.TableDescription, error) {
	_, err := s.tbl.client.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName: aws.String(s.cfg.Table),
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String("sk"), KeyType: types.KeyTypeRange},
		},
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String("pk"), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String("sk"), AttributeType: types.ScalarAttributeTypeS},
		},
		BillingMode: types.BillingModePayPerRequest,
	})
	s.m.request(opCreateTable, err)
	var inUse *types.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) {
		return nil, fmt.Errorf("dynamo: create table %q in region %s: %w", s.cfg.Table, s.region, err)
	}
	if err == nil {
		s.log.Info("dynamo table created", "region", s.region)
	}
	waiter := dynamodb.NewTableExistsWaiter(s.tbl.client, func(o *dynamodb.TableExistsWaiterOptions) {
		o.MinDelay = 200 * time.Millisecond
		o.MaxDelay = 5 * time.Second
	})
	out, err := waiter.WaitForOutput(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(s.cfg.Table)}, tableWaitTimeout)
	if err != nil {
		return nil, fmt.Errorf("dynamo: wait for table %q in region %s to become active: %w", s.cfg.Table, s.region, err)
	}
	if err := checkKeySchema(out.Table); err != nil {
		return nil, err
	}
	// Items of namespaces whose values all go stale carry an expiry in
	// ttlAttr; DynamoDB deletes them after it, free of write units.
	_, err = s.tbl.client.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{
		TableName:               aws.String(s.cfg.Table),
		TimeToLiveSpecification: &types.TimeToLiveSpecification{AttributeName: aws.String(ttlAttr), Enabled: aws.Bool(true)},
	})
	s.m.request(opUpdateTimeToLive, err)
	if err != nil && !strings.Contains(err.Error(), "already enabled") {
		return nil, fmt.Errorf("dynamo: enable time to live on table %q in region %s: %w", s.cfg.Table, s.region, err)
	}
	return out.Table, nil
}
