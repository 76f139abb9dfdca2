// Package faultproxy is a fault-injecting HTTP proxy for tests of the
// DynamoDB store: it sits between the AWS SDK and a DynamoDB API (moto's
// server in cairn's tests) and, by rule, throttles requests (whole, or by
// leaving a batch's keys unprocessed), delays them, fails them with 5xx,
// cancels transactions with TransactionConflict, or drops their
// connections. Everything else is forwarded unchanged, so the requests that
// pass take effect in the real server.
//
// A rule picks requests by DynamoDB operation (the X-Amz-Target header,
// "DynamoDB_20120810.BatchGetItem" naming BatchGetItem), by position (skip the
// first n, then fire at most m times), by probability, and by time window,
// and says what happens to them:
//
//	p := faultproxy.Start(t, testserver.Moto(t), 1)
//	p.Add(faultproxy.Rule{Operations: []string{"BatchGetItem"}, Fault: faultproxy.Throttle, Count: 3})
//	p.Add(faultproxy.Rule{Operations: []string{"BatchGetItem"}, Delay: 500 * time.Millisecond, Probability: 0.02})
//
// Rules are consulted in the order they were added; the first one that
// fires decides the request, and the rules after it do not see it. Rules
// can be added and removed while requests flow.
//
// Error answers have the shape DynamoDB gives them and the AWS SDK parses:
// the status code, a JSON body {"__type": "com.amazonaws.dynamodb.v20120810#Code",
// "message": "..."}, the same code in the X-Amzn-ErrorType header, and the
// body's CRC32 in X-Amz-Crc32. The SDK therefore returns the modelled error
// types (types.ProvisionedThroughputExceededException,
// types.TransactionCanceledException with its CancellationReasons, ...) and
// applies its usual retry rules to them.
//
// Randomness is seeded: each rule draws from its own generator, seeded from
// the proxy's seed and the rule's id, so the n-th request a rule considers
// gets the same decision in every run.
//
// The proxy counts the requests it receives per operation, and the faults it
// injects (see [Proxy.Count] and [Proxy.Fired]).
//
// A request held in a delay ends when its client gives up, and is never
// forwarded. A forwarded request runs to its end at the target even when
// its client gives up, as it would at a server the client hung up on;
// [Proxy.WaitIdle] waits until none is left, so that a benchmark can start
// each request on an idle server.
//
// This package is imported only by _test files.
package faultproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Fault is what a rule does to a request, after its Delay.
type Fault int

const (
	// None forwards the request. A rule with Fault None only delays.
	None Fault = iota
	// Throttle answers 400 ProvisionedThroughputExceededException, as
	// DynamoDB does when a table or partition is over its capacity.
	Throttle
	// Throttling answers 400 ThrottlingException, as DynamoDB does when
	// the account's or the control plane's request rate is exceeded.
	Throttling
	// InternalServerError answers 500 InternalServerError.
	InternalServerError
	// ServiceUnavailable answers 503 ServiceUnavailable.
	ServiceUnavailable
	// TransactionConflict answers a TransactWriteItems with 400
	// TransactionCanceledException whose CancellationReasons hold one entry
	// per item of the request: TransactionConflict for the first, None for
	// the others. Any other operation gets 400
	// TransactionConflictException, DynamoDB's answer to a single-item
	// write of an item that a transaction holds.
	TransactionConflict
	// Drop closes the connection without answering, before the request is
	// forwarded: it never takes effect.
	Drop
	// DropResponse forwards the request, then closes the connection
	// instead of answering: the request took effect, and the client cannot
	// know it.
	DropResponse
	// Unprocessed answers a BatchGetItem or BatchWriteItem with success
	// and nothing done: every requested key in UnprocessedKeys (every item
	// in UnprocessedItems), as DynamoDB answers a batch it throttles
	// whole. Other operations are forwarded.
	Unprocessed
)

