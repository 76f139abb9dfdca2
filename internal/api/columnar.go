package api

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/query"
)

// A query is answered in one of three forms: the row answer (a value
// object per field, the default), the columnar JSON answer ("format":
// "columnar") and the Arrow IPC stream (Accept:
// application/vnd.apache.arrow.stream). The two column forms are a table:
// one row per input position and one column per primary key and per
// output. They are built straight from the engine's fields, which come
// namespace by namespace, key by key, output by output: a column's value
// for row i is at a fixed stride in the fields, so neither form builds an
// object or a map per row.

// form is the shape of a query's answer.
type form uint8

const (
	// formRows is the row answer: {"data": [one object per field], ...}.
	formRows form = iota
	// formColumnar is {"columns": {fqn: [one value per row]}, ...}.
	formColumnar
	// formArrow is an Arrow IPC stream of one record batch.
	formArrow
)

// The values of a query's "format".
const (
	formatRows     = "rows"
	formatColumnar = "columnar"
)

// answerForm returns the form a query asks for: Arrow when its Accept
// header prefers the Arrow stream to JSON, else the JSON form its format
// names. An unknown format, or a column form over namespaces given
// different numbers of keys, adds a request error to errs.
func answerForm(r *http.Request, req *queryRequest, qr *query.Request, errs *errorList) form {
	f := formRows
	switch req.Format {
	case "", formatRows:
	case formatColumnar:
		f = formColumnar
	default:
		errs.add(CodeValidationFailed, "", "format: %q is not an answer format; want %q (the default) or %q",
			req.Format, formatRows, formatColumnar)
	}
	if prefersArrow(r.Header.Values("Accept")) {
		f = formArrow
	}
	if f != formRows && len(*errs) == 0 {
		if msg := unequalRows(qr); msg != "" {
			errs.add(CodeValidationFailed, "", "%s", msg)
		}
	}
	return f
}

// unequalRows describes why qr's inputs do not make one table, or returns
// "": row i of a column answer is key i of every namespace the outputs
// read, so those namespaces need as many keys each.
func unequalRows(qr *query.Request) string {
	var names []string
	var counts []int
	for _, f := range qr.Outputs {
		pk := f.Namespace.PrimaryKey
		if !containsString(names, pk.FQN) {
			names = append(names, pk.FQN)
			counts = append(counts, len(qr.Keys[f.Namespace]))
		}
	}
	same := true
	for _, n := range counts {
		same = same && n == counts[0]
	}
	if same {
		return ""
	}
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = n + " has " + strconv.Itoa(counts[i])
	}
	return "inputs: the columnar and Arrow answers have one row per input position, key i of every namespace queried, " +
		"so each primary key needs as many keys: " + strings.Join(parts, ", ")
}

