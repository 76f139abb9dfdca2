package feature

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
	"unicode/utf8"
	"unsafe"
)

// The binary value encoding is self-describing: a tag byte, then a payload.
//
//	tag  kind      payload
//	0    null      none
//	1    int       zig-zag varint
//	2    float     8 bytes, IEEE 754, little-endian
//	3    string    uvarint length, UTF-8 bytes
//	4    false     none
//	5    true      none
//	6    bytes     uvarint length, bytes
//	7    datetime  zig-zag varint microseconds since the Unix epoch, UTC
//	8    list      uvarint count, then count tagged values
//	9    vector    uvarint dimension, then 4 bytes per float32, little-endian
//	10   json      uvarint length, compact JSON object text
//
// Tags are never renumbered; new kinds take new tags.
const (
	tagNull byte = iota
	tagInt
	tagFloat
	tagString
	tagFalse
	tagTrue
	tagBytes
	tagDatetime
	tagList
	tagVector
	tagJSON
)

// maxValueDepth bounds list nesting in decoded values.
const maxValueDepth = maxTypeDepth + 1

// ErrCorrupt is wrapped by every decoding error.
var ErrCorrupt = errors.New("corrupt value")

// AppendValue appends the binary encoding of the canonical value v.
func AppendValue(b []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(b, tagNull), nil
	case int64:
		return binary.AppendVarint(append(b, tagInt), x), nil
	case float64:
		return binary.LittleEndian.AppendUint64(append(b, tagFloat), math.Float64bits(x)), nil
	case string:
		return append(binary.AppendUvarint(append(b, tagString), uint64(len(x))), x...), nil
	case bool:
		if x {
			return append(b, tagTrue), nil
		}
		return append(b, tagFalse), nil
	case []byte:
		return append(binary.AppendUvarint(append(b, tagBytes), uint64(len(x))), x...), nil
	case time.Time:
		return binary.AppendVarint(append(b, tagDatetime), x.UnixMicro()), nil
	case []any:
		b = binary.AppendUvarint(append(b, tagList), uint64(len(x)))
		for _, e := range x {
			var err error
			if b, err = AppendValue(b, e); err != nil {
				return nil, err
			}
		}
		return b, nil
	case []float32:
		b = binary.AppendUvarint(append(b, tagVector), uint64(len(x)))
		for _, f := range x {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(f))
		}
		return b, nil
	case map[string]any:
		text, err := json.Marshal(x)
		if err != nil {
			return nil, fmt.Errorf("encode json value: %w", err)
		}
		return append(binary.AppendUvarint(append(b, tagJSON), uint64(len(text))), text...), nil
	}
	return nil, fmt.Errorf("encode value: unsupported Go type %T", v)
}

// DecodeValue decodes one value from the front of b and returns it with the
// remaining bytes. It never panics and never allocates more than a small
// multiple of len(b).
func DecodeValue(b []byte) (any, []byte, error) { return decodeValue(b, 0, nil) }

// ErrTypeMismatch is wrapped by DecodeValueOf's errors for a stored value
// that is not of the type the registry now declares for its feature.
var ErrTypeMismatch = errors.New("stored value does not match the feature's type")

// DecodeValueOf decodes b, which must hold exactly one value, as a value
// of type t (nil for a stored null). A value of another type gives an error
// wrapping ErrTypeMismatch; bytes that do not decode, one wrapping
// ErrCorrupt.
func DecodeValueOf(b []byte, t Type) (any, error) {
	return DecodeValueOfIn(b, t, nil)
}

// DecodeValueOfIn is DecodeValueOf, with the bytes of the strings it
// decodes (lists' elements included) carved out of a's blocks rather than
// allocated one by one; a nil a allocates each.
func DecodeValueOfIn(b []byte, t Type, a *StringAlloc) (any, error) {
	if v, ok := decodeScalar(b, t, a); ok {
		return v, nil
	}
	return decodeValueOf(b, t, a)
}

