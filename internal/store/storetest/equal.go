package storetest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"strings"
	"time"

	"github.com/cairnfs/cairn/internal/feature"
)

// Equal reports whether a and b are the same canonical feature value (see
// package feature). Types must match exactly: an int64 never equals a
// float64, a float64 inside a json object is not a json.Number. Within a
// type:
//
//   - floats compare with ==, so -0 equals 0, and NaN equals NaN;
//   - datetimes compare as instants ([time.Time.Equal]);
//   - []byte(nil) equals []byte{} (both are an empty bytes value);
//   - json numbers compare by numeric value, so "1e3" equals "1000";
//   - lists, vectors and json objects compare element by element.
func Equal(a, b any) bool { return diff(a, b) == "" }

// diff returns "" when a and b are equal canonical values, else a short
// description of the first difference found.
func diff(a, b any) string {
	if a == nil || b == nil {
		if a == nil && b == nil {
			return ""
		}
		return fmt.Sprintf("%s != %s", show(a), show(b))
	}
	mismatch := func() string { return fmt.Sprintf("%s != %s", show(a), show(b)) }
	switch x := a.(type) {
	case int64:
		if y, ok := b.(int64); ok && x == y {
			return ""
		}
	case float64:
		if y, ok := b.(float64); ok && (x == y || math.IsNaN(x) && math.IsNaN(y)) {
			return ""
		}
	case string:
		if y, ok := b.(string); ok && x == y {
			return ""
		}
	case bool:
		if y, ok := b.(bool); ok && x == y {
			return ""
		}
	case []byte:
		if y, ok := b.([]byte); ok && bytes.Equal(x, y) {
			return ""
		}
	case time.Time:
		if y, ok := b.(time.Time); ok && x.Equal(y) {
			return ""
		}
	case json.Number:
		if y, ok := b.(json.Number); ok && numbersEqual(x, y) {
			return ""
		}
	case []float32:
		y, ok := b.([]float32)
		if !ok || len(x) != len(y) {
			return mismatch()
		}
		for i := range x {
			if x[i] != y[i] && !(x[i] != x[i] && y[i] != y[i]) {
				return fmt.Sprintf("vector element %d: %v != %v", i, x[i], y[i])
			}
		}
		return ""
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return mismatch()
		}
		for i := range x {
			if d := diff(x[i], y[i]); d != "" {
				return fmt.Sprintf("list element %d: %s", i, d)
			}
		}
		return ""
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return mismatch()
		}
		for k, xv := range x {
			yv, ok := y[k]
			if !ok {
				return fmt.Sprintf("json key %q missing: %s != %s", k, show(x), show(y))
			}
			if d := diff(xv, yv); d != "" {
				return fmt.Sprintf("json key %q: %s", k, d)
			}
		}
		return ""
	}
	return mismatch()
}

// numbersEqual compares two JSON numbers by value.
func numbersEqual(a, b json.Number) bool {
	if a == b {
		return true
	}
	x, okx := new(big.Rat).SetString(string(a))
	y, oky := new(big.Rat).SetString(string(b))
	return okx && oky && x.Cmp(y) == 0
}

// show formats a canonical value with its Go type, clipped for messages.
func show(v any) string {
	var s string
	switch x := v.(type) {
	case nil:
		return "nil"
	case time.Time:
		s = fmt.Sprintf("time.Time(%s)", x.Format(feature.TimeLayout))
	case string:
		s = fmt.Sprintf("%q", x)
	case json.Number:
		s = fmt.Sprintf("json.Number(%s)", string(x))
	default:
		s = fmt.Sprintf("%T(%v)", v, v)
	}
	const max = 200
	if len(s) > max {
		s = s[:max] + "..."
	}
	return strings.ToValidUTF8(s, "?")
}
