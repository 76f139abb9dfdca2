package dynamo

import (
	"fmt"
	"strconv"

	"github.com/cairnfs/cairn/internal/store"
)

// EntityItemSize returns the size, as [ItemSize] counts it, of the item
// that a Write of w alone creates in an empty table: the item Write builds
// (keys, one attribute per feature value under its short id, one for its
// observed-at, and the TTL attribute when the namespace's values go stale),
// with the short ids of ids, which must hold every feature of w. It is
// what DynamoDB charges capacity units for when the item is read or
// written whole, and what capacity planning starts from.
func EntityItemSize(w store.EntityWrite, ids map[string]string) (int, error) {
	e, err := prepare(w)
	if err != nil {
		return 0, err
	}
	for i := range e.feats {
		id, ok := ids[e.feats[i].fqn]
		if !ok {
			return 0, fmt.Errorf("dynamo: entity %s: feature %s has no short id", e, e.feats[i].fqn)
		}
		e.feats[i].id = id
	}
	return ItemSize(e.item(e.feats)), nil
}

// ShortIDs returns the short ids a fresh table hands out to fqns when they
// are first written in this order: the base-36 text of 1, 2, 3, ..., skipping
// those that are not valid ids.
func ShortIDs(fqns []string) map[string]string {
	ids := make(map[string]string, len(fqns))
	num := int64(0)
	for _, fqn := range fqns {
		for {
			num++
			if id := strconv.FormatInt(num, 36); validID(id) {
				ids[fqn] = id
				break
			}
		}
	}
	return ids
}

// ReadUnits returns the read units DynamoDB charges for reading one item of
// size bytes with GetItem or in a BatchGetItem (which rounds each item on
// its own): one per 4 KB, rounded up, at least one; half that when the read
// is eventually consistent (consistent false), as cairn's reads are.
func ReadUnits(size int, consistent bool) float64 {
	if consistent {
		return readUnits(size, strong)
	}
	return readUnits(size, eventual)
}

// WriteUnits returns the write units DynamoDB charges for writing one item
// of size bytes: one per 1 KB, rounded up, at least one; twice that inside a
// transaction (transactional true), as cairn's bulk writes are when
// DYNAMODB_CHECK_TS_FOR_BULK_WRITES is true.
func WriteUnits(size int, transactional bool) int { return writeUnits(size, transactional) }

// ReadUnitBytes and WriteUnitBytes are the item bytes one read unit and one
// write unit cover.
const (
	ReadUnitBytes  = readUnitBytes
	WriteUnitBytes = writeUnitBytes
)
