package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/query"
)

// The query answer is written by hand into one buffer: encoding/json's
// reflection over thousands of fields was more than half of a large
// query's CPU. The bytes are exactly those encoding/json writes for the
// same answer (HTML escaping off, with the newline Encoder.Encode ends
// with); encode_test.go compares the two over every value type.

// answer is a query's answer: its values, seen through res's groups, and
// what it holds besides.
type answer struct {
	res         *query.Answer
	includeMeta bool
	errors      errorList
	queryID     string
	took        time.Duration
}

// maxPooledAnswer bounds the buffers kept for reuse, so that one huge
// answer does not pin its memory.
const maxPooledAnswer = 4 << 20

var answerBuffers = sync.Pool{New: func() any {
	b := make([]byte, 0, 16<<10)
	return &b
}}

// writeAnswer encodes a and writes it with its length in one Write. An
// answer that cannot be encoded (a non-finite float) is answered as an
// internal error.
func (s *Server) writeAnswer(w http.ResponseWriter, a *answer) {
	s.writeEncoded(w, "JSON", "application/json", func(b []byte) ([]byte, error) { return appendAnswer(b, a) })
}

// writeEncoded writes the answer encode appends to a pooled buffer, in
// the answer form named form, with its Content-Type and length in one
// Write; an answer encode fails on is answered as an internal error.
func (s *Server) writeEncoded(w http.ResponseWriter, form, contentType string, encode func([]byte) ([]byte, error)) {
	buf := answerBuffers.Get().(*[]byte)
	b, err := encode((*buf)[:0])
	if err != nil {
		s.answerUnencodable(w, form, err)
	} else {
		h := w.Header()
		h.Set("Content-Type", contentType)
		h.Set("Content-Length", strconv.Itoa(len(b)))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(b) // the client is gone if this fails
	}
	if cap(b) <= maxPooledAnswer {
		*buf = b[:0]
		answerBuffers.Put(buf)
	}
}

// appendAnswer appends a's JSON form to b:
// {"data":[...],"errors":[...],"meta":{...}} and a newline.
func appendAnswer(b []byte, a *answer) ([]byte, error) {
	b = append(b, `{"data":[`...)
	// Fields come entity by entity, and the features of an entity are
	// mostly written together: the last key's JSON form and the last
	// observed-at's text are usually those of the next field too, and are
	// copied from where they were last written instead of formatted anew.
	var (
		last lastWritten
		err  error
	)
	n := 0
	for gi := range a.res.Groups {
		g := &a.res.Groups[gi]
		for i := range g.Keys {
			for o := range g.Outs {
				fld := g.Field(i, o)
				if b, err = appendField(b, a, &fld, n, &last); err != nil {
					return b, err
				}
				n++
			}
		}
	}
	b = append(b, `],"errors":`...)
	b = appendErrorList(b, a.errors)
	b = append(b, `,"meta":`...)
	if b, err = appendMeta(b, a); err != nil {
		return b, err
	}
	return append(b, "}\n"...), nil
}

// lastWritten is where the row answer last wrote a key's JSON form and an
// observed-at's text, and what they were.
type lastWritten struct {
	ns               *feature.Namespace
	key              string
	keyFrom, keyTo   int
	at               time.Time
	timeFrom, timeTo int
}

// appendField appends f, the answer's field number n, as the row answer
// writes it.
func appendField(b []byte, a *answer, f *query.Field, n int, last *lastWritten) ([]byte, error) {
	if n > 0 {
		b = append(b, ',')
	}
	// Names of namespaces and features are [a-z][a-z0-9_]* (the
	// registry refuses others): an FQN needs no escaping.
	b = append(b, `{"field":"`...)
	b = append(b, f.Feature.FQN...)
	b = append(b, `","value":`...)
	b, err := appendValue(b, f.Value)
	if err != nil {
		return b, fmt.Errorf("%s of %q: %w", f.Feature.FQN, f.Key, err)
	}
	b = append(b, `,"pkey":`...)
	if ns := f.Feature.Namespace; ns != last.ns || f.Key != last.key || last.keyTo == 0 {
		last.ns, last.key = ns, f.Key
		last.keyFrom = len(b)
		b = appendKey(b, ns.PrimaryKey.Type, f.Key)
		last.keyTo = len(b)
	} else {
		b = append(b, b[last.keyFrom:last.keyTo]...)
	}
	if !f.ObservedAt.IsZero() {
		b = append(b, `,"ts":`...)
		if last.timeTo == 0 || !f.ObservedAt.Equal(last.at) {
			last.at = f.ObservedAt
			last.timeFrom = len(b)
			b = appendTime(b, f.ObservedAt)
			last.timeTo = len(b)
		} else {
			b = append(b, b[last.timeFrom:last.timeTo]...)
		}
	}
	if a.includeMeta {
		b = append(b, `,"meta":{"cache_hit":`...)
		b = strconv.AppendBool(b, f.CacheHit)
		if f.Resolver != nil {
			b = append(b, `,"chosen_resolver_fqn":`...)
			b = appendString(b, f.Resolver.FQN)
		}
		b = append(b, '}')
	}
	return append(b, '}'), nil
}

