package embedded

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"time"

	"github.com/cockroachdb/pebble"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/store"
)

// Store keeps the buckets of windowed features.
var _ store.BucketStore = (*Store)(nil)

// Buckets of windowed features are stored under bucketPrefix, one Pebble
// key per bucket:
//
//	b/<ns>\x00<uvarint len(key)><key><feature id, 8 bytes><start, 8 bytes>
//
// The entity key is length-prefixed (it may hold any byte, NUL included),
// the feature id and the start (seconds since the Unix epoch, never
// negative) are big-endian, so the buckets of one entity's feature are one
// contiguous range, in order of start. The value is the version (8 bytes),
// the expiry (seconds since the Unix epoch, 8 bytes, two's complement),
// then the state.
const bucketPrefix = "b/"

// bucketHeader is the size of a bucket value before its state.
const bucketHeader = 16

// featurePrefix returns the key prefix of the buckets of entity key of ns
// and the feature with id id.
func featurePrefix(ns, key string, id uint64) []byte {
	b := make([]byte, 0, len(bucketPrefix)+len(ns)+1+binary.MaxVarintLen64+len(key)+16)
	b = append(b, bucketPrefix...)
	b = append(b, ns...)
	b = append(b, 0)
	b = binary.AppendUvarint(b, uint64(len(key)))
	b = append(b, key...)
	return binary.BigEndian.AppendUint64(b, id)
}

// bucketKey returns the Pebble key of the bucket starting at start under
// prefix (featurePrefix).
func bucketKey(prefix []byte, start time.Time) []byte {
	return binary.BigEndian.AppendUint64(prefix[:len(prefix):len(prefix)], uint64(start.Unix()))
}

// decodeBucket decodes a stored bucket value; ok is false when it is
// expired at now.
func decodeBucket(start time.Time, v []byte, now time.Time) (b store.Bucket, live bool, err error) {
	if len(v) < bucketHeader {
		return store.Bucket{}, false, fmt.Errorf("bucket at %s: %w: value of %d bytes", start.Format(time.RFC3339), errCorruptEntity, len(v))
	}
	if int64(binary.BigEndian.Uint64(v[8:16])) <= now.Unix() {
		return store.Bucket{}, false, nil
	}
	return store.Bucket{
		Start:   start,
		Version: int64(binary.BigEndian.Uint64(v[:8])),
		State:   append([]byte{}, v[bucketHeader:]...),
	}, true, nil
}

// GetBucket reads one bucket. An expired bucket reads as absent (Version
// 0), whether or not it has been deleted yet.
func (s *Store) GetBucket(ctx context.Context, k store.BucketKey) (store.Bucket, error) {
	if err := k.Check(); err != nil {
		return store.Bucket{}, fmt.Errorf("embedded: get bucket: %w: %w", store.ErrRejected, err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return store.Bucket{}, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return store.Bucket{}, fmt.Errorf("embedded: get bucket: %w", err)
	}
	id, ok := s.db.ids.lookup(k.Feature.FQN)
	if !ok {
		return store.Bucket{}, nil // never written
	}
	b, err := getBucket(s.db.pdb, bucketKey(featurePrefix(k.Namespace.Name, k.Key, id), k.Start), k.Start.UTC(), time.Now())
	if err != nil {
		return store.Bucket{}, fmt.Errorf("embedded: get bucket %s %q %s: %w", k.Namespace.Name, k.Key, k.Feature.FQN, err)
	}
	return b, nil
}

// getBucket reads the bucket under key from r; absent or expired at now, it
// is the zero Bucket.
func getBucket(r pebble.Reader, key []byte, start time.Time, now time.Time) (store.Bucket, error) {
	v, closer, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return store.Bucket{}, nil
	}
	if err != nil {
		return store.Bucket{}, err
	}
	defer closer.Close()
	b, _, err := decodeBucket(start, v, now)
	return b, err
}

