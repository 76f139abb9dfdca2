package embedded

import (
	"context"
	"fmt"

	"github.com/cockroachdb/pebble"

	"github.com/cairnfs/cairn/internal/feature"
)

// ScanKeys calls fn with the key of every entity of ns stored when the scan
// starts (it reads a consistent snapshot), in key order. It stops at the
// first error fn returns.
func (s *Store) ScanKeys(ctx context.Context, ns *feature.Namespace, fn func(key string) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	prefix := entityKey(ns.Name, "")
	upper := append([]byte{}, prefix...)
	upper[len(upper)-1]++ // the NUL separator becomes 0x01: just past every key of ns
	it, err := s.db.pdb.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: upper})
	if err != nil {
		return fmt.Errorf("embedded: scan %s: %w", ns.Name, err)
	}
	defer it.Close()
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		if n++; n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("embedded: scan %s: %w", ns.Name, err)
			}
		}
		if err := fn(string(it.Key()[len(prefix):])); err != nil {
			return err
		}
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("embedded: scan %s: %w", ns.Name, err)
	}
	return nil
}
