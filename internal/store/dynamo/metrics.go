package dynamo

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
	"github.com/prometheus/client_golang/prometheus"
)

// Operation names, as DynamoDB's API names them, for metric labels.
const (
	opBatchGetItem  = "BatchGetItem"
	opUpdateItem    = "UpdateItem"
	opGetItem       = "GetItem"
	opPutItem       = "PutItem"
	opQuery         = "Query"
	opDescribeTable = "DescribeTable"
	opCreateTable   = "CreateTable"
)

// Capacity unit sizes: a read unit covers 4 KiB of item (half a unit for an
// eventually consistent read), a write unit 1 KiB.
const (
	readUnitBytes  = 4 << 10
	writeUnitBytes = 1 << 10
)

// metrics are the store's Prometheus metrics.
type metrics struct {
	requests     *prometheus.CounterVec
	retries      *prometheus.CounterVec
	unprocessed  prometheus.Counter
	staleSkipped prometheus.Counter
	undecodable  prometheus.Counter
	readUnits    prometheus.Counter
	writeUnitsC  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_dynamo_requests_total",
			Help: "DynamoDB requests by operation and outcome (ok, condition_failed, throttled, error), counted once per call after the SDK's retries.",
		}, []string{"operation", "outcome"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_dynamo_retries_total",
			Help: "DynamoDB request attempts retried by the SDK, by operation and reason (throttle, other).",
		}, []string{"operation", "reason"}),
		unprocessed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_dynamo_unprocessed_keys_total",
			Help: "Keys BatchGetItem returned unprocessed, each retried until read.",
		}),
		staleSkipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_dynamo_stale_values_skipped_total",
			Help: "Feature values not written because the stored value has a newer observed-at.",
		}),
		undecodable: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_dynamo_undecodable_values_total",
			Help: "Stored values that did not decode as their feature's type, answered as not found.",
		}),
		readUnits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_dynamo_read_units_total",
			Help: "Read capacity units consumed, computed from the sizes of the items read (4 KiB units, halved for eventually consistent reads).",
		}),
		writeUnitsC: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_dynamo_write_units_total",
			Help: "Write capacity units consumed, computed from the sizes of the values written (1 KiB units).",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range m.collectors() {
		if err := reg.Register(c); err != nil {
			m.unregister(reg)
			return nil, fmt.Errorf("dynamo: register metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.requests, m.retries, m.unprocessed, m.staleSkipped, m.undecodable, m.readUnits, m.writeUnitsC}
}

// unregister removes the metrics from reg (after a failed Open, so that
// another attempt can register them again).
func (m *metrics) unregister(reg prometheus.Registerer) {
	if reg == nil {
		return
	}
	for _, c := range m.collectors() {
		reg.Unregister(c)
	}
}

// request counts one completed call of operation op.
func (m *metrics) request(op string, err error) {
	m.requests.WithLabelValues(op, outcome(err)).Inc()
}

// outcome classifies a request's error for the requests metric.
func outcome(err error) string {
	var ccf *types.ConditionalCheckFailedException
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &ccf):
		return "condition_failed"
	case retry.IsErrorThrottles(retry.DefaultThrottles).IsErrorThrottle(err) == aws.TrueTernary:
		return "throttled"
	}
	return "error"
}

// readItem counts the read units of reading one item (nil when absent,
// which still costs the minimum).
func (m *metrics) readItem(item map[string]types.AttributeValue, consistent bool) {
	m.readBytes(ItemSize(item), consistent)
}

// readBytes counts the read units of reading size bytes in one read (a
// Query rounds the total, GetItem and BatchGetItem each item).
func (m *metrics) readBytes(size int, consistent bool) {
	units := float64(max(1, (size+readUnitBytes-1)/readUnitBytes))
	if !consistent {
		units /= 2
	}
	m.readUnits.Add(units)
}

// writeUnits counts n write units.
func (m *metrics) writeUnits(n int) { m.writeUnitsC.Add(float64(n)) }

// countingRetryer counts the SDK's retries.
type countingRetryer struct {
	aws.RetryerV2
	retries *prometheus.CounterVec
}

// GetRetryToken is called by the SDK before each retry.
func (r countingRetryer) GetRetryToken(ctx context.Context, opErr error) (func(error) error, error) {
	reason := "other"
	if retry.IsErrorThrottles(retry.DefaultThrottles).IsErrorThrottle(opErr) == aws.TrueTernary {
		reason = "throttle"
	}
	r.retries.WithLabelValues(awsmiddleware.GetOperationName(ctx), reason).Inc()
	return r.RetryerV2.GetRetryToken(ctx, opErr)
}

// isValidation reports whether DynamoDB refused a request for its content
// (an item too large or too deeply nested, say), which no retry can change.
func isValidation(err error) bool {
	var apiErr smithy.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode() == "ValidationException"
}
