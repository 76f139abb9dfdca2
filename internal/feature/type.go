package feature

import (
	"fmt"
	"strconv"
	"strings"
)

// Kind is the shape of a feature type.
type Kind uint8

// The kinds of feature type.
const (
	KindInt Kind = iota + 1
	KindFloat
	KindString
	KindBool
	KindBytes
	KindDatetime
	KindList
	KindVector
	KindJSON
)

var kindNames = map[string]Kind{
	"int":      KindInt,
	"float":    KindFloat,
	"string":   KindString,
	"bool":     KindBool,
	"bytes":    KindBytes,
	"datetime": KindDatetime,
	"json":     KindJSON,
}

// MaxVectorDim bounds vector[N] so that one value always fits in a store item.
const MaxVectorDim = 16384

// maxTypeDepth bounds list nesting (list[list[...]]).
const maxTypeDepth = 8

// Type is a feature's declared type.
type Type struct {
	Kind Kind
	// Elem is the element type of a list; nil otherwise.
	Elem *Type
	// Dim is the length of a vector; 0 otherwise.
	Dim int
}

// ParseType parses a type as written in the registry: int, float, string,
// bool, bytes, datetime, json, list[T] or vector[N].
func ParseType(s string) (Type, error) { return parseType(strings.TrimSpace(s), 0) }

func parseType(s string, depth int) (Type, error) {
	if k, ok := kindNames[s]; ok {
		return Type{Kind: k}, nil
	}
	if inner, ok := cutWrapped(s, "list["); ok {
		if depth >= maxTypeDepth {
			return Type{}, fmt.Errorf("type %q nests lists deeper than %d", s, maxTypeDepth)
		}
		elem, err := parseType(strings.TrimSpace(inner), depth+1)
		if err != nil {
			return Type{}, err
		}
		return Type{Kind: KindList, Elem: &elem}, nil
	}
	if inner, ok := cutWrapped(s, "vector["); ok {
		n, err := strconv.Atoi(strings.TrimSpace(inner))
		if err != nil || n < 1 || n > MaxVectorDim {
			return Type{}, fmt.Errorf("vector dimension %q: want an integer in [1, %d]", inner, MaxVectorDim)
		}
		return Type{Kind: KindVector, Dim: n}, nil
	}
	return Type{}, fmt.Errorf("unknown type %q", s)
}

func cutWrapped(s, prefix string) (string, bool) {
	if !strings.HasPrefix(s, prefix) || !strings.HasSuffix(s, "]") {
		return "", false
	}
	return s[len(prefix) : len(s)-1], true
}

// String returns the type as written in the registry.
func (t Type) String() string {
	switch t.Kind {
	case KindList:
		return "list[" + t.Elem.String() + "]"
	case KindVector:
		return "vector[" + strconv.Itoa(t.Dim) + "]"
	}
	for name, k := range kindNames {
		if k == t.Kind {
			return name
		}
	}
	return "invalid"
}
