package api

import (
	"fmt"
	"hash/maphash"
	"math/bits"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/query"
)

// arrowMediaType is the media type of an Arrow IPC stream, which a query
// asks for in its Accept header.
const arrowMediaType = "application/vnd.apache.arrow.stream"

// tsSuffix names the observed-at column of a feature with include_meta:
// user.age's is user.age.__ts__.
const tsSuffix = ".__ts__"

// The schema metadata keys of an Arrow answer: the answer's error list and
// its meta object, each as the JSON text the row answer has.
const (
	arrowErrorsKey = "errors"
	arrowMetaKey   = "meta"
)

// arrowTimestamp is the Arrow type of datetimes and observed-ats.
var arrowTimestamp = &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}

// arrowMemory allocates the Arrow answers' buffers, which builders and
// records give back once released, for the next answers.
var arrowMemory memory.Allocator = &pooledAllocator{}

// The size classes of pooledAllocator: powers of two from 64 bytes (Arrow's
// alignment) to 4 MiB.
const (
	minClassShift = 6
	maxClassShift = 22
)

// pooledAllocator is a memory.Allocator reusing freed buffers, a sync.Pool
// per size class. Buffers over the largest class come from, and go back
// to, the garbage collector. A buffer of a class is aligned to 64 bytes, as
// Arrow wants: Go allocates objects of a power-of-two size at multiples of
// their size (or of its page size, for large ones).
type pooledAllocator struct {
	classes [maxClassShift - minClassShift + 1]sync.Pool
	// headers holds the *[]byte the classes' buffers were pooled in once
	// they are handed out, so that freeing one allocates nothing.
	headers sync.Pool
}

// sizeClass returns the index of the smallest class holding size bytes,
// or -1 for none.
func sizeClass(size int) int {
	if size > 1<<maxClassShift {
		return -1
	}
	if size <= 1<<minClassShift {
		return 0
	}
	return max(bits.Len(uint(size-1)), minClassShift) - minClassShift
}

// Allocate returns size zeroed bytes.
func (p *pooledAllocator) Allocate(size int) []byte {
	c := sizeClass(size)
	if c < 0 {
		return make([]byte, size)
	}
	if h, ok := p.classes[c].Get().(*[]byte); ok {
		buf := (*h)[:cap(*h)]
		*h = nil
		p.headers.Put(h)
		clear(buf)
		return buf[:size]
	}
	return make([]byte, size, 1<<(c+minClassShift))
}

// Reallocate returns b grown to size bytes, its contents kept and the rest
// zeroed.
func (p *pooledAllocator) Reallocate(size int, b []byte) []byte {
	if size <= cap(b) {
		n := len(b)
		b = b[:size]
		if size > n {
			clear(b[n:])
		}
		return b
	}
	nb := p.Allocate(size)
	copy(nb, b)
	p.Free(b)
	return nb
}

// Free keeps b for reuse if its capacity is that of a class.
func (p *pooledAllocator) Free(b []byte) {
	c := sizeClass(cap(b))
	if c < 0 || cap(b) != 1<<(c+minClassShift) {
		return
	}
	h, ok := p.headers.Get().(*[]byte)
	if !ok {
		h = new([]byte)
	}
	*h = b[:0]
	p.classes[c].Put(h)
}

// prefersArrow reports whether Accept header values prefer the Arrow
// stream to JSON: each is a list of media ranges with optional q-values
// (RFC 9110, section 12.5.1). Each of the two types takes the q-value of
// the most specific range matching it (the type itself, then application/*,
// then */*); the Arrow stream wins when its q-value is above 0 and above
// JSON's. Without a header, or on a tie, JSON stays the answer.
func prefersArrow(accept []string) bool {
	arrowQ, jsonQ := -1.0, -1.0
	arrowRank, jsonRank := -1, -1
	for _, h := range accept {
		for part := range strings.SplitSeq(h, ",") {
			mt, params, _ := strings.Cut(part, ";")
			mt = strings.ToLower(strings.TrimSpace(mt))
			if mt == "" {
				continue
			}
			q := 1.0
			for p := range strings.SplitSeq(params, ";") {
				k, v, ok := strings.Cut(p, "=")
				if !ok || !strings.EqualFold(strings.TrimSpace(k), "q") {
					continue
				}
				f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
				if err != nil || f < 0 || f > 1 {
					f = 0 // a malformed weight accepts nothing
				}
				q = f
			}
			rankRange(mt, arrowMediaType, q, &arrowQ, &arrowRank)
			rankRange(mt, "application/json", q, &jsonQ, &jsonRank)
		}
	}
	return arrowQ > 0 && arrowQ > jsonQ
}