// StringAlloc hands out the bytes of decoded strings from blocks it
// allocates, one allocation for many strings. A block's bytes are never
// written once a string is made of them, and a block is never used again
// after Reset: a caller that resets it between the values of two entities
// makes each entity's strings keep only that entity's blocks alive. The
// zero StringAlloc is ready to use; one is not safe for concurrent use.
type StringAlloc struct {
	block []byte // the current block; its bytes past len are free
	used  int    // bytes handed out since Reset
	hint  int    // bytes handed out between the last two Resets
}

// minStringBlock is the least size of a block: a block too small would be
// followed by another.
const minStringBlock = 64

// maxStringBlock bounds the room a block is given for strings to come:
// sized by a previous entity of large strings, a block would otherwise
// waste as many bytes in the next one. A longer string gets a block of its
// own length.
const maxStringBlock = 4 << 10

// Reset makes the next string start a new block, sized for as many bytes
// as were handed out since the Reset before, up to maxStringBlock.
func (a *StringAlloc) Reset() {
	a.hint, a.used, a.block = a.used, 0, nil
}

// String returns a string holding a copy of p.
func (a *StringAlloc) String(p []byte) string {
	if len(p) == 0 {
		return ""
	}
	if len(p) > cap(a.block)-len(a.block) {
		a.block = make([]byte, 0, max(len(p), min(a.hint-a.used, maxStringBlock), minStringBlock))
	}
	off := len(a.block)
	a.block = append(a.block, p...)
	a.used += len(p)
	return unsafe.String(&a.block[off], len(p))
}

// str returns p as a string: from a when a is not nil.
func (a *StringAlloc) str(p []byte) string {
	if a == nil {
		return string(p)
	}
	return a.String(p)
}

// decodeScalar decodes b when it is, whole, a value of the scalar kind t
// asks for (int, float, string, bool, datetime, vector), as decodeValueOf
// would, without
// its general decoding and type check: most stored values are such. ok is
// false for anything else, which is left to decodeValueOf.
func decodeScalar(b []byte, t Type, a *StringAlloc) (v any, ok bool) {
	if len(b) == 0 {
		return nil, false
	}
	switch {
	case t.Kind == KindFloat && b[0] == tagFloat && len(b) == 9:
		return math.Float64frombits(binary.LittleEndian.Uint64(b[1:])), true
	case t.Kind == KindInt && b[0] == tagInt:
		if n, k := binary.Varint(b[1:]); k > 0 && k == len(b)-1 {
			return n, true
		}
	case t.Kind == KindBool && len(b) == 1 && (b[0] == tagTrue || b[0] == tagFalse):
		return b[0] == tagTrue, true
	case t.Kind == KindString && b[0] == tagString:
		if p, rest, err := lengthPrefixed(b[1:]); err == nil && len(rest) == 0 && utf8.Valid(p) {
			return a.str(p), true
		}
	case t.Kind == KindDatetime && b[0] == tagDatetime:
		if n, k := binary.Varint(b[1:]); k > 0 && k == len(b)-1 {
			return time.UnixMicro(n).UTC(), true
		}
	case t.Kind == KindVector && b[0] == tagVector:
		if n, k := binary.Uvarint(b[1:]); k > 0 && n == uint64(t.Dim) && n <= MaxVectorDim && 4*n == uint64(len(b)-1-k) {
			out := make([]float32, n)
			for i := range out {
				out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[1+k+4*i:]))
			}
			return out, true
		}
	}
	return nil, false
}

// decodeValueOf is DecodeValueOf for every value.
func decodeValueOf(b []byte, t Type, a *StringAlloc) (any, error) {
	v, rest, err := decodeValue(b, 0, a)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the value", ErrCorrupt, len(rest))
	}
	if err := Check(t, v); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrTypeMismatch, err)
	}
	return v, nil
}

