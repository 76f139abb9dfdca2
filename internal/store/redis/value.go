package redis

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/store"
)

// observedAtLen is the length of the observed-at that starts every stored
// feature value.
const observedAtLen = 8

// signBit flips the sign of observed-at microseconds so that the 8 bytes,
// big-endian, sort in the order of the times they stand for (bytewise
// comparison, as the write script does, is then comparison of times).
const signBit = 1 << 63

// appendField appends the stored form of one feature value: its observed-at
// in microseconds since the Unix epoch, as 8 bytes big-endian with the sign
// bit flipped, then the value in the codec of package feature.
func appendField(b []byte, v any, observedAt time.Time) ([]byte, error) {
	b = binary.BigEndian.AppendUint64(b, uint64(observedAt.UnixMicro())^signBit)
	return feature.AppendValue(b, v)
}

// decodeField decodes a stored feature value as a value of type t (see
// feature.DecodeValueOf for its errors; a field too short for its
// observed-at is corrupt).
func decodeField(b []byte, t feature.Type) (store.Cell, error) {
	var c store.Cell
	err := decodeFieldInto(&c, b, t, nil)
	return c, err
}

// decodeFieldInto is decodeField into *c, a cleared cell, which it leaves
// as it is on an error, with the bytes of its strings from strs (see
// feature.DecodeValueOfIn).
func decodeFieldInto(c *store.Cell, b []byte, t feature.Type, strs *feature.StringAlloc) error {
	if len(b) <= observedAtLen {
		return fmt.Errorf("%w: %d bytes, too short for a field", feature.ErrCorrupt, len(b))
	}
	micros := int64(binary.BigEndian.Uint64(b) ^ signBit)
	v, err := feature.DecodeValueOfIn(b[observedAtLen:], t, strs)
	if err != nil {
		return err
	}
	c.Found, c.Value, c.ObservedAt = true, v, time.UnixMicro(micros).UTC()
	return nil
}
