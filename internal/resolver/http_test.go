package resolver

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairnfs/cairn/internal/feature"
)

// allTypes declares one feature of every type; the resolver computes all
// of them.
const allTypesFeatures = `
        i: int
        f: float
        s: string
        b: bool
        by: bytes
        dt: datetime
        l: list[int]
        ll: list[list[string]]
        v: vector[3]
        j: json`

var allTypesOutputs = "[i, f, s, b, by, dt, l, ll, v, j]"

// declare parses a feature file with one namespace, user, whose key has
// keyType, and returns its only resolver.
func declare(t testing.TB, keyType, features, resolver string) *feature.Resolver {
	t.Helper()
	src := `namespaces:
  - name: user
    primary_key: id
    features:
        id: ` + keyType + features + `
    resolvers:
      - name: r
` + resolver
	reg, err := feature.Parse("test.yaml", []byte(src))
	if err != nil {
		t.Fatalf("feature file:\n%s\n%v", src, err)
	}
	ns, _ := reg.Namespace("user")
	if len(ns.Resolvers) != 1 {
		t.Fatalf("want one resolver, got %d", len(ns.Resolvers))
	}
	return ns.Resolvers[0]
}

func httpResolver(t testing.TB, keyType, features, outputs, url string, extra ...string) *feature.Resolver {
	t.Helper()
	r := "        kind: http\n        url: " + url + "\n        outputs: " + outputs + "\n"
	for _, e := range extra {
		r += "        " + e + "\n"
	}
	return declare(t, keyType, features, r)
}

// service is a resolver service that counts calls and keeps the last
// request.
type service struct {
	*httptest.Server
	calls atomic.Int64

	mu     sync.Mutex
	last   httpRequestSeen
	header http.Header
}

type httpRequestSeen struct {
	Namespace string            `json:"namespace"`
	Keys      []json.RawMessage `json:"keys"`
	Features  []string          `json:"features"`
}

// serve starts a service answering each request with answer(request).
func serve(t testing.TB, answer func(w http.ResponseWriter, req httpRequestSeen)) *service {
	s := &service{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.calls.Add(1)
		var req httpRequestSeen
		body, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "want a POST of application/json", http.StatusBadRequest)
			return
		}
		if err := json.Unmarshal(body, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		s.last, s.header = req, r.Header.Clone()
		s.mu.Unlock()
		answer(w, req)
	}))
	t.Cleanup(s.Close)
	return s
}

func fixed(body string) func(http.ResponseWriter, httpRequestSeen) {
	return func(w http.ResponseWriter, _ httpRequestSeen) { io.WriteString(w, body) }
}

func noEnv(string) string { return "" }

