package dynamo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// The backoff formula of docs/dynamodb.md: retry k waits
// d/2 + u × d/2 with d = min(20 s, base × 2^k).
func TestBackoffDelay(t *testing.T) {
	const ms = time.Millisecond
	tests := []struct {
		base time.Duration
		k    int
		u    float64
		want time.Duration
	}{
		// Throttling, RetryScaleFactor 10: the first retry waits 10 to 20 ms.
		{10 * ms, 1, 0, 10 * ms},
		{10 * ms, 1, 0.5, 15 * ms},
		{10 * ms, 1, 0.999, 19990 * time.Microsecond},
		{10 * ms, 2, 0, 20 * ms},
		{10 * ms, 3, 0.25, 50 * ms},
		{10 * ms, 10, 0, 5120 * ms},
		// 10 ms × 2^11 is over 20 s: capped, from retry 11 on.
		{10 * ms, 11, 0, 10 * time.Second},
		{10 * ms, 11, 0.5, 15 * time.Second},
		{10 * ms, 12, 0, 10 * time.Second},
		{10 * ms, 100, 0.999, 19990 * ms},
		// Transaction conflicts, minimum 50 ms: the first retry waits 50
		// to 100 ms, the fifth 800 to 1600 ms.
		{50 * ms, 1, 0, 50 * ms},
		{50 * ms, 1, 0.5, 75 * ms},
		{50 * ms, 5, 0, 800 * ms},
		{50 * ms, 5, 0.5, 1200 * ms},
		// Retry numbers below 1 count as the first.
		{10 * ms, 0, 0, 10 * ms},
		// No base, no wait.
		{0, 3, 0.5, 0},
		// A base over the cap is capped.
		{time.Minute, 1, 0, 10 * time.Second},
	}
	for _, tc := range tests {
		if got := backoffDelay(tc.base, tc.k, tc.u); got != tc.want {
			t.Errorf("backoffDelay(%v, %d, %v) = %v, want %v", tc.base, tc.k, tc.u, got, tc.want)
		}
	}
	// The jittered delay stays within its bounds.
	for range 1000 {
		if d := jitteredBackoff(10*ms, 3); d < 40*ms || d >= 80*ms {
			t.Fatalf("jittered third retry waited %v, want 40 to 80 ms", d)
		}
	}
}

// The SDK's backoff follows the attempt numbers cairn records, not the
// SDK's own numbering.
func TestRetryBackoffUsesAttemptNumber(t *testing.T) {
	b := retryBackoff{base: 10 * time.Millisecond}
	err := &retry.MaxAttemptsError{Err: &attemptError{attempt: 4, err: errors.New("throttled")}}
	for range 100 {
		d, _ := b.BackoffDelay(1, err)
		if d < 80*time.Millisecond || d >= 160*time.Millisecond {
			t.Fatalf("delay after attempt 4 = %v, want 80 to 160 ms", d)
		}
	}
}

func status(code int, err error) error {
	return &awshttp.ResponseError{ResponseError: &smithyhttp.ResponseError{
		Response: &smithyhttp.Response{Response: &http.Response{StatusCode: code}}, Err: err}}
}

func TestRetryReason(t *testing.T) {
	api := func(code string) error { return &smithy.GenericAPIError{Code: code, Message: "m"} }
	tests := []struct {
		err  error
		want string
	}{
		{nil, ""},
		{&types.ProvisionedThroughputExceededException{}, reasonThrottle},
		{&types.RequestLimitExceeded{}, reasonThrottle},
		{api("ThrottlingException"), reasonThrottle},
		{status(400, api("ThrottlingException")), reasonThrottle},
		{status(429, api("SlowDownPlease")), reasonThrottle},
		{&types.InternalServerError{}, reasonServer},
		{status(503, api("ServiceUnavailable")), reasonServer},
		{status(500, api("UnknownError")), reasonServer},
		{status(502, errors.New("bad gateway")), reasonServer},
		{&attemptTimeoutError{timeout: time.Second, err: context.DeadlineExceeded}, reasonTimeout},
		{&smithyhttp.RequestSendError{Err: &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}}, reasonTimeout},
		{&smithyhttp.RequestSendError{Err: errors.New("read tcp: connection reset by peer")}, reasonConnection},
		{fmt.Errorf("deserialize: %w", io.ErrUnexpectedEOF), reasonConnection},
		{api("TransactionInProgressException"), reasonConflict},
		// Never retried by the client.
		{&types.ConditionalCheckFailedException{}, ""},
		{status(400, api("ValidationException")), ""},
		{&types.TransactionCanceledException{}, ""},
		{&types.TransactionConflictException{}, ""},
		{&types.ResourceNotFoundException{}, ""},
		{context.Canceled, ""},
		{&smithyhttp.RequestSendError{Err: context.Canceled}, ""},
		{&smithyhttp.RequestSendError{Err: context.DeadlineExceeded}, ""},
		{errors.New("something else"), ""},
	}
	for _, tc := range tests {
		// As the SDK sees it: numbered by the attempt middleware, then
		// wrapped by the retry loop.
		wrapped := &retry.MaxAttemptsError{Err: &attemptError{attempt: 1, err: tc.err}}
		for _, err := range []error{tc.err, wrapped} {
			if tc.err == nil && err != nil {
				continue
			}
			if got := retryReason(err); got != tc.want {
				t.Errorf("retryReason(%v) = %q, want %q", err, got, tc.want)
			}
			if got := retryable(err); got != (tc.want != "") {
				t.Errorf("retryable(%v) = %v", err, got)
			}
		}
	}
}