var faultNames = [...]string{
	None:                "none",
	Throttle:            "throttle",
	Throttling:          "throttling",
	InternalServerError: "internal-server-error",
	ServiceUnavailable:  "service-unavailable",
	TransactionConflict: "transaction-conflict",
	Drop:                "drop",
	DropResponse:        "drop-response",
	Unprocessed:         "unprocessed",
}

// String returns the fault's name, as in "throttle".
func (f Fault) String() string {
	if f < 0 || int(f) >= len(faultNames) {
		return "fault(" + strconv.Itoa(int(f)) + ")"
	}
	return faultNames[f]
}

// Rule says which requests get a fault, and which fault.
type Rule struct {
	// Operations are the DynamoDB operations the rule applies to, by name
	// ("BatchGetItem", "TransactWriteItems"). Empty: every request.
	Operations []string

	// Fault is what happens to a request the rule fires on.
	Fault Fault

	// Delay holds a request the rule fires on for this long before its
	// Fault applies (or before it is forwarded, with Fault None). A client
	// that gives up meanwhile ends the wait, and the request is never
	// forwarded.
	Delay time.Duration

	// Probability is the chance that the rule fires on a request it
	// considers, in (0, 1]. Zero means 1: it fires on every one.
	Probability float64

	// Skip lets the first Skip requests the rule considers through
	// untouched (they count for Skip whether or not a probability draw
	// would have fired).
	Skip int

	// Count bounds how many times the rule fires; after that it lets
	// everything through. Zero: no bound.
	Count int

	// After and For make a time window, measured from when the rule is
	// added: the rule considers requests from After on, for For. For zero:
	// until the rule is removed.
	After, For time.Duration
}

// validate reports what is wrong with r.
func (r Rule) validate() error {
	var errs []error
	if r.Fault < None || r.Fault > Unprocessed {
		errs = append(errs, fmt.Errorf("unknown fault %d", r.Fault))
	}
	if r.Fault == None && r.Delay <= 0 {
		errs = append(errs, errors.New("neither a fault nor a delay"))
	}
	if r.Delay < 0 {
		errs = append(errs, fmt.Errorf("negative delay %v", r.Delay))
	}
	if r.Probability < 0 || r.Probability > 1 {
		errs = append(errs, fmt.Errorf("probability %v: want 0 to 1", r.Probability))
	}
	if r.Skip < 0 || r.Count < 0 || r.After < 0 || r.For < 0 {
		errs = append(errs, errors.New("negative skip, count, after or for"))
	}
	for _, op := range r.Operations {
		if op == "" || strings.ContainsAny(op, ". ") {
			errs = append(errs, fmt.Errorf("operation %q: want a name such as BatchGetItem", op))
		}
	}
	return errors.Join(errs...)
}

// RuleID names a rule added to a Proxy.
type RuleID int

// rule is an added Rule with its state.
type rule struct {
	Rule
	id         RuleID
	start, end time.Time // window; end zero: open
	rng        *rand.Rand
	considered int
	fired      int
}

// applies reports whether r considers a request for op at now.
func (r *rule) applies(op string, now time.Time) bool {
	if len(r.Operations) > 0 && !slices.Contains(r.Operations, op) {
		return false
	}
	return !now.Before(r.start) && (r.end.IsZero() || now.Before(r.end))
}

// fires decides whether r fires on the request it now considers.
func (r *rule) fires() bool {
	r.considered++
	if r.considered <= r.Skip || r.Count > 0 && r.fired >= r.Count {
		return false
	}
	if r.Probability > 0 && r.Probability < 1 && r.rng.Float64() >= r.Probability {
		return false
	}
	r.fired++
	return true
}

// Count is what the proxy saw of one operation.
type Count struct {
	// Requests is how many requests arrived.
	Requests int
	// Faults is how many of them a rule fired on (delays included).
	Faults int
}