// PutBucket stores state in bucket k if its version is expect, holding the
// lock stripe of the entity's feature from the read of the version to the
// synced commit, so that the check and the write are one atomic step within
// the process (and only one process opens a directory). An expired bucket
// counts as absent: expect 0 replaces it. Creating a bucket also deletes
// the feature's expired buckets of the entity, which is how expired buckets
// leave the disk.
func (s *Store) PutBucket(ctx context.Context, k store.BucketKey, state []byte, expect int64, expireAt time.Time) (bool, error) {
	if err := k.Check(); err != nil {
		return false, fmt.Errorf("embedded: put bucket: %w: %w", store.ErrRejected, err)
	}
	if expect < 0 {
		return false, fmt.Errorf("embedded: put bucket: %w: expected version %d, want 0 or more", store.ErrRejected, expect)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return false, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("embedded: put bucket: %w", err)
	}
	ids, err := s.db.ids.ensure(s.db.pdb, []string{k.Feature.FQN})
	if err != nil {
		return false, fmt.Errorf("embedded: put bucket %s %q %s: %w", k.Namespace.Name, k.Key, k.Feature.FQN, err)
	}
	prefix := featurePrefix(k.Namespace.Name, k.Key, ids[0])
	key := bucketKey(prefix, k.Start)
	lock := &s.db.locks[maphash.Bytes(s.db.seed, prefix)%lockStripes]
	lock.Lock()
	defer lock.Unlock()

	now := time.Now()
	stored, err := getBucket(s.db.pdb, key, k.Start.UTC(), now)
	if err != nil {
		return false, fmt.Errorf("embedded: put bucket %s %q %s: %w", k.Namespace.Name, k.Key, k.Feature.FQN, err)
	}
	if stored.Version != expect {
		return false, nil
	}
	batch := s.db.pdb.NewBatch()
	defer batch.Close()
	if expect == 0 {
		if err := trimExpired(s.db.pdb, batch, prefix, now); err != nil {
			return false, fmt.Errorf("embedded: put bucket %s %q %s: %w", k.Namespace.Name, k.Key, k.Feature.FQN, err)
		}
	}
	v := make([]byte, 0, bucketHeader+len(state))
	v = binary.BigEndian.AppendUint64(v, uint64(expect+1))
	v = binary.BigEndian.AppendUint64(v, uint64(expireAt.Unix()))
	v = append(v, state...)
	if err := batch.Set(key, v, nil); err != nil {
		return false, fmt.Errorf("embedded: put bucket %s %q %s: %w", k.Namespace.Name, k.Key, k.Feature.FQN, err)
	}
	if err := batch.Commit(pebble.Sync); err != nil {
		return false, fmt.Errorf("embedded: put bucket %s %q %s: %w", k.Namespace.Name, k.Key, k.Feature.FQN, err)
	}
	return true, nil
}

// trimExpired adds to batch the deletion of every bucket under prefix
// expired at now.
func trimExpired(r pebble.Reader, batch *pebble.Batch, prefix []byte, now time.Time) error {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return err
	}
	for ok := it.First(); ok; ok = it.Next() {
		v := it.Value()
		if len(v) >= bucketHeader && int64(binary.BigEndian.Uint64(v[8:16])) <= now.Unix() {
			if err := batch.Delete(it.Key(), nil); err != nil {
				_ = it.Close()
				return err
			}
		}
	}
	return errors.Join(it.Error(), it.Close())
}

// ReadBuckets returns the live buckets of entity key's feature f whose
// starts are in [from, to], in order of start, from one iteration over
// their range. Expired buckets are never returned.
func (s *Store) ReadBuckets(ctx context.Context, ns *feature.Namespace, key string, f *feature.Feature, from, to time.Time) ([]store.Bucket, error) {
	if err := (store.BucketKey{Namespace: ns, Key: key, Feature: f, Start: store.MinBucketStart}).Check(); err != nil {
		return nil, fmt.Errorf("embedded: read buckets: %w: %w", store.ErrRejected, err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("embedded: read buckets: %w", err)
	}
	from, to, ok := store.BucketRange(from, to)
	if !ok {
		return nil, nil
	}
	id, ok := s.db.ids.lookup(f.FQN)
	if !ok {
		return nil, nil
	}
	prefix := featurePrefix(ns.Name, key, id)
	it, err := s.db.pdb.NewIter(&pebble.IterOptions{
		LowerBound: bucketKey(prefix, from),
		UpperBound: bucketKey(prefix, to.Add(time.Second)),
	})
	if err != nil {
		return nil, fmt.Errorf("embedded: read buckets %s %q %s: %w", ns.Name, key, f.FQN, err)
	}
	defer it.Close()
	now := time.Now()
	var out []store.Bucket
	for ok := it.First(); ok; ok = it.Next() {
		start := time.Unix(int64(binary.BigEndian.Uint64(it.Key()[len(prefix):])), 0).UTC()
		b, live, err := decodeBucket(start, it.Value(), now)
		if err != nil {
			return nil, fmt.Errorf("embedded: read buckets %s %q %s: %w", ns.Name, key, f.FQN, err)
		}
		if live {
			out = append(out, b)
		}
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("embedded: read buckets %s %q %s: %w", ns.Name, key, f.FQN, err)
	}
	return out, nil
}
