package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/query"
)

// fieldResult and queryResponse are the answer's shape as encoding/json
// writes it, the reference appendAnswer must match byte for byte.
type fieldResult struct {
	Field string         `json:"field"`
	Value any            `json:"value"`
	PKey  any            `json:"pkey"`
	TS    string         `json:"ts,omitempty"`
	Meta  map[string]any `json:"meta,omitempty"`
}

type queryResponse struct {
	Data   []fieldResult  `json:"data"`
	Errors errorList      `json:"errors"`
	Meta   map[string]any `json:"meta"`
}

// referenceAnswer builds a's answer as values and encodes them with
// encoding/json, HTML escaping off.
func referenceAnswer(w io.Writer, a *answer) error {
	fields := fieldsOf(a)
	resp := queryResponse{Data: make([]fieldResult, 0, len(fields)), Errors: a.errors}
	var (
		lastNS   *feature.Namespace
		lastKey  string
		lastPKey any
		lastAt   time.Time
		lastTS   string
	)
	for _, f := range fields {
		if ns := f.Feature.Namespace; ns != lastNS || f.Key != lastKey {
			lastNS, lastKey, lastPKey = ns, f.Key, feature.KeyJSON(ns.PrimaryKey.Type, f.Key)
		}
		fr := fieldResult{Field: f.Feature.FQN, Value: feature.ToJSON(f.Value), PKey: lastPKey}
		if !f.ObservedAt.IsZero() {
			if lastTS == "" || !f.ObservedAt.Equal(lastAt) {
				lastAt, lastTS = f.ObservedAt, f.ObservedAt.UTC().Format(feature.TimeLayout)
			}
			fr.TS = lastTS
		}
		if a.includeMeta {
			fr.Meta = map[string]any{"cache_hit": f.CacheHit}
		}
		resp.Data = append(resp.Data, fr)
	}
	resp.Meta = map[string]any{"query_id": a.queryID, "execution_duration_s": a.took.Seconds()}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(resp)
}

// testNamespaces returns a namespace with a string key and one with an int
// key, each with a feature of every type.
func testNamespaces() (user, merchant *feature.Namespace, feats map[string]*feature.Feature) {
	feats = map[string]*feature.Feature{}
	mk := func(name string, key feature.Kind) *feature.Namespace {
		ns := &feature.Namespace{Name: name}
		add := func(n string, t feature.Type) {
			f := &feature.Feature{FQN: name + "." + n, Name: n, Namespace: ns, Type: t}
			ns.Features = append(ns.Features, f)
			feats[f.FQN] = f
		}
		add("id", feature.Type{Kind: key})
		ns.PrimaryKey = ns.Features[0]
		add("v", feature.Type{Kind: feature.KindString})
		add("w", feature.Type{Kind: feature.KindInt})
		return ns
	}
	return mk("user", feature.KindString), mk("merchant", feature.KindInt), feats
}

// checkAnswer compares appendAnswer with encoding/json over a: the same
// bytes, or both failing.
func checkAnswer(t *testing.T, a *answer) {
	t.Helper()
	var want bytes.Buffer
	wantErr := referenceAnswer(&want, a)
	got, err := appendAnswer([]byte("prefix"), a)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("error %v, encoding/json's %v", err, wantErr)
	}
	if err != nil {
		return
	}
	if !bytes.HasPrefix(got, []byte("prefix")) {
		t.Fatalf("appended over the buffer's content: %q", got)
	}
	if got = got[len("prefix"):]; !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("answer\n%s\nencoding/json's\n%s", got, want.Bytes())
	}
}

