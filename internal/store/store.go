// Package store holds the types shared by every online store backend and by
// the components that use them. The interfaces themselves are declared where
// they are consumed (internal/query reads, internal/writer writes), except
// BucketStore, which both use for the buckets of windowed features;
// storetest holds the conformance suite every backend passes.
//
// Semantics every backend provides:
//
//   - An entity is a (namespace, key) pair; its features are stored together.
//   - Each stored feature value carries the time it was observed. A write
//     replaces a stored value only when its observed-at is not older than the
//     stored one; this is decided per feature, never per entity, and is
//     atomic with respect to concurrent writers of the same entity.
//   - An explicit null is a stored value like any other: it has an
//     observed-at and is reported as found.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cairnfs/cairn/internal/feature"
)

// Value is one feature value to write.
type Value struct {
	Feature *feature.Feature
	// Value is canonical for Feature.Type (see package feature), or nil for
	// an explicit null.
	Value any
	// ObservedAt orders writes of the same feature: the newest wins.
	ObservedAt time.Time
}

// EntityWrite is the set of values to write to one entity.
type EntityWrite struct {
	Namespace *feature.Namespace
	// Key is the canonical primary key (see feature.ParseKey).
	Key    string
	Values []Value
}

// Check reports why w cannot be stored, if it cannot: no namespace, a key
// empty or over feature.MaxKeyLen, a value without a feature, of another
// namespace, or not canonical for its feature's type. Backends reject such
// a write (wrapping ErrRejected) before writing anything.
func (w EntityWrite) Check() error {
	if w.Namespace == nil {
		return fmt.Errorf("entity %q has no namespace", w.Key)
	}
	if w.Key == "" || len(w.Key) > feature.MaxKeyLen {
		return fmt.Errorf("%s key of %d bytes, want 1 to %d", w.Namespace.Name, len(w.Key), feature.MaxKeyLen)
	}
	for _, v := range w.Values {
		if v.Feature == nil {
			return fmt.Errorf("%s %q: value without a feature", w.Namespace.Name, w.Key)
		}
		if v.Feature.Namespace == nil || v.Feature.Namespace.Name != w.Namespace.Name {
			return fmt.Errorf("%s %q: feature %s belongs to another namespace", w.Namespace.Name, w.Key, v.Feature.FQN)
		}
		if err := feature.Check(v.Feature.Type, v.Value); err != nil {
			return fmt.Errorf("%s %q: %s: %w", w.Namespace.Name, w.Key, v.Feature.FQN, err)
		}
	}
	return nil
}

// Cell is what a read found for one feature of one entity.
type Cell struct {
	// Found reports whether a value (possibly null) is stored.
	Found bool
	// CacheHit reports that the cell was answered by the query server's
	// cache (package cache) rather than by a read of the store. Backends
	// never set it.
	CacheHit bool
	// Value is the stored value, canonical for the feature's type; nil when
	// not found or stored as null.
	Value any
	// ObservedAt is the stored value's observed-at; zero when not found.
	ObservedAt time.Time
}

// Row is what a read found for one entity.
type Row struct {
	// Found reports whether the entity has any stored value at all.
	Found bool
	// Cells is aligned with the features requested.
	Cells []Cell
}

// ResetRows returns rows resized to n rows of m zero cells each, reusing
// its memory where it is large enough: readers that fill rows the caller
// owns (the cache's ReadInto, the Redis store's) start from it.
func ResetRows(rows []Row, n, m int) []Row {
	if cap(rows) < n {
		rows = make([]Row, n)
	}
	rows = rows[:n]
	var spare []Cell // allocated once for every row lacking room
	for i := range rows {
		cells := rows[i].Cells
		if cap(cells) < m {
			if len(spare) < m {
				spare = make([]Cell, (n-i)*m)
			}
			cells, spare = spare[:m:m], spare[m:]
		} else {
			cells = cells[:m]
			clear(cells)
		}
		rows[i] = Row{Cells: cells}
	}
	return rows
}

// ErrRejected is wrapped by write errors that retrying cannot cure, such as
// an entity too large for the backend. The writer sets such writes aside
// instead of retrying them forever.
var ErrRejected = errors.New("store rejected the write")

// Coalesce merges writes to the same entity, keeping the newest value of
// each feature (on equal observed-at, the later write in the slice wins). The
// result has one EntityWrite per entity, in order of first appearance.
func Coalesce(writes []EntityWrite) []EntityWrite {
	type entityKey struct{ ns, key string }
	index := make(map[entityKey]int, len(writes))
	out := make([]EntityWrite, 0, len(writes))
	slots := make([]map[*feature.Feature]int, 0, len(writes))
	for _, w := range writes {
		k := entityKey{w.Namespace.Name, w.Key}
		i, ok := index[k]
		if !ok {
			i = len(out)
			index[k] = i
			out = append(out, EntityWrite{Namespace: w.Namespace, Key: w.Key})
			slots = append(slots, map[*feature.Feature]int{})
		}
		for _, v := range w.Values {
			j, seen := slots[i][v.Feature]
			if !seen {
				slots[i][v.Feature] = len(out[i].Values)
				out[i].Values = append(out[i].Values, v)
				continue
			}
			if !v.ObservedAt.Before(out[i].Values[j].ObservedAt) {
				out[i].Values[j] = v
			}
		}
	}
	return out
}

