package api

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	"github.com/apache/arrow-go/v18/arrow"
	flatbuffers "github.com/google/flatbuffers/go"

	"github.com/cairnfs/cairn/internal/feature"
)

// An Arrow answer's record batch is written here in the IPC format's
// encapsulated message format
// (https://arrow.apache.org/docs/format/Columnar.html#encapsulated-message-format),
// straight from the columns' buffers: the continuation marker, the
// metadata's length, the Message flatbuffer (version V5, a RecordBatch
// header: its length, a FieldNode per array and a Buffer per buffer, in
// the depth-first order of the columns and their children, no
// compression; the body's length) padded to 8 bytes, then the body, each
// buffer padded to 8 bytes.
//
// The stream is byte for byte the one arrow-go's IPC writer makes of the
// same arrays (ipc.GetRecordBatchPayload, which the tests keep as the
// reference): the flatbuffer is built by the same calls in the same order,
// and the buffers are those arrow-go sends. A validity bitmap is empty when
// the array has no nulls, and zeros padded to 64 bytes when every value is
// null; otherwise it is the column's bitmap, as are the values' buffers,
// none longer than its values.
//
// Going without arrow-go's writer spares, per answer, an array and its
// buffer headers per column, the record batch, and the payload's
// buffers: what the encoder keeps between answers is all it writes from.

// The values of the Message flatbuffer fields written.
const (
	// ipcContinuation opens every encapsulated message.
	ipcContinuation = 0xFFFFFFFF
	// ipcMetadataV5 is MetadataVersion.V5.
	ipcMetadataV5 = 4
	// ipcHeaderRecordBatch is MessageHeader.RecordBatch.
	ipcHeaderRecordBatch = 3
	// ipcAllNullAlignment is the size arrow-go pads the zeroed validity
	// bitmap of an array of nulls only to.
	ipcAllNullAlignment = 64
)

// The field indexes of the RecordBatch and Message flatbuffer tables
// (format/Message.fbs), each of 5 fields.
const (
	fbRecordBatchFields  = 5
	fbRecordBatchLength  = 0
	fbRecordBatchNodes   = 1
	fbRecordBatchBuffers = 2

	fbMessageFields     = 5
	fbMessageVersion    = 0
	fbMessageHeaderType = 1
	fbMessageHeader     = 2
	fbMessageBodyLength = 3
)

// ipcNode is a FieldNode of a record batch: an array's length and null
// count.
type ipcNode struct{ length, nulls int64 }

// ipcBuffer is a buffer of a record batch's body: b, then zeros up to n
// bytes.
type ipcBuffer struct {
	b []byte
	n int
}

// bytesBuffer returns the body buffer of b.
func bytesBuffer(b []byte) ipcBuffer { return ipcBuffer{b: b, n: len(b)} }

// padded8 returns n rounded up to a multiple of 8.
func padded8(n int) int { return (n + 7) &^ 7 }

// recordBatchWriter writes record batch messages, keeping its flatbuffer
// builder and the nodes and buffers of the last between messages.
type recordBatchWriter struct {
	fb    *flatbuffers.Builder
	nodes []ipcNode
	bufs  []ipcBuffer
}

// writeRecordBatch writes the record batch message of e's columns, rows
// long, and its body.
func (e *arrowEncoder) writeRecordBatch(sink *byteSink, rows int) error {
	w := &e.batch
	w.nodes, w.bufs = w.nodes[:0], w.bufs[:0]
	for i := range e.columns {
		var err error
		if w.nodes, w.bufs, err = e.columns[i].layout(w.nodes, w.bufs); err != nil {
			return fmt.Errorf("%s: %w", e.fields[i].Name, err)
		}
	}
	body := 0
	for _, b := range w.bufs {
		body += padded8(b.n)
	}
	meta := w.message(int64(rows), int64(body))
	metaLen := padded8(len(meta))

	out := slices.Grow(sink.b, 8+metaLen+body+len(arrowEOS))
	out = binary.LittleEndian.AppendUint32(out, ipcContinuation)
	out = binary.LittleEndian.AppendUint32(out, uint32(metaLen))
	out = append(out, meta...)
	out = appendZeros(out, metaLen-len(meta))
	for _, b := range w.bufs {
		out = append(out, b.b...)
		out = appendZeros(out, padded8(b.n)-len(b.b))
	}
	sink.b = out
	return nil
}