func containsString(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// table is a query's answer seen as rows and columns.
type table struct {
	rows int
	cols []column
}

// column is one column of a table: a primary key, read from its group's
// keys, or an output of its group, read through vals.
type column struct {
	feature *feature.Feature
	// key marks a primary key column.
	key  bool
	g    *query.Group
	vals query.Column
}

// value returns the value of row i of c, an output's column, and its
// observed-at.
func (c *column) value(i int) (any, time.Time) { return c.vals.Value(i) }

// newTable lays res, the answer to qr, out as a table: the primary key of
// each namespace read (in the order the outputs first name them), then
// each output once, in the order asked. It fails when the namespaces have
// different numbers of keys, or res does not answer qr's outputs.
func newTable(qr *query.Request, res *query.Answer) (*table, error) {
	t := &table{cols: make([]column, 0, len(res.Groups)+len(qr.Outputs))}
	for gi := range res.Groups {
		g := &res.Groups[gi]
		if gi == 0 {
			t.rows = len(g.Keys)
		} else if len(g.Keys) != t.rows {
			return nil, fmt.Errorf("namespace %s has %d keys, another %d", g.NS.Name, len(g.Keys), t.rows)
		}
		t.cols = append(t.cols, column{feature: g.NS.PrimaryKey, key: true, g: g})
	}
	seen := make(map[*feature.Feature]bool, len(qr.Outputs))
	for _, f := range qr.Outputs {
		if f == f.Namespace.PrimaryKey || seen[f] {
			continue // a primary key, or an output already given its column
		}
		seen[f] = true
		c, ok := outputColumn(res, f)
		if !ok {
			return nil, fmt.Errorf("output %s is not in the answer", f.FQN)
		}
		t.cols = append(t.cols, c)
	}
	return t, nil
}

// outputColumn returns the column of f's first place in res.
func outputColumn(res *query.Answer, f *feature.Feature) (column, bool) {
	for gi := range res.Groups {
		g := &res.Groups[gi]
		if g.NS != f.Namespace {
			continue
		}
		for o, out := range g.Outs {
			if out == f {
				return column{feature: f, g: g, vals: g.Column(o)}, true
			}
		}
	}
	return column{}, false
}

// writeColumnar answers a as the columnar JSON form of qr's table.
func (s *Server) writeColumnar(w http.ResponseWriter, a *answer, qr *query.Request) {
	t, err := newTable(qr, a.res)
	if err != nil {
		s.answerUnencodable(w, "columnar", err)
		return
	}
	s.writeEncoded(w, "columnar", "application/json", func(b []byte) ([]byte, error) { return appendColumnar(b, a, t) })
}

// answerUnencodable answers a query whose answer could not be built as an
// internal error.
func (s *Server) answerUnencodable(w http.ResponseWriter, form string, err error) {
	s.log.Error("api: query answer not encodable", "form", form, "err", err)
	writeErrors(w, http.StatusInternalServerError, errorList{{Code: CodeInternal, Category: CategoryRequest,
		Message: "the " + form + " answer could not be encoded: " + err.Error()}})
}

// appendColumnar appends a's columnar form, laid out as t, to b:
// {"columns":{...},"ts":{...},"errors":[...],"meta":{...}} and a newline,
// "ts" only with include_meta. Values have the row answer's encodings.
func appendColumnar(b []byte, a *answer, t *table) ([]byte, error) {
	var err error
	b = append(b, `{"columns":{`...)
	for ci := range t.cols {
		c := &t.cols[ci]
		if ci > 0 {
			b = append(b, ',')
		}
		// FQNs are [a-z][a-z0-9_.]*: no escaping needed.
		b = append(b, '"')
		b = append(b, c.feature.FQN...)
		b = append(b, `":[`...)
		for i := 0; i < t.rows; i++ {
			if i > 0 {
				b = append(b, ',')
			}
			if c.key {
				b = appendKey(b, c.feature.Type, c.g.Keys[i])
				continue
			}
			v, _ := c.value(i)
			if b, err = appendValue(b, v); err != nil {
				return b, fmt.Errorf("%s of %q: %w", c.feature.FQN, c.g.Keys[i], err)
			}
		}
		b = append(b, ']')
	}
	b = append(b, '}')
	if a.includeMeta {
		b = append(b, `,"ts":{`...)
		first := true
		for ci := range t.cols {
			c := &t.cols[ci]
			if c.key {
				continue
			}
			if !first {
				b = append(b, ',')
			}
			first = false
			b = append(b, '"')
			b = append(b, c.feature.FQN...)
			b = append(b, `":[`...)
			for i := 0; i < t.rows; i++ {
				if i > 0 {
					b = append(b, ',')
				}
				if _, at := c.value(i); at.IsZero() {
					b = append(b, "null"...)
				} else {
					b = appendTime(b, at)
				}
			}
			b = append(b, ']')
		}
		b = append(b, '}')
	}
	b = append(b, `,"errors":`...)
	b = appendErrorList(b, a.errors)
	b = append(b, `,"meta":`...)
	if b, err = appendMeta(b, a); err != nil {
		return b, err
	}
	return append(b, "}\n"...), nil
}

// appendErrorList appends errs as the row answer writes its errors.
func appendErrorList(b []byte, errs errorList) []byte {
	b = append(b, '[')
	for i, e := range errs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"code":`...)
		b = appendString(b, e.Code)
		b = append(b, `,"category":`...)
		b = appendString(b, e.Category)
		b = append(b, `,"message":`...)
		b = appendString(b, e.Message)
		if e.Feature != "" {
			b = append(b, `,"feature":`...)
			b = appendString(b, e.Feature)
		}
		if e.Resolver != "" {
			b = append(b, `,"resolver":`...)
			b = appendString(b, e.Resolver)
		}
		b = append(b, '}')
	}
	return append(b, ']')
}

// appendMeta appends a's meta object as the row answer writes it.
func appendMeta(b []byte, a *answer) ([]byte, error) {
	b = append(b, `{"execution_duration_s":`...)
	b, err := appendFloat(b, a.took.Seconds(), 64)
	if err != nil {
		return b, fmt.Errorf("execution duration: %w", err)
	}
	b = append(b, `,"query_id":`...)
	b = appendString(b, a.queryID)
	return append(b, '}'), nil
}
