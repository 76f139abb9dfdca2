package dynamo

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/store"
)

// Store keeps the buckets of windowed features.
var _ store.BucketStore = (*Store)(nil)

// Buckets of windowed features are items of their own under the entity's
// partition key (entityPK), beside the entity's item (sort key entitySK):
//
//	pk    <ns>#<key>
//	sk    b#<feature short id>#<start>
//	st    the state (B), opaque to the store
//	ver   the version (N), 1 for a new bucket, one more on every put
//	tok   the token of the put that wrote it (B, 8 random bytes)
//	_ttl  the expiry (N, Unix seconds), read by the table's Time to Live
//
// The start is in seconds since the Unix epoch, zero-padded to
// bucketStartDigits digits, so that the sort keys of one feature's buckets
// order as their starts do and a window is one Query of a sort-key range.
// Short ids hold no '#', so "b#1#" never prefixes the sort keys of id "10".
const (
	bucketSKPrefix = "b#"
	// bucketStartDigits is wide enough for store.MaxBucketStart
	// (253402300799).
	bucketStartDigits = 12
	bucketStateAttr   = "st"
	bucketVerAttr     = "ver"
	bucketTokenAttr   = "tok"
)

// bucketSK returns the sort key of the bucket starting at start of the
// feature with short id id.
func bucketSK(id string, start time.Time) string {
	return bucketSKPrefix + id + "#" + fmt.Sprintf("%0*d", bucketStartDigits, start.Unix())
}

// parseBucketItem decodes a bucket item of the feature with short id id.
func parseBucketItem(id string, item map[string]types.AttributeValue) (store.Bucket, error) {
	sk, _ := item["sk"].(*types.AttributeValueMemberS)
	if sk == nil {
		return store.Bucket{}, errors.New("bucket item without a string sort key")
	}
	digits, ok := strings.CutPrefix(sk.Value, bucketSKPrefix+id+"#")
	if !ok || len(digits) != bucketStartDigits {
		return store.Bucket{}, fmt.Errorf("bucket item with sort key %q, want %s%s#<%d digits>", sk.Value, bucketSKPrefix, id, bucketStartDigits)
	}
	secs, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || strings.Trim(digits, "0123456789") != "" {
		return store.Bucket{}, fmt.Errorf("bucket item with sort key %q: start is not a count of seconds", sk.Value)
	}
	st, _ := item[bucketStateAttr].(*types.AttributeValueMemberB)
	ver, _ := item[bucketVerAttr].(*types.AttributeValueMemberN)
	if st == nil || ver == nil {
		return store.Bucket{}, fmt.Errorf("bucket item %q: want a binary %s and a number %s", sk.Value, bucketStateAttr, bucketVerAttr)
	}
	v, err := strconv.ParseInt(ver.Value, 10, 64)
	if err != nil || v < 1 {
		return store.Bucket{}, fmt.Errorf("bucket item %q: version %q, want a whole number from 1", sk.Value, ver.Value)
	}
	state := st.Value
	if state == nil {
		state = []byte{}
	}
	return store.Bucket{Start: time.Unix(secs, 0).UTC(), State: state, Version: v}, nil
}

// bucketFeatureID returns the short id of f for a bucket operation: with
// assign, giving f one if it has none (a put); without, "" when f has none
// yet, which means it has no buckets (a mapping item is always written
// before any item using its id).
func (s *Store) bucketFeatureID(ctx context.Context, f *feature.Feature, assign bool) (string, error) {
	if assign {
		ids, err := s.names.assign(ctx, []string{f.FQN})
		if err != nil {
			return "", err
		}
		return ids[f.FQN], nil
	}
	if err := s.names.ensureLoaded(ctx); err != nil {
		return "", err
	}
	if id := s.names.lookup([]string{f.FQN})[0]; id != "" {
		return id, nil
	}
	// Another process may have assigned one since the mapping was loaded.
	s.names.loadMu.Lock()
	defer s.names.loadMu.Unlock()
	if id := s.names.lookup([]string{f.FQN})[0]; id != "" {
		return id, nil
	}
	if err := s.names.readIDs(ctx, []string{f.FQN}); err != nil {
		return "", err
	}
	return s.names.lookup([]string{f.FQN})[0], nil
}

