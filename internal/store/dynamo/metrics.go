package dynamo

import (
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
	"github.com/prometheus/client_golang/prometheus"
)

// Operation names, as DynamoDB's API names them, for metric labels.
const (
	opBatchGetItem       = "BatchGetItem"
	opUpdateItem         = "UpdateItem"
	opTransactWriteItems = "TransactWriteItems"
	opGetItem            = "GetItem"
	opPutItem            = "PutItem"
	opQuery              = "Query"
	opDescribeTable      = "DescribeTable"
	opCreateTable        = "CreateTable"
	opUpdateTimeToLive   = "UpdateTimeToLive"
)

// metrics are the store's Prometheus metrics.
type metrics struct {
	requests       *prometheus.CounterVec
	retries        *prometheus.CounterVec
	attemptsFailed *prometheus.CounterVec
	throttles      *prometheus.CounterVec
	duration       *prometheus.HistogramVec
	slotWait       prometheus.Histogram
	inFlight       prometheus.Gauge
	unprocessed    prometheus.Counter
	staleSkipped   prometheus.Counter
	undecodable    prometheus.Counter
	readUnits      prometheus.Counter
	writeUnitsC    prometheus.Counter
	itemSize       *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_dynamo_requests_total",
			Help: "DynamoDB requests by operation and outcome (ok, condition_failed, cancelled (a transaction), throttled, error), counted once per call after the SDK's retries.",
		}, []string{"operation", "outcome"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_dynamo_retries_total",
			Help: "DynamoDB requests sent again, by operation and reason: throttle, server_error, timeout, connection (by the SDK), transaction_conflict, stale_values (a transaction re-sent without its stale values).",
		}, []string{"operation", "reason"}),
		attemptsFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_dynamo_attempt_failures_total",
			Help: "Failed attempts of DynamoDB requests, by operation and reason: throttle, server_error, timeout, connection (retryable), condition_failed, cancelled, other.",
		}, []string{"operation", "reason"}),
		throttles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_dynamo_throttles_total",
			Help: "Times DynamoDB throttled cairn, by operation: throttled attempts, BatchGetItem answers leaving keys unprocessed, transactions cancelled for throughput.",
		}, []string{"operation"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cairn_dynamo_request_duration_seconds",
			Help:    "Duration of each attempt of a DynamoDB request on the wire, by operation; the p95 of BatchGetItem is the starting point for DYNAMODB_REQUEST_RACING_WAIT_TIME.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}, []string{"operation"}),
		slotWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "cairn_dynamo_client_slot_wait_seconds",
			Help:    "Time attempts waited for one of the DYNAMODB_NUM_CLIENT_THREADS request slots.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cairn_dynamo_requests_in_flight",
			Help: "DynamoDB request attempts on the wire (at most DYNAMODB_NUM_CLIENT_THREADS).",
		}),
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
			Help: "Read capacity units consumed, computed from the sizes of the items read (4 KiB units per item, halved for eventually consistent reads).",
		}),
		writeUnitsC: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_dynamo_write_units_total",
			Help: "Write capacity units consumed, computed from the sizes of the values written (1 KiB units per item, doubled in transactions).",
		}),
		itemSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cairn_dynamo_item_size_bytes",
			Help:    "Sizes of the items read and written (access read or write), as DynamoDB counts them for capacity.",
			Buckets: prometheus.ExponentialBuckets(64, 2, 14),
		}, []string{"access"}),
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
	return []prometheus.Collector{m.requests, m.retries, m.attemptsFailed, m.throttles, m.duration, m.slotWait, m.inFlight,
		m.unprocessed, m.staleSkipped, m.undecodable, m.readUnits, m.writeUnitsC, m.itemSize}
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
	switch {
	case err == nil:
		return "ok"
	case isConditionFailed(err):
		return "condition_failed"
	case isTransactionCanceled(err):
		return "cancelled"
	case retryReason(err) == reasonThrottle:
		return "throttled"
	}
	return "error"
}

// readItem counts the read of one item (nil when absent, which still costs
// the minimum).
func (m *metrics) readItem(item map[string]types.AttributeValue, c consistency) {
	size := ItemSize(item)
	if item != nil {
		m.itemSize.WithLabelValues("read").Observe(float64(size))
	}
	m.readUnits.Add(readUnits(size, c))
}

// readQuery counts the read units of a Query returning items of size
// bytes in all: a Query rounds the total, not each item.
func (m *metrics) readQuery(size int, c consistency) { m.readUnits.Add(readUnits(size, c)) }

// writeItem counts the write units of writing item, transactional or not.
func (m *metrics) writeItem(item map[string]types.AttributeValue, transactional bool) {
	size := ItemSize(item)
	m.itemSize.WithLabelValues("write").Observe(float64(size))
	m.writeUnitsC.Add(float64(writeUnits(size, transactional)))
}

// writeUnitsN counts n write units (of requests whose item is not at hand).
func (m *metrics) writeUnitsN(n int) { m.writeUnitsC.Add(float64(n)) }

// isConditionFailed reports whether err is a failed condition expression.
func isConditionFailed(err error) bool {
	var ccf *types.ConditionalCheckFailedException
	return errors.As(err, &ccf)
}

// isValidation reports whether DynamoDB refused a request for its content
// (an item too large or too deeply nested, say), which no retry can change.
func isValidation(err error) bool {
	var apiErr smithy.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode() == "ValidationException"
}

// isTransactionCanceled reports whether err is a cancelled transaction.
func isTransactionCanceled(err error) bool {
	var tce *types.TransactionCanceledException
	return errors.As(err, &tce)
}

// isTransactionConflict reports whether a request failed because a
// transaction holds the item.
func isTransactionConflict(err error) bool {
	var tc *types.TransactionConflictException
	return errors.As(err, &tc)
}
