package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/query"
	"github.com/cairnfs/cairn/internal/store/dynamo/dynamotest"
	"github.com/cairnfs/cairn/internal/testserver/faultproxy"
)

// A format other than rows or columnar is a request error naming format,
// answered as JSON whatever the Accept header.
func TestQueryRefusesUnknownFormat(t *testing.T) {
	fs := newFormsServer(t)
	for _, format := range []string{`"arrow"`, `"Columnar"`, `"rows "`} {
		for _, accept := range []string{"", arrowMediaType} {
			code, h, b := postQuery(t, fs.url, accept, `{"inputs":{"user.id":"u0"},"outputs":["user.age"],"format":`+format+`}`)
			var out map[string]any
			_ = json.Unmarshal(b, &out)
			if code != http.StatusBadRequest || h.Get("Content-Type") != "application/json" ||
				firstError(out) != CodeValidationFailed || !strings.Contains(string(b), "format") {
				t.Errorf("format %s, Accept %q: %d %s %s, want 400 %s naming format", format, accept, code, h.Get("Content-Type"), b, CodeValidationFailed)
			}
		}
	}
	for _, format := range []string{`""`, `"rows"`} {
		code, _, b := postQuery(t, fs.url, "", `{"inputs":{"user.id":"u0"},"outputs":["user.age"],"format":`+format+`}`)
		if code != 200 || !strings.HasPrefix(string(b), `{"data":[`) {
			t.Errorf("format %s: %d %s, want the row answer", format, code, b)
		}
	}
}

// A column answer has one row per input position: namespaces given
// different numbers of keys are refused, naming the inputs; the row answer
// takes them.
func TestColumnFormsRefuseUnequalKeyCounts(t *testing.T) {
	fs := newFormsServer(t)
	body := `{"inputs":{"user.id":["u0","u1"],"merchant.id":[0,1,2]},"outputs":["user.age","merchant.name"]}`
	for _, c := range []struct{ body, accept string }{
		{strings.Replace(body, "{", `{"format":"columnar",`, 1), ""},
		{body, arrowMediaType},
	} {
		code, h, b := postQuery(t, fs.url, c.accept, c.body)
		if code != http.StatusBadRequest || h.Get("Content-Type") != "application/json" ||
			!strings.Contains(string(b), "user.id has 2") || !strings.Contains(string(b), "merchant.id has 3") {
			t.Errorf("Accept %q: %d %s, want 400 naming both inputs and their counts", c.accept, code, b)
		}
	}
	if code, _, b := postQuery(t, fs.url, "", body); code != 200 {
		t.Errorf("row answer: %d %s", code, b)
	}
	// An input no output reads does not count.
	code, _, b := postQuery(t, fs.url, arrowMediaType, `{"inputs":{"user.id":["u0","u1"],"merchant.id":[0]},"outputs":["user.age"]}`)
	if code != 200 {
		t.Errorf("input without outputs: %d %s", code, b)
	}
}

// A store read failing answers 200 with null values and the failure in the
// columnar answer's errors and in the Arrow stream's metadata.
func TestColumnFormsCarryFieldErrors(t *testing.T) {
	st, proxy := dynamotest.OpenProxied(t, 0)
	s := newStackOn(t, st, stackOptions{})
	if _, err := proxy.Add(faultproxy.Rule{Fault: faultproxy.InternalServerError}); err != nil {
		t.Fatal(err)
	}
	body := `{"inputs":{"user.id":["u1","u2"]},"outputs":["user.age","user.name"]}`
	code, _, cb := postQuery(t, s.url, "", strings.Replace(body, "{", `{"format":"columnar",`, 1))
	if code != 200 {
		t.Fatalf("columnar: %d %s", code, cb)
	}
	vals, _, errs, meta := columnarGrid(t, cb, []string{"user.id", "user.age", "user.name"})
	if len(errs) != 2 || errs[0].Code != CodeUpstreamFailed || errs[0].Feature != "user.age" || meta["query_id"] == nil {
		t.Errorf("columnar errors %+v meta %v, want %s for user.age and user.name", errs, meta, CodeUpstreamFailed)
	}
	if got := strings.Join(vals["user.age"], ","); got != "null,null" {
		t.Errorf("user.age %s, want nulls", got)
	}
	code, h, ab := postQuery(t, s.url, arrowMediaType, body)
	if code != 200 || h.Get("Content-Type") != arrowMediaType {
		t.Fatalf("arrow: %d %s", code, ab)
	}
	avals, _, schema := arrowGrid(t, ab, func(string) feature.Type { return feature.Type{} })
	eb, ok := schema.Metadata().GetValue(arrowErrorsKey)
	var aerrs []ChalkError
	if err := json.Unmarshal([]byte(eb), &aerrs); !ok || err != nil || len(aerrs) != 2 ||
		aerrs[0].Code != CodeUpstreamFailed || aerrs[1].Feature != "user.name" {
		t.Errorf("arrow errors metadata %q (%v), want %s for user.age and user.name", eb, err, CodeUpstreamFailed)
	}
	if got := strings.Join(avals["user.name"], ","); got != "null,null" || strings.Join(avals["user.id"], ",") != `"u1","u2"` {
		t.Errorf("arrow columns %v, want the keys and null values", avals)
	}
}

