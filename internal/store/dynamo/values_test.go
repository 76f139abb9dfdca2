package dynamo

import (
	"encoding/json"
	"math"
	"math/big"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/cairnfs/cairn/internal/feature"
)

func mustType(t testing.TB, s string) feature.Type {
	t.Helper()
	typ, err := feature.ParseType(s)
	if err != nil {
		t.Fatal(err)
	}
	return typ
}

func TestValueRoundTrip(t *testing.T) {
	tests := []struct {
		typ  string
		v    any
		kind string // the attribute type stored
	}{
		{"int", int64(math.MinInt64), "N"},
		{"int", int64(math.MaxInt64), "N"},
		{"float", 0.1, "N"},
		{"float", -1e125, "N"},
		{"float", 1e-130, "N"},
		{"float", math.MaxFloat64, "B"},
		{"float", math.SmallestNonzeroFloat64, "B"},
		{"float", 1e126, "B"},
		{"float", math.Copysign(0, -1), "B"},
		{"float", math.Inf(1), "B"},
		{"string", "", "S"},
		{"string", "Zoë 🎉", "S"},
		{"bool", false, "BOOL"},
		{"bytes", []byte{}, "B"},
		{"bytes", []byte{0, 255}, "B"},
		{"datetime", time.Date(1, 1, 1, 0, 0, 0, 1000, time.UTC), "N"},
		{"datetime", time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC), "N"},
		{"list[int]", []any{}, "L"},
		{"list[list[string]]", []any{[]any{"a"}, []any{}}, "L"},
		{"vector[3]", []float32{1, float32(math.Inf(-1)), -0.5}, "B"},
		{"json", map[string]any{}, "M"},
		{"json", map[string]any{
			"": "empty", "~": "tilde", "~~x": "tildes", "n": json.Number("-1.5e-7"), "null": nil,
			"l": []any{true, json.Number("3"), map[string]any{"deep": []any{}}},
		}, "M"},
		{"int", nil, "NULL"},
		{"json", nil, "NULL"},
	}
	for _, tc := range tests {
		typ := mustType(t, tc.typ)
		av, err := encodeValue(typ, tc.v)
		if err != nil {
			t.Errorf("%s %#v: encode: %v", tc.typ, tc.v, err)
			continue
		}
		if got := strings.TrimPrefix(reflect.TypeOf(av).Elem().Name(), "AttributeValueMember"); got != tc.kind {
			t.Errorf("%s %#v: stored as %s, want %s", tc.typ, tc.v, got, tc.kind)
		}
		got, ok := decodeValue(typ, av)
		if !ok {
			t.Errorf("%s %#v: does not decode", tc.typ, tc.v)
			continue
		}
		if f, isFloat := tc.v.(float64); isFloat {
			if g := got.(float64); math.Float64bits(g) != math.Float64bits(f) {
				t.Errorf("float %v: read back %v", f, g)
			}
			continue
		}
		if !reflect.DeepEqual(got, tc.v) {
			t.Errorf("%s: read back %#v, want %#v", tc.typ, got, tc.v)
		}
	}
}

// A stored attribute of the wrong shape is not a value.
func TestDecodeMismatch(t *testing.T) {
	tests := []struct {
		typ string
		av  types.AttributeValue
	}{
		{"int", &types.AttributeValueMemberS{Value: "1"}},
		{"int", &types.AttributeValueMemberN{Value: "1.5"}},
		{"int", &types.AttributeValueMemberN{Value: "99999999999999999999"}},
		{"float", &types.AttributeValueMemberB{Value: []byte{1, 2, 3}}},
		{"string", &types.AttributeValueMemberN{Value: "1"}},
		{"bool", &types.AttributeValueMemberS{Value: "true"}},
		{"bytes", &types.AttributeValueMemberS{Value: "x"}},
		{"datetime", &types.AttributeValueMemberS{Value: "2024-01-01T00:00:00Z"}},
		{"list[int]", &types.AttributeValueMemberL{Value: []types.AttributeValue{&types.AttributeValueMemberNULL{Value: true}}}},
		{"list[int]", &types.AttributeValueMemberL{Value: []types.AttributeValue{&types.AttributeValueMemberS{Value: "1"}}}},
		{"list[int]", &types.AttributeValueMemberSS{Value: []string{"1"}}},
		{"vector[2]", &types.AttributeValueMemberB{Value: make([]byte, 12)}},
		{"json", &types.AttributeValueMemberL{}},
		{"json", &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{"b": &types.AttributeValueMemberB{}}}},
	}
	for _, tc := range tests {
		if v, ok := decodeValue(mustType(t, tc.typ), tc.av); ok {
			t.Errorf("%s from %#v decoded as %#v, want a mismatch", tc.typ, tc.av, v)
		}
	}
}