var encodeValues = []any{
	nil,
	int64(0), int64(-1), int64(math.MaxInt64), int64(math.MinInt64),
	0.0, math.Copysign(0, -1), 1.0, -1.5, 0.1, 1e20, 1e21, 123456789e13, 1e-6, 1e-7, 9.99999e-7, 5e-324,
	math.MaxFloat64, -math.SmallestNonzeroFloat64, 1.0 / 3, 12345678.9, 1e-10, 1.5e-300, 2e100,
	"", "plain", `quote " backslash \ slash /`, "<html> & 'amp'", "\x00\x01\b\f\n\r\t\x1f\x7f",
	"héllo wörld ☃ 🎉", "line\u2028para\u2029end", "bad \xff utf8 \xc3", "\xed\xa0\x80 surrogate", "\uFFFD",
	true, false,
	[]byte(nil), []byte{}, []byte("hello, world"), []byte{0, 0xff, 0xfe, 1},
	time.Date(2026, 11, 22, 0, 35, 1, 123456000, time.UTC), time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	time.Date(1, 1, 1, 0, 0, 0, 1000, time.UTC), time.Date(2026, 6, 1, 12, 0, 0, 0, time.FixedZone("x", 3600)),
	[]any{}, []any(nil), []any{int64(1), int64(2)}, []any{"a\n", "\u2028"}, []any{1.5, 1e-7, 1e21},
	[]any{true, false}, []any{[]byte("x"), []byte{}}, []any{time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)},
	[]any{[]any{int64(1)}, []any{}, []any(nil)},
	[]float32(nil), []float32{}, []float32{0, 1, -1.5, 0.1, 1e-7, 1e21, 3.4028235e38, 1.0 / 3, 16777217, 1e-45},
	map[string]any(nil), map[string]any{},
	map[string]any{"b": json.Number("1.50"), "a": "x<y", "c": nil, "d": []any{json.Number("-0"), "\x01", map[string]any{}},
		"e": map[string]any{"z": true, "y": false}, "\u2028k\"": json.Number("1e+10"), "f": json.Number(""), "g": 2.5},
	int(7), float32(0.1), uint8(3), struct{ A int }{1},
}

// The answer is byte for byte what encoding/json writes, for every value
// type, key type, with and without observed-at, meta and errors.
func TestEncodeAnswerMatchesEncodingJSON(t *testing.T) {
	user, merchant, feats := testNamespaces()
	at := time.Date(2026, 11, 22, 0, 35, 1, 123456000, time.UTC)
	for i, v := range encodeValues {
		t.Run(fmt.Sprintf("%d_%T", i, v), func(t *testing.T) {
			for _, meta := range []bool{false, true} {
				checkAnswer(t, &answer{
					res: fieldsAnswer([]query.Field{
						{Feature: feats["user.v"], Key: "u1", Value: v, ObservedAt: at, CacheHit: true},
						{Feature: feats["merchant.v"], Key: "42", Value: v},
					}),
					includeMeta: meta, errors: errorList{}, queryID: "Q", took: 1234567 * time.Nanosecond,
				})
			}
		})
	}
	t.Run("mixed", func(t *testing.T) {
		fields := []query.Field{
			{Feature: user.PrimaryKey, Key: "u<1>\u2028", Value: "u<1>\u2028"},
			{Feature: feats["user.v"], Key: "u<1>\u2028", Value: "x", ObservedAt: at},
			{Feature: feats["user.w"], Key: "u<1>\u2028", Value: int64(3), ObservedAt: at},
			{Feature: feats["user.w"], Key: "u2", Value: int64(4), ObservedAt: at.Add(time.Microsecond)},
			{Feature: feats["user.v"], Key: "u2", Value: nil},
			{Feature: feats["user.w"], Key: "u2", Value: int64(5), ObservedAt: at.In(time.FixedZone("y", -7200))},
			{Feature: merchant.PrimaryKey, Key: "7", Value: int64(7)},
			{Feature: feats["merchant.v"], Key: "7", Value: "m", ObservedAt: at},
			{Feature: feats["merchant.v"], Key: "007", Value: "m", ObservedAt: at},
			{Feature: feats["merchant.v"], Key: "99999999999999999999", Value: "m", ObservedAt: at},
			{Feature: feats["merchant.w"], Key: "8", Err: errors.New("down")},
			{Feature: feats["user.v"], Key: "u2", Value: "again", ObservedAt: at},
		}
		errs := errorList{
			{Code: CodeUpstreamFailed, Category: CategoryField, Feature: "merchant.w", Message: "read \"x\": <down>\n"},
			{Code: CodeInternal, Category: CategoryRequest, Message: "no feature"},
		}
		for _, meta := range []bool{false, true} {
			checkAnswer(t, &answer{res: fieldsAnswer(fields), includeMeta: meta, errors: errs, queryID: "ABC", took: 3 * time.Second})
			checkAnswer(t, &answer{res: fieldsAnswer(fields[:0]), includeMeta: meta, errors: errorList{}, queryID: "", took: 0})
		}
	})
}

