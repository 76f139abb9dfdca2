package dynamo

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// The tests in this file check the client's retries, timeouts and bounds
// against a stand-in DynamoDB endpoint that answers as the script says.

// endpoint is a stand-in DynamoDB endpoint: answer decides each request's
// status and JSON body, given the request's number (from 1).
type endpoint struct {
	t        *testing.T
	answer   func(ctx context.Context, n int) (int, string)
	requests atomic.Int32

	mu                sync.Mutex
	inFlight, maxSeen int
}

func (e *endpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	n := int(e.requests.Add(1))
	e.mu.Lock()
	e.inFlight++
	e.maxSeen = max(e.maxSeen, e.inFlight)
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		e.inFlight--
		e.mu.Unlock()
	}()
	code, body := e.answer(r.Context(), n)
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	w.Header().Set("X-Amz-Crc32", strconv.FormatUint(uint64(crc32.ChecksumIEEE([]byte(body))), 10))
	w.WriteHeader(code)
	io.WriteString(w, body)
}

// apiError is the body of a DynamoDB error answer.
func apiError(code string) string {
	return fmt.Sprintf(`{"__type":"com.amazonaws.dynamodb.v20120810#%s","message":"scripted %s"}`, code, code)
}

// clientFor returns a client of cfg (with the endpoint's URL) and its
// metrics.
func clientFor(t *testing.T, e *endpoint, cfg Config) (*dynamodb.Client, *metrics) {
	t.Helper()
	e.t = t
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	cfg.Table = "scripted"
	cfg.Region = "us-east-1"
	cfg.Endpoint = srv.URL
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	m, err := newMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	c, transport, _, err := newClient(context.Background(), cfg, m)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(transport.CloseIdleConnections)
	return c, m
}

func getItem(c *dynamodb.Client) error {
	_, err := c.GetItem(context.Background(), &dynamodb.GetItemInput{TableName: aws.String("scripted"), Key: itemKey("k", "e")})
	return err
}

// fastRetries is a Config whose retries wait a millisecond or two.
func fastRetries(maxRetries int) Config {
	cfg := DefaultConfig()
	cfg.MaxRetries = maxRetries
	cfg.RetryScaleFactor = 1
	return cfg
}

// Throttling is retried MaxRetries times, each counted, then returned.
func TestClientThrottlingRetriedThenReturned(t *testing.T) {
	e := &endpoint{answer: func(context.Context, int) (int, string) {
		return 400, apiError("ProvisionedThroughputExceededException")
	}}
	c, m := clientFor(t, e, fastRetries(3))
	err := getItem(c)
	var pte *types.ProvisionedThroughputExceededException
	if !errors.As(err, &pte) {
		t.Fatalf("error %v, want the throttling error", err)
	}
	if n := e.requests.Load(); n != 4 {
		t.Errorf("%d requests, want 1 + 3 retries", n)
	}
	if n := counterValue(t, m.retries.WithLabelValues(opGetItem, reasonThrottle)); n != 3 {
		t.Errorf("retries{GetItem,throttle} = %v, want 3", n)
	}
	if n := counterValue(t, m.throttles.WithLabelValues(opGetItem)); n != 4 {
		t.Errorf("throttles{GetItem} = %v, want 4", n)
	}
}

// Transient 5xx answers are retried until one succeeds.
func TestClientServerErrorsRetried(t *testing.T) {
	e := &endpoint{answer: func(_ context.Context, n int) (int, string) {
		switch n {
		case 1:
			return 500, apiError("InternalServerError")
		case 2:
			return 503, "<html>unavailable</html>"
		}
		return 200, `{}`
	}}
	c, m := clientFor(t, e, fastRetries(3))
	if err := getItem(c); err != nil {
		t.Fatal(err)
	}
	if n := e.requests.Load(); n != 3 {
		t.Errorf("%d requests, want 3", n)
	}
	if n := counterValue(t, m.retries.WithLabelValues(opGetItem, reasonServer)); n != 2 {
		t.Errorf("retries{GetItem,server_error} = %v, want 2", n)
	}
}

// Validation errors and failed conditions are never retried.
func TestClientNeverRetriesRequestErrors(t *testing.T) {
	for _, code := range []string{"ValidationException", "ConditionalCheckFailedException", "TransactionConflictException", "ResourceNotFoundException"} {
		t.Run(code, func(t *testing.T) {
			e := &endpoint{answer: func(context.Context, int) (int, string) { return 400, apiError(code) }}
			c, _ := clientFor(t, e, fastRetries(5))
			if err := getItem(c); err == nil || !strings.Contains(err.Error(), code) {
				t.Fatalf("error %v, want %s", err, code)
			}
			if n := e.requests.Load(); n != 1 {
				t.Errorf("%d requests, want 1", n)
			}
		})
	}
}

// RequestTimeout bounds each attempt, not the request: a stalled attempt
// is abandoned and the next one answers.
func TestClientAttemptTimeout(t *testing.T) {
	e := &endpoint{answer: func(ctx context.Context, n int) (int, string) {
		if n == 1 {
			select { // stall until the client gives up on the attempt
			case <-ctx.Done():
			case <-time.After(5 * time.Second):
			}
		}
		return 200, `{}`
	}}
	cfg := fastRetries(2)
	cfg.RequestTimeout = 100 * time.Millisecond
	c, m := clientFor(t, e, cfg)
	start := time.Now()
	if err := getItem(c); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("answered after %v; the stalled attempt was not cut at 100 ms", d)
	}
	if n := counterValue(t, m.retries.WithLabelValues(opGetItem, reasonTimeout)); n != 1 {
		t.Errorf("retries{GetItem,timeout} = %v, want 1", n)
	}

	// Every attempt timing out: the error says so.
	e.answer = func(ctx context.Context, _ int) (int, string) {
		<-ctx.Done()
		return 200, `{}`
	}
	err := getItem(c)
	if err == nil || !strings.Contains(err.Error(), "DYNAMODB_REQUEST_TIMEOUT_MS") {
		t.Errorf("error %v, want one naming the attempt timeout", err)
	}
}

// NumClientThreads bounds the requests in flight, whoever sends them.
func TestClientThreadsBoundRequestsInFlight(t *testing.T) {
	e := &endpoint{answer: func(context.Context, int) (int, string) {
		time.Sleep(20 * time.Millisecond)
		return 200, `{}`
	}}
	cfg := fastRetries(0)
	cfg.NumClientThreads = 2
	c, m := clientFor(t, e, cfg)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if err := getItem(c); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if e.maxSeen != 2 {
		t.Errorf("%d requests in flight at most, want 2", e.maxSeen)
	}
	if v := gaugeValue(t, m.inFlight); v != 0 {
		t.Errorf("in-flight gauge %v after all returned", v)
	}
}

// NumClientConnections sizes the HTTP connection pool.
func TestClientConnectionPool(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Table, cfg.Region, cfg.Endpoint = "scripted", "us-east-1", "http://127.0.0.1:1"
	cfg.NumClientConnections = 7
	m, _ := newMetrics(nil)
	_, transport, _, err := newClient(context.Background(), cfg, m)
	if err != nil {
		t.Fatal(err)
	}
	if transport.MaxConnsPerHost != 7 || transport.MaxIdleConnsPerHost != 7 {
		t.Errorf("transport allows %d connections, %d idle; want 7 and 7", transport.MaxConnsPerHost, transport.MaxIdleConnsPerHost)
	}
}