// rankRange gives typ the q-value q of media range rng if rng matches it
// more specifically than the range that gave it *best so far.
func rankRange(rng, typ string, q float64, best *float64, rank *int) {
	r := -1
	switch {
	case rng == typ:
		r = 2
	case rng == "application/*":
		r = 1
	case rng == "*/*":
		r = 0
	}
	if r < 0 || r < *rank {
		return
	}
	if r > *rank || q > *best {
		*rank, *best = r, q
	}
}

// arrowType returns the Arrow type of a feature type.
func arrowType(t feature.Type) arrow.DataType {
	switch t.Kind {
	case feature.KindInt:
		return arrow.PrimitiveTypes.Int64
	case feature.KindFloat:
		return arrow.PrimitiveTypes.Float64
	case feature.KindString, feature.KindJSON:
		return arrow.BinaryTypes.String
	case feature.KindBool:
		return arrow.FixedWidthTypes.Boolean
	case feature.KindBytes:
		return arrow.BinaryTypes.Binary
	case feature.KindDatetime:
		return arrowTimestamp
	case feature.KindList:
		return arrow.ListOf(arrowType(*t.Elem))
	case feature.KindVector:
		return arrow.FixedSizeListOf(int32(t.Dim), arrow.PrimitiveTypes.Float32)
	}
	return arrow.Null
}

// arrowFields returns the fields of t's Arrow answer: a column per column
// of t, then with include_meta an observed-at column per output.
func arrowFields(t *table, includeMeta bool) []arrow.Field {
	fields := make([]arrow.Field, 0, 2*len(t.cols))
	for i := range t.cols {
		c := &t.cols[i]
		fields = append(fields, arrow.Field{Name: c.feature.FQN, Type: arrowType(c.feature.Type), Nullable: !c.key})
	}
	if includeMeta {
		for i := range t.cols {
			if c := &t.cols[i]; !c.key {
				fields = append(fields, arrow.Field{Name: c.feature.FQN + tsSuffix, Type: arrowTimestamp, Nullable: true})
			}
		}
	}
	return fields
}

// arrowSchema returns the schema of a's Arrow answer: fields (arrowFields),
// and the answer's errors and meta as metadata.
func arrowSchema(a *answer, fields []arrow.Field) (*arrow.Schema, error) {
	meta, err := appendMeta(nil, a)
	if err != nil {
		return nil, err
	}
	md := arrow.NewMetadata([]string{arrowErrorsKey, arrowMetaKey},
		[]string{string(appendErrorList(nil, a.errors)), string(meta)})
	return arrow.NewSchema(fields, &md), nil
}

// arrowBuilders are the fields and the record builder of the Arrow answers
// of one layout (the columns' features, and include_meta), kept between
// answers: making the schema's fields and a builder per column cost more
// than filling them with one entity's values.
type arrowBuilders struct {
	cols        []*feature.Feature
	includeMeta bool
	fields      []arrow.Field
	rb          *array.RecordBuilder
	// pooled marks builders allocating from arrowMemory, the only ones
	// kept: others (a test's checked allocator) are released after use.
	pooled bool
}

// arrowLayouts pools arrowBuilders by layout, up to maxArrowLayouts
// layouts; the answers of others make their own.
var arrowLayouts = struct {
	mu    sync.RWMutex
	seed  maphash.Seed
	pools map[uint64]*sync.Pool
}{seed: maphash.MakeSeed(), pools: map[uint64]*sync.Pool{}}

// maxArrowLayouts bounds the layouts whose builders are kept.
const maxArrowLayouts = 256

