package dynamo

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/smithy-go/middleware"
)

// The DynamoDB client is the AWS SDK's, with four things of cairn's:
//
//   - an HTTP transport of Config.NumClientConnections connections;
//   - the SDK's standard retryer with cairn's classification (retryReason),
//     backoff (backoffDelay with base RetryScaleFactor ms) and
//     Config.MaxRetries, and no client-side retry quota: throttling is
//     absorbed by backing off, never by failing fast;
//   - a middleware run once per attempt, inside the retry loop, which holds
//     one of Config.NumClientThreads slots while the attempt is on the wire
//     (not while it backs off), bounds the attempt by Config.RequestTimeout,
//     numbers its failure for the backoff and measures it;
//   - metrics of every attempt, throttle and retry.

// semaphore bounds the holders of its slots.
type semaphore chan struct{}

func newSemaphore(n int) semaphore { return make(semaphore, n) }

// acquire takes a slot, waiting until one is free or ctx is done.
func (s semaphore) acquire(ctx context.Context) error {
	select {
	case s <- struct{}{}:
		return nil
	default:
	}
	select {
	case s <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// release frees a slot taken by acquire.
func (s semaphore) release() { <-s }

// do runs fn holding a slot.
func (s semaphore) do(ctx context.Context, fn func()) error {
	if err := s.acquire(ctx); err != nil {
		return err
	}
	defer s.release()
	fn()
	return nil
}

// attemptError is the error of one failed attempt, numbered from 1, so
// that the backoff depends on cairn's count rather than on the SDK's
// numbering of attempts.
type attemptError struct {
	attempt int
	err     error
}

func (e *attemptError) Error() string { return e.err.Error() }
func (e *attemptError) Unwrap() error { return e.err }

// attemptTimeoutError is an attempt that outlived Config.RequestTimeout
// while the caller was still waiting.
type attemptTimeoutError struct {
	timeout time.Duration
	err     error
}

func (e *attemptTimeoutError) Error() string {
	return fmt.Sprintf("attempt timed out after %v (DYNAMODB_REQUEST_TIMEOUT_MS): %v", e.timeout, e.err)
}
func (e *attemptTimeoutError) Unwrap() error { return e.err }

// attemptCountKey is the context key of a request's attempt counter.
type attemptCountKey struct{}

// attemptCounter gives each request (before the SDK's retry loop) a counter
// of its attempts.
type attemptCounter struct{}

func (attemptCounter) ID() string { return "cairn/AttemptCounter" }

func (attemptCounter) HandleFinalize(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (
	middleware.FinalizeOutput, middleware.Metadata, error,
) {
	return next.HandleFinalize(context.WithValue(ctx, attemptCountKey{}, new(int)), in)
}

// attemptBounds runs around each attempt of a request (inside the SDK's
// retry loop): see the comment at the top of this file.
type attemptBounds struct {
	slots   semaphore
	timeout time.Duration
	m       *metrics
}

func (*attemptBounds) ID() string { return "cairn/AttemptBounds" }

func (a *attemptBounds) HandleFinalize(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (
	out middleware.FinalizeOutput, md middleware.Metadata, err error,
) {
	op := awsmiddleware.GetOperationName(ctx)
	attempt := 1
	if n, ok := ctx.Value(attemptCountKey{}).(*int); ok {
		*n++
		attempt = *n
	}

	waitStart := time.Now()
	if err := a.slots.acquire(ctx); err != nil {
		return out, md, err
	}
	defer a.slots.release()
	a.m.slotWait.Observe(time.Since(waitStart).Seconds())
	a.m.inFlight.Inc()
	defer a.m.inFlight.Dec()

	attemptCtx := ctx
	if a.timeout > 0 {
		var cancel context.CancelFunc
		attemptCtx, cancel = context.WithTimeout(ctx, a.timeout)
		// The response is decoded by the time next returns.
		defer cancel()
	}
	start := time.Now()
	out, md, err = next.HandleFinalize(attemptCtx, in)
	a.m.duration.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if err == nil {
		return out, md, nil
	}
	if a.timeout > 0 && ctx.Err() == nil && errors.Is(attemptCtx.Err(), context.DeadlineExceeded) {
		err = &attemptTimeoutError{timeout: a.timeout, err: err}
	}
	reason := retryReason(err)
	a.m.attemptsFailed.WithLabelValues(op, failureReason(err, reason)).Inc()
	if reason == reasonThrottle {
		a.m.throttles.WithLabelValues(op).Inc()
	}
	return out, md, &attemptError{attempt: attempt, err: err}
}

// failureReason labels a failed attempt for metrics: its retry reason, or
// what kind of final failure it is.
func failureReason(err error, reason string) string {
	if reason != "" {
		return reason
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return "cancelled"
	}
	if isConditionFailed(err) {
		return "condition_failed"
	}
	return "other"
}

// countingRetryer is the SDK's standard retryer, counting its retries.
type countingRetryer struct {
	aws.RetryerV2
	m *metrics
}

// GetRetryToken is called by the SDK before each retry.
func (r countingRetryer) GetRetryToken(ctx context.Context, opErr error) (func(error) error, error) {
	r.m.retries.WithLabelValues(awsmiddleware.GetOperationName(ctx), retryReason(opErr)).Inc()
	return r.RetryerV2.GetRetryToken(ctx, opErr)
}

// newRetryer returns cairn's retryer for cfg.
func newRetryer(cfg Config, m *metrics) aws.Retryer {
	std := retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxAttempts = cfg.MaxRetries + 1
		o.MaxBackoff = maxRetryBackoff
		o.Backoff = retryBackoff{base: time.Duration(cfg.RetryScaleFactor) * time.Millisecond}
		o.Retryables = []retry.IsErrorRetryable{retry.IsErrorRetryableFunc(func(err error) aws.Ternary {
			return aws.BoolTernary(retryable(err))
		})}
		// Throttling is absorbed by backing off, never by failing fast once
		// a client-side retry quota is spent.
		o.RateLimiter = ratelimit.None
	})
	return countingRetryer{RetryerV2: std, m: m}
}

// newClient builds the DynamoDB client for cfg. It returns the client, its
// HTTP transport (to close idle connections) and the region in use.
func newClient(ctx context.Context, cfg Config, m *metrics) (*dynamodb.Client, *http.Transport, string, error) {
	httpClient := awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
		t.MaxConnsPerHost = cfg.NumClientConnections
		t.MaxIdleConnsPerHost = cfg.NumClientConnections
		t.MaxIdleConns = max(t.MaxIdleConns, cfg.NumClientConnections)
	})
	opts := []func(*config.LoadOptions) error{config.WithHTTPClient(httpClient)}
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	if cfg.Endpoint != "" && !envHasCredentials() {
		opts = append(opts, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("test", "test", "")))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, nil, "", fmt.Errorf("dynamo: load AWS configuration: %w", err)
	}
	if awsCfg.Region == "" {
		return nil, nil, "", fmt.Errorf("dynamo: table %q: no AWS region; set region= in the store URI or AWS_REGION", cfg.Table)
	}
	bounds := &attemptBounds{slots: newSemaphore(cfg.NumClientThreads), timeout: cfg.RequestTimeout, m: m}
	client := dynamodb.NewFromConfig(awsCfg, func(o *dynamodb.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		// cairn's knobs decide retries, whatever AWS_MAX_ATTEMPTS or
		// AWS_RETRY_MODE say.
		o.Retryer = newRetryer(cfg, m)
		o.RetryMaxAttempts = 0
		o.RetryMode = ""
		o.APIOptions = append(o.APIOptions, func(stack *middleware.Stack) error {
			if err := stack.Finalize.Insert(attemptCounter{}, "Retry", middleware.Before); err != nil {
				return err
			}
			return stack.Finalize.Insert(bounds, "Retry", middleware.After)
		})
	})
	return client, httpClient.GetTransport(), awsCfg.Region, nil
}

// envHasCredentials reports whether the environment gives the AWS SDK any
// credentials of its own: access keys, a web identity, container
// credentials or a named profile.
func envHasCredentials() bool {
	env, err := config.NewEnvConfig()
	if err != nil {
		return false
	}
	return env.Credentials.HasKeys() || env.WebIdentityTokenFilePath != "" ||
		env.ContainerCredentialsEndpoint != "" || env.ContainerCredentialsRelativePath != "" ||
		env.SharedConfigProfile != ""
}
