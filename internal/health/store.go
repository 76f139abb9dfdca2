package health

import (
	"context"
	"errors"
	"fmt"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/store"
)

// ProbeKey is the reserved primary key the store probe reads: the empty
// key, which no upload can create (the API refuses an empty primary key,
// and every store refuses to write one), so that a probe's read always
// finds nothing and never returns an entity's data.
const ProbeKey = ""

// Reader is the online store as the store probe reads it; every store
// implements it (it is query.Store).
type Reader interface {
	Read(ctx context.Context, ns *feature.Namespace, keys []string, feats []*feature.Feature) ([]store.Row, error)
}

// StoreProbe returns a probe reading ProbeKey through r, in the first
// namespace of reg, with that namespace's first feature other than its
// primary key: one real round trip to the store, which answers that the
// key is absent. A read that answers absent is a success; an error is a
// failure.
//
// Give it the store itself, not a cache or a Bloom filter in front of it,
// which could answer without asking the store.
func StoreProbe(r Reader, reg *feature.Registry) (func(ctx context.Context) error, error) {
	for _, ns := range reg.Namespaces() {
		for _, f := range ns.Features {
			if f == ns.PrimaryKey {
				continue
			}
			feats := []*feature.Feature{f}
			keys := []string{ProbeKey}
			return func(ctx context.Context) error {
				rows, err := r.Read(ctx, ns, keys, feats)
				if err != nil {
					return err
				}
				if len(rows) != 1 {
					return fmt.Errorf("health: store answered %d rows for 1 key", len(rows))
				}
				return nil
			}, nil
		}
	}
	return nil, errors.New("health: store probe: the registry has no feature other than primary keys to read")
}