// A value encoding/json cannot encode fails the answer, as it fails
// encoding/json.
func TestEncodeAnswerRejectsWhatEncodingJSONRejects(t *testing.T) {
	_, _, feats := testNamespaces()
	for _, v := range []any{
		math.NaN(), math.Inf(1), math.Inf(-1), []any{math.Inf(1)}, []float32{1, float32(math.Inf(-1))},
		map[string]any{"a": math.NaN()}, map[string]any{"a": json.Number("1.")}, json.Number("x"), make(chan int),
	} {
		a := &answer{res: fieldsAnswer([]query.Field{{Feature: feats["user.v"], Key: "u", Value: v}}), errors: errorList{}}
		if _, err := appendAnswer(nil, a); err == nil {
			t.Errorf("%v: encoded", v)
		}
		if err := referenceAnswer(io.Discard, a); err == nil {
			t.Errorf("%v: encoding/json encoded it", v)
		}
	}
}

func FuzzEncodeAnswer(f *testing.F) {
	f.Add("plain", []byte("raw"), int64(1), 1.5, float32(0.25), true, int64(1_700_000_000), int64(123456000), "7", "1.5", false)
	f.Add("\u2028<&>\"\\\x00\x7f\xff", []byte{}, int64(-9), 1e-7, float32(1e21), false, int64(-62135596800), int64(0), "x\u2029", "-0e+01", true)
	f.Add("", []byte(nil), int64(math.MinInt64), 1e21, float32(1e-7), true, int64(253402300799), int64(999999999), "", "", false)
	f.Add("é", []byte{0xff}, int64(0), math.Inf(1), float32(math.NaN()), false, int64(0), int64(1), "00", "1.", true)
	f.Fuzz(func(t *testing.T, s string, raw []byte, n int64, fl float64, f32 float32, flag bool, sec, nsec int64, key, num string, meta bool) {
		_, _, feats := testNamespaces()
		at := time.Unix(sec%(1<<40), nsec).UTC()
		values := []any{
			n, fl, s, flag, raw, at, nil,
			[]any{s, n, fl, flag, raw, at, []any{s, at}},
			[]float32{f32, float32(fl)},
			map[string]any{"s": s, s: json.Number(num), "n": json.Number(strconv.FormatInt(n, 10)), "b": flag,
				"l": []any{s, nil, json.Number(strconv.FormatFloat(fl, 'g', -1, 64))}, "m": map[string]any{key: s}},
		}
		var fields []query.Field
		for i, v := range values {
			fld := query.Field{Feature: feats["user.v"], Key: key, Value: v, CacheHit: flag}
			if i%2 == 0 {
				fld.Feature, fld.Key = feats["merchant.v"], key+s[:min(len(s), 1)]
			}
			if i%3 != 0 {
				fld.ObservedAt = at
			}
			fields = append(fields, fld)
		}
		errs := errorList{{Code: CodeUpstreamFailed, Category: CategoryField, Feature: key, Message: s}}
		took := time.Duration(n)
		for _, fld := range fields {
			// Each value alone, so that one that fails does not hide the others.
			checkAnswer(t, &answer{res: fieldsAnswer([]query.Field{fld}), includeMeta: meta, errors: errorList{}, queryID: key, took: took})
		}
		checkAnswer(t, &answer{res: fieldsAnswer(fields), includeMeta: meta, errors: errs, queryID: s, took: took})
	})
}