// BucketKey names one bucket of one entity's windowed feature: the feature
// is the windowed feature itself (feature.Feature with Window set; for your
// tests any non-key feature of the namespace will do), Start the bucket's
// start (UTC, whole seconds).
type BucketKey struct {
	Namespace *feature.Namespace
	Key       string
	Feature   *feature.Feature
	Start     time.Time
}

// Bucket is a stored bucket: its state, opaque to the store, and its
// version, 0 when the bucket is not stored.
type Bucket struct {
	Start   time.Time
	State   []byte
	Version int64
}

// BucketStore keeps the buckets of windowed features.
type BucketStore interface {
	// GetBucket reads one bucket (Version 0 and nil State when absent).
	GetBucket(ctx context.Context, k BucketKey) (Bucket, error)
	// PutBucket stores state in bucket k if its stored version is expect
	// (0: the bucket must not exist), giving it version expect+1, with
	// the bucket expiring at expireAt (the store's TTL mechanism). ok is
	// false, with no error, when the stored version is not expect (another
	// writer got there first); nothing is written then.
	PutBucket(ctx context.Context, k BucketKey, state []byte, expect int64, expireAt time.Time) (ok bool, err error)
	// ReadBuckets returns the stored buckets of one entity's windowed
	// feature whose starts are in [from, to], ordered by start. Expired
	// buckets may or may not be returned (DynamoDB's TTL deletes late):
	// callers filter by start.
	ReadBuckets(ctx context.Context, ns *feature.Namespace, key string, f *feature.Feature, from, to time.Time) ([]Bucket, error)
}

// Bucket starts the stores accept: whole seconds from the Unix epoch to the
// end of the year 9999, so that every store can keep a start as a
// fixed-width count of seconds whose order is the order of time.
var (
	MinBucketStart = time.Unix(0, 0).UTC()
	MaxBucketStart = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
)

// Check reports why k cannot name a stored bucket, if it cannot: no
// namespace, a key empty or over feature.MaxKeyLen, no feature or one of
// another namespace, or a start that is not whole seconds within
// [MinBucketStart, MaxBucketStart]. Backends reject such a key (wrapping
// ErrRejected) before reading or writing anything.
func (k BucketKey) Check() error {
	if k.Namespace == nil {
		return fmt.Errorf("bucket of entity %q has no namespace", k.Key)
	}
	if k.Key == "" || len(k.Key) > feature.MaxKeyLen {
		return fmt.Errorf("bucket of %s key of %d bytes, want 1 to %d", k.Namespace.Name, len(k.Key), feature.MaxKeyLen)
	}
	if k.Feature == nil {
		return fmt.Errorf("bucket of %s %q has no feature", k.Namespace.Name, k.Key)
	}
	if k.Feature.Namespace == nil || k.Feature.Namespace.Name != k.Namespace.Name {
		return fmt.Errorf("bucket of %s %q: feature %s belongs to another namespace", k.Namespace.Name, k.Key, k.Feature.FQN)
	}
	if k.Start.Nanosecond() != 0 || k.Start.Before(MinBucketStart) || k.Start.After(MaxBucketStart) {
		return fmt.Errorf("bucket of %s %q %s: start %s, want whole seconds from %s to %s", k.Namespace.Name, k.Key, k.Feature.FQN,
			k.Start.UTC().Format(time.RFC3339Nano), MinBucketStart.Format(time.RFC3339), MaxBucketStart.Format(time.RFC3339))
	}
	return nil
}

// BucketRange returns the whole-second bucket starts that [from, to] holds,
// within [MinBucketStart, MaxBucketStart]: lo is from rounded up, hi is to
// rounded down. ok is false when the range holds no start.
func BucketRange(from, to time.Time) (lo, hi time.Time, ok bool) {
	lo, hi = from.UTC(), to.UTC()
	if lo.Before(MinBucketStart) {
		lo = MinBucketStart
	}
	if hi.After(MaxBucketStart) {
		hi = MaxBucketStart
	}
	if t := lo.Truncate(time.Second); t.Before(lo) {
		lo = t.Add(time.Second)
	}
	hi = hi.Truncate(time.Second)
	return lo, hi, !hi.Before(lo)
}
