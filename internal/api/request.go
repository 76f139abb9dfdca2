package api

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/cairnfs/cairn/internal/feature"
)

// A query request is small and nearly always of one shape, yet
// encoding/json's reflection over it (fifty output names, say) took a fifth
// of the query handler's CPU for one entity. decodeQuery reads that shape by hand and leaves
// every other body, every malformed one included, to decodeBody, so that
// what is accepted and every error answered stay those of encoding/json.

// decodeQuery decodes the request's body into req. Like decodeBody, it
// answers the error itself and returns false on failure.
func (s *Server) decodeQuery(w http.ResponseWriter, r *http.Request, req *queryRequest, buf *[]byte) bool {
	body, err := readAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes), (*buf)[:0])
	*buf = body
	if err == nil && parseQueryRequest(body, req, s.reg) {
		return true
	}
	// encoding/json reads the same bytes, then the same read error.
	*req = queryRequest{}
	var rest io.Reader = bytes.NewReader(body)
	if err != nil {
		rest = io.MultiReader(rest, errorReader{err})
	}
	r.Body = io.NopCloser(rest)
	return s.decodeBody(w, r, req, false)
}

// splitScalars returns the elements of raw, a JSON array of strings,
// numbers, booleans and nulls, as json.Unmarshal into []json.RawMessage
// returns them: each element's text without the space around it. For
// anything else (nested arrays or objects, text that is not such an
// array) ok is false, and raw is left to encoding/json.
func splitScalars(raw []byte) (elems []json.RawMessage, ok bool) {
	p := reqParser{b: raw}
	if !p.consume('[') {
		return nil, false
	}
	p.space()
	if p.consume(']') {
		p.space()
		return []json.RawMessage{}, p.i == len(p.b)
	}
	for {
		p.space()
		start := p.i
		if p.i >= len(p.b) {
			return nil, false
		}
		switch c := p.b[p.i]; {
		case c == '"':
			p.i++
			for p.i < len(p.b) && p.b[p.i] != '"' {
				if p.b[p.i] == '\\' {
					p.i++
				}
				p.i++
			}
			if p.i >= len(p.b) {
				return nil, false
			}
			p.i++
		case c == '-' || c >= '0' && c <= '9' || c == 't' || c == 'f' || c == 'n':
			for p.i < len(p.b) && !strings.ContainsRune(" \t\r\n,]", rune(p.b[p.i])) {
				p.i++
			}
		default:
			return nil, false
		}
		elem := raw[start:p.i:p.i]
		if !json.Valid(elem) {
			return nil, false
		}
		elems = append(elems, elem)
		p.space()
		if p.consume(']') {
			p.space()
			return elems, p.i == len(p.b)
		}
		if !p.consume(',') {
			return nil, false
		}
	}
}

// readAll is io.ReadAll appending to b.
func readAll(r io.Reader, b []byte) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			return b, err
		}
	}
}

// bodyBuffers hold query bodies for the next queries: the request, whose
// inputs are slices of its body, is done with it when the query is
// answered.
var bodyBuffers = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledBody bounds the bodies kept for the next queries.
const maxPooledBody = 64 << 10

// putBody gives a query's body buffer back to bodyBuffers.
func putBody(b *[]byte) {
	if cap(*b) <= maxPooledBody {
		bodyBuffers.Put(b)
	}
}

// errorReader fails every read with err.
type errorReader struct{ err error }

func (e errorReader) Read([]byte) (int, error) { return 0, e.err }

// parseQueryRequest decodes body into req if it has the usual shape: valid
// UTF-8 and valid JSON; an object whose members are inputs (an object of
// values other than null), outputs (an array of strings), staleness (an
// object of strings), include_meta (true or false), format (a string),
// each at most once, and others, skipped, whose names encoding/json would
// not match to those; with no escape in any name or string read. For any other body it
// returns false, and req is to be decoded again from scratch.
//
// An output that names a feature of reg is given the feature's own FQN
// rather than a new string.
func parseQueryRequest(body []byte, req *queryRequest, reg *feature.Registry) bool {
	if !utf8.Valid(body) || !json.Valid(body) {
		return false
	}
	p := reqParser{b: body}
	if !p.consume('{') {
		return false
	}
	var seen [5]bool // inputs, outputs, staleness, include_meta, format
	once := func(i int) bool {
		first := !seen[i]
		seen[i] = true
		return first
	}
	for first := true; ; first = false {
		if p.consume('}') {
			return true // json.Valid: nothing but white space follows
		}
		if !first && !p.consume(',') {
			return false
		}
		name, ok := p.str()
		if !ok || !p.consume(':') {
			return false
		}
		switch string(name) {
		case "inputs":
			ok = once(0) && p.inputs(req)
		case "outputs":
			ok = once(1) && p.outputs(req, reg)
		case "staleness":
			ok = once(2) && p.staleness(req)
		case "include_meta":
			ok = once(3) && p.bool(&req.IncludeMeta)
		case "format":
			ok = once(4) && p.format(req)
		default:
			// encoding/json matches names regardless of case.
			ok = ascii(name) && !slices.ContainsFunc(queryMembers[:], func(m string) bool {
				return strings.EqualFold(m, string(name))
			}) && p.skip()
		}
		if !ok {
			return false
		}
	}
}