// fuzzTypes are the feature types FuzzAnswerFormsAgree draws from.
var fuzzTypes = []string{"int", "float", "string", "bool", "bytes", "datetime", "json", "vector[1]", "vector[3]",
	"list[int]", "list[string]", "list[bytes]", "list[bool]", "list[datetime]", "list[list[float]]", "list[json]"}

// fuzzGen draws values from fuzz input, zeros once it runs out.
type fuzzGen struct{ b []byte }

func (g *fuzzGen) byte() byte {
	if len(g.b) == 0 {
		return 0
	}
	c := g.b[0]
	g.b = g.b[1:]
	return c
}

func (g *fuzzGen) n(max int) int { return int(g.byte()) % max }

func (g *fuzzGen) u64() uint64 {
	var u uint64
	for range 8 {
		u = u<<8 | uint64(g.byte())
	}
	return u
}

func (g *fuzzGen) bytes() []byte {
	n := g.n(6)
	b := make([]byte, n)
	for i := range b {
		b[i] = g.byte()
	}
	return b
}

func (g *fuzzGen) time() time.Time {
	// Years 1 to 9999, as RFC 3339 writes them.
	const span = 315537897599999999 // microseconds from 0001-01-01 to 9999-12-31
	return time.UnixMicro(int64(g.u64()%span) - 62135596800000000).UTC()
}

func (g *fuzzGen) float() float64 {
	f := math.Float64frombits(g.u64())
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return float64(int32(g.u64()))
	}
	return f
}

// value draws a canonical value of type t; nil only where nullable.
func (g *fuzzGen) value(t feature.Type, nullable bool) any {
	if nullable && g.n(5) == 0 {
		return nil
	}
	switch t.Kind {
	case feature.KindInt:
		return int64(g.u64())
	case feature.KindFloat:
		return g.float()
	case feature.KindString:
		return string(g.bytes())
	case feature.KindBool:
		return g.byte()%2 == 0
	case feature.KindBytes:
		return g.bytes()
	case feature.KindDatetime:
		return g.time()
	case feature.KindList:
		l := []any{}
		for range g.n(4) {
			l = append(l, g.value(*t.Elem, false))
		}
		return l
	case feature.KindVector:
		v := make([]float32, t.Dim)
		for i := range v {
			v[i] = float32(int16(g.u64())) / 8
		}
		return v
	case feature.KindJSON:
		m := map[string]any{}
		for range g.n(3) {
			k := string(g.bytes())
			switch g.n(5) {
			case 0:
				m[k] = string(g.bytes())
			case 1:
				m[k] = json.Number(strconv.FormatInt(int64(g.u64()), 10))
			case 2:
				m[k] = g.byte()%2 == 0
			case 3:
				m[k] = []any{nil, string(g.bytes()), map[string]any{k: json.Number("1.5e3")}}
			default:
				m[k] = nil
			}
		}
		return m
	}
	panic("unknown kind")
}