// benchAnswer builds an answer like cairn bench's: entities × features,
// the features cycling through int, float, string, bool, datetime, float,
// int, string, bytes, int, every value present and observed at one time.
func benchAnswer(entities, features int) *answer {
	ns := &feature.Namespace{Name: "bench"}
	ns.PrimaryKey = &feature.Feature{FQN: "bench.key", Name: "key", Namespace: ns, Type: feature.Type{Kind: feature.KindString}}
	feats := make([]*feature.Feature, features)
	for j := range feats {
		feats[j] = &feature.Feature{FQN: fmt.Sprintf("bench.f%d", j), Name: fmt.Sprintf("f%d", j), Namespace: ns}
	}
	at := time.Date(2026, 11, 22, 0, 0, 0, 123456000, time.UTC)
	a := &answer{errors: errorList{}, queryID: "K7Q2ZJ4W3TCH6LR5XVNMPB", took: 812 * time.Microsecond}
	var fields []query.Field
	for i := range entities {
		key := fmt.Sprintf("entity-%d", 100+i)
		for j, f := range feats {
			var v any
			switch j % 10 {
			case 0, 6, 9:
				v = int64(i*1000 + j)
			case 1, 5:
				v = float64(i*1000+j) / 7
			case 2, 7:
				v = fmt.Sprintf("value %d of entity %d", j, i)
			case 3:
				v = (i+j)%2 == 0
			case 4:
				v = at.Add(time.Duration(i) * time.Second)
			case 8:
				v = []byte{byte(i), byte(j), 1, 2, 3}
			}
			fields = append(fields, query.Field{Feature: f, Key: key, Value: v, ObservedAt: at})
		}
	}
	a.res = fieldsAnswer(fields)
	return a
}

func BenchmarkEncodeAnswer(b *testing.B) {
	for _, size := range []struct{ entities, features int }{{1, 50}, {100, 50}} {
		a := benchAnswer(size.entities, size.features)
		name := fmt.Sprintf("%dx%d", size.entities, size.features)
		b.Run(name+"/encoding-json", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := referenceAnswer(io.Discard, a); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/by-hand", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				buf := answerBuffers.Get().(*[]byte)
				out, err := appendAnswer((*buf)[:0], a)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Discard.Write(out)
				*buf = out[:0]
				answerBuffers.Put(buf)
			}
		})
	}
}

// The answer goes out with its length; one that cannot be encoded is
// answered as an internal error, not as a truncated 200.
func TestWriteAnswer(t *testing.T) {
	_, _, feats := testNamespaces()
	s := &Server{log: quiet()}
	for _, tc := range []struct {
		value any
		code  int
	}{{"ok", http.StatusOK}, {math.NaN(), http.StatusInternalServerError}} {
		rec := httptest.NewRecorder()
		s.writeAnswer(rec, &answer{res: fieldsAnswer([]query.Field{{Feature: feats["user.v"], Key: "u", Value: tc.value}}), errors: errorList{}})
		if rec.Code != tc.code {
			t.Fatalf("%v: status %d, want %d", tc.value, rec.Code, tc.code)
		}
		if got := rec.Header().Get("Content-Type"); got != "application/json" {
			t.Errorf("%v: content type %q", tc.value, got)
		}
		var out map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatalf("%v: body %q: %v", tc.value, rec.Body, err)
		}
		if tc.code != http.StatusOK {
			if e := out["errors"].([]any)[0].(map[string]any); e["code"] != CodeInternal {
				t.Errorf("%v: error %v", tc.value, e)
			}
			continue
		}
		if got := rec.Header().Get("Content-Length"); got != strconv.Itoa(rec.Body.Len()) {
			t.Errorf("content length %s for %d bytes", got, rec.Body.Len())
		}
	}
}
