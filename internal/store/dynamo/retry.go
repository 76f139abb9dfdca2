package dynamo

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/smithy-go"
)

// maxRetryBackoff caps every backoff between retries.
const maxRetryBackoff = 20 * time.Second

// Reasons a failed attempt is retried, as labelled in the metrics.
const (
	reasonThrottle    = "throttle"     // DynamoDB refused for capacity or request rate
	reasonServer      = "server_error" // a 5xx answer
	reasonTimeout     = "timeout"      // the attempt outlived Config.RequestTimeout
	reasonConnection  = "connection"   // the connection failed or dropped
	reasonConflict    = "transaction_conflict"
	reasonStaleValues = "stale_values" // a transaction re-sent without values older than the stored ones
)

// throttleCodes are the error codes of DynamoDB refusing a request for
// capacity or request rate.
var throttleCodes = map[string]bool{
	"ProvisionedThroughputExceededException": true,
	"ThrottlingException":                    true,
	"RequestLimitExceeded":                   true,
	"Throttling":                             true,
	"TooManyRequestsException":               true,
}

// serverCodes are the error codes of transient failures inside DynamoDB.
var serverCodes = map[string]bool{
	"InternalServerError": true,
	"InternalFailure":     true,
	"ServiceUnavailable":  true,
}

// retryReason classifies the error of one failed attempt: the reason it is
// worth retrying (one of the reason constants), or "" when retrying cannot
// help. Throttling, 5xx answers, attempts timing out and dropped
// connections are retried; the caller's own cancellation or deadline,
// conditional-check failures, validation errors, transaction cancellations
// and conflicts (retried by the write path with backoff of their own) and
// every other 4xx are not. (A transaction still in progress when sent
// again with the same token, after an attempt timed out, is retried.)
func retryReason(err error) string {
	var timeout *attemptTimeoutError
	var apiErr smithy.APIError
	var status interface{ HTTPStatusCode() int }
	var netErr net.Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &timeout):
		return reasonTimeout
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return "" // the caller gave up
	case errors.As(err, &apiErr) && throttleCodes[apiErr.ErrorCode()]:
		return reasonThrottle
	case errors.As(err, &apiErr) && serverCodes[apiErr.ErrorCode()]:
		return reasonServer
	case errors.As(err, &apiErr) && apiErr.ErrorCode() == "TransactionInProgressException":
		// The same transaction, sent again after an attempt timed out,
		// while the first is still being applied: it will be over soon.
		return reasonConflict
	case errors.As(err, &status) && status.HTTPStatusCode() >= 500:
		return reasonServer
	case errors.As(err, &status) && status.HTTPStatusCode() == 429:
		return reasonThrottle
	case errors.As(err, &apiErr):
		return "" // any other answer of DynamoDB's: the request itself is at fault
	case errors.As(err, &netErr) && netErr.Timeout():
		return reasonTimeout
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		retry.RetryableConnectionError{}.IsErrorRetryable(err) == aws.TrueTernary:
		return reasonConnection
	}
	return ""
}

// retryable reports whether a failed attempt is worth retrying.
func retryable(err error) bool { return retryReason(err) != "" }

// backoffDelay returns the wait before retry k (k = 1 for the first retry)
// of a backoff whose unit is base, given u uniform in [0, 1):
//
//	d(k)     = min(20 s, base × 2^k)
//	delay(k) = d(k)/2 + u × d(k)/2
//
// so retry k waits between base × 2^(k-1) and base × 2^k, capped at 20 s.
// Half of each delay is fixed, so that retries after throttling always back
// off; the other half is random, so that clients throttled together do not
// retry together. Throttling and transient failures use base =
// RetryScaleFactor ms; transaction conflicts use base =
// TransactionWriteConflictMinRetry, so their first retry waits between the
// minimum and twice it.
func backoffDelay(base time.Duration, k int, u float64) time.Duration {
	d := maxRetryBackoff
	if k < 1 {
		k = 1
	}
	if k < 40 && base < maxRetryBackoff>>k {
		d = base << k
	}
	half := d / 2
	return half + time.Duration(u*float64(d-half))
}

// jitteredBackoff is backoffDelay with a random u.
func jitteredBackoff(base time.Duration, k int) time.Duration {
	return backoffDelay(base, k, rand.Float64())
}

// retryBackoff is the SDK's backoff: backoffDelay with base
// RetryScaleFactor milliseconds, counting retries from the attempt number
// that the client's attempt middleware records in the error.
type retryBackoff struct{ base time.Duration }

// BackoffDelay returns the wait before retrying after err.
func (b retryBackoff) BackoffDelay(attempt int, err error) (time.Duration, error) {
	var ae *attemptError
	if errors.As(err, &ae) {
		attempt = ae.attempt
	}
	return jitteredBackoff(b.base, attempt), nil
}

// sleep waits for d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