// The row, columnar and Arrow answers agree on random tables of random
// feature types, one namespace or two: each read back its own way.
func FuzzAnswerFormsAgree(f *testing.F) {
	f.Add([]byte{3, 0, 5, 6, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 255, 254}, uint8(3), true, true)
	f.Add([]byte{15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0}, uint8(1), false, true)
	f.Add([]byte("\x07\x06\x0f\xff\xfe\x80\x00\x01 hello \xc3\x28 world"), uint8(4), true, false)
	f.Fuzz(func(t *testing.T, data []byte, rows uint8, twoNS, meta bool) {
		g := &fuzzGen{b: data}
		nrows := int(rows%4) + 1
		types := map[string]feature.Type{}
		pkOf := map[string]string{}
		var outputs []*feature.Feature
		mkNS := func(name string, key feature.Kind) *feature.Namespace {
			ns := &feature.Namespace{Name: name}
			ns.PrimaryKey = &feature.Feature{FQN: name + ".id", Name: "id", Namespace: ns, Type: feature.Type{Kind: key}}
			types[ns.PrimaryKey.FQN], pkOf[ns.PrimaryKey.FQN] = ns.PrimaryKey.Type, ns.PrimaryKey.FQN
			for i := range 1 + g.n(4) {
				typ, err := feature.ParseType(fuzzTypes[g.n(len(fuzzTypes))])
				if err != nil {
					t.Fatal(err)
				}
				ft := &feature.Feature{FQN: fmt.Sprintf("%s.f%d", name, i), Name: fmt.Sprintf("f%d", i), Namespace: ns, Type: typ}
				ns.Features = append(ns.Features, ft)
				types[ft.FQN], pkOf[ft.FQN] = typ, ns.PrimaryKey.FQN
			}
			return ns
		}
		namespaces := []*feature.Namespace{mkNS("user", feature.KindString)}
		if twoNS {
			namespaces = append(namespaces, mkNS("merchant", feature.KindInt))
		}
		// Outputs interleave the namespaces; a key and a repeat now and then.
		for i := 0; ; i++ {
			added := false
			for _, ns := range namespaces {
				if i < len(ns.Features) {
					outputs = append(outputs, ns.Features[i])
					added = true
				}
			}
			if !added {
				break
			}
		}
		if g.n(2) == 0 {
			outputs = append(outputs, namespaces[len(namespaces)-1].PrimaryKey, outputs[0])
		}
		qr := &query.Request{Keys: map[*feature.Namespace][]string{}, Outputs: outputs}
		rowKeys := map[string][]string{}
		for _, ns := range namespaces {
			for i := range nrows {
				key := strconv.Itoa(i) + string(g.bytes())
				if ns.PrimaryKey.Type.Kind == feature.KindInt {
					key = strconv.FormatInt(int64(i)*7919-int64(g.n(3))*100000, 10)
				}
				qr.Keys[ns] = append(qr.Keys[ns], key)
				rowKeys[ns.PrimaryKey.FQN] = append(rowKeys[ns.PrimaryKey.FQN], string(appendKey(nil, ns.PrimaryKey.Type, key)))
			}
		}
		// The fields as the engine lays them out.
		var fields []query.Field
		for _, ns := range namespaces {
			for _, key := range qr.Keys[ns] {
				for _, out := range outputs {
					if out.Namespace != ns {
						continue
					}
					fld := query.Field{Feature: out, Key: key}
					if i := slices.IndexFunc(fields, func(f query.Field) bool { return f.Feature == out && f.Key == key }); i >= 0 {
						fld = fields[i] // an output asked twice: the same field twice
					} else if out == ns.PrimaryKey {
						fld.Value = feature.KeyJSON(out.Type, key)
					} else if fld.Value = g.value(out.Type, true); fld.Value != nil && g.n(3) > 0 {
						fld.ObservedAt = g.time()
					}
					fields = append(fields, fld)
				}
			}
		}
		var cols []string
		for _, ns := range namespaces {
			cols = append(cols, ns.PrimaryKey.FQN)
		}
		for _, out := range outputs {
			if !slices.Contains(cols, out.FQN) {
				cols = append(cols, out.FQN)
			}
		}
		a := &answer{res: tableAnswer(qr, fields), includeMeta: meta, errors: errorList{{Code: CodeUpstreamFailed, Category: CategoryField,
			Feature: cols[len(cols)-1], Message: string(data)}}, queryID: "q", took: time.Duration(len(data))}

		rowsB, err := appendAnswer(nil, a)
		if err != nil {
			t.Fatalf("row answer: %v", err)
		}
		rowVals, rowTS := rowsGrid(t, rowsB, cols, rowKeys, func(fqn string) string { return pkOf[fqn] })
		tbl, err := newTable(qr, a.res)
		if err != nil {
			t.Fatal(err)
		}
		colB, err := appendColumnar(nil, a, tbl)
		if err != nil {
			t.Fatalf("columnar answer: %v", err)
		}
		colVals, colTS, colErrs, _ := columnarGrid(t, colB, cols)
		sink := &byteSink{}
		mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
		if err := appendArrow(sink, mem, a, qr); err != nil {
			t.Fatalf("arrow answer: %v", err)
		}
		if n := mem.CurrentAlloc(); n != 0 {
			t.Errorf("%d bytes of Arrow buffers not released", n)
		}
		arrVals, arrTS, schema := arrowGrid(t, sink.b, func(name string) feature.Type { return types[name] })
		formsAgree(t, meta, rowVals, rowTS, colVals, colTS, arrVals, arrTS)
		eb, _ := schema.Metadata().GetValue(arrowErrorsKey)
		var arrErrs []ChalkError
		if err := json.Unmarshal([]byte(eb), &arrErrs); err != nil || !slices.Equal(arrErrs, colErrs) || len(colErrs) != 1 {
			t.Errorf("errors: arrow %q (%v), columnar %+v", eb, err, colErrs)
		}
	})
}

