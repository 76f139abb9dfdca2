package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"strings"
	"sync"
)

// With Options.Formats the measurement asks the same query server, (a)'s,
// for the same queries in two more answer forms, and drives them side by
// side with (a) and the floor:
//
//	(g) columnar JSON: the request body carries "format": "columnar";
//	(h) Arrow: the request carries Accept: application/vnd.apache.arrow.stream.
//
// The answer form is chosen per request, so all three paths share one
// server process, and its CPU cannot be split by process as --security
// and --resolvers split theirs. Instead the server's CPU time
// (/proc/PID/stat) is read before and after every slice; slices do not
// overlap (a slice ends when its last answer is in), so the difference is
// the CPU the server spent on that slice's path, and each path's CPU per
// query is the sum over its slices divided by the queries of its slices.
//
// Every answer of the three paths is checked against its Content-Type
// ([checkAnswer]); its size and Content-Type are recorded, so that the
// report shows whether the server honoured the form asked for. A server
// that does not know a form answers row JSON, which passes the check.

// Media types of the answer forms.
const (
	// ArrowStreamType is the media type of an Arrow IPC stream.
	ArrowStreamType = "application/vnd.apache.arrow.stream"
	// jsonType is the media type of the JSON answers.
	jsonType = "application/json"
)

// arrowContinuation is the first four bytes of every message of an Arrow
// IPC stream (the continuation marker), and so of the stream.
var arrowContinuation = []byte{0xff, 0xff, 0xff, 0xff}

// formatVariants returns the variants (g) and (h), to be queried on (a)'s
// server.
func formatVariants() []serverVariant {
	return []serverVariant{
		{name: "(g)", label: `(g) columnar JSON: "format": "columnar"`, format: "columnar"},
		{name: "(h)", label: "(h) Arrow: Accept: " + ArrowStreamType, accept: ArrowStreamType},
	}
}

// withFormat returns sets whose bodies also carry "format": format. The
// bodies are JSON objects made by requests.
func withFormat(sets []requestSet, format string) []requestSet {
	if format == "" {
		return sets
	}
	field, _ := json.Marshal(format)
	out := make([]requestSet, len(sets))
	for i, s := range sets {
		body := make([]byte, 0, len(s.body)+len(field)+12)
		body = append(body, `{"format":`...)
		body = append(body, field...)
		body = append(body, ',')
		body = append(body, s.body[1:]...) // after the object's '{'
		out[i] = requestSet{keys: s.keys, body: body}
	}
	return out
}

// checkAnswer checks that an answer is well-formed for its Content-Type:
// status 200; JSON that parses and carries no errors; or an Arrow IPC
// stream, which starts with the continuation marker. Any other type is
// an error.
func checkAnswer(status int, contentType string, body []byte) error {
	if status != http.StatusOK {
		return fmt.Errorf("HTTP %d: %.300s", status, body)
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return fmt.Errorf("Content-Type %q: %w", contentType, err)
	}
	switch mt {
	case jsonType:
		if !json.Valid(body) {
			return fmt.Errorf("answer of Content-Type %s is not JSON: %.300q", contentType, body)
		}
		if !bytes.Contains(body, errorsNone) {
			return fmt.Errorf("query answered errors: %.300s", body)
		}
		return nil
	case ArrowStreamType:
		if !bytes.HasPrefix(body, arrowContinuation) {
			return fmt.Errorf("answer of Content-Type %s does not start with the IPC continuation marker 0xFFFFFFFF: % x", contentType, body[:min(len(body), 8)])
		}
		return nil
	default:
		return fmt.Errorf("answer of Content-Type %q: want %s or %s", contentType, jsonType, ArrowStreamType)
	}
}

// answerStats records the answers of a path: their sizes and the
// Content-Types seen. Safe for concurrent use.
type answerStats struct {
	mu    sync.Mutex
	sizes []int
	types map[string]int
}

func (s *answerStats) add(contentType string, size int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sizes = append(s.sizes, size)
	if s.types == nil {
		s.types = map[string]int{}
	}
	s.types[contentType]++
}

// medianSize returns the median size of the answers, in bytes, and how
// many there were.
func (s *answerStats) medianSize() (int, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.sizes)
	if n == 0 {
		return 0, 0
	}
	sorted := slices.Sorted(slices.Values(s.sizes))
	if n%2 == 1 {
		return sorted[n/2], n
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2, n
}

// typesText lists the Content-Types seen, the most frequent first, with
// their counts when there is more than one.
func (s *answerStats) typesText() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.types) == 0 {
		return "none"
	}
	types := make([]string, 0, len(s.types))
	for t := range s.types {
		types = append(types, t)
	}
	slices.SortFunc(types, func(a, b string) int {
		if c := s.types[b] - s.types[a]; c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	if len(types) == 1 {
		return "`" + types[0] + "`"
	}
	parts := make([]string, len(types))
	for i, t := range types {
		parts[i] = fmt.Sprintf("`%s` ×%d", t, s.types[t])
	}
	return strings.Join(parts, ", ")
}

// sliceCPU is the server CPU a path used over its own slices.
type sliceCPU struct {
	ok      bool
	ticks   float64
	queries int
}

// add adds the CPU between ticks before and after one slice of queries.
func (c *sliceCPU) add(before, after float64, okBefore, okAfter bool, queries int) {
	if !okBefore || !okAfter {
		return
	}
	c.ok = true
	c.ticks += after - before
	c.queries += queries
}

// perQuery returns the CPU per query, in seconds.
func (c *sliceCPU) perQuery() (float64, bool) {
	if !c.ok || c.queries == 0 {
		return 0, false
	}
	return c.ticks / userHZ / float64(c.queries), true
}
