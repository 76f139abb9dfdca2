package dynamo

// Capacity units, as DynamoDB charges them (computed here because local
// servers report fixed numbers, and so that the metrics need no
// ReturnConsumedCapacity round trip):
//
//   - a read costs one unit per 4 KB of item, rounded up per item (a Query
//     rounds its total instead), at least one; half that when eventually
//     consistent, twice when transactional. Reading an absent item costs
//     the minimum.
//   - a write costs one unit per 1 KB of item, rounded up per item, at
//     least one; twice that in a transaction. A write whose condition fails
//     is charged all the same.
//
// Item sizes are those of ItemSize. Reads are counted from the items
// returned, which are projected to the requested features: DynamoDB charges
// for the whole item, so the count is exact for items under 4 KB (cairn's
// usual entity) and a lower bound beyond. Updates are counted from the
// attributes written (with the keys): DynamoDB charges the larger of the
// item before and after the update, so the count is exact when a write
// carries every feature of the entity and a lower bound otherwise.

// Capacity unit sizes: a read unit covers 4 KB of item, a write unit 1 KB.
const (
	readUnitBytes  = 4 << 10
	writeUnitBytes = 1 << 10
)

// consistency is the kind of a read, which decides its price.
type consistency int

const (
	eventual      consistency = iota // half a unit per 4 KB
	strong                           // one unit per 4 KB
	transactional                    // two units per 4 KB
)

// readUnits returns the read units of reading one item of size bytes (or
// of a Query returning size bytes in all).
func readUnits(size int, c consistency) float64 {
	units := float64(max(1, (size+readUnitBytes-1)/readUnitBytes))
	switch c {
	case eventual:
		return units / 2
	case transactional:
		return units * 2
	}
	return units
}

// writeUnits returns the write units of writing one item of size bytes.
func writeUnits(size int, inTransaction bool) int {
	units := max(1, (size+writeUnitBytes-1)/writeUnitBytes)
	if inTransaction {
		return 2 * units
	}
	return units
}