// Proxy is a running fault-injecting proxy. Its methods are safe for
// concurrent use.
type Proxy struct {
	seed     uint64
	url      string
	srv      *http.Server
	rp       *httputil.ReverseProxy
	ctx      context.Context // ends at Close
	cancel   context.CancelFunc
	handlers sync.WaitGroup

	mu struct {
		sync.Mutex
		nextID   RuleID
		rules    []*rule
		fired    map[RuleID]int // of every rule ever added
		counts   map[string]Count
		inFlight int
		idle     chan struct{} // closed while inFlight is 0
		closed   bool
	}
}

// maxBody bounds the request bodies the proxy reads (DynamoDB's own limit on
// a request is 16 MB).
const maxBody = 16 << 20

// New starts a proxy on a free port of 127.0.0.1 forwarding to target, the
// base URL of a DynamoDB API such as http://127.0.0.1:5055. seed seeds the
// rules' random draws.
func New(target string, seed uint64) (*Proxy, error) {
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("faultproxy: target %q: want an http:// or https:// URL", target)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen: %w", err)
	}
	p := &Proxy{seed: seed, url: "http://" + l.Addr().String()}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.mu.fired = map[RuleID]int{}
	p.mu.counts = map[string]Count{}
	p.mu.idle = make(chan struct{})
	close(p.mu.idle)
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			// The client signed the Host it sent to: keep it.
			pr.Out.Host = pr.In.Host
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() != nil {
				return // the client is gone
			}
			w.WriteHeader(http.StatusBadGateway)
		},
		ErrorLog: log.New(io.Discard, "", 0),
	}
	p.srv = &http.Server{
		Handler:  http.HandlerFunc(p.serve),
		ErrorLog: log.New(io.Discard, "", 0),
	}
	go func() { _ = p.srv.Serve(l) }() // returns ErrServerClosed at Close
	return p, nil
}

// Start starts a proxy in front of target for the test t, and closes it when
// the test ends. It fails t if the proxy cannot start.
func Start(t testing.TB, target string, seed uint64) *Proxy {
	t.Helper()
	p, err := New(target, seed)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// URL returns the proxy's base URL, such as http://127.0.0.1:41234: the
// endpoint to give the client instead of the target's.
func (p *Proxy) URL() string { return p.url }

// Add adds a rule after the existing ones and returns its id.
func (p *Proxy) Add(r Rule) (RuleID, error) {
	if err := r.validate(); err != nil {
		return 0, fmt.Errorf("faultproxy: rule: %w", err)
	}
	r.Operations = slices.Clone(r.Operations)
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mu.nextID++
	ru := &rule{Rule: r, id: p.mu.nextID, start: now.Add(r.After)}
	if r.For > 0 {
		ru.end = ru.start.Add(r.For)
	}
	ru.rng = rand.New(rand.NewPCG(p.seed, uint64(ru.id)))
	p.mu.rules = append(p.mu.rules, ru)
	p.mu.fired[ru.id] = 0
	return ru.id, nil
}

// Remove removes a rule. Requests it is delaying carry on.
func (p *Proxy) Remove(id RuleID) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mu.rules = slices.DeleteFunc(p.mu.rules, func(r *rule) bool { return r.id == id })
}

// Clear removes every rule: from now on, every request is forwarded.
func (p *Proxy) Clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mu.rules = nil
}

// Fired returns how many times the rule has fired, removed or not.
func (p *Proxy) Fired(id RuleID) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.fired[id]
}

// Count returns what the proxy saw of operation op ("BatchGetItem"; ""
// counts requests without an X-Amz-Target).
func (p *Proxy) Count(op string) Count {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.counts[op]
}

// Counts returns what the proxy saw, by operation.
func (p *Proxy) Counts() map[string]Count {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]Count, len(p.mu.counts))
	for op, c := range p.mu.counts {
		out[op] = c
	}
	return out
}

