package feature

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// TimeLayout is how datetimes are answered: RFC 3339 in UTC with up to
// microsecond precision.
const TimeLayout = "2006-01-02T15:04:05.999999Z07:00"

// CanonicalTime returns t in UTC truncated to the microsecond, the precision
// every store keeps.
func CanonicalTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// ParseTime parses an RFC 3339 timestamp into its canonical form.
func ParseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("want an RFC 3339 timestamp, got %q", s)
	}
	return CanonicalTime(t), nil
}

// FromJSON decodes one JSON value of type t into its canonical Go value.
// JSON null gives nil.
//
// Text that is not Unicode is refused (see CheckText), anywhere in the
// value: a string, a list's element, a key or string inside a json object.
// encoding/json would replace it with U+FFFD, so that two different keys
// sent by a client would become one entity, and a stored string would
// differ from the one sent. Null elements of a vector are refused too: a
// vector is exactly N numbers.
func FromJSON(t Type, raw json.RawMessage) (any, error) {
	if err := CheckText(raw); err != nil {
		return nil, err
	}
	return fromJSON(t, raw)
}

// CheckText reports whether the JSON text raw holds only Unicode text:
// valid UTF-8, and no \u escape of a UTF-16 surrogate that is not half of
// a pair (\ud800 alone, or a low surrogate first). encoding/json replaces
// both with U+FFFD instead of failing. raw need not be valid JSON
// otherwise; a backslash is taken to start an escape, as it does in valid
// JSON, where it appears only inside strings.
func CheckText(raw []byte) error {
	if !utf8.Valid(raw) {
		for i := 0; i < len(raw); {
			r, n := utf8.DecodeRune(raw[i:])
			if r == utf8.RuneError && n <= 1 {
				return fmt.Errorf("text is not valid UTF-8 (byte 0x%02x at offset %d)", raw[i], i)
			}
			i += n
		}
	}
	for i := bytes.IndexByte(raw, '\\'); i >= 0 && i+1 < len(raw); {
		next := i + 2
		if raw[i+1] == 'u' {
			r, ok := hex4(raw, i+2)
			switch {
			case !ok:
			case utf16.IsSurrogate(r) && r < 0xdc00:
				// A high surrogate: a low one must follow.
				if len(raw) >= i+12 && raw[i+6] == '\\' && raw[i+7] == 'u' {
					if lo, ok := hex4(raw, i+8); ok && lo >= 0xdc00 && lo <= 0xdfff {
						next = i + 12
						break
					}
				}
				return fmt.Errorf("text has an unpaired UTF-16 surrogate escape %s at offset %d", raw[i:i+6], i)
			case utf16.IsSurrogate(r):
				return fmt.Errorf("text has an unpaired UTF-16 surrogate escape %s at offset %d", raw[i:i+6], i)
			}
		}
		if next >= len(raw) {
			break
		}
		j := bytes.IndexByte(raw[next:], '\\')
		if j < 0 {
			break
		}
		i = next + j
	}
	return nil
}

