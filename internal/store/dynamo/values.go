package dynamo

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/cairnfs/cairn/internal/feature"
)

// The mapping between canonical feature values and DynamoDB attribute
// values (see the package documentation for the table).

// encodeValue returns the attribute value storing v, canonical for t, or nil
// for an explicit null. It fails only for JSON numbers DynamoDB cannot hold.
func encodeValue(t feature.Type, v any) (types.AttributeValue, error) {
	if v == nil {
		return &types.AttributeValueMemberNULL{Value: true}, nil
	}
	switch t.Kind {
	case feature.KindInt:
		return &types.AttributeValueMemberN{Value: strconv.FormatInt(v.(int64), 10)}, nil
	case feature.KindFloat:
		return encodeFloat(v.(float64)), nil
	case feature.KindString:
		return &types.AttributeValueMemberS{Value: v.(string)}, nil
	case feature.KindBool:
		return &types.AttributeValueMemberBOOL{Value: v.(bool)}, nil
	case feature.KindBytes:
		return &types.AttributeValueMemberB{Value: v.([]byte)}, nil
	case feature.KindDatetime:
		return &types.AttributeValueMemberN{Value: strconv.FormatInt(v.(time.Time).UnixMicro(), 10)}, nil
	case feature.KindList:
		list := v.([]any)
		out := make([]types.AttributeValue, len(list))
		for i, e := range list {
			av, err := encodeValue(*t.Elem, e)
			if err != nil {
				return nil, fmt.Errorf("element %d: %w", i, err)
			}
			out[i] = av
		}
		return &types.AttributeValueMemberL{Value: out}, nil
	case feature.KindVector:
		vec := v.([]float32)
		b := make([]byte, 0, 4*len(vec))
		for _, f := range vec {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(f))
		}
		return &types.AttributeValueMemberB{Value: b}, nil
	case feature.KindJSON:
		return encodeJSON(v.(map[string]any))
	}
	return nil, fmt.Errorf("unsupported type %s", t)
}

// encodeFloat stores f as a number when DynamoDB can hold it exactly, else
// (beyond DynamoDB's range of 1E-130 to 1E+126 in magnitude, or -0) as the 8
// bytes of its IEEE 754 bits, little-endian.
func encodeFloat(f float64) types.AttributeValue {
	if f == 0 && !math.Signbit(f) {
		return &types.AttributeValueMemberN{Value: "0"}
	}
	if a := math.Abs(f); a >= 1e-130 && a < 1e126 {
		// The shortest representation that parses back to f: at most 17
		// significant digits, well within DynamoDB's 38.
		return &types.AttributeValueMemberN{Value: strconv.FormatFloat(f, 'g', -1, 64)}
	}
	return &types.AttributeValueMemberB{Value: binary.LittleEndian.AppendUint64(nil, math.Float64bits(f))}
}

// encodeJSON maps a JSON object to a map attribute, recursively.
func encodeJSON(m map[string]any) (types.AttributeValue, error) {
	out := make(map[string]types.AttributeValue, len(m))
	for k, e := range m {
		av, err := encodeJSONValue(e)
		if err != nil {
			return nil, fmt.Errorf("key %q: %w", k, err)
		}
		out[escapeKey(k)] = av
	}
	return &types.AttributeValueMemberM{Value: out}, nil
}

// keyEscape marks a JSON object key stored escaped: DynamoDB map keys are
// attribute names, which cannot be empty.
const keyEscape = "~"

// escapeKey returns the map key storing the JSON object key k: k itself,
// unless k is empty or starts with keyEscape, which is then prefixed with
// keyEscape.
func escapeKey(k string) string {
	if k == "" || strings.HasPrefix(k, keyEscape) {
		return keyEscape + k
	}
	return k
}

// unescapeKey inverts escapeKey.
func unescapeKey(k string) string { return strings.TrimPrefix(k, keyEscape) }

func encodeJSONValue(v any) (types.AttributeValue, error) {
	switch x := v.(type) {
	case nil:
		return &types.AttributeValueMemberNULL{Value: true}, nil
	case bool:
		return &types.AttributeValueMemberBOOL{Value: x}, nil
	case string:
		return &types.AttributeValueMemberS{Value: x}, nil
	case json.Number:
		if err := checkNumber(string(x)); err != nil {
			return nil, err
		}
		return &types.AttributeValueMemberN{Value: string(x)}, nil
	case float64:
		s := strconv.FormatFloat(x, 'g', -1, 64)
		if err := checkNumber(s); err != nil {
			return nil, err
		}
		return &types.AttributeValueMemberN{Value: s}, nil
	case []any:
		out := make([]types.AttributeValue, len(x))
		for i, e := range x {
			av, err := encodeJSONValue(e)
			if err != nil {
				return nil, fmt.Errorf("element %d: %w", i, err)
			}
			out[i] = av
		}
		return &types.AttributeValueMemberL{Value: out}, nil
	case map[string]any:
		return encodeJSON(x)
	}
	return nil, fmt.Errorf("unsupported JSON value of Go type %T", v)
}

// DynamoDB's number limits: 38 significant digits, magnitudes from 1E-130 up
// to (but excluding) 1E+126.
const (
	maxNumberDigits   = 38
	minNumberExponent = -130
	maxNumberExponent = 125
)

var errNumberSyntax = errors.New("not a decimal number")

