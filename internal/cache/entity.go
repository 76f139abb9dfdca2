package cache

import (
	"encoding/json"
	"slices"
	"time"
	"unsafe"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/store"
)

// entity is what the cache knows of one entity: either that it is not
// stored at all (negUntil is set), or the cells of the features read so
// far, each with its own expiry. Times are ticks of the cache's clock
// (see Cache.ticks). An entity is only used with its space's lock held.
type entity struct {
	// negUntil, when non-zero, is when the answer "not stored" expires;
	// slots is then empty.
	negUntil int64
	// until is the latest expiry of anything recorded, so the entity is
	// worthless once it has passed.
	until int64
	// slots holds one cell per cached feature, in the order features were
	// first cached, which is usually the order queries ask for them.
	slots []slot
	// size is the entity's estimated memory, as added to space.mu.bytes.
	size int64
}

// slot is one cached feature of an entity.
type slot struct {
	feat *feature.Feature
	// until is when the cell expires: the time of the store read that
	// answered it plus the namespace's TTL.
	until int64
	// cell is the store's answer, with CacheHit set.
	cell store.Cell
}

// find returns the index of f's slot, or -1. The search starts at from
// (just after the previous feature found) and wraps around, so a query
// asking for features in the order they were cached costs one comparison
// per feature.
func (e *entity) find(f *feature.Feature, from int) int {
	for i := from; i < len(e.slots); i++ {
		if e.slots[i].feat == f {
			return i
		}
	}
	for i := 0; i < from && i < len(e.slots); i++ {
		if e.slots[i].feat == f {
			return i
		}
	}
	return -1
}

// update records the answer row to a store read of feats made at readAt,
// valid until until. The newest read wins: an answer older than what e
// already holds about the entity's existence is ignored, and a feature's
// cell is replaced only by one read no earlier. A not-stored feature of a
// stored entity is kept only if cacheMisses. update reports whether e holds
// anything to serve afterwards.
func (e *entity) update(feats []*feature.Feature, row store.Row, readAt, until int64, cacheMisses bool) bool {
	if !row.Found {
		if e.negUntil == 0 && e.until > until {
			// A later read found the entity.
			return e.live(readAt)
		}
		clear(e.slots)
		e.slots = e.slots[:0]
		e.negUntil = max(e.negUntil, until)
		e.until = max(e.until, until)
		return true
	}
	if e.negUntil > until {
		// A later read found nothing.
		return e.live(readAt)
	}
	e.negUntil = 0
	// Drop the expired slots first, so that an entity read again and again
	// for changing features does not grow without bound.
	k := 0
	for _, s := range e.slots {
		if s.until > readAt {
			e.slots[k] = s
			k++
		}
	}
	clear(e.slots[k:])
	e.slots = e.slots[:k]
	// Make room for the new features at once: slots hold most of an
	// entity's memory, and growing by appending would leave up to half
	// of it unused.
	added := 0
	for j, f := range feats {
		if (row.Cells[j].Found || cacheMisses) && e.find(f, 0) < 0 {
			added++
		}
	}
	e.slots = slices.Grow(e.slots, added)
	next := 0
	for j, f := range feats {
		c := row.Cells[j]
		if !c.Found && !cacheMisses {
			continue
		}
		c.CacheHit = true
		i := e.find(f, next)
		switch {
		case i < 0:
			e.slots = append(e.slots, slot{feat: f, until: until, cell: c})
			next = len(e.slots)
		case e.slots[i].until <= until:
			e.slots[i] = slot{feat: f, until: until, cell: c}
			next = i + 1
		}
	}
	e.until = max(e.until, until)
	return len(e.slots) > 0
}

// live reports whether e has anything not yet expired at now.
func (e *entity) live(now int64) bool {
	return e.until > now && (e.negUntil > 0 || len(e.slots) > 0)
}

// Memory estimates, in bytes. entryOverhead is what the LRU spends per
// entity besides the entity itself: its list element (pointers, key,
// value and the expiry fields of the library's shared element type) and
// its share of the map's slots and control bytes.
const (
	entityBytes   = int64(unsafe.Sizeof(entity{}))
	slotBytes     = int64(unsafe.Sizeof(slot{}))
	entryOverhead = 80 + 64
)

// estimate returns the memory held for an entity cached under key.
func (e *entity) estimate(key string) int64 {
	n := entryOverhead + entityBytes + int64(len(key)) + int64(cap(e.slots))*slotBytes
	for _, s := range e.slots {
		n += valueBytes(s.cell.Value)
	}
	return n
}

// valueBytes estimates the memory a canonical feature value holds beyond
// the interface that refers to it.
func valueBytes(v any) int64 {
	switch v := v.(type) {
	case nil, bool:
		return 0
	case int64, float64:
		return 8
	case string:
		return 16 + int64(len(v))
	case json.Number:
		return 16 + int64(len(v))
	case []byte:
		return 24 + int64(cap(v))
	case time.Time:
		return 24
	case []float32:
		return 24 + 4*int64(cap(v))
	case []any:
		n := 24 + 16*int64(cap(v))
		for _, x := range v {
			n += valueBytes(x)
		}
		return n
	case map[string]any:
		// A map header and slots of a key and a value header, plus a
		// control byte, for at least 8 entries and with room to spare.
		n := 48 + 33*max(8, int64(len(v))*8/7)
		for k, x := range v {
			n += int64(len(k)) + valueBytes(x)
		}
		return n
	}
	return 16
}
