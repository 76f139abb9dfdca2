package feature

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
	"unsafe"
)

func mustType(t testing.TB, s string) Type {
	t.Helper()
	ty, err := ParseType(s)
	if err != nil {
		t.Fatal(err)
	}
	return ty
}

func TestFromJSON(t *testing.T) {
	ts := time.Date(2024, 5, 1, 12, 30, 0, 123456000, time.UTC)
	tests := []struct {
		typ, in string
		want    any
	}{
		{"int", "42", int64(42)},
		{"int", "-9223372036854775808", int64(math.MinInt64)},
		{"int", "null", nil},
		{"float", "1.5", 1.5},
		{"float", "3", 3.0},
		{"string", `"héllo"`, "héllo"},
		{"bool", "true", true},
		{"bytes", `"AAEC"`, []byte{0, 1, 2}},
		{"datetime", `"2024-05-01T14:30:00.123456789+02:00"`, ts},
		{"list[string]", `["a","b"]`, []any{"a", "b"}},
		{"list[list[int]]", `[[1],[]]`, []any{[]any{int64(1)}, []any{}}},
		{"vector[3]", `[1, 0.5, -2]`, []float32{1, 0.5, -2}},
		{"json", `{"a": 1.50, "b": [true, null]}`, map[string]any{"a": json.Number("1.50"), "b": []any{true, nil}}},
	}
	for _, tt := range tests {
		got, err := FromJSON(mustType(t, tt.typ), json.RawMessage(tt.in))
		if err != nil {
			t.Errorf("%s %s: %v", tt.typ, tt.in, err)
			continue
		}
		if gt, ok := got.(time.Time); ok {
			if !gt.Equal(tt.want.(time.Time)) || gt.Location() != time.UTC {
				t.Errorf("%s %s = %v, want %v", tt.typ, tt.in, gt, tt.want)
			}
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s %s = %#v, want %#v", tt.typ, tt.in, got, tt.want)
		}
	}
}

func TestFromJSONRejects(t *testing.T) {
	tests := []struct{ typ, in, msg string }{
		{"int", "1.5", "want an integer"},
		{"int", "9223372036854775808", "int64 range"},
		{"int", `"1"`, "want an integer"},
		{"float", `"1"`, "want a number"},
		{"string", "1", "want a string"},
		{"bool", "1", "want true or false"},
		{"bytes", `"!!"`, "base64"},
		{"datetime", `"yesterday"`, "RFC 3339"},
		{"list[int]", `[1, null]`, "element 1: null"},
		{"list[int]", `[1, "x"]`, "element 1"},
		{"vector[2]", `[1]`, "exactly 2"},
		{"vector[1]", `[1e300]`, "float32 range"},
		{"json", `[1]`, "JSON object"},
	}
	for _, tt := range tests {
		_, err := FromJSON(mustType(t, tt.typ), json.RawMessage(tt.in))
		if err == nil || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%s %s: error %v, want one containing %q", tt.typ, tt.in, err, tt.msg)
		}
	}
}

// Regression: a vector accepted null elements, and json.Unmarshal, leaving
// the float alone, stored each as 0.
func TestFromJSONVectorNull(t *testing.T) {
	for _, in := range []string{`[1, null, 3]`, `[null,2,3]`, `[1,2, null ]`} {
		_, err := FromJSON(mustType(t, "vector[3]"), json.RawMessage(in))
		if err == nil {
			t.Errorf("vector[3] %s: accepted", in)
			continue
		}
		if want := "null is not allowed in a vector"; !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "element ") {
			t.Errorf("vector[3] %s: error %q, want one naming the element and saying %q", in, err, want)
		}
	}
	_, err := FromJSON(mustType(t, "list[vector[2]]"), json.RawMessage(`[[1,2],[3,null]]`))
	if err == nil || !strings.Contains(err.Error(), "element 1: element 1: null") {
		t.Errorf("list[vector[2]] with a null in its second vector: %v", err)
	}
	if v, err := FromJSON(mustType(t, "vector[2]"), json.RawMessage(`null`)); err != nil || v != nil {
		t.Errorf("a null vector (absent value): %v, %v; want nil, no error", v, err)
	}
}

