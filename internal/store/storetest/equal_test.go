package storetest

import (
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/cairnfs/cairn/internal/feature"
)

func TestEqual(t *testing.T) {
	ts := time.Date(2024, 1, 2, 3, 4, 5, 6000, time.UTC)
	nan := math.NaN()
	tests := []struct {
		name string
		a, b any
		want bool
	}{
		{"nil", nil, nil, true},
		{"nil vs zero int", nil, int64(0), false},
		{"int", int64(-5), int64(-5), true},
		{"int differs", int64(1), int64(2), false},
		{"int vs float", int64(1), 1.0, false},
		{"int vs int32", int64(1), int32(1), false},
		{"float", 0.1, 0.1, true},
		{"float differs by one ulp", 0.1, math.Nextafter(0.1, 1), false},
		{"negative zero", 0.0, math.Copysign(0, -1), true},
		{"NaN", nan, nan, true},
		{"string", "ü", "ü", true},
		{"string vs bytes", "a", []byte("a"), false},
		{"bool", true, true, true},
		{"bool differs", true, false, false},
		{"bytes", []byte{0, 1}, []byte{0, 1}, true},
		{"empty bytes vs nil bytes", []byte{}, []byte(nil), true},
		{"bytes differ", []byte{0, 1}, []byte{0, 2}, false},
		{"time in another zone", ts, ts.In(time.FixedZone("x", 3600)), true},
		{"time differs by 1µs", ts, ts.Add(time.Microsecond), false},
		{"time vs string", ts, ts.Format(time.RFC3339Nano), false},
		{"vector", []float32{1, 2}, []float32{1, 2}, true},
		{"vector length", []float32{1, 2}, []float32{1, 2, 0}, false},
		{"vector element", []float32{1, 2}, []float32{1, 3}, false},
		{"vector vs float64 list", []float32{1}, []any{1.0}, false},
		{"list", []any{"a", int64(1)}, []any{"a", int64(1)}, true},
		{"empty lists", []any{}, []any{}, true},
		{"list order", []any{"a", "b"}, []any{"b", "a"}, false},
		{"nested list", []any{[]any{1.5}}, []any{[]any{1.5}}, true},
		{"nested list differs", []any{[]any{1.5}}, []any{[]any{2.5}}, false},
		{"list of times", []any{ts}, []any{ts.Local()}, true},
		{"json", map[string]any{"a": json.Number("1"), "b": nil}, map[string]any{"a": json.Number("1"), "b": nil}, true},
		{"json number forms", map[string]any{"a": json.Number("1e3")}, map[string]any{"a": json.Number("1000")}, true},
		{"json number differs", map[string]any{"a": json.Number("1.5")}, map[string]any{"a": json.Number("1.50001")}, false},
		{"json number vs float", map[string]any{"a": json.Number("1")}, map[string]any{"a": 1.0}, false},
		{"json null vs missing key", map[string]any{"a": nil}, map[string]any{"b": nil}, false},
		{"json extra key", map[string]any{"a": "x"}, map[string]any{"a": "x", "b": "y"}, false},
		{"json nested", map[string]any{"a": map[string]any{"b": []any{true}}}, map[string]any{"a": map[string]any{"b": []any{true}}}, true},
		{"json nested differs", map[string]any{"a": map[string]any{"b": []any{true}}}, map[string]any{"a": map[string]any{"b": []any{false}}}, false},
		{"json vs empty", map[string]any{}, map[string]any{"a": nil}, false},
		{"empty json", map[string]any{}, map[string]any{}, true},
	}
	for _, tc := range tests {
		if got := Equal(tc.a, tc.b); got != tc.want {
			t.Errorf("%s: Equal(%s, %s) = %v, want %v", tc.name, show(tc.a), show(tc.b), got, tc.want)
		}
		if got := Equal(tc.b, tc.a); got != tc.want {
			t.Errorf("%s: Equal(%s, %s) = %v, want %v (swapped)", tc.name, show(tc.b), show(tc.a), got, tc.want)
		}
	}
}

// The suite's registry declares a feature of every kind in the string- and
// int-keyed namespaces, so that every backend is tested on every type.
func TestRegistryCoversEveryKind(t *testing.T) {
	reg := Registry()
	if reg == nil {
		_, err := parseRegistry()
		t.Fatalf("registry: %v", err)
	}
	for _, name := range []string{"user", "merchant"} {
		ns, ok := reg.Namespace(name)
		if !ok {
			t.Fatalf("no namespace %s", name)
		}
		kinds := map[feature.Kind]bool{}
		var walk func(feature.Type)
		walk = func(ty feature.Type) {
			kinds[ty.Kind] = true
			if ty.Elem != nil {
				walk(*ty.Elem)
			}
		}
		for _, f := range feats(ns) {
			walk(f.Type)
		}
		for k := feature.KindInt; k <= feature.KindJSON; k++ {
			if !kinds[k] {
				t.Errorf("namespace %s has no feature of kind %d", name, k)
			}
		}
	}
	if k := mustNS(t, reg, "merchant").PrimaryKey.Type.Kind; k != feature.KindInt {
		t.Errorf("merchant key kind = %v, want int", k)
	}
}

func mustNS(t *testing.T, reg *feature.Registry, name string) *feature.Namespace {
	t.Helper()
	ns, ok := reg.Namespace(name)
	if !ok {
		t.Fatalf("no namespace %s", name)
	}
	return ns
}

// Every value the suite writes is canonical for its feature's type, so a
// failure always points at the backend, never at the suite.
func TestSuiteValuesAreCanonical(t *testing.T) {
	reg := Registry()
	s := &suite{reg: reg}
	for _, name := range []string{"user", "merchant"} {
		for _, w := range s.roundTripCases(t, mustNS(t, reg, name)) {
			for _, v := range w.Values {
				if err := feature.Check(v.Feature.Type, v.Value); err != nil {
					t.Errorf("%s %s: %v", w.Key, v.Feature.FQN, err)
				}
				// The binary codec round-trips it, so it is representable.
				b, err := feature.AppendValue(nil, v.Value)
				if err != nil {
					t.Errorf("%s %s: encode: %v", w.Key, v.Feature.FQN, err)
					continue
				}
				got, _, err := feature.DecodeValue(b)
				if err != nil || !Equal(v.Value, got) {
					t.Errorf("%s %s: codec round trip: %v, %s", w.Key, v.Feature.FQN, err, diff(v.Value, got))
				}
			}
		}
	}
}