// layoutOf returns the hash of t's layout with includeMeta.
func layoutOf(t *table, includeMeta bool) uint64 {
	var h maphash.Hash
	h.SetSeed(arrowLayouts.seed)
	for i := range t.cols {
		maphash.WriteComparable(&h, t.cols[i].feature)
	}
	maphash.WriteComparable(&h, includeMeta)
	return h.Sum64()
}

// getBuilders returns builders for t's layout with includeMeta: pooled
// ones of the same layout, or new ones.
func getBuilders(mem memory.Allocator, t *table, includeMeta bool) (*arrowBuilders, uint64) {
	key := layoutOf(t, includeMeta)
	arrowLayouts.mu.RLock()
	p := arrowLayouts.pools[key]
	arrowLayouts.mu.RUnlock()
	if p != nil && mem == arrowMemory {
		if ab, _ := p.Get().(*arrowBuilders); ab != nil && ab.matches(t, includeMeta) {
			return ab, key
		}
	}
	ab := &arrowBuilders{includeMeta: includeMeta, fields: arrowFields(t, includeMeta), pooled: mem == arrowMemory}
	for i := range t.cols {
		ab.cols = append(ab.cols, t.cols[i].feature)
	}
	ab.rb = array.NewRecordBuilder(mem, arrow.NewSchema(ab.fields, nil))
	return ab, key
}

// matches reports whether ab's layout is t's with includeMeta (a hash
// says so; this makes sure).
func (ab *arrowBuilders) matches(t *table, includeMeta bool) bool {
	if ab.includeMeta != includeMeta || len(ab.cols) != len(t.cols) {
		return false
	}
	for i := range t.cols {
		if ab.cols[i] != t.cols[i].feature {
			return false
		}
	}
	return true
}

// putBuilders keeps ab, emptied by a record made of it, for the next
// answer of its layout.
func putBuilders(ab *arrowBuilders, key uint64) {
	if !ab.pooled {
		ab.rb.Release()
		return
	}
	arrowLayouts.mu.RLock()
	p := arrowLayouts.pools[key]
	arrowLayouts.mu.RUnlock()
	if p == nil {
		arrowLayouts.mu.Lock()
		if p = arrowLayouts.pools[key]; p == nil && len(arrowLayouts.pools) < maxArrowLayouts {
			p = new(sync.Pool)
			arrowLayouts.pools[key] = p
		}
		arrowLayouts.mu.Unlock()
	}
	if p == nil {
		ab.rb.Release()
		return
	}
	p.Put(ab)
}

// byteSink is an io.Writer appending to a byte slice.
type byteSink struct{ b []byte }

func (s *byteSink) Write(p []byte) (int, error) {
	s.b = append(s.b, p...)
	return len(p), nil
}

// writeArrow answers a as an Arrow IPC stream of qr's table: the schema,
// one record batch, the end of stream marker. The stream is built whole
// before the status is written, so that a value it cannot hold is still
// answered as an error.
func (s *Server) writeArrow(w http.ResponseWriter, a *answer, qr *query.Request) {
	s.writeEncoded(w, "Arrow", arrowMediaType, func(b []byte) ([]byte, error) {
		sink := &byteSink{b: b}
		err := appendArrow(sink, arrowMemory, a, qr)
		return sink.b, err
	})
}

// appendArrow writes a's Arrow IPC stream, laid out as qr's table, to sink,
// its buffers allocated from mem and freed before it returns.
func appendArrow(sink *byteSink, mem memory.Allocator, a *answer, qr *query.Request) error {
	t, err := newTable(qr, a.res)
	if err != nil {
		return err
	}
	ab, layout := getBuilders(mem, t, a.includeMeta)
	schema, err := arrowSchema(a, ab.fields)
	if err != nil {
		ab.rb.Release()
		return err
	}
	// A builder holding part of an answer is not kept.
	kept := false
	defer func() {
		if !kept {
			ab.rb.Release()
		}
	}()
	rb := ab.rb
	rb.Reserve(t.rows)
	var scratch []byte // JSON values' text
	for ci := range t.cols {
		c := &t.cols[ci]
		b := rb.Field(ci)
		for i := 0; i < t.rows; i++ {
			if c.key {
				err = appendArrowKey(b, c.feature, c.g.Keys[i])
			} else {
				v, _ := c.value(i)
				err = appendArrowValue(b, c.feature.Type, v, &scratch)
			}
			if err != nil {
				return fmt.Errorf("%s of %q: %w", c.feature.FQN, c.g.Keys[i], err)
			}
		}
	}
	if a.includeMeta {
		ti := len(t.cols)
		for ci := range t.cols {
			c := &t.cols[ci]
			if c.key {
				continue
			}
			b := rb.Field(ti).(*array.TimestampBuilder)
			ti++
			for i := 0; i < t.rows; i++ {
				if _, at := c.value(i); at.IsZero() {
					b.AppendNull()
				} else {
					b.Append(arrow.Timestamp(at.UnixMicro()))
				}
			}
		}
	}
	rec := rb.NewRecordBatch()
	defer rec.Release()
	putBuilders(ab, layout) // emptied by NewRecordBatch
	kept = true
	wr := ipc.NewWriter(sink, ipc.WithSchema(schema), ipc.WithAllocator(mem))
	if err := wr.Write(rec); err != nil {
		_ = wr.Close()
		return err
	}
	return wr.Close()
}