// GetBucket reads one bucket with a strongly consistent GetItem: it is the
// read of a read-modify-write, and an eventually consistent one would often
// miss the writer's own last put and make its next put fail. A bucket past
// its expiry is returned until Time to Live deletes it (within days).
func (s *Store) GetBucket(ctx context.Context, k store.BucketKey) (store.Bucket, error) {
	if err := k.Check(); err != nil {
		return store.Bucket{}, fmt.Errorf("dynamo: get bucket: %w: %w", store.ErrRejected, err)
	}
	if s.closed.Load() {
		return store.Bucket{}, errClosed
	}
	id, err := s.bucketFeatureID(ctx, k.Feature, false)
	if err != nil || id == "" {
		return store.Bucket{}, err
	}
	out, err := s.tbl.client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(s.tbl.name),
		Key:            itemKey(entityPK(k.Namespace.Name, k.Key), bucketSK(id, k.Start)),
		ConsistentRead: aws.Bool(true),
	})
	s.tbl.m.request(opGetItem, err)
	if err != nil {
		return store.Bucket{}, fmt.Errorf("dynamo: get bucket %s %q %s %s: %w", k.Namespace.Name, k.Key, k.Feature.FQN, k.Start.Format(time.RFC3339), err)
	}
	s.tbl.m.readItem(out.Item, strong)
	if len(out.Item) == 0 {
		return store.Bucket{}, nil
	}
	b, err := parseBucketItem(id, out.Item)
	if err != nil {
		return store.Bucket{}, fmt.Errorf("dynamo: get bucket %s %q %s: %w", k.Namespace.Name, k.Key, k.Feature.FQN, err)
	}
	return b, nil
}

// bucketItem returns the item of bucket k of the feature with short id id,
// written by the put with token tok.
func bucketItem(k store.BucketKey, id string, state []byte, version int64, expireAt time.Time, tok []byte) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		bucketTokenAttr: &types.AttributeValueMemberB{Value: tok},
		"pk":            &types.AttributeValueMemberS{Value: entityPK(k.Namespace.Name, k.Key)},
		"sk":            &types.AttributeValueMemberS{Value: bucketSK(id, k.Start)},
		bucketStateAttr: &types.AttributeValueMemberB{Value: state},
		bucketVerAttr:   &types.AttributeValueMemberN{Value: strconv.FormatInt(version, 10)},
		ttlAttr:         &types.AttributeValueMemberN{Value: strconv.FormatInt(expireAt.Unix(), 10)},
	}
}

// BucketItemSize returns the size, as [ItemSize] counts it, of the item of
// bucket k holding state, with feature short id id: what a GetItem or
// PutItem of it is charged for.
func BucketItemSize(k store.BucketKey, id string, state []byte, version int64, expireAt time.Time) int {
	return ItemSize(bucketItem(k, id, state, version, expireAt, make([]byte, bucketTokenLen)))
}

// bucketTokenLen is the length of a put's token.
const bucketTokenLen = 8

// newBucketToken returns a token for one PutBucket call: random, so that
// two puts (of any writers) have the same one with a chance of 2^-64.
func newBucketToken() []byte {
	return binary.BigEndian.AppendUint64(nil, rand.Uint64())
}

// ownWrite reports whether old, the item a put's failed condition met, is
// that put's own write: the version it would give and its token. It is when
// DynamoDB applied an attempt whose answer was lost and the SDK sent the
// put again.
func ownWrite(old map[string]types.AttributeValue, expect int64, tok []byte) bool {
	ver, _ := old[bucketVerAttr].(*types.AttributeValueMemberN)
	got, _ := old[bucketTokenAttr].(*types.AttributeValueMemberB)
	return ver != nil && got != nil && ver.Value == strconv.FormatInt(expect+1, 10) && bytes.Equal(got.Value, tok)
}