// Answers of one layout reuse its encoder's buffers: each Arrow answer
// carries its own values, whatever the previous one held (more rows, fewer
// nulls, longer strings, other error texts), as its columnar answer does.
func TestArrowEncoderReuse(t *testing.T) {
	ns := &feature.Namespace{Name: "user"}
	ns.PrimaryKey = &feature.Feature{FQN: "user.id", Name: "id", Namespace: ns, Type: feature.Type{Kind: feature.KindString}}
	types := map[string]feature.Type{ns.PrimaryKey.FQN: ns.PrimaryKey.Type}
	outputs := []*feature.Feature{}
	for i, name := range fuzzTypes {
		typ, err := feature.ParseType(name)
		if err != nil {
			t.Fatal(err)
		}
		f := &feature.Feature{FQN: fmt.Sprintf("user.f%d", i), Name: fmt.Sprintf("f%d", i), Namespace: ns, Type: typ}
		outputs = append(outputs, f)
		types[f.FQN] = typ
	}
	for round, rows := range []int{5, 1, 4, 2, 5} {
		g := &fuzzGen{b: bytes.Repeat([]byte{byte(round*37 + 11), byte(round), 0xe3, 7}, 400)}
		qr := &query.Request{Keys: map[*feature.Namespace][]string{}, Outputs: outputs}
		var fields []query.Field
		for i := range rows {
			key := fmt.Sprintf("u%d-%s", i, strings.Repeat("k", round))
			qr.Keys[ns] = append(qr.Keys[ns], key)
			for _, out := range outputs {
				fld := query.Field{Feature: out, Key: key}
				// A row in three is absent throughout in odd rounds.
				if round%2 == 0 || i%3 != 1 {
					fld.Value = g.value(out.Type, true)
				}
				if fld.Value != nil {
					fld.ObservedAt = g.time()
				}
				fields = append(fields, fld)
			}
		}
		a := &answer{res: tableAnswer(qr, fields), includeMeta: true, queryID: strings.Repeat("q", 40*round),
			errors: errorList{{Code: CodeUpstreamFailed, Category: CategoryField, Message: strings.Repeat("e", 50*round)}}}
		tbl, err := newTable(qr, a.res)
		if err != nil {
			t.Fatal(err)
		}
		var cols []string
		for _, c := range tbl.cols {
			cols = append(cols, c.feature.FQN)
		}
		colB, err := appendColumnar(nil, a, tbl)
		if err != nil {
			t.Fatal(err)
		}
		colVals, colTS, colErrs, colMeta := columnarGrid(t, colB, cols)
		sink := &byteSink{}
		if err := appendArrow(sink, arrowMemory, a, qr); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if !bytes.HasSuffix(sink.b, []byte{0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0}) {
			t.Errorf("round %d: the stream does not end with the end-of-stream marker", round)
		}
		arrVals, arrTS, schema := arrowGrid(t, sink.b, func(name string) feature.Type { return types[name] })
		if d := diffGrids(arrVals, colVals); d != "" {
			t.Errorf("round %d (%d rows): arrow values differ from the columnar answer's:\n%s", round, rows, d)
		}
		if d := diffGrids(arrTS, colTS); d != "" {
			t.Errorf("round %d (%d rows): arrow ts differ from the columnar answer's:\n%s", round, rows, d)
		}
		eb, _ := schema.Metadata().GetValue(arrowErrorsKey)
		mb, _ := schema.Metadata().GetValue(arrowMetaKey)
		var arrErrs []ChalkError
		var arrMeta map[string]any
		if json.Unmarshal([]byte(eb), &arrErrs) != nil || !slices.Equal(arrErrs, colErrs) ||
			json.Unmarshal([]byte(mb), &arrMeta) != nil || arrMeta["query_id"] != colMeta["query_id"] {
			t.Errorf("round %d: arrow metadata %s %s, columnar %v %v", round, eb, mb, colErrs, colMeta)
		}
	}
}
