package resolver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/cairnfs/cairn/internal/feature"
)

// The http kind's limits (docs/resolvers.md states them for the people who
// write resolver services).
const (
	// maxHTTPAnswer bounds the body of an http resolver's answer.
	maxHTTPAnswer = 64 << 20
	// httpRetries is how many times a call is sent again after a
	// connection error that came before any answer.
	httpRetries = 2
	// httpRetryBackoff is the first wait before a retry; each next one
	// doubles, with up to as much again of jitter.
	httpRetryBackoff = 10 * time.Millisecond
	// errorBodyBytes is how much of a non-2xx answer's body an error
	// quotes.
	errorBodyBytes = 200
)

// httpKind posts the keys to resolve to a URL and reads values from the
// answer; docs/resolvers.md is the contract.
type httpKind struct {
	url     string
	headers http.Header
	client  *http.Client
	decoder *answerDecoder
	// request is the part of the body shared by every call.
	namespace string
	features  []string
	keyType   feature.Type
}

// newHTTP builds an http resolver: URL and header values expanded with
// feature.ExpandEnv(s, what, env) (an unset variable is an error naming
// the resolver, the setting and the variable); client is shared by all
// http resolvers of a server.
func newHTTP(d *feature.Resolver, env func(string) string, client *http.Client) (kind, error) {
	u, err := feature.ExpandEnv(d.URL, "resolver "+d.FQN+": url", env)
	if err != nil {
		return nil, err
	}
	parsed, err := url.Parse(u)
	if err != nil || (parsed.Scheme != "http" && parsed.Scheme != "https") || parsed.Host == "" {
		// The expanded URL may hold a secret: quote the declared one.
		return nil, fmt.Errorf("resolver %s: url %q: want an absolute http:// or https:// URL", d.FQN, d.URL)
	}
	h := http.Header{}
	for name, v := range d.Headers {
		if v, err = feature.ExpandEnv(v, "resolver "+d.FQN+": header "+name, env); err != nil {
			return nil, err
		}
		h.Set(name, v)
	}
	h.Set("Content-Type", "application/json")
	h.Set("Accept", "application/json")
	names := make([]string, len(d.Outputs))
	for i, f := range d.Outputs {
		names[i] = f.Name
	}
	return &httpKind{
		url: u, headers: h, client: client,
		decoder:   newAnswerDecoder(d),
		namespace: d.Namespace.Name, features: names, keyType: d.Namespace.PrimaryKey.Type,
	}, nil
}

func (k *httpKind) inputs() []*feature.Feature { return nil }

func (k *httpKind) close() {}

// httpRequest is the body of a call.
type httpRequest struct {
	Namespace string   `json:"namespace"`
	Keys      []any    `json:"keys"`
	Features  []string `json:"features"`
}

func (k *httpKind) call(ctx context.Context, keys []string, _ [][]any) ([]Row, error) {
	req := httpRequest{Namespace: k.namespace, Keys: make([]any, len(keys)), Features: k.features}
	for i, key := range keys {
		req.Keys[i] = feature.KeyJSON(k.keyType, key)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode request: %w", err)
	}
	answer, err := k.post(ctx, body)
	if err != nil {
		return nil, err
	}
	return k.decoder.decode(answer, keys)
}

// post sends body, retrying on connection errors that came before any
// answer, and returns the answer's body.
func (k *httpKind) post(ctx context.Context, body []byte) ([]byte, error) {
	backoff := httpRetryBackoff
	for attempt := 0; ; attempt++ {
		answer, err := k.postOnce(ctx, body)
		if err == nil {
			return answer, nil
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("no answer before the call ended: %w", ctxErr)
		}
		if attempt == httpRetries || !isConnError(err) {
			if attempt > 0 {
				return nil, fmt.Errorf("%w (after %d retries)", err, attempt)
			}
			return nil, err
		}
		wait := backoff + rand.N(backoff)
		backoff *= 2
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("no answer before the call ended: %w (last attempt: %v)", ctx.Err(), err)
		case <-t.C:
		}
	}
}

// answeredError marks an error that came with or after an answer: such a
// call is never sent again.
type answeredError struct{ err error }

func (e *answeredError) Error() string { return e.err.Error() }
func (e *answeredError) Unwrap() error { return e.err }

