package embedded

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/store"
)

// entityFormat is the first byte of every encoded entity. A new layout
// takes a new number; decoders refuse numbers they do not know.
const entityFormat byte = 1

// entry is one stored feature value of an entity.
type entry struct {
	// id is the feature's short id (see ids.go).
	id uint64
	// micros is the observed-at, in microseconds since the Unix epoch.
	micros int64
	// value is the value in the feature codec's encoding. After
	// decodeEntity it aliases the decoded buffer.
	value []byte
}

// appendEntity appends the encoding of es, which must be sorted by id with
// no id repeated:
//
//	format byte (1)
//	per entry: uvarint id, varint observed-at µs, uvarint length, value
//
// The length prefix lets a read skip the values it was not asked for
// without decoding them.
func appendEntity(b []byte, es []entry) []byte {
	b = append(b, entityFormat)
	for _, e := range es {
		b = binary.AppendUvarint(b, e.id)
		b = binary.AppendVarint(b, e.micros)
		b = binary.AppendUvarint(b, uint64(len(e.value)))
		b = append(b, e.value...)
	}
	return b
}

// errCorruptEntity is wrapped by every entity decoding error.
var errCorruptEntity = errors.New("corrupt entity")

// decodeEntity appends the entries encoded in b to es. The values are not
// decoded and alias b. It never panics.
func decodeEntity(b []byte, es []entry) ([]entry, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty", errCorruptEntity)
	}
	if b[0] != entityFormat {
		return nil, fmt.Errorf("%w: unknown format %d", errCorruptEntity, b[0])
	}
	b = b[1:]
	var prev uint64
	for len(b) > 0 {
		id, k := binary.Uvarint(b)
		if k <= 0 || id <= prev {
			return nil, fmt.Errorf("%w: bad feature id after %d", errCorruptEntity, prev)
		}
		b = b[k:]
		micros, k := binary.Varint(b)
		if k <= 0 {
			return nil, fmt.Errorf("%w: feature id %d: bad observed-at", errCorruptEntity, id)
		}
		b = b[k:]
		n, k := binary.Uvarint(b)
		if k <= 0 || n == 0 || n > uint64(len(b)-k) {
			return nil, fmt.Errorf("%w: feature id %d: bad value length", errCorruptEntity, id)
		}
		b = b[k:]
		es = append(es, entry{id: id, micros: micros, value: b[:n:n]})
		b = b[n:]
		prev = id
	}
	return es, nil
}

// cell decodes e's value as a value of type t (see feature.DecodeValueOf
// for its errors).
func (e entry) cell(t feature.Type) (store.Cell, error) {
	v, err := feature.DecodeValueOf(e.value, t)
	if err != nil {
		return store.Cell{}, err
	}
	return store.Cell{Found: true, Value: v, ObservedAt: time.UnixMicro(e.micros).UTC()}, nil
}

// merge applies the incoming entries to the stored ones, newest-wins per
// feature: an incoming entry replaces a stored one of the same id unless it
// is older. Rewriting an identical entry (a replayed write) is not a change. Both inputs are sorted by id; incoming ids may repeat, in which
// case later ones are applied after earlier ones. It returns the merged
// entries and whether anything changed.
func merge(stored, incoming []entry) ([]entry, bool) {
	out := make([]entry, 0, len(stored)+len(incoming))
	changed := false
	i := 0
	for _, in := range incoming {
		for i < len(stored) && stored[i].id < in.id {
			out = append(out, stored[i])
			i++
		}
		if i < len(stored) && stored[i].id == in.id {
			out = append(out, stored[i])
			i++
		}
		if n := len(out); n > 0 && out[n-1].id == in.id {
			if last := out[n-1]; in.micros > last.micros ||
				in.micros == last.micros && !bytes.Equal(in.value, last.value) {
				out[n-1] = in
				changed = true
			}
			continue
		}
		out = append(out, in)
		changed = true
	}
	out = append(out, stored[i:]...)
	return out, changed
}
