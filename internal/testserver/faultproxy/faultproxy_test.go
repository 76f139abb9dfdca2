package faultproxy_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"

	"github.com/cairnfs/cairn/internal/testserver"
	"github.com/cairnfs/cairn/internal/testserver/faultproxy"
)

func TestMain(m *testing.M) { os.Exit(testserver.Run(m)) }

// counter is a stand-in target that answers every request with {} and
// counts them by operation.
type counter struct {
	mu  sync.Mutex
	ops map[string]int
}

func newTarget(t *testing.T) (*counter, string) {
	c := &counter{ops: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		c.mu.Lock()
		c.ops[faultproxy.Operation(r.Header.Get("X-Amz-Target"))]++
		c.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		io.WriteString(w, "{}")
	}))
	t.Cleanup(srv.Close)
	return c, srv.URL
}

func (c *counter) get(op string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ops[op]
}

// send posts one request for op and returns its status, or 0 when the
// connection was dropped.
func send(t *testing.T, p *faultproxy.Proxy, op string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, p.URL(), strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Amz-Target", "DynamoDB_20120810."+op)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func mustAdd(t *testing.T, p *faultproxy.Proxy, r faultproxy.Rule) faultproxy.RuleID {
	t.Helper()
	id, err := p.Add(r)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// Skip, Count and Operations pick exactly the requests they say, and the
// counters tell what happened.
func TestRulePositions(t *testing.T) {
	target, url := newTarget(t)
	p := faultproxy.Start(t, url, 1)
	id := mustAdd(t, p, faultproxy.Rule{Operations: []string{"BatchGetItem"}, Fault: faultproxy.Throttle, Skip: 2, Count: 3})

	var got []int
	for range 7 {
		got = append(got, send(t, p, "BatchGetItem"))
	}
	want := []int{200, 200, 400, 400, 400, 200, 200}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("statuses %v, want %v", got, want)
	}
	if s := send(t, p, "UpdateItem"); s != 200 {
		t.Errorf("UpdateItem, not named by the rule: status %d", s)
	}
	if n := p.Fired(id); n != 3 {
		t.Errorf("rule fired %d times, want 3", n)
	}
	if c := p.Count("BatchGetItem"); c != (faultproxy.Count{Requests: 7, Faults: 3}) {
		t.Errorf("BatchGetItem count %+v, want 7 requests, 3 faults", c)
	}
	if c := p.Count("UpdateItem"); c != (faultproxy.Count{Requests: 1}) {
		t.Errorf("UpdateItem count %+v, want 1 request", c)
	}
	if n := target.get("BatchGetItem"); n != 4 {
		t.Errorf("target saw %d BatchGetItem, want the 4 let through", n)
	}
}

// The first rule that fires decides; removing and clearing rules takes
// effect at once.
func TestRuleOrderRemoveClear(t *testing.T) {
	_, url := newTarget(t)
	p := faultproxy.Start(t, url, 1)
	first := mustAdd(t, p, faultproxy.Rule{Fault: faultproxy.InternalServerError, Count: 1})
	second := mustAdd(t, p, faultproxy.Rule{Fault: faultproxy.ServiceUnavailable})
	if s := send(t, p, "GetItem"); s != 500 {
		t.Errorf("first request: status %d, want 500 from the first rule", s)
	}
	if s := send(t, p, "GetItem"); s != 503 {
		t.Errorf("second request: status %d, want 503 from the second rule", s)
	}
	if p.Fired(first) != 1 || p.Fired(second) != 1 {
		t.Errorf("fired %d and %d, want 1 and 1", p.Fired(first), p.Fired(second))
	}
	p.Remove(second)
	if s := send(t, p, "GetItem"); s != 200 {
		t.Errorf("after Remove: status %d, want 200", s)
	}
	mustAdd(t, p, faultproxy.Rule{Fault: faultproxy.Throttling})
	p.Clear()
	if s := send(t, p, "GetItem"); s != 200 {
		t.Errorf("after Clear: status %d, want 200", s)
	}
	if p.Fired(second) != 1 {
		t.Errorf("a removed rule's count changed: %d", p.Fired(second))
	}
}

// A probability fires on about that fraction of requests, and the same seed
// picks the same requests.
func TestProbabilityIsSeeded(t *testing.T) {
	pattern := func(seed uint64) string {
		_, url := newTarget(t)
		p := faultproxy.Start(t, url, seed)
		mustAdd(t, p, faultproxy.Rule{Fault: faultproxy.Throttle, Probability: 0.25})
		var b strings.Builder
		for range 400 {
			if send(t, p, "GetItem") == 400 {
				b.WriteByte('x')
			} else {
				b.WriteByte('.')
			}
		}
		return b.String()
	}
	a, b, c := pattern(7), pattern(7), pattern(8)
	if a != b {
		t.Errorf("seed 7 fired on different requests in two runs:\n%s\n%s", a, b)
	}
	if a == c {
		t.Errorf("seeds 7 and 8 fired on the same requests")
	}
	if n := strings.Count(a, "x"); n < 70 || n > 130 {
		t.Errorf("fired on %d of 400 requests at probability 0.25", n)
	}
}

