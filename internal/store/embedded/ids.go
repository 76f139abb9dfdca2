package embedded

import (
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/cockroachdb/pebble"
)

// Feature ids are stored under idPrefix + FQN, each a uvarint. An id is
// assigned the first time a feature is written, durably and before any
// entity uses it, so the largest stored id bounds every id in use and ids
// are never reused.
const idPrefix = "m/f/"

// ids maps feature FQNs to their short ids.
type ids struct {
	// assign serializes assigning new ids; held while writing them.
	assign sync.Mutex
	mu     struct {
		sync.RWMutex
		byFQN map[string]uint64
		next  uint64
	}
}

// loadIDs reads every assigned id from db.
func loadIDs(db *pebble.DB) (*ids, error) {
	m := &ids{}
	m.mu.byFQN = map[string]uint64{}
	m.mu.next = 1
	it, err := db.NewIter(&pebble.IterOptions{
		LowerBound: []byte(idPrefix),
		UpperBound: prefixEnd([]byte(idPrefix)),
	})
	if err != nil {
		return nil, fmt.Errorf("load feature ids: %w", err)
	}
	for it.First(); it.Valid(); it.Next() {
		fqn := string(it.Key()[len(idPrefix):])
		id, k := binary.Uvarint(it.Value())
		if k <= 0 || k != len(it.Value()) || id == 0 {
			_ = it.Close()
			return nil, fmt.Errorf("load feature ids: %q: %w: bad id", fqn, errCorruptEntity)
		}
		m.mu.byFQN[fqn] = id
		m.mu.next = max(m.mu.next, id+1)
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("load feature ids: %w", err)
	}
	return m, nil
}

// lookup returns the id of fqn, if one was ever assigned.
func (m *ids) lookup(fqn string) (uint64, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	id, ok := m.mu.byFQN[fqn]
	return id, ok
}

// ensure returns the ids of fqns, assigning and durably storing ids for
// the ones that have none yet.
func (m *ids) ensure(db *pebble.DB, fqns []string) ([]uint64, error) {
	out := make([]uint64, len(fqns))
	missing := false
	m.mu.RLock()
	for i, fqn := range fqns {
		id, ok := m.mu.byFQN[fqn]
		out[i] = id
		missing = missing || !ok
	}
	m.mu.RUnlock()
	if !missing {
		return out, nil
	}

	m.assign.Lock()
	defer m.assign.Unlock()
	m.mu.RLock()
	next := m.mu.next
	fresh := map[string]uint64{}
	for i, fqn := range fqns {
		if id, ok := m.mu.byFQN[fqn]; ok {
			out[i] = id
			continue
		}
		if id, ok := fresh[fqn]; ok {
			out[i] = id
			continue
		}
		fresh[fqn] = next
		out[i] = next
		next++
	}
	m.mu.RUnlock()
	if len(fresh) == 0 {
		return out, nil
	}
	b := db.NewBatch()
	defer b.Close()
	for fqn, id := range fresh {
		if err := b.Set([]byte(idPrefix+fqn), binary.AppendUvarint(nil, id), nil); err != nil {
			return nil, fmt.Errorf("assign feature ids: %w", err)
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return nil, fmt.Errorf("assign feature ids: %w", err)
	}
	m.mu.Lock()
	for fqn, id := range fresh {
		m.mu.byFQN[fqn] = id
	}
	m.mu.next = next
	m.mu.Unlock()
	return out, nil
}

// prefixEnd returns the smallest key greater than every key with prefix p.
func prefixEnd(p []byte) []byte {
	end := append([]byte{}, p...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil
}
