package api

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
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

// arrowMemory is the allocator arrow-go's IPC encoding of schema messages
// is given (the record batch is written without it): Go's.
var arrowMemory = memory.DefaultAllocator

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

// arrowMetadata returns the texts of the schema metadata of a's Arrow
// answer: its error list and its meta object, as the row answer writes
// them.
func arrowMetadata(a *answer) (errs, meta []byte, err error) {
	meta, err = appendMeta(nil, a)
	if err != nil {
		return nil, nil, err
	}
	return appendErrorList(nil, a.errors), meta, nil
}

// arrowSchema returns the schema of an Arrow answer: fields (arrowFields),
// and the answer's errors and meta texts as metadata.
func arrowSchema(fields []arrow.Field, errs, meta string) *arrow.Schema {
	md := arrow.NewMetadata([]string{arrowErrorsKey, arrowMetaKey}, []string{errs, meta})
	return arrow.NewSchema(fields, &md)
}

// arrowEncoder makes the Arrow answers of one layout (the columns'
// features, and include_meta): their fields, a column of buffers per
// field, and what writing a record batch takes, all kept between answers.
// Each answer refills the buffers, from which its record batch is
// written: making builders, arrays or a schema per answer cost more than
// filling them.
type arrowEncoder struct {
	cols        []*feature.Feature
	includeMeta bool
	fields      []arrow.Field
	columns     []arrowColumn
	// templates are the layout's schema messages, by placeholder sizes.
	templates []schemaTemplate
	// batch is the record batch message's builder and its nodes and
	// buffers, reused.
	batch recordBatchWriter
}

// newArrowEncoder returns an encoder for t's layout with includeMeta.
func newArrowEncoder(t *table, includeMeta bool) *arrowEncoder {
	e := &arrowEncoder{includeMeta: includeMeta, fields: arrowFields(t, includeMeta)}
	for i := range t.cols {
		e.cols = append(e.cols, t.cols[i].feature)
	}
	e.columns = make([]arrowColumn, len(e.fields))
	for i := range t.cols {
		e.columns[i].init(t.cols[i].feature.Type)
	}
	for i := len(t.cols); i < len(e.fields); i++ {
		e.columns[i].init(feature.Type{Kind: feature.KindDatetime})
	}
	return e
}

// matches reports whether e's layout is t's with includeMeta (a hash says
// so; this makes sure).
func (e *arrowEncoder) matches(t *table, includeMeta bool) bool {
	if e.includeMeta != includeMeta || len(e.cols) != len(t.cols) {
		return false
	}
	for i := range t.cols {
		if e.cols[i] != t.cols[i].feature {
			return false
		}
	}
	return true
}

// arrowLayouts pools arrowEncoders by layout, up to maxArrowLayouts
// layouts; the answers of others make their own.
var arrowLayouts = struct {
	mu    sync.RWMutex
	seed  maphash.Seed
	pools map[uint64]*sync.Pool
}{seed: maphash.MakeSeed(), pools: map[uint64]*sync.Pool{}}

// maxArrowLayouts bounds the layouts whose encoders are kept.
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

// getEncoder returns an encoder for t's layout with includeMeta: a pooled
// one of the same layout, or a new one.
func getEncoder(t *table, includeMeta bool) (*arrowEncoder, uint64) {
	key := layoutOf(t, includeMeta)
	arrowLayouts.mu.RLock()
	p := arrowLayouts.pools[key]
	arrowLayouts.mu.RUnlock()
	if p != nil {
		if e, _ := p.Get().(*arrowEncoder); e != nil && e.matches(t, includeMeta) {
			return e, key
		}
	}
	return newArrowEncoder(t, includeMeta), key
}