// PutBucket writes bucket k with one PutItem on condition that its stored
// version is expect (that no item exists, for expect 0). A failed condition
// is ok false, not retried; DynamoDB charges the write all the same.
//
// Each put carries a random token (attribute tok) and asks for the stored
// item when its condition fails (ReturnValuesOnConditionCheckFailure, free).
// When the SDK sends a put again after an attempt whose answer was lost
// (a timeout, a dropped connection), the first attempt may have been
// applied, and the retry's condition then fails against it: finding its own
// token at version expect+1, the put is answered ok, as it succeeded. Were
// it answered ok false, the writer would fold its events into the bucket a
// second time.
func (s *Store) PutBucket(ctx context.Context, k store.BucketKey, state []byte, expect int64, expireAt time.Time) (bool, error) {
	if err := k.Check(); err != nil {
		return false, fmt.Errorf("dynamo: put bucket: %w: %w", store.ErrRejected, err)
	}
	if expect < 0 {
		return false, fmt.Errorf("dynamo: put bucket: %w: expected version %d, want 0 or more", store.ErrRejected, expect)
	}
	if s.closed.Load() {
		return false, errClosed
	}
	id, err := s.bucketFeatureID(ctx, k.Feature, true)
	if err != nil {
		return false, err
	}
	tok := newBucketToken()
	item := bucketItem(k, id, state, expect+1, expireAt, tok)
	if size := ItemSize(item); size > MaxItemSize {
		return false, fmt.Errorf("dynamo: put bucket %s %q %s: %w: item of %d bytes, over DynamoDB's %d", k.Namespace.Name, k.Key, k.Feature.FQN, store.ErrRejected, size, MaxItemSize)
	}
	in := &dynamodb.PutItemInput{
		TableName:                           aws.String(s.tbl.name),
		Item:                                item,
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	}
	if expect == 0 {
		in.ConditionExpression = aws.String("attribute_not_exists(pk)")
	} else {
		in.ConditionExpression = aws.String("#ver = :expect")
		in.ExpressionAttributeNames = map[string]string{"#ver": bucketVerAttr}
		in.ExpressionAttributeValues = map[string]types.AttributeValue{":expect": &types.AttributeValueMemberN{Value: strconv.FormatInt(expect, 10)}}
	}
	_, err = s.tbl.client.PutItem(ctx, in)
	s.tbl.m.request(opPutItem, err)
	s.tbl.m.writeItem(item, false)
	var failed *types.ConditionalCheckFailedException
	switch {
	case errors.As(err, &failed):
		return ownWrite(failed.Item, expect, tok), nil
	case err != nil:
		return false, fmt.Errorf("dynamo: put bucket %s %q %s %s: %w", k.Namespace.Name, k.Key, k.Feature.FQN, k.Start.Format(time.RFC3339), err)
	}
	return true, nil
}

// ReadBuckets reads the buckets of entity key's feature f whose starts are
// in [from, to] with one eventually consistent Query of their sort-key
// range (more pages only past 1 MB of items), like the store's entity
// reads. Buckets past their expiry are returned until Time to Live deletes
// them.
func (s *Store) ReadBuckets(ctx context.Context, ns *feature.Namespace, key string, f *feature.Feature, from, to time.Time) ([]store.Bucket, error) {
	if err := (store.BucketKey{Namespace: ns, Key: key, Feature: f, Start: store.MinBucketStart}).Check(); err != nil {
		return nil, fmt.Errorf("dynamo: read buckets: %w: %w", store.ErrRejected, err)
	}
	if s.closed.Load() {
		return nil, errClosed
	}
	from, to, ok := store.BucketRange(from, to)
	if !ok {
		return nil, nil
	}
	id, err := s.bucketFeatureID(ctx, f, false)
	if err != nil || id == "" {
		return nil, err
	}
	in := &dynamodb.QueryInput{
		TableName:              aws.String(s.tbl.name),
		KeyConditionExpression: aws.String("pk = :pk AND sk BETWEEN :a AND :b"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":pk": &types.AttributeValueMemberS{Value: entityPK(ns.Name, key)},
			":a":  &types.AttributeValueMemberS{Value: bucketSK(id, from)},
			":b":  &types.AttributeValueMemberS{Value: bucketSK(id, to)},
		},
		ConsistentRead: aws.Bool(false),
	}
	var out []store.Bucket
	for {
		page, err := s.tbl.client.Query(ctx, in)
		s.tbl.m.request(opQuery, err)
		if err != nil {
			return nil, fmt.Errorf("dynamo: read buckets %s %q %s: %w", ns.Name, key, f.FQN, err)
		}
		size := 0
		for _, item := range page.Items {
			size += ItemSize(item)
			b, err := parseBucketItem(id, item)
			if err != nil {
				return nil, fmt.Errorf("dynamo: read buckets %s %q %s: %w", ns.Name, key, f.FQN, err)
			}
			out = append(out, b)
		}
		s.tbl.m.readQuery(size, eventual)
		if len(page.LastEvaluatedKey) == 0 {
			return out, nil
		}
		in.ExclusiveStartKey = page.LastEvaluatedKey
	}
}