// message returns the Message flatbuffer of a record batch of rows rows
// and a body of bodyLen bytes, w's nodes and buffers, built as arrow-go
// builds it (recordToFB, writeMessageFB). The bytes are the builder's:
// they are good until the next message.
func (w *recordBatchWriter) message(rows, bodyLen int64) []byte {
	if w.fb == nil {
		w.fb = flatbuffers.NewBuilder(1024)
	}
	b := w.fb
	b.Reset()
	// Vectors of structs are built back to front.
	b.StartVector(16, len(w.nodes), 8)
	for i := len(w.nodes) - 1; i >= 0; i-- {
		b.Prep(8, 16)
		b.PrependInt64(w.nodes[i].nulls)
		b.PrependInt64(w.nodes[i].length)
	}
	nodes := b.EndVector(len(w.nodes))
	b.StartVector(16, len(w.bufs), 8)
	off := bodyLen
	for i := len(w.bufs) - 1; i >= 0; i-- {
		off -= int64(padded8(w.bufs[i].n))
		b.Prep(8, 16)
		b.PrependInt64(int64(w.bufs[i].n))
		b.PrependInt64(off)
	}
	bufs := b.EndVector(len(w.bufs))

	b.StartObject(fbRecordBatchFields)
	b.PrependInt64Slot(fbRecordBatchLength, rows, 0)
	b.PrependUOffsetTSlot(fbRecordBatchNodes, nodes, 0)
	b.PrependUOffsetTSlot(fbRecordBatchBuffers, bufs, 0)
	batch := b.EndObject()

	b.StartObject(fbMessageFields)
	b.PrependInt16Slot(fbMessageVersion, ipcMetadataV5, 0)
	b.PrependByteSlot(fbMessageHeaderType, ipcHeaderRecordBatch, 0)
	b.PrependUOffsetTSlot(fbMessageHeader, batch, 0)
	b.PrependInt64Slot(fbMessageBodyLength, bodyLen, 0)
	b.Finish(b.EndObject())
	return b.FinishedBytes()
}

// appendZeros appends n zero bytes to b.
func appendZeros(b []byte, n int) []byte {
	if n <= 0 {
		return b
	}
	b = slices.Grow(b, n)
	l := len(b)
	b = b[:l+n]
	clear(b[l:])
	return b
}

// layout appends the field nodes and body buffers of c's array, its
// children's after its own, to nodes and bufs. It fails when c holds more
// bytes than the type's 32-bit offsets reach.
func (c *arrowColumn) layout(nodes []ipcNode, bufs []ipcBuffer) ([]ipcNode, []ipcBuffer, error) {
	if len(c.data) > math.MaxInt32 {
		return nodes, bufs, fmt.Errorf("%d bytes of values, over the %d an Arrow %s holds", len(c.data), math.MaxInt32, c.dt)
	}
	nodes = append(nodes, ipcNode{length: int64(c.n), nulls: int64(c.nulls)})
	switch c.nulls {
	case 0:
		bufs = append(bufs, ipcBuffer{})
	case c.n:
		bufs = append(bufs, ipcBuffer{n: (len(c.valid) + ipcAllNullAlignment - 1) &^ (ipcAllNullAlignment - 1)})
	default:
		bufs = append(bufs, bytesBuffer(c.valid))
	}
	switch c.typ.Kind {
	case feature.KindInt, feature.KindDatetime:
		bufs = append(bufs, bytesBuffer(arrow.Int64Traits.CastToBytes(c.i64)))
	case feature.KindFloat:
		bufs = append(bufs, bytesBuffer(arrow.Float64Traits.CastToBytes(c.f64)))
	case feature.KindBool:
		bufs = append(bufs, bytesBuffer(c.bits))
	case feature.KindString, feature.KindBytes, feature.KindJSON:
		bufs = append(bufs, bytesBuffer(arrow.Int32Traits.CastToBytes(c.offs)), bytesBuffer(c.data))
	case feature.KindList:
		bufs = append(bufs, bytesBuffer(arrow.Int32Traits.CastToBytes(c.offs)))
		return c.child.layout(nodes, bufs)
	case feature.KindVector:
		// The elements: a float32 array without nulls, Dim a row.
		nodes = append(nodes, ipcNode{length: int64(len(c.f32))})
		bufs = append(bufs, ipcBuffer{}, bytesBuffer(arrow.Float32Traits.CastToBytes(c.f32)))
	}
	return nodes, bufs, nil
}
