package redis

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/store"
)

// Store keeps the buckets of windowed features.
var _ store.BucketStore = (*Store)(nil)

// Operations on buckets, for metric labels: one round trip each.
const (
	opGetBucket   = "get_bucket"
	opPutBucket   = "put_bucket"
	opReadBuckets = "read_buckets"
)

// BucketKeys returns the keys holding the buckets of feature name (the
// feature's name inside namespace ns, not its id) of entity key, in a store
// whose keys start with prefix: a hash with, for each bucket, field
// <start> (seconds since the Unix epoch, decimal) holding its state, field
// v<start> its version and field t<start> the token of the put that wrote
// it; and a sorted set of the starts scored by
// their expiry. Both share the entity's hash tag, so they live in the
// entity's slot. Feature names have no colon or brace, so the keys of
// different entities and features never meet, and no bucket key ends in
// "}" as entity keys do (ScanKeys lists only the latter).
func BucketKeys(prefix, ns, key, name string) (hash, index string) {
	entity := EntityKey(prefix, ns, key)
	return entity + ":b:" + name, entity + ":be:" + name
}

// bucketKeys returns the keys of the buckets of f of entity key.
func (s *Store) bucketKeys(ns *feature.Namespace, key string, f *feature.Feature) []string {
	hash, index := BucketKeys(s.cfg.KeyPrefix, ns.Name, key, f.Name)
	return []string{hash, index}
}

// GetBucket reads one bucket: one call of bucket_read.lua for its start
// alone. A bucket past its expiry (by the server's clock) reads as absent.
func (s *Store) GetBucket(ctx context.Context, k store.BucketKey) (store.Bucket, error) {
	if err := k.Check(); err != nil {
		return store.Bucket{}, fmt.Errorf("redis: get bucket: %w: %w", store.ErrRejected, err)
	}
	if s.closed.Load() {
		return store.Bucket{}, errClosed
	}
	start := time.Now()
	bs, err := s.readBuckets(ctx, k.Namespace, k.Key, k.Feature, k.Start.Unix(), k.Start.Unix())
	s.m.observe(opGetBucket, start, err)
	if err != nil {
		return store.Bucket{}, fmt.Errorf("redis: get bucket %s %q %s %s: %w", k.Namespace.Name, k.Key, k.Feature.FQN, k.Start.Format(time.RFC3339), err)
	}
	if len(bs) == 0 {
		return store.Bucket{}, nil
	}
	return bs[0], nil
}

// PutBucket stores state in bucket k if its version is expect: one call of
// bucket_put.lua, which checks and writes atomically in the server, deletes
// the feature's expired buckets of the entity, and sets both of its keys to
// expire with their latest bucket. An expired bucket counts as absent.
//
// Each put carries a random token, stored with the bucket. go-redis sends a
// script again after a network error, and the first attempt may have run:
// the script then finds the put's own token at version expect+1 and
// answers ok, as the put succeeded. Were it answered ok false, the writer
// would fold its events into the bucket a second time.
func (s *Store) PutBucket(ctx context.Context, k store.BucketKey, state []byte, expect int64, expireAt time.Time) (bool, error) {
	if err := k.Check(); err != nil {
		return false, fmt.Errorf("redis: put bucket: %w: %w", store.ErrRejected, err)
	}
	if expect < 0 || expect >= 1<<53 {
		// The script holds versions as Lua numbers (float64).
		return false, fmt.Errorf("redis: put bucket: %w: expected version %d, want 0 to 2^53-1", store.ErrRejected, expect)
	}
	if s.closed.Load() {
		return false, errClosed
	}
	start := time.Now()
	tok := binary.BigEndian.AppendUint64(nil, rand.Uint64())
	args := []any{strconv.FormatInt(k.Start.Unix(), 10), strconv.FormatInt(expect, 10), strconv.FormatInt(expireAt.Unix(), 10), state, tok}
	cmd, err := s.runScript(ctx, s.scripts.bucketPut, s.bucketKeys(k.Namespace, k.Key, k.Feature), args)
	var put int64
	if err == nil {
		put, err = cmd.Int64()
	}
	s.m.observe(opPutBucket, start, err)
	if err != nil {
		if goredis.HasErrorPrefix(err, codeWrongType) {
			err = fmt.Errorf("%w: %w", store.ErrRejected, err)
		}
		return false, fmt.Errorf("redis: put bucket %s %q %s %s: %w", k.Namespace.Name, k.Key, k.Feature.FQN, k.Start.Format(time.RFC3339), err)
	}
	return put == 1, nil
}

// ReadBuckets returns the live buckets of entity key's feature f whose
// starts are in [from, to], in order of start: one call of bucket_read.lua,
// which walks the feature's live buckets in the server and returns those in
// range. Buckets past their expiry (by the server's clock) are left out.
func (s *Store) ReadBuckets(ctx context.Context, ns *feature.Namespace, key string, f *feature.Feature, from, to time.Time) ([]store.Bucket, error) {
	if err := (store.BucketKey{Namespace: ns, Key: key, Feature: f, Start: store.MinBucketStart}).Check(); err != nil {
		return nil, fmt.Errorf("redis: read buckets: %w: %w", store.ErrRejected, err)
	}
	if s.closed.Load() {
		return nil, errClosed
	}
	from, to, ok := store.BucketRange(from, to)
	if !ok {
		return nil, nil
	}
	start := time.Now()
	bs, err := s.readBuckets(ctx, ns, key, f, from.Unix(), to.Unix())
	s.m.observe(opReadBuckets, start, err)
	if err != nil {
		return nil, fmt.Errorf("redis: read buckets %s %q %s: %w", ns.Name, key, f.FQN, err)
	}
	return bs, nil
}

// readBuckets runs bucket_read.lua for the starts in [from, to] (seconds).
func (s *Store) readBuckets(ctx context.Context, ns *feature.Namespace, key string, f *feature.Feature, from, to int64) ([]store.Bucket, error) {
	cmd, err := s.runScript(ctx, s.scripts.bucketRead, s.bucketKeys(ns, key, f), []any{from, to})
	if err != nil {
		if goredis.HasErrorPrefix(err, codeWrongType) {
			return nil, nil // keys not written by cairn read as absent, as entities do
		}
		return nil, err
	}
	return parseBuckets(cmd.Val())
}

// parseBuckets decodes the reply of bucket_read.lua: start, version and
// state of each bucket.
func parseBuckets(reply any) ([]store.Bucket, error) {
	flat, ok := reply.([]any)
	if !ok || len(flat)%3 != 0 {
		return nil, fmt.Errorf("bucket script answered %T of %d elements, want an array of start, version, state triples", reply, len(flat))
	}
	out := make([]store.Bucket, 0, len(flat)/3)
	for i := 0; i < len(flat); i += 3 {
		startText, ok1 := flat[i].(string)
		verText, ok2 := flat[i+1].(string)
		state, ok3 := flat[i+2].(string)
		if !ok1 || !ok2 || !ok3 {
			return nil, fmt.Errorf("bucket script answered %T, %T, %T for a bucket, want three strings", flat[i], flat[i+1], flat[i+2])
		}
		secs, err := strconv.ParseInt(startText, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("bucket with start %q, want seconds since the Unix epoch", startText)
		}
		ver, err := strconv.ParseInt(verText, 10, 64)
		if err != nil || ver < 1 {
			return nil, fmt.Errorf("bucket %s with version %q, want a whole number from 1", startText, verText)
		}
		out = append(out, store.Bucket{Start: time.Unix(secs, 0).UTC(), State: []byte(state), Version: ver})
	}
	return out, nil
}