func TestTimeWindow(t *testing.T) {
	_, url := newTarget(t)
	p := faultproxy.Start(t, url, 1)
	mustAdd(t, p, faultproxy.Rule{Fault: faultproxy.Throttle, After: 200 * time.Millisecond, For: 400 * time.Millisecond})
	if s := send(t, p, "GetItem"); s != 200 {
		t.Errorf("before the window: status %d", s)
	}
	time.Sleep(300 * time.Millisecond)
	if s := send(t, p, "GetItem"); s != 400 {
		t.Errorf("in the window: status %d", s)
	}
	time.Sleep(400 * time.Millisecond)
	if s := send(t, p, "GetItem"); s != 200 {
		t.Errorf("after the window: status %d", s)
	}
}

func TestBadRules(t *testing.T) {
	_, url := newTarget(t)
	p := faultproxy.Start(t, url, 1)
	for _, r := range []faultproxy.Rule{
		{},
		{Fault: faultproxy.Throttle, Probability: 1.5},
		{Fault: faultproxy.Throttle, Count: -1},
		{Fault: faultproxy.Unprocessed + 1},
		{Fault: faultproxy.Throttle, Operations: []string{"DynamoDB_20120810.GetItem"}},
	} {
		if _, err := p.Add(r); err == nil {
			t.Errorf("Add(%+v) accepted", r)
		}
	}
}

// A delay ends when the client gives up, and the request is then never
// forwarded; without a cancel it is forwarded after the delay.
func TestDelay(t *testing.T) {
	target, url := newTarget(t)
	p := faultproxy.Start(t, url, 1)
	mustAdd(t, p, faultproxy.Rule{Delay: 300 * time.Millisecond})

	start := time.Now()
	if s := send(t, p, "GetItem"); s != 200 {
		t.Fatalf("delayed request: status %d", s)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("delayed request answered after %v, want at least 300ms", d)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, p.URL(), strings.NewReader("{}"))
	req.Header.Set("X-Amz-Target", "DynamoDB_20120810.Query")
	if _, err := http.DefaultClient.Do(req); err == nil {
		t.Fatal("request cancelled during its delay succeeded")
	}
	time.Sleep(400 * time.Millisecond)
	if n := target.get("Query"); n != 0 {
		t.Errorf("a request cancelled during its delay was forwarded (%d)", n)
	}
}

// A forwarded request whose client gives up still runs to its end at the
// target, as at a real server, and WaitIdle waits for it.
func TestForwardedRequestOutlivesClient(t *testing.T) {
	var completed atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(200 * time.Millisecond):
			completed.Add(1)
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	p := faultproxy.Start(t, srv.URL, 1)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, p.URL(), strings.NewReader("{}"))
	if _, err := http.DefaultClient.Do(req); err == nil {
		t.Fatal("request with a 20ms deadline to a 200ms target succeeded")
	}
	wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer wcancel()
	if err := p.WaitIdle(wctx); err != nil {
		t.Fatal(err)
	}
	if completed.Load() != 1 {
		t.Error("WaitIdle returned before the target finished the abandoned request, or the target saw it cancelled")
	}
}

// Close returns promptly even with requests held in long delays.
func TestCloseEndsDelays(t *testing.T) {
	_, url := newTarget(t)
	p, err := faultproxy.New(url, 1)
	if err != nil {
		t.Fatal(err)
	}
	mustAdd(t, p, faultproxy.Rule{Delay: time.Hour})
	var done atomic.Bool
	go func() { send(t, p, "GetItem"); done.Store(true) }()
	for p.Count("GetItem").Requests == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	p.Close()
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Close took %v", d)
	}
}