// Regression: text that is not Unicode, raw bytes or an escape of half a
// UTF-16 surrogate pair, was replaced by U+FFFD, so that two keys a client
// told apart became one entity. It is refused wherever text appears.
func TestFromJSONInvalidText(t *testing.T) {
	tests := []struct{ typ, in string }{
		{"string", "\"a\xffb\""},
		{"string", "\"\xed\xa0\x80\""}, // a surrogate encoded in UTF-8
		{"string", "\"\xc0\xaf\""},     // an overlong encoding
		{"string", `"\ud800"`},         // a high surrogate alone
		{"string", `"a\ud800b"`},       // followed by something else
		{"string", `"\ud800\u0041"`},   // followed by another escape
		{"string", `"\udc00"`},         // a low surrogate alone
		{"string", `"\udbff\udbff"`},   // two high surrogates
		{"string", `"\uDC00\uD800"`},   // a pair in the wrong order
		{"list[string]", "[\"ok\", \"\xfe\"]"},
		{"list[string]", `["ok", "\ud83d"]`},
		{"json", `{"k": "\udfff"}`},
		{"json", "{\"\xff\": 1}"},
		{"bytes", "\"AA\xff\""},
		{"datetime", "\"2024-01-01T00:00:00Z\xff\""},
	}
	for _, tt := range tests {
		v, err := FromJSON(mustType(t, tt.typ), json.RawMessage(tt.in))
		if err == nil {
			t.Errorf("%s %q: accepted as %#v", tt.typ, tt.in, v)
			continue
		}
		if !strings.Contains(err.Error(), "UTF-8") && !strings.Contains(err.Error(), "surrogate") {
			t.Errorf("%s %q: error %q, want one saying what is wrong with the text", tt.typ, tt.in, err)
		}
	}
	for _, key := range []string{"\"u\xff\"", `"u\ud800"`} {
		if k, err := ParseKey(mustType(t, "string"), json.RawMessage(key)); err == nil {
			t.Errorf("key %q: accepted as %q", key, k)
		}
	}
	// Valid text, escaped or not, is kept exactly.
	valid := []struct{ in, want string }{
		{`"\ud83d\ude00"`, "\U0001F600"},
		{`"\uD83D\uDE00x"`, "\U0001F600x"},
		{"\"\U0001F600\"", "\U0001F600"},
		{`"\\ud800"`, `\ud800`}, // an escaped backslash, then plain text
		{`"\ufffd"`, "\ufffd"},
		{`"\u00e9\\"`, "é\\"},
	}
	for _, tt := range valid {
		v, err := FromJSON(mustType(t, "string"), json.RawMessage(tt.in))
		if err != nil || v != tt.want {
			t.Errorf("string %s = %q, %v; want %q", tt.in, v, err, tt.want)
		}
	}
}

func TestCodecRoundTrip(t *testing.T) {
	values := []any{
		nil, int64(0), int64(math.MaxInt64), int64(math.MinInt64), 0.1, math.Inf(-1), "", "ü", true, false,
		[]byte{}, []byte{0xff}, time.UnixMicro(-1).UTC(), time.UnixMicro(1714566600123456).UTC(),
		[]any{}, []any{"a", []any{int64(1)}}, []float32{1.5, -0}, map[string]any{"k": json.Number("1"), "n": nil},
	}
	for _, v := range values {
		b, err := AppendValue([]byte{0xAA}, v)
		if err != nil {
			t.Fatal(err)
		}
		got, rest, err := DecodeValue(b[1:])
		if err != nil || len(rest) != 0 {
			t.Fatalf("%#v: %v, %d bytes left", v, err, len(rest))
		}
		if !reflect.DeepEqual(got, v) {
			t.Errorf("round trip %#v = %#v", v, got)
		}
	}
	if _, err := AppendValue(nil, 3); err == nil {
		t.Error("AppendValue(int) should fail: not canonical")
	}
}

func TestCheck(t *testing.T) {
	if err := Check(mustType(t, "list[int]"), []any{int64(1), "x"}); err == nil {
		t.Error("list with a string element passed as list[int]")
	}
	if err := Check(mustType(t, "vector[2]"), []float32{1}); err == nil {
		t.Error("short vector passed")
	}
	if err := Check(mustType(t, "float"), int64(1)); err == nil {
		t.Error("int passed as float")
	}
	if err := Check(mustType(t, "datetime"), nil); err != nil {
		t.Error(err)
	}
}

func FuzzDecodeValue(f *testing.F) {
	for _, v := range []any{nil, int64(-7), 2.5, "s", true, []byte("b"), time.Unix(1, 0).UTC(),
		[]any{[]any{"x"}}, []float32{1, 2}, map[string]any{"a": []any{json.Number("1")}}} {
		b, _ := AppendValue(nil, v)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, _, err := DecodeValue(b)
		if err != nil {
			return
		}
		enc, err := AppendValue(nil, v)
		if err != nil {
			t.Fatalf("decoded %#v does not re-encode: %v", v, err)
		}
		v2, _, err := DecodeValue(enc)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if !reflect.DeepEqual(v, v2) && !hasNaN(v) {
			t.Fatalf("round trip changed the value: %#v vs %#v", v, v2)
		}
	})
}

