package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/query"
	"github.com/cairnfs/cairn/internal/store"
	"github.com/cairnfs/cairn/internal/store/embedded"
)

// grid holds an answer's cells as JSON text, by column name, then row;
// "null" for a null.
type grid map[string][]string

func newGrid(cols []string, rows int) grid {
	g := grid{}
	for _, c := range cols {
		g[c] = slices.Repeat([]string{"<missing>"}, rows)
	}
	return g
}

// diffGrids describes how got differs from want, or returns "".
func diffGrids(got, want grid) string {
	var out []string
	for _, c := range slices.Sorted(maps.Keys(want)) {
		g, ok := got[c]
		if !ok {
			out = append(out, c+": missing")
			continue
		}
		if !slices.Equal(g, want[c]) {
			out = append(out, fmt.Sprintf("%s: %v, want %v", c, g, want[c]))
		}
	}
	for c := range got {
		if _, ok := want[c]; !ok {
			out = append(out, c+": not expected")
		}
	}
	return strings.Join(out, "\n")
}

func rawText(r json.RawMessage) string {
	if len(r) == 0 {
		return "null"
	}
	return string(r)
}

// rowsGrid reads a row answer into values and observed-ats, placing each
// field by its primary key: rowKeys gives, per primary key FQN, each
// row's key as JSON text. pkOf returns a feature's primary key FQN.
func rowsGrid(t testing.TB, body []byte, cols []string, rowKeys map[string][]string, pkOf func(string) string) (values, ts grid) {
	t.Helper()
	var ans struct {
		Data []struct {
			Field string          `json:"field"`
			Value json.RawMessage `json:"value"`
			Pkey  json.RawMessage `json:"pkey"`
			TS    *string         `json:"ts"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &ans); err != nil {
		t.Fatalf("row answer %s: %v", body, err)
	}
	rows := 0
	for _, k := range rowKeys {
		rows = len(k)
	}
	values, ts = newGrid(cols, rows), grid{}
	for _, d := range ans.Data {
		pk := pkOf(d.Field)
		i := slices.Index(rowKeys[pk], string(d.Pkey))
		if i < 0 {
			t.Fatalf("row answer: %s of unknown key %s", d.Field, d.Pkey)
		}
		values[d.Field][i] = rawText(d.Value)
		values[pk][i] = string(d.Pkey)
		if d.Field == pk {
			continue // a key has no observed-at
		}
		if ts[d.Field] == nil {
			ts[d.Field] = slices.Repeat([]string{"null"}, rows)
		}
		if d.TS != nil {
			ts[d.Field][i] = strconv.Quote(*d.TS)
		}
	}
	return values, ts
}

// columnarGrid reads a columnar answer, and checks its columns come in the
// order cols gives.
func columnarGrid(t testing.TB, body []byte, cols []string) (values, ts grid, errs []ChalkError, meta map[string]any) {
	t.Helper()
	var ans struct {
		Columns map[string][]json.RawMessage `json:"columns"`
		TS      map[string][]json.RawMessage `json:"ts"`
		Errors  []ChalkError                 `json:"errors"`
		Meta    map[string]any               `json:"meta"`
	}
	if err := json.Unmarshal(body, &ans); err != nil {
		t.Fatalf("columnar answer %s: %v", body, err)
	}
	last := 0
	for _, c := range cols {
		at := bytes.Index(body, []byte(`"`+c+`":[`))
		if at < last {
			t.Errorf("columnar answer: column %s out of order in %s", c, body)
		}
		last = at
	}
	conv := func(m map[string][]json.RawMessage) grid {
		if m == nil {
			return nil
		}
		g := grid{}
		for c, vs := range m {
			for _, v := range vs {
				g[c] = append(g[c], rawText(v))
			}
		}
		return g
	}
	return conv(ans.Columns), conv(ans.TS), ans.Errors, ans.Meta
}

// arrowGrid reads an Arrow answer with arrow-go's reader. typeOf returns
// a column's feature type; values are turned back into canonical values
// and written as the row answer writes them.
func arrowGrid(t testing.TB, body []byte, typeOf func(string) feature.Type) (values, ts grid, schema *arrow.Schema) {
	t.Helper()
	rd, err := ipc.NewReader(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("arrow answer: %v", err)
	}
	defer rd.Release()
	schema = rd.Schema()
	values, ts = grid{}, grid{}
	batches := 0
	for rd.Next() {
		batches++
		rec := rd.RecordBatch()
		for ci, f := range schema.Fields() {
			col := rec.Column(ci)
			for i := 0; i < col.Len(); i++ {
				if name, ok := strings.CutSuffix(f.Name, tsSuffix); ok {
					cell := "null"
					if !col.IsNull(i) {
						cell = string(appendTime(nil, col.(*array.Timestamp).Value(i).ToTime(arrow.Microsecond)))
					}
					ts[name] = append(ts[name], cell)
					continue
				}
				values[f.Name] = append(values[f.Name], arrowCellText(t, col, i, typeOf(f.Name)))
			}
		}
	}
	if err := rd.Err(); err != nil {
		t.Fatalf("arrow answer: %v", err)
	}
	if batches != 1 {
		t.Errorf("arrow answer: %d record batches, want 1", batches)
	}
	if len(ts) == 0 {
		ts = nil
	}
	return values, ts, schema
}

// arrowCellText returns row i of col, of a feature of type ft, as the row
// answer's JSON text.
func arrowCellText(t testing.TB, col arrow.Array, i int, ft feature.Type) string {
	t.Helper()
	b, err := appendValue(nil, arrowCell(t, col, i, ft))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// arrowCell returns row i of col as a canonical value of type ft, but a
// JSON value's text as a json.RawMessage.
func arrowCell(t testing.TB, col arrow.Array, i int, ft feature.Type) any {
	t.Helper()
	if col.IsNull(i) {
		return nil
	}
	switch c := col.(type) {
	case *array.Int64:
		return c.Value(i)
	case *array.Float64:
		return c.Value(i)
	case *array.String:
		if ft.Kind == feature.KindJSON {
			return json.RawMessage(c.Value(i))
		}
		return c.Value(i)
	case *array.Boolean:
		return c.Value(i)
	case *array.Binary:
		return append([]byte{}, c.Value(i)...) // empty, not nil, as written
	case *array.Timestamp:
		return c.Value(i).ToTime(arrow.Microsecond)
	case *array.List:
		from, to := c.ValueOffsets(i)
		l := []any{}
		for j := from; j < to; j++ {
			var elem feature.Type
			if ft.Elem != nil {
				elem = *ft.Elem
			}
			l = append(l, arrowCell(t, c.ListValues(), int(j), elem))
		}
		return l
	case *array.FixedSizeList:
		n := int(c.DataType().(*arrow.FixedSizeListType).Len())
		vals := c.ListValues().(*array.Float32)
		v := make([]float32, n)
		for j := range v {
			v[j] = vals.Value(i*n + j)
		}
		return v
	}
	t.Fatalf("arrow column of type %s", col.DataType())
	return nil
}

// post sends body to the query route with an Accept header (none when
// empty).
func postQuery(t testing.TB, url, accept, body string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+"/v1/query/online", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

// sampleValue returns a canonical value of type t, varied by n.
func sampleValue(t feature.Type, n int) any {
	switch t.Kind {
	case feature.KindInt:
		return int64(n*1000003 - 7)
	case feature.KindFloat:
		return float64(n)*1.25 + 1e-7
	case feature.KindString:
		return fmt.Sprintf("s%d \"é\"\n\u2028", n)
	case feature.KindBool:
		return n%2 == 0
	case feature.KindBytes:
		return []byte{byte(n), 0, 0xff}
	case feature.KindDatetime:
		return time.Date(2026, 1, 2, 3, 4, 5, n*1000, time.UTC)
	case feature.KindList:
		l := []any{}
		for i := range n % 3 {
			l = append(l, sampleValue(*t.Elem, n+i))
		}
		return l
	case feature.KindVector:
		v := make([]float32, t.Dim)
		for i := range v {
			v[i] = float32(n+i) / 3
		}
		return v
	case feature.KindJSON:
		return map[string]any{"n": json.Number(strconv.Itoa(n)), "s": "<x>", "l": []any{true, nil}}
	}
	panic("unknown kind")
}

// formsServer is the API over an embedded store holding values of every
// feature type of examples/features.yaml's user and merchant namespaces.
type formsServer struct {
	url   string
	reg   *feature.Registry
	feats []string // the features written, every type, in registry order
}

// newFormsServer writes users u0..u2 and merchants 0..2, every feature but
// the windowed ones; u1 and merchant 1 lack every other feature.
func newFormsServer(t *testing.T) *formsServer {
	t.Helper()
	reg, err := feature.Load("../../examples/features.yaml")
	if err != nil {
		t.Fatal(err)
	}
	st, err := embedded.Open(t.TempDir(), embedded.Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	fs := &formsServer{reg: reg}
	// Fresh for the shortest maximum staleness, user.plan's 10m.
	at := time.Now().UTC().Add(-2 * time.Minute).Truncate(time.Millisecond).Add(123 * time.Microsecond)
	var writes []store.EntityWrite
	for _, name := range []string{"user", "merchant"} {
		ns, _ := reg.Namespace(name)
		for e := range 3 {
			key := strconv.Itoa(e)
			if name == "user" {
				key = "u" + key
			}
			w := store.EntityWrite{Namespace: ns, Key: key}
			for fi, f := range ns.Features {
				if f == ns.PrimaryKey || f.Windowed() || f.WindowOf != nil {
					continue
				}
				if e == 0 {
					fs.feats = append(fs.feats, f.FQN)
				}
				if e == 1 && fi%2 == 0 {
					continue
				}
				w.Values = append(w.Values, store.Value{Feature: f, Value: sampleValue(f.Type, e+fi),
					ObservedAt: at.Add(time.Duration(fi) * time.Second)})
			}
			writes = append(writes, w)
		}
	}
	if err := st.Write(context.Background(), writes); err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{}, reg, query.NewEngine(st, nil, nil), nil, nil, nil, quiet())
	if err != nil {
		t.Fatal(err)
	}
	fs.url = serveTest(t, srv).URL
	return fs
}

func (fs *formsServer) typeOf(name string) feature.Type {
	f, ok := fs.reg.Lookup(name)
	if !ok {
		panic("no feature " + name)
	}
	return f.Type
}

func (fs *formsServer) pkOf(name string) string {
	f, ok := fs.reg.Lookup(name)
	if !ok {
		panic("no feature " + name)
	}
	return f.Namespace.PrimaryKey.FQN
}

// threeForms queries body in the three forms and checks they carry the
// same cells: the columns cols in that order, rowKeys as in rowsGrid.
// It returns the columnar values.
func (fs *formsServer) threeForms(t *testing.T, body string, cols []string, rowKeys map[string][]string, meta bool) grid {
	t.Helper()
	code, _, rowsBody := postQuery(t, fs.url, "", body)
	if code != 200 {
		t.Fatalf("row answer: %d %s", code, rowsBody)
	}
	rowVals, rowTS := rowsGrid(t, rowsBody, cols, rowKeys, fs.pkOf)
	colBody := strings.Replace(body, "{", `{"format":"columnar",`, 1)
	code, h, cb := postQuery(t, fs.url, "", colBody)
	if code != 200 || h.Get("Content-Type") != "application/json" {
		t.Fatalf("columnar answer: %d %s %s", code, h.Get("Content-Type"), cb)
	}
	colVals, colTS, _, _ := columnarGrid(t, cb, cols)
	code, h, ab := postQuery(t, fs.url, arrowMediaType, body)
	if code != 200 || h.Get("Content-Type") != arrowMediaType {
		t.Fatalf("arrow answer: %d %s %s", code, h.Get("Content-Type"), ab)
	}
	arrVals, arrTS, schema := arrowGrid(t, ab, fs.typeOf)
	var names []string
	for _, f := range schema.Fields() {
		if !strings.HasSuffix(f.Name, tsSuffix) {
			names = append(names, f.Name)
		}
	}
	if !slices.Equal(names, cols) {
		t.Errorf("arrow columns %v, want %v", names, cols)
	}
	formsAgree(t, meta, rowVals, rowTS, colVals, colTS, arrVals, arrTS)
	return colVals
}

// formsAgree checks that the columnar and Arrow grids hold the row
// answer's values, and its observed-ats with include_meta (none without).
func formsAgree(t *testing.T, meta bool, rowVals, rowTS, colVals, colTS, arrVals, arrTS grid) {
	t.Helper()
	if d := diffGrids(colVals, rowVals); d != "" {
		t.Errorf("columnar values differ from the row answer's:\n%s", d)
	}
	if d := diffGrids(arrVals, rowVals); d != "" {
		t.Errorf("arrow values differ from the row answer's:\n%s", d)
	}
	if meta {
		if d := diffGrids(colTS, rowTS); d != "" {
			t.Errorf("columnar ts differ from the row answer's:\n%s", d)
		}
		if d := diffGrids(arrTS, rowTS); d != "" {
			t.Errorf("arrow ts differ from the row answer's:\n%s", d)
		}
	} else if colTS != nil || arrTS != nil {
		t.Errorf("observed-ats without include_meta: columnar %v, arrow %v", colTS, arrTS)
	}
}

// The row, columnar and Arrow answers carry the same values, nulls
// included, for every feature type, one namespace or two, with and
// without observed-ats.
func TestAnswerFormsCarryTheSameValues(t *testing.T) {
	fs := newFormsServer(t)
	outs, _ := json.Marshal(fs.feats)
	rowKeys := map[string][]string{
		"user.id":     {`"u0"`, `"u1"`, `"u2"`, `"u9"`},
		"merchant.id": {`0`, `1`, `2`, `9`},
	}
	cols := append([]string{"user.id", "merchant.id"}, fs.feats...)
	for _, meta := range []bool{false, true} {
		body := fmt.Sprintf(`{"inputs":{"user.id":["u0","u1","u2","u9"],"merchant.id":[0,1,2,9]},"outputs":%s,"include_meta":%v}`, outs, meta)
		vals := fs.threeForms(t, body, cols, rowKeys, meta)
		// The test reads something: values where written, nulls where not.
		for _, c := range fs.feats {
			if v := vals[c]; v[0] == "null" || v[3] != "null" {
				t.Errorf("%s: %v, want a value for row 0 and a null for row 3 (absent)", c, v)
			}
		}
	}
	// One namespace, its key among the outputs and an output asked twice:
	// each column once.
	body := `{"inputs":{"merchant.id":[2,9,0]},"outputs":["merchant.name","merchant.id","merchant.embedding","merchant.name"],"include_meta":true}`
	vals := fs.threeForms(t, body, []string{"merchant.id", "merchant.name", "merchant.embedding"},
		map[string][]string{"merchant.id": {`2`, `9`, `0`}}, true)
	if got := strings.Join(vals["merchant.id"], ","); got != "2,9,0" {
		t.Errorf("merchant.id column %s, want the inputs in order 2,9,0", got)
	}
}

// The Arrow answer's types are the documented ones.
func TestArrowAnswerTypes(t *testing.T) {
	fs := newFormsServer(t)
	body := `{"inputs":{"user.id":["u0"]},"outputs":["user.age","user.score","user.name","user.is_active","user.avatar","user.signup","user.tags","user.embedding","user.profile"],"include_meta":true}`
	code, _, ab := postQuery(t, fs.url, arrowMediaType, body)
	if code != 200 {
		t.Fatalf("%d %s", code, ab)
	}
	_, _, schema := arrowGrid(t, ab, fs.typeOf)
	want := map[string]string{
		"user.id": "utf8", "user.age": "int64", "user.score": "float64", "user.name": "utf8", "user.is_active": "bool",
		"user.avatar": "binary", "user.signup": "timestamp[us, tz=UTC]", "user.tags": "list<item: utf8, nullable>",
		"user.embedding": "fixed_size_list<item: float32, nullable>[8]", "user.profile": "utf8",
		"user.age.__ts__": "timestamp[us, tz=UTC]", "user.profile.__ts__": "timestamp[us, tz=UTC]",
	}
	got := map[string]string{}
	for _, f := range schema.Fields() {
		got[f.Name] = f.Type.String()
	}
	if len(got) != 9+1+9 {
		t.Errorf("%d columns, want the key, 9 features and 9 observed-ats: %v", len(got), got)
	}
	for name, typ := range want {
		if got[name] != typ {
			t.Errorf("%s: type %q, want %q", name, got[name], typ)
		}
	}
	mb, _ := schema.Metadata().GetValue(arrowMetaKey)
	var meta map[string]any
	if err := json.Unmarshal([]byte(mb), &meta); err != nil || meta["query_id"] == "" || meta["execution_duration_s"] == nil {
		t.Errorf("meta %q: %v", mb, err)
	}
	if eb, _ := schema.Metadata().GetValue(arrowErrorsKey); eb != "[]" {
		t.Errorf("errors %q, want []", eb)
	}
}

func TestPrefersArrow(t *testing.T) {
	for _, c := range []struct {
		accept []string
		want   bool
	}{
		{nil, false},
		{[]string{""}, false},
		{[]string{"application/json"}, false},
		{[]string{"*/*"}, false},
		{[]string{arrowMediaType}, true},
		{[]string{"Application/Vnd.Apache.Arrow.Stream"}, true},
		{[]string{"text/html, " + arrowMediaType + " ; charset=x"}, true},
		{[]string{"application/json, " + arrowMediaType}, false}, // a tie: JSON
		{[]string{"application/json;q=0.5, " + arrowMediaType + ";q=0.9"}, true},
		{[]string{"application/json;q=0.9, " + arrowMediaType + ";q=0.5"}, false},
		{[]string{arrowMediaType + ";q=0"}, false},
		{[]string{arrowMediaType + ";q=0, */*"}, false},
		{[]string{arrowMediaType + ";q=x"}, false},
		{[]string{arrowMediaType + ";q=0.8", "*/*;q=0.1"}, true},
		{[]string{arrowMediaType + ", application/*;q=0.5"}, true},
		{[]string{"application/json;q=0", "*/*"}, true}, // JSON refused, anything else accepted
		{[]string{"application/json;q=0, " + arrowMediaType + ";q=0.1"}, true},
		{[]string{"application/*;q=0.2, " + arrowMediaType + ";q=0.3"}, true},
	} {
		if got := prefersArrow(c.accept); got != c.want {
			t.Errorf("Accept %q: arrow %v, want %v", c.accept, got, c.want)
		}
	}
}

// The Accept header picks the form over HTTP; JSON is the default and
// request errors stay JSON.
func TestAcceptNegotiation(t *testing.T) {
	fs := newFormsServer(t)
	body := `{"inputs":{"user.id":"u0"},"outputs":["user.age"]}`
	for accept, want := range map[string]string{
		"":                      "application/json",
		"application/json":      "application/json",
		"*/*":                   "application/json",
		arrowMediaType + ";q=1": arrowMediaType,
		"application/json;q=0.1, " + arrowMediaType + ";q=0.7": arrowMediaType,
		"application/json;q=0.7, " + arrowMediaType + ";q=0.1": "application/json",
	} {
		code, h, b := postQuery(t, fs.url, accept, body)
		if code != 200 || h.Get("Content-Type") != want {
			t.Errorf("Accept %q: %d %s, want 200 %s: %.200s", accept, code, h.Get("Content-Type"), want, b)
		}
	}
	code, h, b := postQuery(t, fs.url, arrowMediaType, `{"inputs":{"user.id":"u0"},"outputs":["user.nope"]}`)
	if code != 400 || h.Get("Content-Type") != "application/json" || !bytes.Contains(b, []byte("user.nope")) {
		t.Errorf("bad request asking for Arrow: %d %s %s, want 400 JSON", code, h.Get("Content-Type"), b)
	}
}

// benchTable is benchAnswer with its features typed as their values, and
// the request that asked for it.
func benchTable(entities, features int) (*answer, *query.Request) {
	a := benchAnswer(entities, features)
	kinds := [10]feature.Kind{feature.KindInt, feature.KindFloat, feature.KindString, feature.KindBool, feature.KindDatetime,
		feature.KindFloat, feature.KindInt, feature.KindString, feature.KindBytes, feature.KindInt}
	qr := &query.Request{Keys: map[*feature.Namespace][]string{}}
	fields := fieldsOf(a)
	for j := range features {
		f := fields[j].Feature
		f.Type = feature.Type{Kind: kinds[j%10]}
		qr.Outputs = append(qr.Outputs, f)
	}
	ns := fields[0].Feature.Namespace
	for i := range entities {
		qr.Keys[ns] = append(qr.Keys[ns], fields[i*features].Key)
	}
	a.res = tableAnswer(qr, fields)
	return a, qr
}

// BenchmarkAnswerForms encodes one answer of 100 entities × 50 features in
// each form, reporting its size.
func BenchmarkAnswerForms(b *testing.B) {
	a, qr := benchTable(100, 50)
	buf := make([]byte, 0, 1<<20)
	b.Run("rows", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buf, _ = appendAnswer(buf[:0], a)
		}
		b.ReportMetric(float64(len(buf)), "bytes/answer")
	})
	b.Run("columnar", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			t, err := newTable(qr, a.res)
			if err != nil {
				b.Fatal(err)
			}
			buf, _ = appendColumnar(buf[:0], a, t)
		}
		b.ReportMetric(float64(len(buf)), "bytes/answer")
	})
	b.Run("arrow", func(b *testing.B) {
		b.ReportAllocs()
		sink := &byteSink{b: buf}
		for b.Loop() {
			sink.b = sink.b[:0]
			if err := appendArrow(sink, arrowMemory, a, qr); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(sink.b)), "bytes/answer")
	})
}

// readSchema reads the schema of a stream of msg, a schema message, and
// the end of stream marker.
func readSchema(t testing.TB, msg []byte) *arrow.Schema {
	t.Helper()
	rd, err := ipc.NewReader(bytes.NewReader(append(msg, arrowEOS[:]...)))
	if err != nil {
		t.Fatalf("schema message: %v", err)
	}
	defer rd.Release()
	return rd.Schema()
}

// checkSchemaTemplate writes the schema message of a layout for errs and
// meta from its template and checks it reads back as the message arrow-go
// writes itself: the same fields and metadata.
func checkSchemaTemplate(t *testing.T, e *arrowEncoder, errs, meta string) {
	t.Helper()
	got := &byteSink{}
	if err := e.writeSchema(got, memory.DefaultAllocator, []byte(errs), []byte(meta)); err != nil {
		t.Fatal(err)
	}
	want := &byteSink{}
	if err := writeSchemaPayload(want, memory.DefaultAllocator, arrowSchema(e.fields, errs, meta)); err != nil {
		t.Fatal(err)
	}
	gs, ws := readSchema(t, got.b), readSchema(t, want.b)
	if !gs.Equal(ws) || !gs.Metadata().Equal(ws.Metadata()) {
		t.Errorf("errors %q, meta %q: schema from the template\n%s\nwant\n%s", errs, meta, gs, ws)
	}
	// A template is made for the texts' lengths: its message is the size
	// of arrow-go's, but for an empty text's placeholder byte.
	if errs != "" && meta != "" && len(got.b) != len(want.b) || len(got.b) > len(want.b)+8 {
		t.Errorf("errors %q, meta %q: template message of %d bytes, arrow-go's %d", errs, meta, len(got.b), len(want.b))
	}
}

// The schema message made from a layout's template reads back as the one
// arrow-go writes, whatever the errors and meta texts' lengths; texts too
// long for a template are written by arrow-go itself.
func TestArrowSchemaTemplate(t *testing.T) {
	a, qr := benchTable(2, 12)
	tbl, err := newTable(qr, a.res)
	if err != nil {
		t.Fatal(err)
	}
	e := newArrowEncoder(tbl, true)
	for _, n := range []int{0, 1, 2, 31, 32, 33, 100, 1000} {
		checkSchemaTemplate(t, e, strings.Repeat("é", n/2)+strings.Repeat("x", n%2), `{"query_id":"`+strings.Repeat("q", n)+`"}`)
	}
	// Eight lengths of each text: no more than maxSchemaTemplates kept.
	if len(e.templates) == 0 || len(e.templates) > maxSchemaTemplates {
		t.Errorf("%d templates", len(e.templates))
	}
	// The texts of one length use the template made for it.
	before := len(e.templates)
	checkSchemaTemplate(t, e, strings.Repeat("y", 1000), `{"query_id":"`+strings.Repeat("r", 1000)+`"}`)
	if len(e.templates) != before {
		t.Errorf("texts of a kept template's lengths made another template")
	}
	kept := len(e.templates)
	checkSchemaTemplate(t, e, strings.Repeat("~", maxSchemaClass+1), "^")
	if len(e.templates) != kept {
		t.Errorf("a text over %d bytes made a template", maxSchemaClass)
	}
}

// Whatever the errors and meta texts, placeholder bytes included, the
// schema message made from a template carries them.
func FuzzArrowSchemaTemplate(f *testing.F) {
	f.Add("[]", `{"execution_duration_s":0.001,"query_id":"q"}`)
	f.Add("~~~~", "^^^\x00")
	f.Add("", "")
	a, qr := benchTable(1, 3)
	tbl, err := newTable(qr, a.res)
	if err != nil {
		f.Fatal(err)
	}
	e := newArrowEncoder(tbl, false)
	f.Fuzz(func(t *testing.T, errs, meta string) {
		checkSchemaTemplate(t, e, errs, meta)
	})
}

// arrayData returns the arrow-go array data of c's values, sharing c's
// buffers, as the encoder made it when arrow-go wrote its record batches:
// the reference writer's input.
func (c *arrowColumn) arrayData() arrow.ArrayData {
	bufs := []*memory.Buffer{memory.NewBufferBytes(c.valid), nil}
	var children []arrow.ArrayData
	switch c.typ.Kind {
	case feature.KindInt, feature.KindDatetime:
		bufs[1] = memory.NewBufferBytes(arrow.Int64Traits.CastToBytes(c.i64))
	case feature.KindFloat:
		bufs[1] = memory.NewBufferBytes(arrow.Float64Traits.CastToBytes(c.f64))
	case feature.KindBool:
		bufs[1] = memory.NewBufferBytes(c.bits)
	case feature.KindString, feature.KindBytes, feature.KindJSON:
		bufs[1] = memory.NewBufferBytes(arrow.Int32Traits.CastToBytes(c.offs))
		bufs = append(bufs, memory.NewBufferBytes(c.data))
	case feature.KindList:
		bufs[1] = memory.NewBufferBytes(arrow.Int32Traits.CastToBytes(c.offs))
		children = []arrow.ArrayData{c.child.arrayData()}
	case feature.KindVector:
		bufs = bufs[:1]
		vals := memory.NewBufferBytes(arrow.Float32Traits.CastToBytes(c.f32))
		children = []arrow.ArrayData{array.NewData(arrow.PrimitiveTypes.Float32, len(c.f32), []*memory.Buffer{nil, vals}, nil, 0, 0)}
	}
	d := array.NewData(c.dt, c.n, bufs, children, c.nulls, 0)
	for _, ch := range children {
		ch.Release()
	}
	return d
}

// writeRecordBatchArrowGo writes the record batch of e's columns, rows
// long, with arrow-go's IPC writer, its buffers allocated from mem: the
// reference writeRecordBatch is held to.
func writeRecordBatchArrowGo(sink *byteSink, mem memory.Allocator, e *arrowEncoder, rows int) error {
	arrays := make([]arrow.Array, len(e.columns))
	for i := range e.columns {
		d := e.columns[i].arrayData()
		arrays[i] = array.MakeFromData(d)
		d.Release()
	}
	rec := array.NewRecordBatch(arrow.NewSchema(e.fields, nil), arrays, int64(rows))
	for _, arr := range arrays {
		arr.Release()
	}
	defer rec.Release()
	p, err := ipc.GetRecordBatchPayload(rec, ipc.WithAllocator(mem))
	if err != nil {
		return err
	}
	defer p.Release()
	_, err = p.WritePayload(sink)
	return err
}

// appendArrowGo is appendArrow with the record batch written by arrow-go's
// IPC writer.
func appendArrowGo(sink *byteSink, mem memory.Allocator, a *answer, qr *query.Request) error {
	t, err := newTable(qr, a.res)
	if err != nil {
		return err
	}
	errs, meta, err := arrowMetadata(a)
	if err != nil {
		return err
	}
	e := newArrowEncoder(t, a.includeMeta)
	if err := e.fill(t); err != nil {
		return err
	}
	if err := e.writeSchema(sink, mem, errs, meta); err != nil {
		return err
	}
	if err := writeRecordBatchArrowGo(sink, mem, e, t.rows); err != nil {
		return err
	}
	sink.b = append(sink.b, arrowEOS[:]...)
	return nil
}

// sameArrowStream checks that the stream appendArrow writes of a is the
// one arrow-go's writer makes, byte for byte; where not, it reports how
// the two read back by arrow-go's reader differ.
func sameArrowStream(t *testing.T, a *answer, qr *query.Request) {
	t.Helper()
	got := &byteSink{}
	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	if err := appendArrow(got, mem, a, qr); err != nil {
		t.Fatalf("appendArrow: %v", err)
	}
	if n := mem.CurrentAlloc(); n != 0 {
		t.Errorf("%d bytes of Arrow buffers not released", n)
	}
	want := &byteSink{}
	if err := appendArrowGo(want, memory.DefaultAllocator, a, qr); err != nil {
		t.Fatalf("arrow-go: %v", err)
	}
	if bytes.Equal(got.b, want.b) {
		return
	}
	at := 0
	for at < min(len(got.b), len(want.b)) && got.b[at] == want.b[at] {
		at++
	}
	t.Errorf("stream of %d bytes, arrow-go's %d: they differ from byte %d", len(got.b), len(want.b), at)
	gr, err := ipc.NewReader(bytes.NewReader(got.b))
	if err != nil {
		t.Fatalf("reading the stream: %v", err)
	}
	defer gr.Release()
	wr, err := ipc.NewReader(bytes.NewReader(want.b))
	if err != nil {
		t.Fatalf("reading arrow-go's stream: %v", err)
	}
	defer wr.Release()
	for wr.Next() {
		if !gr.Next() {
			t.Fatalf("record batch missing: %v", gr.Err())
		}
		g, w := gr.RecordBatch(), wr.RecordBatch()
		for i := range w.NumCols() {
			if !array.Equal(g.Column(int(i)), w.Column(int(i))) {
				t.Errorf("%s: %v, arrow-go's %v", w.ColumnName(int(i)), g.Column(int(i)), w.Column(int(i)))
			}
		}
	}
	if gr.Next() || gr.Err() != nil {
		t.Errorf("after the record batch: %v", gr.Err())
	}
}

// arrowCase returns an answer of rows rows of a namespace with a string
// key and a feature of each of types, include_meta as meta, and its
// request: value gives the value of column col of row (nil for none).
func arrowCase(t testing.TB, rows int, meta bool, types []string, value func(row, col int, typ feature.Type) any) (*answer, *query.Request) {
	t.Helper()
	ns := &feature.Namespace{Name: "user"}
	ns.PrimaryKey = &feature.Feature{FQN: "user.id", Name: "id", Namespace: ns, Type: feature.Type{Kind: feature.KindString}}
	var outputs []*feature.Feature
	for i, name := range types {
		typ, err := feature.ParseType(name)
		if err != nil {
			t.Fatal(err)
		}
		outputs = append(outputs, &feature.Feature{FQN: fmt.Sprintf("user.f%d", i), Name: fmt.Sprintf("f%d", i), Namespace: ns, Type: typ})
	}
	qr := &query.Request{Keys: map[*feature.Namespace][]string{ns: {}}, Outputs: outputs}
	var fields []query.Field
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	for i := range rows {
		key := fmt.Sprintf("u%d", i)
		qr.Keys[ns] = append(qr.Keys[ns], key)
		for j, out := range outputs {
			fld := query.Field{Feature: out, Key: key, Value: value(i, j, out.Type)}
			if fld.Value != nil {
				fld.ObservedAt = at.Add(time.Duration(i*1000+j) * time.Microsecond)
			}
			fields = append(fields, fld)
		}
	}
	a := &answer{res: tableAnswer(qr, fields), includeMeta: meta, errors: errorList{}, queryID: "q", took: time.Millisecond}
	return a, qr
}

// The record batch written from the columns' buffers is arrow-go's, byte
// for byte, for every feature type: with nulls here and there (in lists
// and vectors too, and list elements), with none, all nulls (whose bitmap
// arrow-go pads to 64 bytes), no rows, rows across bitmap bytes, with and
// without observed-ats.
func TestArrowRecordBatchIsArrowGos(t *testing.T) {
	draw := func(seed byte, nullable bool) func(int, int, feature.Type) any {
		g := &fuzzGen{b: bytes.Repeat([]byte{seed, 0x5a, seed ^ 0xc3, 7, 200, 13}, 4000)}
		return func(_, _ int, typ feature.Type) any { return g.value(typ, nullable) }
	}
	everyOther := func(row, col int, typ feature.Type) any {
		if (row+col)%2 == 1 {
			return nil
		}
		return sampleValue(typ, row*7+col)
	}
	for _, c := range []struct {
		name  string
		rows  int
		value func(int, int, feature.Type) any
	}{
		{"some nulls", 5, draw(1, true)},
		{"no nulls", 7, draw(2, false)},
		{"all nulls", 3, func(int, int, feature.Type) any { return nil }},
		{"all nulls over 64 bytes of bitmap", 600, func(int, int, feature.Type) any { return nil }},
		{"one row", 1, draw(4, true)},
		{"every other", 17, everyOther},
		{"null list elements", 6, func(row, col int, typ feature.Type) any {
			if typ.Kind != feature.KindList || row%3 == 2 {
				return everyOther(row, col, typ)
			}
			return []any{nil, sampleValue(*typ.Elem, row), nil}
		}},
		{"columns of nulls among values", 70, func(row, col int, typ feature.Type) any {
			if col%3 == 0 {
				return nil
			}
			return sampleValue(typ, row+col)
		}},
	} {
		for _, meta := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/meta=%v", c.name, meta), func(t *testing.T) {
				a, qr := arrowCase(t, c.rows, meta, fuzzTypes, c.value)
				sameArrowStream(t, a, qr)
			})
		}
	}
	// A query has a key at least (the server refuses an empty list), but
	// the encoder writes a record batch of none as arrow-go does.
	for _, meta := range []bool{false, true} {
		sameEmptyRecordBatch(t, fuzzTypes, meta)
	}
}

// sameEmptyRecordBatch checks that the record batch of no rows of types'
// columns, include_meta as meta, is arrow-go's, byte for byte.
func sameEmptyRecordBatch(t *testing.T, types []string, meta bool) {
	t.Helper()
	a, qr := arrowCase(t, 1, meta, types, func(_, col int, typ feature.Type) any { return sampleValue(typ, col) })
	tbl, err := newTable(qr, a.res)
	if err != nil {
		t.Fatal(err)
	}
	e := newArrowEncoder(tbl, meta)
	for i := range e.columns {
		e.columns[i].reset()
	}
	got, want := &byteSink{}, &byteSink{}
	if err := e.writeRecordBatch(got, 0); err != nil {
		t.Fatal(err)
	}
	if err := writeRecordBatchArrowGo(want, memory.DefaultAllocator, e, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.b, want.b) {
		t.Errorf("record batch of no rows, meta %v:\n% x\narrow-go's:\n% x", meta, got.b, want.b)
	}
}

// The answer of BenchmarkAnswerForms, 100 entities × 50 features, is
// arrow-go's stream, so of its size (60,656 bytes), within issue 15's
// 60 KiB.
func TestArrowBenchAnswerSize(t *testing.T) {
	a, qr := benchTable(100, 50)
	sink := &byteSink{}
	if err := appendArrow(sink, arrowMemory, a, qr); err != nil {
		t.Fatal(err)
	}
	if len(sink.b) > 60<<10 {
		t.Errorf("100 × 50 answer of %d bytes, over 60 KiB", len(sink.b))
	}
	sameArrowStream(t, a, qr)
}

// Whatever the types, rows and values, nulls or none, the record batch
// written from the columns' buffers is arrow-go's, byte for byte.
func FuzzArrowRecordBatch(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, uint8(9), true)
	f.Add([]byte{14, 14, 9, 7, 8, 0, 255, 254, 3}, uint8(0), false)
	f.Add([]byte("\x05\x0f\x0e\x0d\x00\x01 hello \xc3\x28 world"), uint8(65), true)
	f.Fuzz(func(t *testing.T, data []byte, rows uint8, meta bool) {
		g := &fuzzGen{b: data}
		types := make([]string, 1+g.n(6))
		allNull := make([]bool, len(types))
		for i := range types {
			types[i] = fuzzTypes[g.n(len(fuzzTypes))]
			allNull[i] = g.n(4) == 0
		}
		if rows%80 == 0 {
			sameEmptyRecordBatch(t, types, meta)
			return
		}
		a, qr := arrowCase(t, int(rows%80), meta, types, func(_, col int, typ feature.Type) any {
			if allNull[col] {
				return nil
			}
			return g.value(typ, true)
		})
		sameArrowStream(t, a, qr)
	})
}