// The SDK, talking to moto through the proxy, decodes every injected error
// as the modelled type DynamoDB's would give, and classifies it for retry as
// it would DynamoDB's.
func TestSDKSeesDynamoDBErrors(t *testing.T) {
	p := faultproxy.Start(t, testserver.Moto(t), 1)
	c := client(p.URL())
	table := makeTable(t, c)
	key := map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "k"}}
	ctx := context.Background()
	getItem := func() error {
		_, err := c.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(table), Key: key})
		return err
	}
	putItem := func(v string) error {
		_, err := c.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table), Item: map[string]types.AttributeValue{
			"pk": &types.AttributeValueMemberS{Value: "k"}, "v": &types.AttributeValueMemberS{Value: v}}})
		return err
	}
	transact := func() error {
		put := func(k string) types.TransactWriteItem {
			return types.TransactWriteItem{Put: &types.Put{TableName: aws.String(table),
				Item: map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: k}}}}
		}
		_, err := c.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: []types.TransactWriteItem{put("a"), put("b"), put("c")}})
		return err
	}
	batchGet := func() error {
		out, err := c.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{RequestItems: map[string]types.KeysAndAttributes{
			table: {Keys: []map[string]types.AttributeValue{key}}}})
		if err == nil && len(out.UnprocessedKeys[table].Keys) > 0 {
			err = fmt.Errorf("%d keys unprocessed", len(out.UnprocessedKeys[table].Keys))
		}
		return err
	}
	retryable := func(err error) bool {
		return retry.IsErrorRetryables(retry.DefaultRetryables).IsErrorRetryable(err) == aws.TrueTernary
	}
	throttle := func(err error) bool {
		return retry.IsErrorThrottles(retry.DefaultThrottles).IsErrorThrottle(err) == aws.TrueTernary
	}
	status := func(err error) int {
		var re interface{ HTTPStatusCode() int }
		if errors.As(err, &re) {
			return re.HTTPStatusCode()
		}
		return 0
	}

	cases := []struct {
		fault faultproxy.Fault
		op    string
		call  func() error
		check func(t *testing.T, err error)
	}{
		{faultproxy.Throttle, "GetItem", getItem, func(t *testing.T, err error) {
			var e *types.ProvisionedThroughputExceededException
			if !errors.As(err, &e) || !throttle(err) || status(err) != 400 {
				t.Errorf("got %T %v (status %d), want a ProvisionedThroughputExceededException throttle", err, err, status(err))
			}
		}},
		{faultproxy.Throttling, "GetItem", getItem, func(t *testing.T, err error) {
			var e *types.ThrottlingException
			if !errors.As(err, &e) || !throttle(err) {
				t.Errorf("got %T %v, want a ThrottlingException throttle", err, err)
			}
		}},
		{faultproxy.InternalServerError, "GetItem", getItem, func(t *testing.T, err error) {
			var e *types.InternalServerError
			if !errors.As(err, &e) || !retryable(err) || status(err) != 500 {
				t.Errorf("got %T %v (status %d), want a retryable InternalServerError", err, err, status(err))
			}
		}},
		{faultproxy.ServiceUnavailable, "GetItem", getItem, func(t *testing.T, err error) {
			var e smithy.APIError
			if !errors.As(err, &e) || e.ErrorCode() != "ServiceUnavailable" || !retryable(err) || status(err) != 503 {
				t.Errorf("got %T %v (status %d), want a retryable 503 ServiceUnavailable", err, err, status(err))
			}
		}},
		{faultproxy.TransactionConflict, "TransactWriteItems", transact, func(t *testing.T, err error) {
			var e *types.TransactionCanceledException
			if !errors.As(err, &e) {
				t.Fatalf("got %T %v, want a TransactionCanceledException", err, err)
			}
			var codes []string
			for _, r := range e.CancellationReasons {
				codes = append(codes, aws.ToString(r.Code))
			}
			if fmt.Sprint(codes) != "[TransactionConflict None None]" {
				t.Errorf("cancellation reasons %v, want one per item, the first TransactionConflict", codes)
			}
		}},
		{faultproxy.TransactionConflict, "PutItem", func() error { return putItem("x") }, func(t *testing.T, err error) {
			var e *types.TransactionConflictException
			if !errors.As(err, &e) {
				t.Errorf("got %T %v, want a TransactionConflictException", err, err)
			}
		}},
		{faultproxy.Drop, "GetItem", getItem, func(t *testing.T, err error) {
			if err == nil || !retryable(err) {
				t.Errorf("got %v, want a retryable connection error", err)
			}
		}},
		{faultproxy.DropResponse, "PutItem", func() error { return putItem("dropped") }, func(t *testing.T, err error) {
			if err == nil || !retryable(err) {
				t.Errorf("got %v, want a retryable connection error", err)
			}
			out, err := c.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(table), Key: key, ConsistentRead: aws.Bool(true)})
			if err != nil {
				t.Fatal(err)
			}
			if v, _ := out.Item["v"].(*types.AttributeValueMemberS); v == nil || v.Value != "dropped" {
				t.Errorf("item after a dropped response: %v, want the put applied", out.Item)
			}
		}},
		{faultproxy.Unprocessed, "BatchGetItem", batchGet, func(t *testing.T, err error) {
			if err == nil || err.Error() != "1 keys unprocessed" {
				t.Errorf("got %v, want the one key unprocessed", err)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.fault.String()+"/"+tc.op, func(t *testing.T) {
			id := mustAdd(t, p, faultproxy.Rule{Operations: []string{tc.op}, Fault: tc.fault, Count: 1})
			defer p.Remove(id)
			err := tc.call()
			if p.Fired(id) != 1 {
				t.Fatalf("rule fired %d times, want 1", p.Fired(id))
			}
			tc.check(t, err)
			if err := tc.call(); err != nil {
				t.Errorf("next call, past the rule's count: %v", err)
			}
		})
	}
}

// client returns an SDK client of endpoint that never retries.
func client(endpoint string) *dynamodb.Client {
	return dynamodb.New(dynamodb.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
		Retryer:      aws.NopRetryer{},
	})
}

// makeTable creates a table keyed by pk and returns its name.
func makeTable(t *testing.T, c *dynamodb.Client) string {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := "cairn-fp-" + hex.EncodeToString(b[:])
	_, err := c.CreateTable(context.Background(), &dynamodb.CreateTableInput{
		TableName:            aws.String(name),
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash}},
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("pk"), AttributeType: types.ScalarAttributeTypeS}},
		BillingMode:          types.BillingModePayPerRequest,
	})
	if err != nil {
		t.Fatal(err)
	}
	return name
}