// hex4 decodes the four hex digits at raw[i:].
func hex4(raw []byte, i int) (rune, bool) {
	if len(raw) < i+4 {
		return 0, false
	}
	var r rune
	for _, c := range raw[i : i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// plainString returns the string raw holds when raw is a JSON string
// without escapes or control characters, which encoding/json would decode
// to its bytes as they are (raw being valid UTF-8, as CheckText makes
// sure); ok is false for anything else.
func plainString(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", false
	}
	in := raw[1 : len(raw)-1]
	for _, c := range in {
		if c < 0x20 || c == '"' || c == '\\' {
			return "", false
		}
	}
	return string(in), true
}

func fromJSON(t Type, raw json.RawMessage) (any, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil, errors.New("empty value")
	}
	if string(raw) == "null" {
		return nil, nil
	}
	switch t.Kind {
	case KindInt:
		n, err := strconv.ParseInt(string(raw), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("want an integer in int64 range, got %s", clip(raw))
		}
		return n, nil
	case KindFloat:
		var f float64
		if raw[0] == '"' || json.Unmarshal(raw, &f) != nil {
			return nil, fmt.Errorf("want a number, got %s", clip(raw))
		}
		return f, nil
	case KindString:
		if s, ok := plainString(raw); ok {
			return s, nil
		}
		var s string
		if raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
			return nil, fmt.Errorf("want a string, got %s", clip(raw))
		}
		return s, nil
	case KindBool:
		switch string(raw) {
		case "true":
			return true, nil
		case "false":
			return false, nil
		}
		return nil, fmt.Errorf("want true or false, got %s", clip(raw))
	case KindBytes:
		var s string
		if raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
			return nil, fmt.Errorf("want a base64 string, got %s", clip(raw))
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("want a base64 string: %v", err)
		}
		return b, nil
	case KindDatetime:
		var s string
		if raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
			return nil, fmt.Errorf("want an RFC 3339 string, got %s", clip(raw))
		}
		return ParseTime(s)
	case KindList:
		var elems []json.RawMessage
		if raw[0] != '[' || json.Unmarshal(raw, &elems) != nil {
			return nil, fmt.Errorf("want an array, got %s", clip(raw))
		}
		out := make([]any, len(elems))
		for i, e := range elems {
			v, err := fromJSON(*t.Elem, e)
			if err != nil {
				return nil, fmt.Errorf("element %d: %w", i, err)
			}
			if v == nil {
				return nil, fmt.Errorf("element %d: null is not allowed in a list", i)
			}
			out[i] = v
		}
		return out, nil
	case KindVector:
		var elems []json.RawMessage
		if raw[0] != '[' || json.Unmarshal(raw, &elems) != nil {
			return nil, fmt.Errorf("want an array of %d numbers, got %s", t.Dim, clip(raw))
		}
		if len(elems) != t.Dim {
			return nil, fmt.Errorf("want exactly %d numbers, got %d", t.Dim, len(elems))
		}
		out := make([]float32, len(elems))
		for i, e := range elems {
			e = bytes.TrimSpace(e)
			if string(e) == "null" {
				// json.Unmarshal leaves f alone for null: it was stored as 0.
				return nil, fmt.Errorf("element %d: null is not allowed in a vector", i)
			}
			var f float64
			if len(e) == 0 || e[0] == '"' || json.Unmarshal(e, &f) != nil {
				return nil, fmt.Errorf("element %d: want a number, got %s", i, clip(e))
			}
			if math.Abs(f) > math.MaxFloat32 {
				return nil, fmt.Errorf("element %d: %g is out of float32 range", i, f)
			}
			out[i] = float32(f)
		}
		return out, nil
	case KindJSON:
		if raw[0] != '{' {
			return nil, fmt.Errorf("want a JSON object, got %s", clip(raw))
		}
		return decodeJSONObject(raw)
	}
	return nil, fmt.Errorf("unsupported type %s", t)
}

func decodeJSONObject(raw []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil || m == nil {
		return nil, fmt.Errorf("want a JSON object, got %s", clip(raw))
	}
	if dec.More() {
		return nil, errors.New("trailing data after JSON object")
	}
	return m, nil
}

func clip(raw []byte) string {
	const max = 40
	if len(raw) > max {
		return string(raw[:max]) + "..."
	}
	return string(raw)
}

// ToJSON returns v in a form encoding/json marshals as the API answers it:
// datetimes as RFC 3339 UTC strings with microseconds, bytes as base64.
func ToJSON(v any) any {
	switch x := v.(type) {
	case time.Time:
		return x.UTC().Format(TimeLayout)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = ToJSON(e)
		}
		return out
	}
	return v
}

// ParseKey decodes a primary key value from JSON into its canonical string
// form: the string itself, or the decimal form of an int.
func ParseKey(t Type, raw json.RawMessage) (string, error) {
	v, err := FromJSON(t, raw)
	if err != nil {
		return "", err
	}
	switch x := v.(type) {
	case nil:
		return "", errors.New("primary key must not be null")
	case string:
		if x == "" {
			return "", errors.New("primary key must not be empty")
		}
		if len(x) > MaxKeyLen {
			return "", fmt.Errorf("primary key is %d bytes, over the limit of %d", len(x), MaxKeyLen)
		}
		return x, nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	}
	return "", fmt.Errorf("primary key has unsupported type %s", t)
}

// KeyJSON returns a canonical primary key as the API answers it: a number for
// an int key, a string otherwise.
func KeyJSON(t Type, key string) any {
	if t.Kind == KindInt {
		if n, err := strconv.ParseInt(key, 10, 64); err == nil {
			return n
		}
	}
	return key
}

// MaxKeyLen bounds a string primary key, well under DynamoDB's 2,048-byte
// partition key limit once the namespace prefix is added.
const MaxKeyLen = 1024
