// Package resolversvc is an http resolver service for tests
// (docs/resolvers.md has the contract): it answers credit_score and
// fresh_score of the keys asked for, counts its calls and the keys in
// them, and can be made slow, hang, or answer what a broken service
// answers.
package resolversvc

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Features is a feature file whose user.credit resolver calls the service
// (at ${CREDIT_URL}, with ${CREDIT_TOKEN}: URL() and Token): two features,
// one kept for an hour and one computed on every query, and expressions
// over the first and over the stored age.
const Features = `namespaces:
  - name: user
    primary_key: id
    max_staleness: infinity
    features:
      id: string
      age: int
      credit_score: {type: int, max_staleness: 1h}
      fresh_score: {type: int, max_staleness: 0s}
      tier: {type: string, max_staleness: 1h}
      decade: {type: int, max_staleness: 1h}
    resolvers:
      - name: credit
        kind: http
        url: ${CREDIT_URL}/resolve
        headers: {Authorization: "Bearer ${CREDIT_TOKEN}"}
        outputs: [credit_score, fresh_score]
        timeout: 2s
        batch_size: 10
      - name: tier_of
        kind: expression
        outputs: [tier]
        expression: 'credit_score > 600 ? "gold" : "basic"'
      - name: decade_of
        kind: expression
        outputs: [decade]
        expression: 'age / 10'
`

// Token is the bearer token the service requires.
const Token = "s3cret"

// Modes of a Service's answers.
const (
	Normal     = ""            // the values
	Hang       = "hang"        // no answer until the client goes away
	Status500  = "500"         // 500 with a message
	Malformed  = "malformed"   // JSON cut short
	WrongType  = "wrong-type"  // credit_score as a string
	UnknownKey = "unknown-key" // a row of a key not asked for
)

// Service is a running resolver service. Its fields and methods are safe
// for concurrent use.
type Service struct {
	srv *httptest.Server
	// Calls counts the calls answered or not.
	Calls atomic.Int64
	// Delay holds every answer this long (a time.Duration).
	Delay atomic.Int64

	mode atomic.Value
	mu   sync.Mutex
	keys map[string]int
}

// Start starts a service on 127.0.0.1 for t, closed when t ends.
//
// Its answer gives each key k credit_score 500 + 50·len(k) and
// fresh_score the number of the call; the key "unknown" has no row.
func Start(t testing.TB) *Service {
	t.Helper()
	s := &Service{keys: map[string]int{}}
	s.mode.Store(Normal)
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.srv.Listener = ln
	s.srv.Start()
	t.Cleanup(s.srv.Close)
	return s
}

// URL is the service's base URL; it answers POST URL/resolve (and any
// other path).
func (s *Service) URL() string { return s.srv.URL }

// SetMode makes the next answers those of mode.
func (s *Service) SetMode(mode string) { s.mode.Store(mode) }

// CallsFor returns how many calls named key.
func (s *Service) CallsFor(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keys[key]
}

func (s *Service) serve(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+Token {
		http.Error(w, "no token", http.StatusUnauthorized)
		return
	}
	var req struct {
		Keys []string `json:"keys"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || len(req.Keys) == 0 {
		http.Error(w, fmt.Sprintf("bad request: %v", err), http.StatusBadRequest)
		return
	}
	n := s.Calls.Add(1)
	s.mu.Lock()
	for _, k := range req.Keys {
		s.keys[k]++
	}
	s.mu.Unlock()
	time.Sleep(time.Duration(s.Delay.Load()))
	switch s.mode.Load().(string) {
	case Hang:
		<-r.Context().Done()
		return
	case Status500:
		http.Error(w, "database on fire", http.StatusInternalServerError)
		return
	case Malformed:
		fmt.Fprint(w, `{"rows": [`)
		return
	case WrongType:
		fmt.Fprintf(w, `{"rows": [{"key": %q, "values": {"credit_score": "high"}}]}`, req.Keys[0])
		return
	case UnknownKey:
		fmt.Fprint(w, `{"rows": [{"key": "stranger", "values": {"credit_score": 1}}]}`)
		return
	}
	// nil when no key has a row: encoded "rows": null, which a service in
	// Go answers so and cairn takes as no rows.
	var rows []map[string]any
	for _, k := range req.Keys {
		if k == "unknown" {
			continue // resolves to null
		}
		rows = append(rows, map[string]any{"key": k, "values": map[string]any{"credit_score": 500 + 50*len(k), "fresh_score": n}})
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"rows": rows})
}