func hasNaN(v any) bool {
	switch x := v.(type) {
	case float64:
		return math.IsNaN(x)
	case []float32:
		for _, f := range x {
			if f != f {
				return true
			}
		}
	case []any:
		for _, e := range x {
			if hasNaN(e) {
				return true
			}
		}
	}
	return false
}

func FuzzFromJSON(f *testing.F) {
	f.Add("list[vector[2]]", `[[1,2]]`)
	f.Add("json", `{"a":{"b":[1,"x",null]}}`)
	f.Add("datetime", `"2024-01-01T00:00:00Z"`)
	f.Add("int", `-12`)
	f.Add("vector[2]", `[1,null]`)
	f.Add("string", `"\ud83d\ude00\\ud800"`)
	f.Add("list[string]", "[\"\xff\"]")
	f.Fuzz(func(t *testing.T, typ, in string) {
		ty, err := ParseType(typ)
		if err != nil {
			return
		}
		v, err := FromJSON(ty, json.RawMessage(in))
		if err != nil {
			return
		}
		// Accepted text is Unicode, and decodes as encoding/json does.
		if !utf8.ValidString(in) {
			t.Fatalf("FromJSON(%s, %q) accepted invalid UTF-8", typ, in)
		}
		if s, ok := v.(string); ok && ty.Kind == KindString {
			var want string
			if err := json.Unmarshal([]byte(in), &want); err != nil || s != want {
				t.Fatalf("FromJSON(string, %q) = %q, encoding/json %q (%v)", in, s, want, err)
			}
			if strings.ContainsRune(s, utf8.RuneError) && !strings.Contains(in, "\ufffd") &&
				!strings.Contains(strings.ToLower(in), `\ufffd`) {
				t.Fatalf("FromJSON(string, %q) = %q: text replaced", in, s)
			}
		}
		if err := Check(ty, v); err != nil {
			t.Fatalf("FromJSON(%s, %s) = %#v fails Check: %v", typ, in, v, err)
		}
		if _, err := json.Marshal(ToJSON(v)); err != nil {
			t.Fatalf("answer for %#v does not marshal: %v", v, err)
		}
	})
}

// DecodeValueOf takes exactly one value of the type asked for.
func TestDecodeValueOf(t *testing.T) {
	intT, strT := mustType(t, "int"), mustType(t, "string")
	b, err := AppendValue(nil, int64(-7))
	if err != nil {
		t.Fatal(err)
	}
	if v, err := DecodeValueOf(b, intT); err != nil || v != int64(-7) {
		t.Errorf("int as int: %v, %v", v, err)
	}
	null, _ := AppendValue(nil, nil)
	if v, err := DecodeValueOf(null, strT); err != nil || v != nil {
		t.Errorf("null as string: %v, %v; want nil, no error", v, err)
	}
	if _, err := DecodeValueOf(b, strT); !errors.Is(err, ErrTypeMismatch) || errors.Is(err, ErrCorrupt) {
		t.Errorf("int as string: %v, want ErrTypeMismatch", err)
	}
	if _, err := DecodeValueOf(append(b, 0), intT); !errors.Is(err, ErrCorrupt) {
		t.Errorf("a byte after the value: %v, want ErrCorrupt", err)
	}
	if _, err := DecodeValueOf(b[:0], intT); !errors.Is(err, ErrCorrupt) {
		t.Errorf("no bytes: %v, want ErrCorrupt", err)
	}
}