func decodeValue(b []byte, depth int, a *StringAlloc) (any, []byte, error) {
	if len(b) == 0 {
		return nil, nil, fmt.Errorf("%w: truncated", ErrCorrupt)
	}
	tag, b := b[0], b[1:]
	switch tag {
	case tagNull:
		return nil, b, nil
	case tagInt:
		n, k := binary.Varint(b)
		if k <= 0 {
			return nil, nil, fmt.Errorf("%w: bad int", ErrCorrupt)
		}
		return n, b[k:], nil
	case tagFloat:
		if len(b) < 8 {
			return nil, nil, fmt.Errorf("%w: truncated float", ErrCorrupt)
		}
		return math.Float64frombits(binary.LittleEndian.Uint64(b)), b[8:], nil
	case tagString, tagBytes, tagJSON:
		p, rest, err := lengthPrefixed(b)
		if err != nil {
			return nil, nil, err
		}
		switch tag {
		case tagString:
			if !utf8.Valid(p) {
				return nil, nil, fmt.Errorf("%w: string is not UTF-8", ErrCorrupt)
			}
			return a.str(p), rest, nil
		case tagBytes:
			return append([]byte{}, p...), rest, nil
		}
		m, err := decodeJSONObject(p)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
		}
		return m, rest, nil
	case tagFalse:
		return false, b, nil
	case tagTrue:
		return true, b, nil
	case tagDatetime:
		n, k := binary.Varint(b)
		if k <= 0 {
			return nil, nil, fmt.Errorf("%w: bad datetime", ErrCorrupt)
		}
		return time.UnixMicro(n).UTC(), b[k:], nil
	case tagList:
		if depth >= maxValueDepth {
			return nil, nil, fmt.Errorf("%w: lists nested too deep", ErrCorrupt)
		}
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) { // every element takes at least one byte
			return nil, nil, fmt.Errorf("%w: bad list length", ErrCorrupt)
		}
		b = b[k:]
		out := make([]any, n)
		for i := range out {
			var err error
			if out[i], b, err = decodeValue(b, depth+1, a); err != nil {
				return nil, nil, err
			}
			if out[i] == nil {
				return nil, nil, fmt.Errorf("%w: null list element", ErrCorrupt)
			}
		}
		return out, b, nil
	case tagVector:
		n, k := binary.Uvarint(b)
		if k <= 0 || n > MaxVectorDim || n*4 > uint64(len(b)-k) {
			return nil, nil, fmt.Errorf("%w: bad vector length", ErrCorrupt)
		}
		b = b[k:]
		out := make([]float32, n)
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
		return out, b[4*n:], nil
	}
	return nil, nil, fmt.Errorf("%w: unknown tag %d", ErrCorrupt, tag)
}

func lengthPrefixed(b []byte) (p, rest []byte, err error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return nil, nil, fmt.Errorf("%w: bad length", ErrCorrupt)
	}
	return b[k : k+int(n)], b[k+int(n):], nil
}

// Check reports whether v is a canonical value of type t. nil is accepted
// for every type (an absent value).
func Check(t Type, v any) error {
	if v == nil {
		return nil
	}
	return check(t, v)
}

func check(t Type, v any) error {
	ok := false
	switch t.Kind {
	case KindInt:
		_, ok = v.(int64)
	case KindFloat:
		_, ok = v.(float64)
	case KindString:
		_, ok = v.(string)
	case KindBool:
		_, ok = v.(bool)
	case KindBytes:
		_, ok = v.([]byte)
	case KindDatetime:
		_, ok = v.(time.Time)
	case KindJSON:
		_, ok = v.(map[string]any)
	case KindVector:
		vec, isVec := v.([]float32)
		if isVec && len(vec) != t.Dim {
			return fmt.Errorf("want %d numbers, got %d", t.Dim, len(vec))
		}
		ok = isVec
	case KindList:
		list, isList := v.([]any)
		if !isList {
			break
		}
		for i, e := range list {
			if e == nil {
				return fmt.Errorf("element %d: null is not allowed in a list", i)
			}
			if err := check(*t.Elem, e); err != nil {
				return fmt.Errorf("element %d: %w", i, err)
			}
		}
		return nil
	}
	if !ok {
		return fmt.Errorf("want %s, got %s", t, describe(v))
	}
	return nil
}

func describe(v any) string {
	switch v.(type) {
	case int64:
		return "int"
	case float64:
		return "float"
	case string:
		return "string"
	case bool:
		return "bool"
	case []byte:
		return "bytes"
	case time.Time:
		return "datetime"
	case []any:
		return "list"
	case []float32:
		return "vector"
	case map[string]any:
		return "json"
	}
	return fmt.Sprintf("%T", v)
}
