package embedded

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/cairnfs/cairn/internal/feature"
)

func e(id uint64, micros int64, v any) entry {
	b, err := feature.AppendValue(nil, v)
	if err != nil {
		panic(err) // test data only
	}
	return entry{id: id, micros: micros, value: b}
}

func TestMerge(t *testing.T) {
	tests := []struct {
		name             string
		stored, incoming []entry
		want             []entry
		changed          bool
	}{
		{"into empty", nil, []entry{e(1, 5, int64(1)), e(3, 5, "x")}, []entry{e(1, 5, int64(1)), e(3, 5, "x")}, true},
		{"newer replaces", []entry{e(1, 5, int64(1))}, []entry{e(1, 6, int64(2))}, []entry{e(1, 6, int64(2))}, true},
		{"older skipped", []entry{e(1, 5, int64(1))}, []entry{e(1, 4, int64(2))}, []entry{e(1, 5, int64(1))}, false},
		{"equal replaces", []entry{e(1, 5, int64(1))}, []entry{e(1, 5, int64(2))}, []entry{e(1, 5, int64(2))}, true},
		{"identical replay is no change", []entry{e(1, 5, int64(1))}, []entry{e(1, 5, int64(1))}, []entry{e(1, 5, int64(1))}, false},
		{"per feature",
			[]entry{e(1, 5, int64(1)), e(2, 5, "a"), e(4, 5, true)},
			[]entry{e(1, 4, int64(9)), e(2, 6, "b"), e(3, 1, nil), e(5, -7, 1.5)},
			[]entry{e(1, 5, int64(1)), e(2, 6, "b"), e(3, 1, nil), e(4, 5, true), e(5, -7, 1.5)}, true},
		{"repeated incoming id, later wins on tie",
			[]entry{e(2, 5, "a")},
			[]entry{e(2, 7, "b"), e(2, 7, "c"), e(2, 6, "d")},
			[]entry{e(2, 7, "c")}, true},
		{"null replaces value", []entry{e(1, 5, "a")}, []entry{e(1, 6, nil)}, []entry{e(1, 6, nil)}, true},
	}
	for _, tc := range tests {
		got, changed := merge(tc.stored, tc.incoming)
		if changed != tc.changed || !slices.EqualFunc(got, tc.want, entryEqual) {
			t.Errorf("%s: merge = %v, %v; want %v, %v", tc.name, got, changed, tc.want, tc.changed)
		}
	}
}

func entryEqual(a, b entry) bool {
	return a.id == b.id && a.micros == b.micros && bytes.Equal(a.value, b.value)
}

func TestDecodeEntityRejects(t *testing.T) {
	good := appendEntity(nil, []entry{e(1, 5, int64(1)), e(2, 6, "x")})
	tests := map[string][]byte{
		"empty":          {},
		"unknown format": {2},
		"id zero":        appendEntity(nil, []entry{e(0, 1, int64(1))}),
		"ids unsorted":   appendEntity(nil, []entry{e(2, 1, int64(1)), e(1, 1, int64(1))}),
		"ids repeated":   appendEntity(nil, []entry{e(2, 1, int64(1)), e(2, 1, int64(1))}),
		"truncated":      good[:len(good)-1],
		"empty value":    {1, 1, 2, 0},
		"bad varint":     {1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
	}
	for name, b := range tests {
		if _, err := decodeEntity(b, nil); !errors.Is(err, errCorruptEntity) {
			t.Errorf("%s: got %v, want errCorruptEntity", name, err)
		}
	}
	es, err := decodeEntity(good, nil)
	if err != nil || len(es) != 2 {
		t.Fatalf("good entity: %v, %v", es, err)
	}
}

// seedEntities are real encoded entities, the fuzz target's seed corpus.
func seedEntities() [][]byte {
	ts := time.Date(1969, 7, 20, 20, 17, 40, 123000, time.UTC)
	return [][]byte{
		appendEntity(nil, nil),
		appendEntity(nil, []entry{e(1, 0, nil)}),
		appendEntity(nil, []entry{
			e(1, ts.UnixMicro(), int64(math.MinInt64)),
			e(2, 1, math.MaxFloat64),
			e(3, 2, "Zoë 世界"),
			e(4, 3, true),
			e(5, 4, []byte{0, 0xff}),
			e(6, 5, ts),
			e(7, 6, []any{"a", ""}),
			e(8, 7, []any{[]any{1.5}, []any{}}),
			e(9, 8, []float32{1, -2, 3, 4, 5, 6, 7, 8}),
			e(10, 9, map[string]any{"a": json.Number("1"), "b": []any{nil, true}}),
			e(300, math.MaxInt64, false),
		}),
	}
}

// FuzzDecodeEntity checks that decoding arbitrary bytes never panics, that
// what decodes re-encodes to an equivalent entity, and that reading a
// decoded entry as any type either succeeds with a value of that type or
// fails cleanly.
func FuzzDecodeEntity(f *testing.F) {
	for _, b := range seedEntities() {
		f.Add(b)
	}
	types := []feature.Type{{Kind: feature.KindInt}, {Kind: feature.KindJSON}, {Kind: feature.KindVector, Dim: 8},
		{Kind: feature.KindList, Elem: &feature.Type{Kind: feature.KindList, Elem: &feature.Type{Kind: feature.KindFloat}}}}
	f.Fuzz(func(t *testing.T, b []byte) {
		es, err := decodeEntity(b, nil)
		if err != nil {
			return
		}
		again, err := decodeEntity(appendEntity(nil, es), nil)
		if err != nil || !slices.EqualFunc(es, again, entryEqual) {
			t.Fatalf("re-encoding %x: %v, %v != %v", b, err, again, es)
		}
		for _, en := range es {
			for _, ty := range types {
				c, err := en.cell(ty)
				if err != nil {
					continue
				}
				if err := feature.Check(ty, c.Value); err != nil || !c.Found {
					t.Fatalf("cell(%s) = %+v, which does not check: %v", ty, c, err)
				}
			}
		}
	})
}