func mustHTTP(t testing.TB, d *feature.Resolver, env func(string) string) kind {
	t.Helper()
	k, err := newHTTP(d, env, &http.Client{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.close)
	return k
}

func call(t testing.TB, k kind, keys ...string) ([]Row, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return k.call(ctx, keys, nil)
}

// One call carries the batch: every key, every output by name, the
// headers with their environment variables; every type's JSON form comes
// back as its canonical value, a null as no value, and a key the service
// left out as a nil row.
func TestHTTPAllTypes(t *testing.T) {
	svc := serve(t, fixed(`{"rows": [
		{"key": "u1", "values": {"i": 7, "f": 1.5, "s": "x", "b": true, "by": "AAH/",
			"dt": "2024-05-01T10:00:00.1234567+02:00", "l": [1, 2], "ll": [["a"], []],
			"v": [0.5, 1, -2], "j": {"n": 1.50, "o": {"p": [true]}}}},
		{"key": "u2", "values": {"i": null, "s": "only"}},
		{"key": "u4", "values": {}}
	]}`))
	d := httpResolver(t, "string", allTypesFeatures, allTypesOutputs, svc.URL+"/${PATH_PART}",
		`headers: {Authorization: "Bearer ${TOKEN}", X-Fixed: "yes"}`)
	env := map[string]string{"TOKEN": "s3cret", "PATH_PART": "resolve"}
	k := mustHTTP(t, d, func(n string) string { return env[n] })

	rows, err := call(t, k, "u1", "u2", "u3", "u4")
	if err != nil {
		t.Fatal(err)
	}
	if n := svc.calls.Load(); n != 1 {
		t.Fatalf("%d calls for one batch, want 1", n)
	}
	svc.mu.Lock()
	req, hdr := svc.last, svc.header
	svc.mu.Unlock()
	wantKeys := []string{`"u1"`, `"u2"`, `"u3"`, `"u4"`}
	for i, raw := range req.Keys {
		if i >= len(wantKeys) || string(raw) != wantKeys[i] {
			t.Fatalf("request keys %s, want %v", req.Keys, wantKeys)
		}
	}
	if req.Namespace != "user" || strings.Join(req.Features, ",") != "i,f,s,b,by,dt,l,ll,v,j" {
		t.Fatalf("request %+v", req)
	}
	if hdr.Get("Authorization") != "Bearer s3cret" || hdr.Get("X-Fixed") != "yes" {
		t.Fatalf("headers %v", hdr)
	}

	want := []any{int64(7), 1.5, "x", true, []byte{0, 1, 255},
		time.Date(2024, 5, 1, 8, 0, 0, 123456000, time.UTC),
		[]any{int64(1), int64(2)}, []any{[]any{"a"}, []any{}},
		[]float32{0.5, 1, -2},
		map[string]any{"n": json.Number("1.50"), "o": map[string]any{"p": []any{true}}}}
	if len(rows) != 4 {
		t.Fatalf("%d rows for 4 keys", len(rows))
	}
	if !reflect.DeepEqual(rows[0].Values, want) {
		t.Fatalf("u1:\n got %#v\nwant %#v", rows[0].Values, want)
	}
	for i, v := range rows[0].Values {
		if err := feature.Check(d.Outputs[i].Type, v); err != nil {
			t.Errorf("%s: not canonical: %v", d.Outputs[i].Name, err)
		}
	}
	want2 := make([]any, 10)
	want2[2] = "only"
	if !reflect.DeepEqual(rows[1].Values, want2) {
		t.Errorf("u2: got %#v", rows[1].Values)
	}
	if rows[2].Values != nil || rows[3].Values != nil {
		t.Errorf("absent u3 and empty u4: got %#v, %#v, want nil rows", rows[2].Values, rows[3].Values)
	}
}

// Int keys go out as JSON numbers and come back as numbers.
func TestHTTPIntKeys(t *testing.T) {
	svc := serve(t, func(w http.ResponseWriter, req httpRequestSeen) {
		var rows []string
		for _, k := range req.Keys {
			rows = append(rows, `{"key": `+string(k)+`, "values": {"score": `+string(k)+`0}}`)
		}
		io.WriteString(w, `{"rows": [`+strings.Join(rows, ",")+`]}`)
	})
	d := httpResolver(t, "int", "\n        score: int", "[score]", svc.URL)
	rows, err := call(t, mustHTTP(t, d, noEnv), "42", "-7")
	if err != nil {
		t.Fatal(err)
	}
	svc.mu.Lock()
	keys := svc.last.Keys
	svc.mu.Unlock()
	if len(keys) != 2 || string(keys[0]) != "42" || string(keys[1]) != "-7" {
		t.Fatalf("keys sent as %s, want numbers", keys)
	}
	if rows[0].Values[0] != int64(420) || rows[1].Values[0] != int64(-70) {
		t.Fatalf("rows %v", rows)
	}
}

// An unset variable fails the start, naming the resolver, the setting and
// the variable; the expanded URL is never quoted.
func TestHTTPMissingEnv(t *testing.T) {
	for _, tc := range []struct {
		url, header string
		want        []string
	}{
		{"http://${HOST}/r", "", []string{"user.r", "url", "HOST"}},
		{"http://127.0.0.1/r", `headers: {Authorization: "Bearer ${TOKEN}"}`, []string{"user.r", "header Authorization", "TOKEN"}},
	} {
		d := httpResolver(t, "string", "\n        a: int", "[a]", tc.url, tc.header)
		_, err := newHTTP(d, noEnv, http.DefaultClient)
		if err == nil {
			t.Fatalf("%s: no error", tc.url)
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q does not name %q", err, w)
			}
		}
	}
	d := httpResolver(t, "string", "\n        a: int", "[a]", "${U}")
	_, err := newHTTP(d, func(string) string { return "not a url" }, http.DefaultClient)
	if err == nil || !strings.Contains(err.Error(), "absolute http") || strings.Contains(err.Error(), "not a url") {
		t.Fatalf("a bad URL: %v", err)
	}
}