// WaitIdle returns once no request is in the proxy: none being delayed,
// and none forwarded and still unanswered by the target (a request whose
// client gave up while it was forwarded counts until the target answers
// it, since the target keeps working on it). Benchmarks use it to start
// each request on an idle server.
func (p *Proxy) WaitIdle(ctx context.Context) error {
	for {
		p.mu.Lock()
		idle := p.mu.idle
		p.mu.Unlock()
		select {
		case <-idle:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// enter and leave count the requests in the proxy.
func (p *Proxy) enter() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.inFlight == 0 {
		p.mu.idle = make(chan struct{})
	}
	p.mu.inFlight++
}

func (p *Proxy) leave() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mu.inFlight--
	if p.mu.inFlight == 0 {
		close(p.mu.idle)
	}
}

// Close stops the proxy: it closes its listener and connections, ends the
// delays in progress, and waits for its handlers to return.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.mu.closed {
		p.mu.Unlock()
		return nil
	}
	p.mu.closed = true
	p.mu.Unlock()
	p.cancel()
	err := p.srv.Close()
	p.handlers.Wait()
	return err
}

// Operation returns the DynamoDB operation an X-Amz-Target header names:
// BatchGetItem for "DynamoDB_20120810.BatchGetItem", "" for none.
func Operation(target string) string {
	_, op, ok := strings.Cut(target, ".")
	if !ok {
		return target
	}
	return op
}

// decide counts a request for op and returns the rule that fires on it, if
// any (a copy, safe to read without the lock).
func (p *Proxy) decide(op string) (Rule, bool) {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.mu.counts[op]
	c.Requests++
	var (
		fired Rule
		ok    bool
	)
	for _, r := range p.mu.rules {
		if r.applies(op, now) && r.fires() {
			c.Faults++
			p.mu.fired[r.id] = r.fired
			fired, ok = r.Rule, true
			break
		}
	}
	p.mu.counts[op] = c
	return fired, ok
}

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	p.handlers.Add(1)
	defer p.handlers.Done()
	p.enter()
	defer p.leave()
	// A delay ends when the client goes away or the proxy closes. A
	// forwarded request runs to its end (as it would at a server the
	// client hung up on) unless the proxy closes.
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(p.ctx, cancel)()
	fwdCtx, fwdCancel := context.WithCancel(context.WithoutCancel(r.Context()))
	defer fwdCancel()
	defer context.AfterFunc(p.ctx, fwdCancel)()
	r = r.WithContext(fwdCtx)

	// Read the whole body first: a handler that has read it learns at once
	// when the client closes the connection (so a delay ends with it), and
	// a TransactionConflict answer needs the number of items.
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	if err != nil {
		return // the client is gone
	}
	r.Body = io.NopCloser(bytes.NewReader(body))

	op := Operation(r.Header.Get("X-Amz-Target"))
	ru, fired := p.decide(op)
	if !fired {
		p.rp.ServeHTTP(w, r)
		return
	}
	if ru.Delay > 0 {
		t := time.NewTimer(ru.Delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
	}
	if ctx.Err() != nil {
		return // the client is gone before anything was forwarded
	}
	switch ru.Fault {
	case None:
		p.rp.ServeHTTP(w, r)
	case Throttle:
		writeError(w, http.StatusBadRequest, "ProvisionedThroughputExceededException",
			"The level of configured provisioned throughput for the table was exceeded. "+
				"Consider increasing your provisioning level with the UpdateTable API.", nil)
	case Throttling:
		writeError(w, http.StatusBadRequest, "ThrottlingException", "Rate of requests exceeds the allowed throughput.", nil)
	case InternalServerError:
		writeError(w, http.StatusInternalServerError, "InternalServerError", "Internal server error", nil)
	case ServiceUnavailable:
		writeError(w, http.StatusServiceUnavailable, "ServiceUnavailable", "Service unavailable", nil)
	case TransactionConflict:
		if op == "TransactWriteItems" || op == "TransactGetItems" {
			writeCanceled(w, body)
			return
		}
		writeError(w, http.StatusBadRequest, "TransactionConflictException",
			"Transaction is ongoing for the item", nil)
	case Drop:
		hangUp(w)
	case DropResponse:
		p.rp.ServeHTTP(discard{header: http.Header{}}, r)
		hangUp(w)
	case Unprocessed:
		if !writeUnprocessed(w, op, body) {
			p.rp.ServeHTTP(w, r)
		}
	}
}

