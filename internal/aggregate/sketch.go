package aggregate

import (
	"math"
	"math/bits"
)

// Sketch parameters. The sketch is a HyperLogLog of precision 14: m =
// 16384 six-bit registers, a relative standard error of 1.04/√m ≈ 0.81%.
const (
	// SketchPrecision is p, the number of hash bits that pick a register.
	SketchPrecision = 14
	// SketchRegisters is m = 2^p.
	SketchRegisters = 1 << SketchPrecision
	// sketchMaxRank is the largest register value: the leading zeros of
	// the 64−p remaining hash bits, plus one.
	sketchMaxRank = 64 - SketchPrecision + 1
	// sketchSparseMax is the most non-zero registers a sketch keeps, and
	// encodes, as a list of (register, value) pairs of 3 bytes; past it
	// the list would outgrow the dense form (3·4096 = 12,288 bytes).
	sketchSparseMax = SketchRegisters/4 - 1
	// sketchDenseBytes is the size of the dense form: m registers of 6
	// bits.
	sketchDenseBytes = SketchRegisters * 6 / 8
)

// sketch is a HyperLogLog sketch of 64-bit hashes. It is sparse (a map of
// the non-zero registers) while it has at most sketchSparseMax of them, so
// that the many small buckets of a typical entity stay small, and dense
// (one byte per register) after. The zero value is an empty sketch.
type sketch struct {
	sparse map[uint16]uint8
	dense  []uint8
}

// insertHash folds one hashed value into the sketch.
func (s *sketch) insertHash(h uint64) {
	idx := uint16(h >> (64 - SketchPrecision))
	// The bit below the remaining 64−p bits bounds the rank at 64−p+1.
	w := h<<SketchPrecision | 1<<(SketchPrecision-1)
	s.set(idx, uint8(bits.LeadingZeros64(w))+1)
}

// set raises register idx to at least r.
func (s *sketch) set(idx uint16, r uint8) {
	if s.dense != nil {
		s.dense[idx] = max(s.dense[idx], r)
		return
	}
	if s.sparse == nil {
		s.sparse = make(map[uint16]uint8)
	}
	if r <= s.sparse[idx] {
		return
	}
	s.sparse[idx] = r
	if len(s.sparse) > sketchSparseMax {
		s.dense = make([]uint8, SketchRegisters)
		for i, v := range s.sparse {
			s.dense[i] = v
		}
		s.sparse = nil
	}
}

// merge folds o into s: each register becomes the larger of the two.
func (s *sketch) merge(o *sketch) {
	if o.dense != nil {
		for i, r := range o.dense {
			if r != 0 {
				s.set(uint16(i), r)
			}
		}
		return
	}
	for i, r := range o.sparse {
		s.set(i, r)
	}
}

// nonZero returns the number of registers above zero.
func (s *sketch) nonZero() int {
	if s.dense == nil {
		return len(s.sparse)
	}
	n := 0
	for _, r := range s.dense {
		if r != 0 {
			n++
		}
	}
	return n
}

// estimate returns the estimated number of distinct values inserted,
// with Ertl's improved raw estimator ("New cardinality estimation
// algorithms for HyperLogLog sketches", 2017), which needs neither
// empirical bias tables nor a switch to linear counting for small sets.
func (s *sketch) estimate() float64 {
	var c [sketchMaxRank + 1]int
	if s.dense != nil {
		for _, r := range s.dense {
			c[r]++
		}
	} else {
		c[0] = SketchRegisters - len(s.sparse)
		for _, r := range s.sparse {
			c[r]++
		}
	}
	if c[0] == SketchRegisters {
		return 0
	}
	const m = float64(SketchRegisters)
	q := sketchMaxRank - 1
	z := m * tau(1-float64(c[q+1])/m)
	for k := q; k >= 1; k-- {
		z = 0.5 * (z + float64(c[k]))
	}
	z += m * sigma(float64(c[0])/m)
	return m * m / (2 * math.Ln2 * z)
}

func sigma(x float64) float64 {
	if x == 1 {
		return math.Inf(1)
	}
	y, z := 1.0, x
	for {
		x *= x
		prev := z
		z += x * y
		y += y
		if z == prev {
			return z
		}
	}
}

func tau(x float64) float64 {
	if x == 0 || x == 1 {
		return 0
	}
	y, z := 1.0, 1-x
	for {
		x = math.Sqrt(x)
		prev := z
		y *= 0.5
		z -= (1 - x) * (1 - x) * y
		if z == prev {
			return z / 3
		}
	}
}