func (k *httpKind) postOnce(ctx context.Context, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, k.url, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	for name, v := range k.headers {
		req.Header[name] = v
	}
	resp, err := k.client.Do(req)
	if err != nil {
		// url.Error quotes the URL, which may hold an expanded secret.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("post: %w", err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxHTTPAnswer+1))
	if err != nil {
		return nil, &answeredError{fmt.Errorf("answered %d, then reading the body failed: %w", resp.StatusCode, err)}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, &answeredError{fmt.Errorf("answered %d: %s", resp.StatusCode, quoteBody(answer))}
	}
	if len(answer) > maxHTTPAnswer {
		return nil, &answeredError{fmt.Errorf("answer is over the limit of %d MiB", maxHTTPAnswer>>20)}
	}
	return answer, nil
}

// isConnError reports whether err is a failure to reach the service or a
// connection it closed before answering: the call was not served, and
// sending it again is safe.
func isConnError(err error) bool {
	var answered *answeredError
	if errors.As(err, &answered) {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// quoteBody returns the first errorBodyBytes of an error answer, as text.
func quoteBody(b []byte) string {
	if len(b) > errorBodyBytes {
		b = b[:errorBodyBytes]
		for len(b) > 0 && !utf8.Valid(b) { // do not cut a character in two
			b = b[:len(b)-1]
		}
		return strings.TrimSpace(string(b)) + "..."
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return "(empty body)"
	}
	return strings.TrimSpace(string(b))
}

// answerDecoder reads an http resolver's answer.
type answerDecoder struct {
	keyType feature.Type
	outputs []*feature.Feature
	index   map[string]int // output name to its position in outputs
}

func newAnswerDecoder(d *feature.Resolver) *answerDecoder {
	a := &answerDecoder{keyType: d.Namespace.PrimaryKey.Type, outputs: d.Outputs, index: map[string]int{}}
	for i, f := range d.Outputs {
		a.index[f.Name] = i
	}
	return a
}

// httpAnswer is the shape of an answer.
type httpAnswer struct {
	// Rows is kept raw to tell a missing "rows" (a service answering
	// something else: an error) from "rows": null (a service in a
	// language that encodes an empty list so: no rows).
	Rows json.RawMessage `json:"rows"`
}

type httpRow struct {
	Key    json.RawMessage            `json:"key"`
	Values map[string]json.RawMessage `json:"values"`
}

// decode reads body, the answer to a call for keys (canonical, distinct),
// into one Row per key, in keys' order.
func (a *answerDecoder) decode(body []byte, keys []string) ([]Row, error) {
	// encoding/json would replace text that is not Unicode, so that a key
	// the service got wrong could match one asked for.
	if err := feature.CheckText(body); err != nil {
		return nil, fmt.Errorf("malformed answer: %v", err)
	}
	var ans httpAnswer
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&ans); err != nil {
		return nil, fmt.Errorf("malformed answer: want {\"rows\": [...]}: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("malformed answer: data after the JSON object")
	}
	if ans.Rows == nil {
		return nil, errors.New(`malformed answer: no "rows"`)
	}
	var rows []httpRow
	if err := json.Unmarshal(ans.Rows, &rows); err != nil {
		return nil, fmt.Errorf("malformed answer: want \"rows\": [{\"key\": ..., \"values\": {...}}, ...]: %v", err)
	}
	pos := make(map[string]int, len(keys))
	for i, k := range keys {
		if _, dup := pos[k]; !dup {
			pos[k] = i
		}
	}
	out := make([]Row, len(keys))
	seen := make([]bool, len(keys))
	for r, row := range rows {
		if len(bytes.TrimSpace(row.Key)) == 0 || string(bytes.TrimSpace(row.Key)) == "null" {
			return nil, fmt.Errorf("row %d: no key", r)
		}
		key, err := feature.ParseKey(a.keyType, row.Key)
		if err != nil {
			return nil, fmt.Errorf("row %d: key %s: %v", r, clipRaw(row.Key), err)
		}
		i, ok := pos[key]
		if !ok {
			return nil, fmt.Errorf("row %d: key %q was not asked for", r, key)
		}
		if seen[i] {
			return nil, fmt.Errorf("row %d: key %q answered twice", r, key)
		}
		seen[i] = true
		var values []any
		for name, raw := range row.Values {
			j, ok := a.index[name]
			if !ok {
				return nil, fmt.Errorf("row %d (key %q): %q is not an output of the resolver (want %s)", r, key, name, a.names())
			}
			v, err := feature.FromJSON(a.outputs[j].Type, raw)
			if err != nil {
				return nil, fmt.Errorf("row %d (key %q): %s: %v", r, key, name, err)
			}
			if v == nil {
				continue
			}
			if values == nil {
				values = make([]any, len(a.outputs))
			}
			values[j] = v
		}
		out[i].Values = values
	}
	for i, k := range keys { // a key asked for twice gets its answer twice
		if first := pos[k]; first != i {
			out[i] = out[first]
		}
	}
	return out, nil
}

func (a *answerDecoder) names() string {
	names := make([]string, len(a.outputs))
	for i, f := range a.outputs {
		names[i] = f.Name
	}
	return strings.Join(names, ", ")
}

func clipRaw(raw []byte) string {
	const max = 40
	if len(raw) > max {
		return string(raw[:max]) + "..."
	}
	return string(raw)
}