// putEncoder keeps e, whose answer is written, for the next answer of its
// layout, unless its buffers and templates grew past maxPooledArrowBytes.
func putEncoder(e *arrowEncoder, key uint64) {
	size := 0
	for i := range e.columns {
		size += e.columns[i].size()
	}
	for i := range e.templates {
		size += len(e.templates[i].msg)
	}
	if size > maxPooledArrowBytes {
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
	if p != nil {
		p.Put(e)
	}
}

// maxPooledArrowBytes bounds the buffers of an encoder kept for the next
// answer: an answer larger than that makes its own.
const maxPooledArrowBytes = 4 << 20

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

// appendArrow writes a's Arrow IPC stream, laid out as qr's table, to sink:
// the schema message (from a template of the layout's, arrow-go's buffers
// allocated from mem and freed before it returns), then the record batch
// message and its body, written straight from the columns' buffers
// (writeRecordBatch), then the end of stream marker.
func appendArrow(sink *byteSink, mem memory.Allocator, a *answer, qr *query.Request) error {
	t, err := newTable(qr, a.res)
	if err != nil {
		return err
	}
	errs, meta, err := arrowMetadata(a)
	if err != nil {
		return err
	}
	e, layout := getEncoder(t, a.includeMeta)
	if err := e.fill(t); err != nil {
		return err
	}
	err = e.writeSchema(sink, mem, errs, meta)
	if err == nil {
		err = e.writeRecordBatch(sink, t.rows)
	}
	if err == nil {
		sink.b = append(sink.b, arrowEOS[:]...)
	}
	putEncoder(e, layout)
	return err
}

// fill fills e's columns with t's values: each column by one loop over its
// rows, typed by the column's feature type, then with include_meta the
// observed-at columns.
func (e *arrowEncoder) fill(t *table) error {
	for ci := range t.cols {
		c := &t.cols[ci]
		col := &e.columns[ci]
		col.reset()
		var i int
		var err error
		if c.key {
			i, err = col.fillKeys(c.g.Keys, c.feature.Type)
		} else {
			i, err = col.fill(&c.vals, t.rows)
		}
		if err != nil {
			return fmt.Errorf("%s of %q: %w", c.feature.FQN, c.g.Keys[i], err)
		}
	}
	if e.includeMeta {
		ti := len(t.cols)
		for ci := range t.cols {
			if c := &t.cols[ci]; !c.key {
				e.columns[ti].reset()
				e.columns[ti].fillObserved(&c.vals, t.rows)
				ti++
			}
		}
	}
	return nil
}

// arrowEOS is the end of stream marker of an Arrow IPC stream.
var arrowEOS = [8]byte{0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0}

// The schema message of an Arrow answer is the same for every answer of a
// layout but for its two metadata values, the errors and meta texts. An
// encoder keeps it as a template: the message arrow-go writes for values
// of placeholder bytes, from which an answer's message is a copy with its
// own texts written over the placeholders. A template is made for the
// texts' exact lengths, so that the message is byte for byte the size
// arrow-go would write: an answer without errors has errors "[]", and its
// meta text differs in length only by the digits of its duration, so a
// layout's answers need few templates, kept up to maxSchemaTemplates.
const (
	maxSchemaClass = 64 << 10
	// maxSchemaTemplates bounds an encoder's templates: a layout whose
	// answers take more lengths makes new ones in turn.
	maxSchemaTemplates = 8
)

// The placeholder bytes of the errors and meta texts: neither is in a
// field name ([a-z][a-z0-9_.]*) or in the Arrow type names that a schema
// message holds, so each run is found once.
const (
	errorsFill = '~'
	metaFill   = '^'
)

// schemaTemplate is an encoded schema message with placeholders for the
// errors and meta texts.
type schemaTemplate struct {
	errCap, metaCap int
	msg             []byte
	// errAt and metaAt are the offsets in msg of the placeholders'
	// length prefixes.
	errAt, metaAt int
}

// schemaClass returns the placeholder size for a text of n bytes: n, or 1
// for an empty text (a placeholder must have bytes to be found), or 0 when
// n is over maxSchemaClass.
func schemaClass(n int) int {
	if n > maxSchemaClass {
		return 0
	}
	return max(n, 1)
}

// writeSchema writes the stream's schema message: e's fields, and errs and
// meta as the metadata values.
func (e *arrowEncoder) writeSchema(sink *byteSink, mem memory.Allocator, errs, meta []byte) error {
	ec, mc := schemaClass(len(errs)), schemaClass(len(meta))
	if ec == 0 || mc == 0 {
		return writeSchemaPayload(sink, mem, arrowSchema(e.fields, string(errs), string(meta)))
	}
	var tp *schemaTemplate
	for i := range e.templates {
		if t := &e.templates[i]; t.errCap == ec && t.metaCap == mc {
			tp = t
			break
		}
	}
	if tp == nil {
		t, ok := newSchemaTemplate(mem, e.fields, ec, mc)
		if !ok {
			return writeSchemaPayload(sink, mem, arrowSchema(e.fields, string(errs), string(meta)))
		}
		if len(e.templates) == maxSchemaTemplates {
			e.templates = e.templates[:copy(e.templates, e.templates[1:])]
		}
		e.templates = append(e.templates, t)
		tp = &e.templates[len(e.templates)-1]
	}
	at := len(sink.b)
	sink.b = append(sink.b, tp.msg...)
	msg := sink.b[at:]
	fillPlaceholder(msg[tp.errAt:], tp.errCap, errs)
	fillPlaceholder(msg[tp.metaAt:], tp.metaCap, meta)
	return nil
}

// fillPlaceholder writes s over the string placeholder of capacity n at
// the start of b: its length, its bytes, and zeros to the placeholder's
// end (the NUL after it is there already).
func fillPlaceholder(b []byte, n int, s []byte) {
	binary.LittleEndian.PutUint32(b, uint32(len(s)))
	copy(b[4:], s)
	clear(b[4+len(s) : 4+n])
}

// newSchemaTemplate makes the template of fields' schema message with an
// errors text of errCap bytes and a meta text of metaCap. It reports false
// when a placeholder is not found exactly once, which arrow-go's encoding
// of a schema would have to change for.
func newSchemaTemplate(mem memory.Allocator, fields []arrow.Field, errCap, metaCap int) (schemaTemplate, bool) {
	errP, metaP := bytes.Repeat([]byte{errorsFill}, errCap), bytes.Repeat([]byte{metaFill}, metaCap)
	sink := &byteSink{}
	if err := writeSchemaPayload(sink, mem, arrowSchema(fields, string(errP), string(metaP))); err != nil {
		return schemaTemplate{}, false
	}
	t := schemaTemplate{errCap: errCap, metaCap: metaCap, msg: sink.b}
	var ok1, ok2 bool
	t.errAt, ok1 = findPlaceholder(t.msg, errP)
	t.metaAt, ok2 = findPlaceholder(t.msg, metaP)
	return t, ok1 && ok2
}

// findPlaceholder returns the offset in msg of the string p's length
// prefix, reporting whether the string is there exactly once.
func findPlaceholder(msg, p []byte) (int, bool) {
	var s []byte
	s = binary.LittleEndian.AppendUint32(s, uint32(len(p)))
	s = append(s, p...)
	s = append(s, 0)
	i := bytes.Index(msg, s)
	if i < 0 || bytes.Contains(msg[i+len(s):], p) {
		return 0, false
	}
	return i, true
}

// writeSchemaPayload writes schema's message as arrow-go encodes it.
func writeSchemaPayload(sink *byteSink, mem memory.Allocator, schema *arrow.Schema) error {
	p := ipc.GetSchemaPayload(schema, mem)
	defer p.Release()
	_, err := p.WritePayload(sink)
	return err
}

// arrowColumn holds the buffers of one Arrow array of an answer, of a
// feature type's Arrow type (arrowType): a validity bitmap, then the
// values as the type lays them out. Values are appended, one row at a
// time; the buffers keep their capacity for the next answer.
type arrowColumn struct {
	typ feature.Type
	dt  arrow.DataType
	// n is the number of values appended, nulls how many are null.
	n, nulls int
	valid    []byte
	i64      []int64   // int, datetime
	f64      []float64 // float
	f32      []float32 // vector elements, Dim a row, zeros for a null
	bits     []byte    // bool values, a bit a row
	offs     []int32   // string, bytes, JSON and list offsets: n+1 of them
	data     []byte    // string, bytes and JSON values
	child    *arrowColumn
}

// init makes c a column of type t.
func (c *arrowColumn) init(t feature.Type) {
	c.typ, c.dt = t, arrowType(t)
	if t.Kind == feature.KindList {
		c.child = new(arrowColumn)
		c.child.init(*t.Elem)
	}
	c.reset()
}

// reset empties c, keeping its buffers' capacity.
func (c *arrowColumn) reset() {
	c.n, c.nulls = 0, 0
	c.valid, c.i64, c.f64, c.f32, c.bits, c.data = c.valid[:0], c.i64[:0], c.f64[:0], c.f32[:0], c.bits[:0], c.data[:0]
	c.offs = append(c.offs[:0], 0)
	if c.child != nil {
		c.child.reset()
	}
}

// size returns the bytes c's buffers hold on to.
func (c *arrowColumn) size() int {
	n := cap(c.valid) + 8*cap(c.i64) + 8*cap(c.f64) + 4*cap(c.f32) + cap(c.bits) + 4*cap(c.offs) + cap(c.data)
	if c.child != nil {
		n += c.child.size()
	}
	return n
}

// appendBit sets bit i of bitmap bm, i being its length in bits, to set.
func appendBit(bm []byte, i int, set bool) []byte {
	if i&7 == 0 {
		bm = append(bm, 0)
	}
	if set {
		bm[i>>3] |= 1 << (i & 7)
	}
	return bm
}

// valued counts a value appended to c's values.
func (c *arrowColumn) valued() {
	c.valid = appendBit(c.valid, c.n, true)
	c.n++
}

// appendNull appends a null: a zero value, or an empty one, in c's values.
func (c *arrowColumn) appendNull() {
	switch c.typ.Kind {
	case feature.KindInt, feature.KindDatetime:
		c.i64 = append(c.i64, 0)
	case feature.KindFloat:
		c.f64 = append(c.f64, 0)
	case feature.KindBool:
		c.bits = appendBit(c.bits, c.n, false)
	case feature.KindString, feature.KindBytes, feature.KindJSON:
		c.offs = append(c.offs, int32(len(c.data)))
	case feature.KindList:
		c.offs = append(c.offs, int32(c.child.n))
	case feature.KindVector:
		c.f32 = append(c.f32, make([]float32, c.typ.Dim)...)
	}
	c.valid = appendBit(c.valid, c.n, false)
	c.n++
	c.nulls++
}

// appendValue appends v, a canonical value of c's type or nil. A nil byte
// slice, vector or JSON object is a null, as the row answer writes it.
func (c *arrowColumn) appendValue(v any) error {
	if v == nil {
		c.appendNull()
		return nil
	}
	ok := false
	switch c.typ.Kind {
	case feature.KindInt:
		var x int64
		if x, ok = v.(int64); ok {
			c.i64 = append(c.i64, x)
		}
	case feature.KindFloat:
		var x float64
		if x, ok = v.(float64); ok {
			c.f64 = append(c.f64, x)
		}
	case feature.KindString:
		var x string
		if x, ok = v.(string); ok {
			c.data = append(c.data, x...)
			c.offs = append(c.offs, int32(len(c.data)))
		}
	case feature.KindBool:
		var x bool
		if x, ok = v.(bool); ok {
			c.bits = appendBit(c.bits, c.n, x)
		}
	case feature.KindBytes:
		var x []byte
		if x, ok = v.([]byte); ok {
			if x == nil {
				c.appendNull()
				return nil
			}
			c.data = append(c.data, x...)
			c.offs = append(c.offs, int32(len(c.data)))
		}
	case feature.KindDatetime:
		var x time.Time
		if x, ok = v.(time.Time); ok {
			c.i64 = append(c.i64, x.UnixMicro())
		}
	case feature.KindList:
		var x []any
		if x, ok = v.([]any); ok {
			for _, e := range x {
				if err := c.child.appendValue(e); err != nil {
					return err
				}
			}
			c.offs = append(c.offs, int32(c.child.n))
		}
	case feature.KindVector:
		var x []float32
		if x, ok = v.([]float32); ok {
			switch {
			case x == nil:
				c.appendNull()
				return nil
			case len(x) != c.typ.Dim:
				return fmt.Errorf("vector of %d elements for a %s", len(x), c.typ)
			}
			c.f32 = append(c.f32, x...)
		}
	case feature.KindJSON:
		var x map[string]any
		if x, ok = v.(map[string]any); ok {
			if x == nil {
				c.appendNull()
				return nil
			}
			var err error
			if c.data, err = appendPlain(c.data, x); err != nil {
				return err
			}
			c.offs = append(c.offs, int32(len(c.data)))
		}
	}
	if !ok {
		return typeError(v, c.typ)
	}
	c.valued()
	return nil
}

// fill appends rows values of vals, an output's column, to c, which is
// empty. The loop is chosen by c's type once; the plain types' loops write
// straight into buffers sized for rows (held in locals: a store to c's
// fields per value would cost a write barrier while the collector runs),
// the others go through appendValue. It returns the row of a value it
// cannot append, and why.
func (c *arrowColumn) fill(vals *query.Column, rows int) (int, error) {
	valid := bitmapOf(c.valid, rows)
	nulls := 0
	switch c.typ.Kind {
	case feature.KindInt, feature.KindDatetime:
		out := slices.Grow(c.i64[:0], rows)[:rows]
		for i := range rows {
			v, _ := vals.Value(i)
			switch x := v.(type) {
			case int64:
				if c.typ.Kind != feature.KindInt {
					return i, typeError(v, c.typ)
				}
				out[i] = x
			case time.Time:
				if c.typ.Kind != feature.KindDatetime {
					return i, typeError(v, c.typ)
				}
				out[i] = x.UnixMicro()
			case nil:
				out[i] = 0
				nulls++
				continue
			default:
				return i, typeError(v, c.typ)
			}
			valid[i>>3] |= 1 << (i & 7)
		}
		c.i64 = out
	case feature.KindFloat:
		out := slices.Grow(c.f64[:0], rows)[:rows]
		for i := range rows {
			v, _ := vals.Value(i)
			switch x := v.(type) {
			case float64:
				out[i] = x
			case nil:
				out[i] = 0
				nulls++
				continue
			default:
				return i, typeError(v, c.typ)
			}
			valid[i>>3] |= 1 << (i & 7)
		}
		c.f64 = out
	case feature.KindBool:
		out := bitmapOf(c.bits, rows)
		for i := range rows {
			v, _ := vals.Value(i)
			switch x := v.(type) {
			case bool:
				if x {
					out[i>>3] |= 1 << (i & 7)
				}
			case nil:
				nulls++
				continue
			default:
				return i, typeError(v, c.typ)
			}
			valid[i>>3] |= 1 << (i & 7)
		}
		c.bits = out
	case feature.KindString, feature.KindBytes:
		offs := slices.Grow(c.offs[:0], rows+1)[:rows+1]
		offs[0] = 0
		data := c.data[:0]
		for i := range rows {
			v, _ := vals.Value(i)
			switch x := v.(type) {
			case string:
				if c.typ.Kind != feature.KindString {
					return i, typeError(v, c.typ)
				}
				data = append(data, x...)
			case []byte:
				if c.typ.Kind != feature.KindBytes {
					return i, typeError(v, c.typ)
				}
				if x == nil {
					nulls++
					offs[i+1] = int32(len(data))
					continue
				}
				data = append(data, x...)
			case nil:
				nulls++
				offs[i+1] = int32(len(data))
				continue
			default:
				return i, typeError(v, c.typ)
			}
			offs[i+1] = int32(len(data))
			valid[i>>3] |= 1 << (i & 7)
		}
		c.offs, c.data = offs, data
	default:
		for i := range rows {
			v, _ := vals.Value(i)
			if err := c.appendValue(v); err != nil {
				return i, err
			}
		}
		return 0, nil
	}
	c.valid, c.n, c.nulls = valid, rows, nulls
	return 0, nil
}

// bitmapOf returns a zeroed bitmap of n bits, in bm's memory if it has
// room.
func bitmapOf(bm []byte, n int) []byte {
	bm = slices.Grow(bm[:0], (n+7)/8)[:(n+7)/8]
	clear(bm)
	return bm
}

// typeError reports a value of the wrong Go type for a feature type t.
func typeError(v any, t feature.Type) error {
	return fmt.Errorf("value of Go type %T for a %s feature", v, t)
}

// fillObserved appends the observed-ats of rows values of vals to c, an
// empty timestamp column: null where no value is served.
func (c *arrowColumn) fillObserved(vals *query.Column, rows int) {
	valid := bitmapOf(c.valid, rows)
	out := slices.Grow(c.i64[:0], rows)[:rows]
	nulls := 0
	for i := range rows {
		if _, at := vals.Value(i); at.IsZero() {
			out[i] = 0
			nulls++
		} else {
			out[i] = at.UnixMicro()
			valid[i>>3] |= 1 << (i & 7)
		}
	}
	c.valid, c.i64, c.n, c.nulls = valid, out, rows, nulls
}

// fillKeys appends canonical primary keys of type t to c, which is empty.
// It returns the row of a key it cannot append, and why.
func (c *arrowColumn) fillKeys(keys []string, t feature.Type) (int, error) {
	if t.Kind == feature.KindInt {
		c.i64 = slices.Grow(c.i64, len(keys))
		for i, key := range keys {
			n, err := strconv.ParseInt(key, 10, 64)
			if err != nil {
				return i, fmt.Errorf("int key %q: %w", key, err)
			}
			c.i64 = append(c.i64, n)
			c.valued()
		}
		return 0, nil
	}
	c.offs = slices.Grow(c.offs, len(keys))
	for _, key := range keys {
		c.data = append(c.data, key...)
		c.offs = append(c.offs, int32(len(c.data)))
		c.valued()
	}
	return 0, nil
}