// checkNumber reports whether DynamoDB can store the decimal number s
// exactly.
func checkNumber(s string) error {
	mant, exp := s, 0
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		var err error
		mant = s[:i]
		if exp, err = strconv.Atoi(s[i+1:]); err != nil {
			return fmt.Errorf("number %s: exponent out of DynamoDB's range", clip(s))
		}
	}
	mant = strings.TrimPrefix(mant, "-")
	intPart, frac, _ := strings.Cut(mant, ".")
	digits := intPart + frac
	if digits == "" || strings.Trim(digits, "0123456789") != "" {
		return fmt.Errorf("number %s: %w", clip(s), errNumberSyntax)
	}
	lead := len(digits) - len(strings.TrimLeft(digits, "0"))
	sig := strings.Trim(digits, "0")
	if sig == "" {
		return nil // zero
	}
	if len(sig) > maxNumberDigits {
		return fmt.Errorf("number %s: %d significant digits, DynamoDB keeps at most %d", clip(s), len(sig), maxNumberDigits)
	}
	// The decimal exponent of the first significant digit.
	e := len(intPart) - lead - 1 + exp
	if e < minNumberExponent || e > maxNumberExponent {
		return fmt.Errorf("number %s: out of DynamoDB's range (1E%d to 1E+%d in magnitude)", clip(s), minNumberExponent, maxNumberExponent+1)
	}
	return nil
}

func clip(s string) string {
	const max = 40
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}

// decodeValue returns the canonical value of type t stored in av. ok is
// false when av does not hold a value of type t (a corrupt or foreign
// attribute); an explicit null gives (nil, true).
func decodeValue(t feature.Type, av types.AttributeValue) (v any, ok bool) {
	if _, isNull := av.(*types.AttributeValueMemberNULL); isNull {
		return nil, true
	}
	return decodeNonNull(t, av)
}

func decodeNonNull(t feature.Type, av types.AttributeValue) (any, bool) {
	switch t.Kind {
	case feature.KindInt:
		if n, isN := av.(*types.AttributeValueMemberN); isN {
			i, err := strconv.ParseInt(n.Value, 10, 64)
			return i, err == nil
		}
	case feature.KindFloat:
		switch x := av.(type) {
		case *types.AttributeValueMemberN:
			f, err := strconv.ParseFloat(x.Value, 64)
			return f, err == nil
		case *types.AttributeValueMemberB:
			if len(x.Value) == 8 {
				return math.Float64frombits(binary.LittleEndian.Uint64(x.Value)), true
			}
		}
	case feature.KindString:
		if s, isS := av.(*types.AttributeValueMemberS); isS {
			return s.Value, true
		}
	case feature.KindBool:
		if b, isBool := av.(*types.AttributeValueMemberBOOL); isBool {
			return b.Value, true
		}
	case feature.KindBytes:
		if b, isB := av.(*types.AttributeValueMemberB); isB {
			if b.Value == nil {
				return []byte{}, true
			}
			return b.Value, true
		}
	case feature.KindDatetime:
		if n, isN := av.(*types.AttributeValueMemberN); isN {
			return parseMicros(n.Value)
		}
	case feature.KindList:
		l, isL := av.(*types.AttributeValueMemberL)
		if !isL {
			return nil, false
		}
		out := make([]any, len(l.Value))
		for i, e := range l.Value {
			v, ok := decodeNonNull(*t.Elem, e) // lists never hold nulls
			if !ok {
				return nil, false
			}
			out[i] = v
		}
		return out, true
	case feature.KindVector:
		b, isB := av.(*types.AttributeValueMemberB)
		if !isB || len(b.Value) != 4*t.Dim {
			return nil, false
		}
		out := make([]float32, t.Dim)
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b.Value[4*i:]))
		}
		return out, true
	case feature.KindJSON:
		if m, isM := av.(*types.AttributeValueMemberM); isM {
			return decodeJSONMap(m.Value)
		}
	}
	return nil, false
}

func decodeJSONMap(m map[string]types.AttributeValue) (map[string]any, bool) {
	out := make(map[string]any, len(m))
	for k, e := range m {
		v, ok := decodeJSONValue(e)
		if !ok {
			return nil, false
		}
		out[unescapeKey(k)] = v
	}
	return out, true
}

func decodeJSONValue(av types.AttributeValue) (any, bool) {
	switch x := av.(type) {
	case *types.AttributeValueMemberNULL:
		return nil, true
	case *types.AttributeValueMemberBOOL:
		return x.Value, true
	case *types.AttributeValueMemberS:
		return x.Value, true
	case *types.AttributeValueMemberN:
		return json.Number(x.Value), true
	case *types.AttributeValueMemberL:
		out := make([]any, len(x.Value))
		for i, e := range x.Value {
			v, ok := decodeJSONValue(e)
			if !ok {
				return nil, false
			}
			out[i] = v
		}
		return out, true
	case *types.AttributeValueMemberM:
		return decodeJSONMap(x.Value)
	}
	return nil, false
}

// encodeMicros stores a time as a number of microseconds since the Unix
// epoch.
func encodeMicros(t time.Time) *types.AttributeValueMemberN {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(t.UnixMicro(), 10)}
}

// parseMicros parses what encodeMicros stored.
func parseMicros(s string) (time.Time, bool) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.UnixMicro(n).UTC(), true
}