// writeUnprocessed answers a batch request with everything left
// unprocessed, and reports whether op is a batch it knows.
func writeUnprocessed(w http.ResponseWriter, op string, body []byte) bool {
	var req struct{ RequestItems json.RawMessage }
	if json.Unmarshal(body, &req) != nil || len(req.RequestItems) == 0 {
		return false
	}
	var out []byte
	switch op {
	case "BatchGetItem":
		out = []byte(`{"Responses":{},"UnprocessedKeys":` + string(req.RequestItems) + `}`)
	case "BatchWriteItem":
		out = []byte(`{"UnprocessedItems":` + string(req.RequestItems) + `}`)
	default:
		return false
	}
	writeJSON(w, http.StatusOK, out)
	return true
}

// hangUp closes the client's connection without an answer.
func hangUp(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// Only HTTP/1 connections can be taken over, and the proxy
		// serves nothing else; a bad gateway is the nearest answer.
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	conn.Close()
}

// discard is a ResponseWriter that drops the response.
type discard struct{ header http.Header }

func (d discard) Header() http.Header         { return d.header }
func (d discard) Write(b []byte) (int, error) { return len(b), nil }
func (d discard) WriteHeader(int)             {}
func (d discard) Flush()                      {}

// errorTypePrefix is the namespace of DynamoDB's error types in error
// bodies.
const errorTypePrefix = "com.amazonaws.dynamodb.v20120810#"

// writeError answers a DynamoDB error: status, code and message, and extra
// members of the error's body.
func writeError(w http.ResponseWriter, status int, code, message string, extra map[string]any) {
	body := map[string]any{"__type": errorTypePrefix + code, "message": message}
	for k, v := range extra {
		body[k] = v
	}
	b, err := json.Marshal(body)
	if err != nil { // the bodies built here always marshal
		b = []byte(`{"__type":"` + errorTypePrefix + code + `"}`)
	}
	w.Header().Set("X-Amzn-ErrorType", code)
	writeJSON(w, status, b)
}

// writeJSON answers status with the JSON body b, with the headers DynamoDB
// sends.
func writeJSON(w http.ResponseWriter, status int, b []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/x-amz-json-1.0")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Set("X-Amzn-RequestId", "faultproxy")
	h.Set("X-Amz-Crc32", strconv.FormatUint(uint64(crc32.ChecksumIEEE(b)), 10))
	w.WriteHeader(status)
	_, _ = w.Write(b) // the client may be gone
}

// reason is one entry of a TransactionCanceledException's
// CancellationReasons.
type reason struct {
	Code    string `json:"Code"`
	Message string `json:"Message,omitempty"`
}

// writeCanceled answers a transaction request with a cancellation whose
// first item is in conflict, the others not at fault.
func writeCanceled(w http.ResponseWriter, body []byte) {
	var req struct{ TransactItems []json.RawMessage }
	_ = json.Unmarshal(body, &req) // a body that does not parse gets one reason
	n := max(1, len(req.TransactItems))
	reasons := make([]reason, n)
	codes := make([]string, n)
	for i := range reasons {
		reasons[i] = reason{Code: "None"}
		if i == 0 {
			reasons[i] = reason{Code: "TransactionConflict", Message: "Transaction is ongoing for the item"}
		}
		codes[i] = reasons[i].Code
	}
	writeError(w, http.StatusBadRequest, "TransactionCanceledException",
		"Transaction cancelled, please refer cancellation reasons for specific reasons ["+strings.Join(codes, ", ")+"]",
		map[string]any{"CancellationReasons": reasons})
}