// queryMembers are the members of a query request that cairn reads.
var queryMembers = [...]string{"inputs", "outputs", "staleness", "include_meta", "format"}

func ascii(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// reqParser reads JSON already known to be valid.
type reqParser struct {
	b []byte
	i int
}

func (p *reqParser) space() {
	for p.i < len(p.b) && (p.b[p.i] == ' ' || p.b[p.i] == '\t' || p.b[p.i] == '\n' || p.b[p.i] == '\r') {
		p.i++
	}
}

// consume skips white space, then c if it is next, and reports whether it was.
func (p *reqParser) consume(c byte) bool {
	p.space()
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// str reads a string without escapes and returns its contents.
func (p *reqParser) str() ([]byte, bool) {
	if !p.consume('"') {
		return nil, false
	}
	n := bytes.IndexByte(p.b[p.i:], '"')
	if n < 0 {
		return nil, false
	}
	s := p.b[p.i : p.i+n]
	if bytes.IndexByte(s, '\\') >= 0 {
		return nil, false
	}
	p.i += n + 1
	return s, true
}

// skip passes over one value and returns false if it is not a string,
// number, literal, array or object.
func (p *reqParser) skip() bool {
	_, ok := p.value()
	return ok
}

// value passes over one value and returns its bytes.
func (p *reqParser) value() ([]byte, bool) {
	p.space()
	start, depth := p.i, 0
	for p.i < len(p.b) {
		switch c := p.b[p.i]; c {
		case '"':
			for p.i++; p.i < len(p.b) && p.b[p.i] != '"'; p.i++ {
				if p.b[p.i] == '\\' {
					p.i++
				}
			}
			p.i++
		case '[', '{':
			depth++
			p.i++
			continue
		case ']', '}', ',', ' ', '\t', '\n', '\r':
			if depth == 0 {
				// The end of a number or literal.
				return p.b[start:p.i], p.i > start
			}
			if c == ']' || c == '}' {
				depth--
			}
			p.i++
		default:
			p.i++
			continue
		}
		// After a string or a closing bracket.
		if p.i > len(p.b) {
			return nil, false
		}
		if depth == 0 {
			return p.b[start:p.i], true
		}
	}
	return p.b[start:], p.i > start && depth == 0
}

// object reads an object, calling member for each of its members with the
// value's first byte next.
func (p *reqParser) object(member func(name []byte) bool) bool {
	if !p.consume('{') {
		return false
	}
	for first := true; ; first = false {
		if p.consume('}') {
			return true
		}
		if !first && !p.consume(',') {
			return false
		}
		name, ok := p.str()
		if !ok || !p.consume(':') {
			return false
		}
		p.space()
		if !member(name) {
			return false
		}
	}
}

func (p *reqParser) inputs(req *queryRequest) bool {
	req.Inputs = map[string]json.RawMessage{}
	return p.object(func(name []byte) bool {
		v, ok := p.value()
		if !ok || v[0] == 'n' {
			return false // null is left to encoding/json
		}
		req.Inputs[string(name)] = v
		return true
	})
}

func (p *reqParser) staleness(req *queryRequest) bool {
	req.Staleness = map[string]string{}
	return p.object(func(name []byte) bool {
		v, ok := p.str()
		if ok {
			req.Staleness[string(name)] = string(v)
		}
		return ok
	})
}

func (p *reqParser) outputs(req *queryRequest, reg *feature.Registry) bool {
	if !p.consume('[') {
		return false
	}
	// Sized by the commas up to the first ']': at least the outputs' number
	// when no name holds one.
	n := bytes.IndexByte(p.b[p.i:], ']')
	if n < 0 {
		return false
	}
	req.Outputs = make([]string, 0, bytes.Count(p.b[p.i:p.i+n], []byte{','})+1)
	for first := true; ; first = false {
		if p.consume(']') {
			return true
		}
		if !first && !p.consume(',') {
			return false
		}
		name, ok := p.str()
		if !ok {
			return false
		}
		if f, ok := reg.Lookup(string(name)); ok {
			req.Outputs = append(req.Outputs, f.FQN)
		} else {
			req.Outputs = append(req.Outputs, string(name))
		}
	}
}

func (p *reqParser) bool(v *bool) bool {
	p.space()
	switch {
	case bytes.HasPrefix(p.b[p.i:], []byte("true")):
		*v, p.i = true, p.i+4
	case bytes.HasPrefix(p.b[p.i:], []byte("false")):
		*v, p.i = false, p.i+5
	default:
		return false
	}
	return true
}

func (p *reqParser) format(req *queryRequest) bool {
	v, ok := p.str()
	if ok {
		req.Format = string(v)
	}
	return ok
}
