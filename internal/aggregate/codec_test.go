package aggregate

import (
	"bytes"
	"math"
	"strings"
	"testing"

	"github.com/cairnfs/cairn/internal/feature"
)

// decls are the windowed features the codec tests and the fuzz target
// decode with: every aggregation, ints and floats.
var decls = []*feature.Windowed{
	windowed(feature.AggCount, feature.KindString),
	windowed(feature.AggSum, feature.KindInt),
	windowed(feature.AggSum, feature.KindFloat),
	windowed(feature.AggMin, feature.KindInt),
	windowed(feature.AggMax, feature.KindFloat),
	windowed(feature.AggMean, feature.KindInt),
	windowed(feature.AggMean, feature.KindFloat),
	windowed(feature.AggApproxCountDistinct, feature.KindString),
}

// sampleStates returns encoded states of every declaration: empty, with a
// few events and watermarks, and a dense sketch.
func sampleStates(t testing.TB) [][]byte {
	var out [][]byte
	for _, w := range decls {
		s := New(w)
		out = append(out, AppendState(nil, s))
		for i := range 5 {
			var v any
			switch {
			case w.Aggregate == feature.AggApproxCountDistinct:
				v = strings.Repeat("x", i)
			case w.Of.Type.Kind == feature.KindFloat:
				v = float64(i) - 2.5
			default:
				v = int64(i*i) - 7
			}
			mustAdd(t, s, v)
		}
		s.Mark(0, 41)
		s.Mark(7, 1<<40)
		out = append(out, AppendState(nil, s))
	}
	s := New(decls[len(decls)-1])
	for i := range 20_000 {
		mustAdd(t, s, strings.Repeat("y", i%97)+string(rune(i)))
	}
	return append(out, AppendState(nil, s))
}

func TestDecodeRejects(t *testing.T) {
	t.Parallel()
	sumInt, sumFloat := decls[1], decls[2]
	s := New(sumInt)
	mustAdd(t, s, int64(300))
	s.Mark(2, 9)
	good := AppendState(nil, s)
	if _, err := DecodeState(good, sumInt); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		b    []byte
		w    *feature.Windowed
		want string
	}{
		{"empty", nil, sumInt, "want at least 3"},
		{"version", append([]byte{2}, good[1:]...), sumInt, "state version 2, want 1"},
		{"another aggregation", good, decls[0], "state of a sum aggregation, want count"},
		{"another value type", good, sumFloat, "state flags 0x0, want 0x1"},
		{"truncated", good[:len(good)-1], sumInt, "bad int"},
		{"trailing bytes", append(bytes.Clone(good), 0), sumInt, "1 trailing bytes"},
		{"overlong varint", []byte{1, byte(feature.AggCount), 0, 0x80, 0x00, 0}, decls[0], "bad count"},
		{"huge watermark count", []byte{1, byte(feature.AggCount), 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f}, decls[0], "watermarks in 0 bytes"},
		{"watermarks out of order", []byte{1, byte(feature.AggCount), 0, 0, 2, 3, 1, 2, 1}, decls[0], "out of order"},
		{"sketch form", []byte{1, byte(feature.AggApproxCountDistinct), 0, 0, 0, 9}, decls[7], "sketch form 9"},
		{"huge sparse sketch", []byte{1, byte(feature.AggApproxCountDistinct), 0, 0, 0, 0, 0xff, 0x1f}, decls[7], "sparse sketch of 4095 registers in 0 bytes"},
		{"sparse register value", []byte{1, byte(feature.AggApproxCountDistinct), 0, 1, 0, 0, 1, 0, 5, 60}, decls[7], "value 60 out of"},
		{"sparse register order", []byte{1, byte(feature.AggApproxCountDistinct), 0, 1, 0, 0, 2, 0, 5, 1, 0, 5, 1}, decls[7], "out of order"},
		{"dense sketch too sparse", append([]byte{1, byte(feature.AggApproxCountDistinct), 0, 1, 0, 1}, make([]byte, sketchDenseBytes)...), decls[7], "dense sketch of 0 registers"},
		{"dense sketch truncated", []byte{1, byte(feature.AggApproxCountDistinct), 0, 1, 0, 1, 0}, decls[7], "dense sketch of 1 bytes"},
	} {
		_, err := DecodeState(c.b, c.w)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: DecodeState(%x) = %v, want an error with %q", c.name, c.b, err, c.want)
		}
	}
}

func TestEncodingRoundTrip(t *testing.T) {
	t.Parallel()
	for _, b := range sampleStates(t) {
		ok := false
		for _, w := range decls {
			s, err := DecodeState(b, w)
			if err != nil {
				continue
			}
			ok = true
			if got := AppendState(nil, s); !bytes.Equal(got, b) {
				t.Errorf("%s: re-encoded %x, want %x", w.Aggregate, got[:min(len(got), 40)], b[:min(len(b), 40)])
			}
		}
		if !ok {
			t.Errorf("no declaration decodes %x", b[:min(len(b), 40)])
		}
	}
	// A float's bits survive, negative zero and infinities included.
	w := decls[4]
	for _, v := range []float64{math.Copysign(0, -1), math.Inf(1), math.Inf(-1), math.SmallestNonzeroFloat64} {
		s := New(w)
		mustAdd(t, s, v)
		if got := roundTrip(t, s, w).Value().(float64); math.Float64bits(got) != math.Float64bits(v) {
			t.Errorf("max %v decoded as %v", v, got)
		}
	}
}

// FuzzDecodeState: decoding never panics nor allocates beyond what the
// input warrants, and whatever decodes encodes back to the same bytes
// (the encoding is canonical), with a value of the feature's type.
func FuzzDecodeState(f *testing.F) {
	for _, b := range sampleStates(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, w := range decls {
			s, err := DecodeState(b, w)
			if err != nil {
				continue
			}
			if got := AppendState(nil, s); !bytes.Equal(got, b) {
				t.Fatalf("%s: decoded %x re-encodes as %x", w.Aggregate, b, got)
			}
			switch v := s.Value().(type) {
			case nil, int64, float64:
			default:
				t.Fatalf("%s: value of type %T", w.Aggregate, v)
			}
			o := New(w)
			if err := o.Merge(s); err != nil {
				t.Fatal(err)
			}
		}
	})
}