// DecodeValueOf's path for scalars decodes what it accepts exactly as the
// general path does.
func FuzzDecodeScalar(f *testing.F) {
	for _, v := range []any{int64(-7), int64(1 << 40), 1.5, "text", "", true, false, "\xff"} {
		b, err := AppendValue(nil, v)
		if err != nil {
			b = []byte{tagString, 1, 0xff}
		}
		f.Add(b, uint8(0))
		f.Add(append(b, 0), uint8(1))
	}
	for _, v := range []any{time.UnixMicro(-1234567).UTC(), []float32{1, 2}, []float32{}} {
		b, _ := AppendValue(nil, v)
		f.Add(b, uint8(5))
		f.Add(b, uint8(6))
		f.Add(b, uint8(7))
	}
	kinds := []Type{{Kind: KindInt}, {Kind: KindFloat}, {Kind: KindString}, {Kind: KindBool}, {Kind: KindBytes},
		{Kind: KindDatetime}, {Kind: KindVector, Dim: 2}, {Kind: KindVector}}
	f.Fuzz(func(t *testing.T, b []byte, k uint8) {
		ty := kinds[int(k)%len(kinds)]
		v, ok := decodeScalar(b, ty, nil)
		if !ok {
			return
		}
		want, err := decodeValueOf(b, ty, nil)
		same := reflect.DeepEqual(v, want)
		switch x := v.(type) {
		case float64:
			w, _ := want.(float64)
			same = math.Float64bits(x) == math.Float64bits(w)
		case []float32:
			// NaNs are compared by their bits.
			w, _ := want.([]float32)
			same = len(x) == len(w)
			for i := 0; same && i < len(x); i++ {
				same = math.Float32bits(x[i]) == math.Float32bits(w[i])
			}
		}
		if err != nil || !same {
			t.Fatalf("decodeScalar(%x, %s) = %#v; decodeValueOf: %#v, %v", b, ty, v, want, err)
		}
	})
}

// Values decoded with a StringAlloc equal those decoded without, and keep
// them when the bytes they were decoded from are overwritten.
func FuzzDecodeValueOfIn(f *testing.F) {
	for _, v := range []any{"text", "", []any{"a", "bc"}, []any{[]any{"x"}}, int64(3), "\xff"} {
		b, err := AppendValue(nil, v)
		if err != nil {
			b = []byte{tagString, 1, 0xff}
		}
		f.Add(b, uint8(2))
		f.Add(b, uint8(5))
	}
	types := []string{"int", "float", "string", "bool", "bytes", "list[string]", "list[list[string]]", "datetime"}
	var a StringAlloc
	f.Fuzz(func(t *testing.T, b []byte, k uint8) {
		ty, err := ParseType(types[int(k)%len(types)])
		if err != nil {
			t.Fatal(err)
		}
		want, werr := DecodeValueOf(b, ty)
		a.Reset()
		got, err := DecodeValueOfIn(b, ty, &a)
		if (err == nil) != (werr == nil) {
			t.Fatalf("DecodeValueOfIn: %v; DecodeValueOf: %v", err, werr)
		}
		for i := range b {
			b[i] = 0xa5
		}
		if err == nil && !reflect.DeepEqual(got, want) && !hasNaN(want) {
			t.Fatalf("DecodeValueOfIn = %#v; DecodeValueOf %#v", got, want)
		}
	})
}

// The strings of a StringAlloc share blocks only between two Resets.
func TestStringAllocResetStartsABlock(t *testing.T) {
	var a StringAlloc
	within := func(s string, blockOf string, size int) bool {
		p, q := uintptr(unsafe.Pointer(unsafe.StringData(s))), uintptr(unsafe.Pointer(unsafe.StringData(blockOf)))
		return p >= q && p < q+uintptr(size)
	}
	src := []byte("abcdefgh")
	first := a.String(src[:3])
	second := a.String(src[3:])
	if !within(second, first, minStringBlock) {
		t.Errorf("two small strings between Resets took two blocks")
	}
	a.Reset()
	third := a.String(src)
	if within(third, first, minStringBlock) {
		t.Errorf("a string after Reset shares the block of one before")
	}
	copy(src, "zzzzzzzz")
	if first != "abc" || second != "defgh" || third != "abcdefgh" {
		t.Errorf("strings changed with their source: %q %q %q", first, second, third)
	}
	// A block after Reset is sized for the strings handed out before it:
	// 200 bytes, so two strings of 100 share one block.
	big := []byte(strings.Repeat("x", 100))
	a.Reset()
	a.String(big)
	a.String(big)
	a.Reset()
	x, y := a.String(big), a.String(big)
	if !within(y, x, 200) || a.String([]byte{}) != "" {
		t.Errorf("block after Reset not sized by the strings before it")
	}
	// Strings of many bytes before a Reset give the next block room for
	// no more than maxStringBlock: a small string after them takes no
	// more.
	a.Reset()
	a.String(make([]byte, 3*maxStringBlock))
	a.Reset()
	small := a.String(src[:1])
	if c := cap(a.block); c > maxStringBlock {
		t.Errorf("block of %d bytes for %q after large strings, want at most %d", c, small, maxStringBlock)
	}
}