func TestCheckNumber(t *testing.T) {
	ok := []string{
		"0", "-0", "0.000", "1", "-1", "1.5", "1e-130", "-1E-130", "9.9999999999999999999999999999999999999E+125",
		"12345678901234567890123456789012345678", "0.00012345678901234567890123456789012345678",
		"123456789012345678901234567890123456780000", "1e+125", "100e123",
	}
	bad := []string{
		"1e126", "10e125", "1e-131", "0.1e-130", "123456789012345678901234567890123456789",
		"1e99999999999999999999", "", "-", "1x", "0x10",
	}
	for _, s := range ok {
		if err := checkNumber(s); err != nil {
			t.Errorf("checkNumber(%q) = %v, want ok", s, err)
		}
	}
	for _, s := range bad {
		if err := checkNumber(s); err == nil {
			t.Errorf("checkNumber(%q) accepted, want an error", s)
		}
	}
}

// A JSON number DynamoDB cannot hold exactly is refused, not rounded.
func TestEncodeJSONNumberOutOfRange(t *testing.T) {
	_, err := encodeValue(mustType(t, "json"), map[string]any{"x": map[string]any{"big": json.Number("1e400")}})
	if err == nil || !strings.Contains(err.Error(), `key "x": key "big": number 1e400`) {
		t.Errorf("error %v, want one naming the path and the number", err)
	}
}

// FuzzCheckNumber checks checkNumber against the definition of DynamoDB's
// range and precision, for every syntactically valid JSON number.
func FuzzCheckNumber(f *testing.F) {
	for _, s := range []string{"0", "1.5", "-1e-130", "1e126", "12345678901234567890123456789012345678", "0.000100"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !json.Valid([]byte(s)) || !isJSONNumber(s) {
			return
		}
		r, ok := new(big.Rat).SetString(s)
		if !ok {
			return // exponent too large for big.Rat
		}
		err := checkNumber(s)
		if r.Sign() == 0 {
			if err != nil {
				t.Errorf("zero %q refused: %v", s, err)
			}
			return
		}
		abs := new(big.Rat).Abs(r)
		lo, _ := new(big.Rat).SetString("1e-130")
		hi, _ := new(big.Rat).SetString("1e126")
		inRange := abs.Cmp(lo) >= 0 && abs.Cmp(hi) < 0
		digits := significantDigits(s)
		if want := inRange && digits <= 38; (err == nil) != want {
			t.Errorf("checkNumber(%q) = %v; in range %v, %d significant digits", s, err, inRange, digits)
		}
	})
}

func isJSONNumber(s string) bool {
	var n json.Number
	return json.Unmarshal([]byte(s), &n) == nil && strings.TrimSpace(s) == s
}

// FuzzEscapeKey checks that JSON object keys survive storage and never
// become empty map keys.
func FuzzEscapeKey(f *testing.F) {
	for _, s := range []string{"", "~", "~~", "a", "a~"} {
		f.Add(s, "b")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		ea, eb := escapeKey(a), escapeKey(b)
		if ea == "" {
			t.Errorf("escapeKey(%q) is empty", a)
		}
		if unescapeKey(ea) != a {
			t.Errorf("unescapeKey(escapeKey(%q)) = %q", a, unescapeKey(ea))
		}
		if a != b && ea == eb {
			t.Errorf("%q and %q both escape to %q", a, b, ea)
		}
	})
}