// Every way an answer can be wrong fails the batch with an error saying
// which, and none of them is sent again.
func TestHTTPBadAnswers(t *testing.T) {
	for _, tc := range []struct {
		name, status, body, want string
	}{
		{"500", "500", "database is down\n", "answered 500: database is down"},
		{"404 empty", "404", "", "answered 404: (empty body)"},
		{"long body", "502", strings.Repeat("x", 300), "answered 502: " + strings.Repeat("x", 200) + "..."},
		{"not json", "200", "<html>", "malformed answer"},
		{"not the shape", "200", `{"rows": {"u1": 1}}`, "malformed answer"},
		{"no rows", "200", `{"data": []}`, `malformed answer: no "rows"`},
		{"trailing", "200", `{"rows": []} {}`, "data after the JSON object"},
		{"not unicode", "200", "{\"rows\": [{\"key\": \"u1\xff\"}]}", "not valid UTF-8"},
		{"wrong type", "200", `{"rows": [{"key": "u1", "values": {"score": "high"}}]}`, `row 0 (key "u1"): score: want an integer in int64 range, got "high"`},
		{"unknown key", "200", `{"rows": [{"key": "u1"}, {"key": "u9"}]}`, `row 1: key "u9" was not asked for`},
		{"no key", "200", `{"rows": [{"key": "u1"}, {"key": "u2"}, {"values": {"score": 1}}]}`, "row 2: no key"},
		{"null key", "200", `{"rows": [{"key": null}]}`, "row 0: no key"},
		{"repeated key", "200", `{"rows": [{"key": "u1"}, {"key": "u1"}]}`, `row 1: key "u1" answered twice`},
		{"key of wrong type", "200", `{"rows": [{"key": 5}]}`, "row 0: key 5: want a string"},
		{"not an output", "200", `{"rows": [{"key": "u1", "values": {"other": 1}}]}`, `"other" is not an output of the resolver (want score)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc := serve(t, func(w http.ResponseWriter, _ httpRequestSeen) {
				code := map[string]int{"200": 200, "404": 404, "500": 500, "502": 502}[tc.status]
				w.WriteHeader(code)
				io.WriteString(w, tc.body)
			})
			d := httpResolver(t, "string", "\n        score: int", "[score]", svc.URL)
			_, err := call(t, mustHTTP(t, d, noEnv), "u1", "u2")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if n := svc.calls.Load(); n != 1 {
				t.Fatalf("%d calls: an answered call was sent again", n)
			}
		})
	}
}

// A service that is not listening is tried three times in all, then the
// call fails saying so.
func TestHTTPConnectionRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	d := httpResolver(t, "string", "\n        score: int", "[score]", "http://"+addr+"/r?token=${TOKEN}")
	_, err = call(t, mustHTTP(t, d, func(string) string { return "s3cret" }), "u1")
	if err == nil || !strings.Contains(err.Error(), "connection refused") || !strings.Contains(err.Error(), "after 2 retries") {
		t.Fatalf("error %v, want connection refused after 2 retries", err)
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error %q quotes the URL, which may hold a secret", err)
	}
}

// A connection closed before any answer is sent again; the retry's answer
// is used.
func TestHTTPRetriesClosedConnection(t *testing.T) {
	var resets atomic.Int64
	svc := serve(t, func(w http.ResponseWriter, _ httpRequestSeen) {
		if resets.Add(1) <= 2 {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		io.WriteString(w, `{"rows": [{"key": "u1", "values": {"score": 3}}]}`)
	})
	d := httpResolver(t, "string", "\n        score: int", "[score]", svc.URL)
	rows, err := call(t, mustHTTP(t, d, noEnv), "u1")
	if err != nil {
		t.Fatal(err)
	}
	if rows[0].Values[0] != int64(3) || svc.calls.Load() != 3 {
		t.Fatalf("rows %v after %d calls, want 3 after 3", rows, svc.calls.Load())
	}

	// Always closed: three attempts, then the error.
	resets.Store(-100)
	svc.calls.Store(0)
	if _, err := call(t, mustHTTP(t, d, noEnv), "u1"); err == nil || svc.calls.Load() != 3 {
		t.Fatalf("error %v after %d calls, want an error after 3", err, svc.calls.Load())
	}
}

// A service that never answers ends at ctx's deadline, with an error the
// caller can tell for a timeout.
func TestHTTPHangsUntilDeadline(t *testing.T) {
	release := make(chan struct{})
	svc := serve(t, func(w http.ResponseWriter, _ httpRequestSeen) { <-release })
	defer close(release) // before svc.Close, which waits for handlers
	d := httpResolver(t, "string", "\n        score: int", "[score]", svc.URL)
	k := mustHTTP(t, d, noEnv)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := k.call(ctx, []string{"u1"}, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v, want one wrapping context.DeadlineExceeded", err)
	}
	if el := time.Since(start); el > time.Second {
		t.Fatalf("returned after %v, deadline was 100ms", el)
	}
	if n := svc.calls.Load(); n != 1 {
		t.Fatalf("%d calls: a timed-out call was sent again", n)
	}
}

// The answer decoder never panics, and what it accepts is one row per key
// holding canonical values of the outputs' types.
func FuzzHTTPAnswer(f *testing.F) {
	for _, s := range []string{
		`{"rows": [{"key": "u1", "values": {"i": 7, "l": [1], "v": [1,2,3], "j": {}}}]}`,
		`{"rows": [{"key": "u2", "values": {"dt": "2024-01-01T00:00:00Z", "by": "AA=="}}, {"key": "u1"}]}`,
		`{"rows": []}`, `{"rows": [{"key": "u3"}]}`, `{}`, `[]`, `{"rows": [{"key": "\ud800"}]}`,
	} {
		f.Add([]byte(s))
	}
	d := declare(f, "string", allTypesFeatures, "        kind: http\n        url: http://127.0.0.1/\n        outputs: "+allTypesOutputs+"\n")
	dec := newAnswerDecoder(d)
	keys := []string{"u1", "u2", "u1"}
	f.Fuzz(func(t *testing.T, body []byte) {
		rows, err := dec.decode(body, keys)
		if err != nil {
			return
		}
		if len(rows) != len(keys) {
			t.Fatalf("%d rows for %d keys", len(rows), len(keys))
		}
		if !reflect.DeepEqual(rows[0], rows[2]) {
			t.Fatalf("one key asked twice answered differently")
		}
		for _, r := range rows {
			if r.Values == nil {
				continue
			}
			if len(r.Values) != len(d.Outputs) {
				t.Fatalf("%d values for %d outputs", len(r.Values), len(d.Outputs))
			}
			for i, v := range r.Values {
				if err := feature.Check(d.Outputs[i].Type, v); err != nil {
					t.Fatalf("%s: %v", d.Outputs[i].Name, err)
				}
			}
		}
	})
}