// appendKey appends a canonical primary key as feature.KeyJSON answers it.
func appendKey(b []byte, t feature.Type, key string) []byte {
	if t.Kind == feature.KindInt {
		if n, err := strconv.ParseInt(key, 10, 64); err == nil {
			return strconv.AppendInt(b, n, 10)
		}
	}
	return appendString(b, key)
}

// appendTime appends t as a JSON string in feature.TimeLayout, in UTC.
func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.UTC().AppendFormat(b, feature.TimeLayout)
	return append(b, '"')
}

// appendValue appends a feature value as encoding/json encodes
// feature.ToJSON(v).
func appendValue(b []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case time.Time:
		return appendTime(b, x), nil
	case []any:
		// feature.ToJSON answers every list, even a nil one, as an array,
		// and converts datetimes at any depth.
		b = append(b, '[')
		for i, e := range x {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = appendValue(b, e); err != nil {
				return b, err
			}
		}
		return append(b, ']'), nil
	}
	return appendPlain(b, v)
}

// appendPlain appends v as encoding/json encodes it, by hand for the types
// feature values and decoded JSON objects are made of and through
// encoding/json for any other.
func appendPlain(b []byte, v any) ([]byte, error) {
	var err error
	switch x := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case bool:
		return strconv.AppendBool(b, x), nil
	case int64:
		return strconv.AppendInt(b, x, 10), nil
	case int:
		return strconv.AppendInt(b, int64(x), 10), nil
	case float64:
		return appendFloat(b, x, 64)
	case string:
		return appendString(b, x), nil
	case json.Number:
		s := string(x)
		if s == "" {
			s = "0"
		}
		if !isValidNumber(s) {
			return b, fmt.Errorf("json: invalid number literal %q", s)
		}
		return append(b, s...), nil
	case []byte:
		if x == nil {
			return append(b, "null"...), nil
		}
		b = append(b, '"')
		b = base64.StdEncoding.AppendEncode(b, x)
		return append(b, '"'), nil
	case []float32:
		if x == nil {
			return append(b, "null"...), nil
		}
		b = append(b, '[')
		for i, f := range x {
			if i > 0 {
				b = append(b, ',')
			}
			if b, err = appendFloat(b, float64(f), 32); err != nil {
				return b, err
			}
		}
		return append(b, ']'), nil
	case []any:
		if x == nil {
			return append(b, "null"...), nil
		}
		b = append(b, '[')
		for i, e := range x {
			if i > 0 {
				b = append(b, ',')
			}
			if b, err = appendPlain(b, e); err != nil {
				return b, err
			}
		}
		return append(b, ']'), nil
	case map[string]any:
		if x == nil {
			return append(b, "null"...), nil
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			if b, err = appendPlain(b, x[k]); err != nil {
				return b, err
			}
		}
		return append(b, '}'), nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return b, err
	}
	return append(b, bytes.TrimSuffix(buf.Bytes(), []byte("\n"))...), nil
}

var errNonFinite = errors.New("json: unsupported value: not a finite number")

// appendFloat appends f as encoding/json encodes a float of bitSize bits:
// like ES6's number to string conversion, the shortest form that reads
// back exactly, in exponent form below 1e-6 and from 1e21.
func appendFloat(b []byte, f float64, bitSize int) ([]byte, error) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return b, fmt.Errorf("%w: %s", errNonFinite, strconv.FormatFloat(f, 'g', -1, bitSize))
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 {
		if bitSize == 64 && (abs < 1e-6 || abs >= 1e21) || bitSize == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21) {
			format = 'e'
		}
	}
	b = strconv.AppendFloat(b, f, format, -1, bitSize)
	if format == 'e' {
		// e-09 becomes e-9.
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b, nil
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string the way encoding/json writes it
// with HTML escaping off: '"' and '\\' escaped, control characters as \b,
// \f, \n, \r, \t or \u00XX, invalid UTF-8 as \ufffd, and U+2028 and U+2029
// escaped.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// isValidNumber reports whether s is a JSON number, as encoding/json
// checks a json.Number before writing it.
func isValidNumber(s string) bool {
	if s == "" {
		return false
	}
	if s[0] == '-' {
		s = s[1:]
		if s == "" {
			return false
		}
	}
	switch {
	default:
		return false
	case s[0] == '0':
		s = s[1:]
	case '1' <= s[0] && s[0] <= '9':
		s = s[1:]
		for len(s) > 0 && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
		}
	}
	if len(s) >= 2 && s[0] == '.' && '0' <= s[1] && s[1] <= '9' {
		s = s[2:]
		for len(s) > 0 && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
		}
	}
	if len(s) >= 2 && (s[0] == 'e' || s[0] == 'E') {
		s = s[1:]
		if s[0] == '+' || s[0] == '-' {
			s = s[1:]
			if s == "" {
				return false
			}
		}
		for len(s) > 0 && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
		}
	}
	return s == ""
}