// appendArrowKey appends a canonical primary key of pk.
func appendArrowKey(b array.Builder, pk *feature.Feature, key string) error {
	if pk.Type.Kind == feature.KindInt {
		n, err := strconv.ParseInt(key, 10, 64)
		if err != nil {
			return fmt.Errorf("int key %q: %w", key, err)
		}
		b.(*array.Int64Builder).Append(n)
		return nil
	}
	b.(*array.StringBuilder).Append(key)
	return nil
}

// appendArrowValue appends v, a canonical value of type t or nil, to b, a
// builder of arrowType(t). A nil byte slice, vector or JSON object is a
// null, as the row answer writes it. scratch holds a JSON value's text.
func appendArrowValue(b array.Builder, t feature.Type, v any, scratch *[]byte) error {
	if v == nil {
		b.AppendNull()
		return nil
	}
	ok := false
	switch t.Kind {
	case feature.KindInt:
		var x int64
		if x, ok = v.(int64); ok {
			b.(*array.Int64Builder).Append(x)
		}
	case feature.KindFloat:
		var x float64
		if x, ok = v.(float64); ok {
			b.(*array.Float64Builder).Append(x)
		}
	case feature.KindString:
		var x string
		if x, ok = v.(string); ok {
			b.(*array.StringBuilder).Append(x)
		}
	case feature.KindBool:
		var x bool
		if x, ok = v.(bool); ok {
			b.(*array.BooleanBuilder).Append(x)
		}
	case feature.KindBytes:
		var x []byte
		if x, ok = v.([]byte); ok {
			if x == nil {
				b.AppendNull()
			} else {
				b.(*array.BinaryBuilder).Append(x)
			}
		}
	case feature.KindDatetime:
		var x time.Time
		if x, ok = v.(time.Time); ok {
			b.(*array.TimestampBuilder).Append(arrow.Timestamp(x.UnixMicro()))
		}
	case feature.KindList:
		var x []any
		if x, ok = v.([]any); ok {
			lb := b.(*array.ListBuilder)
			lb.Append(true)
			vb := lb.ValueBuilder()
			for _, e := range x {
				if err := appendArrowValue(vb, *t.Elem, e, scratch); err != nil {
					return err
				}
			}
		}
	case feature.KindVector:
		var x []float32
		if x, ok = v.([]float32); ok {
			switch {
			case x == nil:
				b.AppendNull()
			case len(x) != t.Dim:
				return fmt.Errorf("vector of %d elements for a %s", len(x), t)
			default:
				lb := b.(*array.FixedSizeListBuilder)
				lb.Append(true)
				lb.ValueBuilder().(*array.Float32Builder).AppendValues(x, nil)
			}
		}
	case feature.KindJSON:
		var x map[string]any
		if x, ok = v.(map[string]any); ok {
			if x == nil {
				b.AppendNull()
				break
			}
			var err error
			if *scratch, err = appendPlain((*scratch)[:0], x); err != nil {
				return err
			}
			b.(*array.StringBuilder).BinaryBuilder.Append(*scratch)
		}
	}
	if !ok {
		return fmt.Errorf("value of Go type %T for a %s feature", v, t)
	}
	return nil
}
