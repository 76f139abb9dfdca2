package aggregate

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	"github.com/cairnfs/cairn/internal/feature"
)

// StateVersion is the first byte of an encoded State.
const StateVersion = 1

// Sketch forms in an encoded state.
const (
	sketchSparse = 0
	sketchDense  = 1
)

// flagFloat marks the state of a float feature's sum, min, max or mean.
const flagFloat = 1

// AppendState appends the binary encoding of s to b (layout in
// docs/aggregations.md): the version, the aggregation, a flag for float
// values, the event count, the watermarks in partition order, then what
// the aggregation keeps. The encoding is canonical: equal states encode
// equally.
func AppendState(b []byte, s *State) []byte {
	var flags byte
	if s.float {
		flags |= flagFloat
	}
	b = append(b, StateVersion, byte(s.agg), flags)
	b = binary.AppendUvarint(b, uint64(s.count))
	parts := make([]int32, 0, len(s.applied))
	for p := range s.applied {
		parts = append(parts, p)
	}
	slices.Sort(parts)
	b = binary.AppendUvarint(b, uint64(len(parts)))
	for _, p := range parts {
		b = binary.AppendUvarint(b, uint64(uint32(p)))
		b = binary.AppendUvarint(b, uint64(s.applied[p]))
	}
	switch s.agg {
	case feature.AggSum, feature.AggMean:
		b = s.appendNumber(b, s.sumI, s.sumF)
	case feature.AggMin, feature.AggMax:
		if s.count > 0 {
			b = s.appendNumber(b, s.extI, s.extF)
		}
	case feature.AggApproxCountDistinct:
		if s.hll.dense != nil {
			b = append(b, sketchDense)
			// Registers packed 6 bits each, four to three bytes.
			for i := 0; i < SketchRegisters; i += 4 {
				r := s.hll.dense[i : i+4]
				v := uint32(r[0])<<18 | uint32(r[1])<<12 | uint32(r[2])<<6 | uint32(r[3])
				b = append(b, byte(v>>16), byte(v>>8), byte(v))
			}
			break
		}
		b = append(b, sketchSparse)
		b = binary.AppendUvarint(b, uint64(len(s.hll.sparse)))
		idx := make([]uint16, 0, len(s.hll.sparse))
		for i := range s.hll.sparse {
			idx = append(idx, i)
		}
		slices.Sort(idx)
		for _, i := range idx {
			b = append(b, byte(i>>8), byte(i), s.hll.sparse[i])
		}
	}
	return b
}

func (s *State) appendNumber(b []byte, i int64, f float64) []byte {
	if s.float {
		return binary.LittleEndian.AppendUint64(b, math.Float64bits(f))
	}
	return binary.AppendVarint(b, i)
}

// DecodeState decodes a state of a bucket of the windowed feature w,
// encoded by AppendState. It fails, without allocating more than the
// input's size warrants, on any input AppendState could not have made:
// another version, another aggregation or value type than w declares
// (the declaration changed), a truncated or overlong encoding.
func DecodeState(b []byte, w *feature.Windowed) (*State, error) {
	d := decoder{b: b}
	s := New(w)
	if len(b) < 3 {
		return nil, fmt.Errorf("aggregate: state of %d bytes, want at least 3", len(b))
	}
	if b[0] != StateVersion {
		return nil, fmt.Errorf("aggregate: state version %d, want %d", b[0], StateVersion)
	}
	if agg := feature.Aggregation(b[1]); agg != s.agg {
		return nil, fmt.Errorf("aggregate: state of a %s aggregation, want %s", agg, s.agg)
	}
	var want byte
	if s.float {
		want = flagFloat
	}
	if b[2] != want {
		return nil, fmt.Errorf("aggregate: state flags %#x, want %#x for a %s of %s", b[2], want, s.agg, w.Of.Type)
	}
	d.b = b[3:]
	count := d.uvarint("count")
	if count > math.MaxInt64 {
		d.fail("count %d out of range", count)
	}
	s.count = int64(count)
	n := d.uvarint("watermark count")
	// Each watermark takes at least two bytes.
	if n > uint64(len(d.b)/2) {
		d.fail("%d watermarks in %d bytes", n, len(d.b))
	}
	if d.err == nil && n > 0 {
		s.applied = make(map[int32]int64, n)
		last := int64(-1)
		for range n {
			p, o := d.uvarint("partition"), d.uvarint("offset")
			if p > math.MaxInt32 || int64(p) <= last || o > math.MaxInt64 {
				d.fail("watermark partition %d offset %d out of order or range", p, o)
				break
			}
			last = int64(p)
			s.applied[int32(p)] = int64(o)
		}
	}
	switch s.agg {
	case feature.AggSum, feature.AggMean:
		s.sumI, s.sumF = d.number(s.float)
	case feature.AggMin, feature.AggMax:
		if s.count > 0 {
			s.extI, s.extF = d.number(s.float)
		}
	case feature.AggApproxCountDistinct:
		d.sketch(&s.hll)
	}
	if d.err == nil && len(d.b) > 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
	if d.err != nil {
		return nil, d.err
	}
	return s, nil
}

