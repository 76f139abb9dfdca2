package redis

import (
	"encoding/json"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/cairnfs/cairn/internal/feature"
)

func field(t testing.TB, v any, at time.Time) []byte {
	b, err := appendField(nil, v, at)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeField(t *testing.T) {
	intT := feature.Type{Kind: feature.KindInt}
	at := time.Date(1901, 2, 3, 4, 5, 6, 7000, time.UTC)
	c, err := decodeField(field(t, int64(math.MinInt64), at), intT)
	if err != nil || !c.Found || c.Value != int64(math.MinInt64) || !c.ObservedAt.Equal(at) || c.ObservedAt.Location() != time.UTC {
		t.Fatalf("round trip: %+v, %v", c, err)
	}
	if c, err := decodeField(field(t, nil, at), intT); err != nil || !c.Found || c.Value != nil {
		t.Fatalf("null: %+v, %v", c, err)
	}
	if _, err := decodeField(field(t, "x", at), intT); !errors.Is(err, feature.ErrTypeMismatch) {
		t.Errorf("string as int: %v, want feature.ErrTypeMismatch", err)
	}
	for name, b := range map[string][]byte{
		"empty":          nil,
		"only time":      field(t, nil, at)[:8],
		"trailing bytes": append(field(t, int64(1), at), 0),
		"unknown tag":    append(field(t, nil, at)[:8], 99),
	} {
		if _, err := decodeField(b, intT); !errors.Is(err, feature.ErrCorrupt) {
			t.Errorf("%s: %v, want feature.ErrCorrupt", name, err)
		}
	}
}

// FuzzDecodeField checks that decoding arbitrary bytes as any type never
// panics and either fails or gives a value of that type.
func FuzzDecodeField(f *testing.F) {
	at := time.Date(1969, 7, 20, 20, 17, 40, 123000, time.UTC)
	for _, v := range []any{nil, int64(-7), 1.5, "Zoë", true, []byte{0, 0xff}, at,
		[]any{[]any{1.5}, []any{}}, []float32{1, 2}, map[string]any{"a": json.Number("1")}} {
		f.Add(field(f, v, at))
	}
	types := []feature.Type{{Kind: feature.KindInt}, {Kind: feature.KindString}, {Kind: feature.KindJSON},
		{Kind: feature.KindVector, Dim: 2}, {Kind: feature.KindList, Elem: &feature.Type{Kind: feature.KindList, Elem: &feature.Type{Kind: feature.KindFloat}}}}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, ty := range types {
			c, err := decodeField(b, ty)
			if err != nil {
				continue
			}
			if err := feature.Check(ty, c.Value); err != nil || !c.Found {
				t.Fatalf("decodeField(%x, %s) = %+v, which does not check: %v", b, ty, c, err)
			}
		}
	})
}