// decoder reads an encoded state, keeping the first error.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("aggregate: decode state: "+format, args...)
	}
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 || n != len(binary.AppendUvarint(nil, v)) {
		d.fail("bad %s", what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) number(float bool) (int64, float64) {
	if d.err != nil {
		return 0, 0
	}
	if float {
		if len(d.b) < 8 {
			d.fail("truncated float")
			return 0, 0
		}
		f := math.Float64frombits(binary.LittleEndian.Uint64(d.b))
		d.b = d.b[8:]
		return 0, f
	}
	v, n := binary.Varint(d.b)
	if n <= 0 || n != len(binary.AppendVarint(nil, v)) {
		d.fail("bad int")
		return 0, 0
	}
	d.b = d.b[n:]
	return v, 0
}

func (d *decoder) sketch(s *sketch) {
	if d.err != nil {
		return
	}
	if len(d.b) < 1 {
		d.fail("truncated sketch")
		return
	}
	form := d.b[0]
	d.b = d.b[1:]
	switch form {
	case sketchDense:
		if len(d.b) < sketchDenseBytes {
			d.fail("dense sketch of %d bytes, want %d", len(d.b), sketchDenseBytes)
			return
		}
		regs := make([]uint8, SketchRegisters)
		for i := 0; i < SketchRegisters; i += 4 {
			v := uint32(d.b[0])<<16 | uint32(d.b[1])<<8 | uint32(d.b[2])
			d.b = d.b[3:]
			regs[i], regs[i+1], regs[i+2], regs[i+3] = uint8(v>>18), uint8(v>>12&63), uint8(v>>6&63), uint8(v&63)
		}
		nz := 0
		for _, r := range regs {
			if r > sketchMaxRank {
				d.fail("sketch register %d out of range", r)
				return
			}
			if r != 0 {
				nz++
			}
		}
		if nz <= sketchSparseMax {
			d.fail("dense sketch of %d registers, want more than %d", nz, sketchSparseMax)
			return
		}
		s.dense = regs
	case sketchSparse:
		n := d.uvarint("sketch length")
		if n > sketchSparseMax || n*3 > uint64(len(d.b)) {
			d.fail("sparse sketch of %d registers in %d bytes", n, len(d.b))
			return
		}
		if n == 0 {
			return
		}
		s.sparse = make(map[uint16]uint8, n)
		last := -1
		for range n {
			i, r := int(d.b[0])<<8|int(d.b[1]), d.b[2]
			d.b = d.b[3:]
			if i >= SketchRegisters || i <= last || r == 0 || r > sketchMaxRank {
				d.fail("sparse sketch register %d value %d out of order or range", i, r)
				return
			}
			last = i
			s.sparse[uint16(i)] = r
		}
	default:
		d.fail("sketch form %d", form)
	}
}
