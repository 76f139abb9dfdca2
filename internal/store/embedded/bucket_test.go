package embedded

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/cockroachdb/pebble"

	"github.com/cairnfs/cairn/internal/store"
	"github.com/cairnfs/cairn/internal/store/storetest"
)

// TestBucketExpiry: a bucket past its expiry reads as absent (Get and
// ReadBuckets), a put expecting version 0 starts it afresh, and creating a
// bucket deletes the expired ones of the same entity and feature from disk.
func TestBucketExpiry(t *testing.T) {
	s := openT(t, t.TempDir())
	reg := storetest.Registry()
	ns, _ := reg.Namespace("user")
	f, _ := reg.Lookup("user.age")
	other, _ := reg.Lookup("user.name")
	ctx := context.Background()
	start := time.Date(2024, 5, 6, 0, 0, 0, 0, time.UTC)
	key := func(f2 string, i int) store.BucketKey {
		ff := f
		if f2 == "name" {
			ff = other
		}
		return store.BucketKey{Namespace: ns, Key: "u", Feature: ff, Start: start.Add(time.Duration(i) * time.Hour)}
	}
	put := func(k store.BucketKey, state string, expect int64, expireAt time.Time) {
		t.Helper()
		ok, err := s.PutBucket(ctx, k, []byte(state), expect, expireAt)
		if err != nil || !ok {
			t.Fatalf("put %s: ok %v, %v", k.Start, ok, err)
		}
	}
	past, future := time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	put(key("age", 0), "old0", 0, past)
	put(key("age", 1), "old1", 0, past)
	put(key("name", 0), "other", 0, past) // another feature: not trimmed with age's
	// Expired buckets stay on disk until the next bucket of their feature
	// is created (age 1 trimmed age 0), and read as absent.
	if n := countKeys(t, s, []byte(bucketPrefix)); n != 2 {
		t.Errorf("%d bucket keys on disk, want 2 (age 1, name 0)", n)
	}
	if b, err := s.GetBucket(ctx, key("age", 1)); err != nil || b.Version != 0 || b.State != nil {
		t.Errorf("expired bucket: got %+v, %v; want absent", b, err)
	}
	if got, err := s.ReadBuckets(ctx, ns, "u", f, start, start.Add(10*time.Hour)); err != nil || len(got) != 0 {
		t.Errorf("read buckets: got %+v, %v; want none", got, err)
	}
	// Creating bucket 2 trims age's expired buckets, not name's.
	put(key("age", 2), "live", 0, future)
	if n := countKeys(t, s, []byte(bucketPrefix)); n != 2 {
		t.Errorf("%d bucket keys on disk, want 2 (the live one, the other feature's)", n)
	}
	got, err := s.ReadBuckets(ctx, ns, "u", f, start, start.Add(10*time.Hour))
	if err != nil || len(got) != 1 || string(got[0].State) != "live" {
		t.Errorf("read buckets: got %+v, %v; want only the live one", got, err)
	}
	put(key("age", 0), "new0", 0, future)
	if b, err := s.GetBucket(ctx, key("age", 0)); err != nil || b.Version != 1 || string(b.State) != "new0" {
		t.Errorf("recreated bucket: got %+v, %v; want version 1, new0", b, err)
	}
	if n := countKeys(t, s, []byte(bucketPrefix)); n != 3 {
		t.Errorf("%d bucket keys on disk, want 3 (two live of age, the other feature's)", n)
	}
}

func countKeys(t *testing.T, s *Store, prefix []byte) int {
	t.Helper()
	it, err := s.db.pdb.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		n++
	}
	return n
}

// FuzzDecodeBucket: a stored bucket value of any bytes decodes or fails
// cleanly, and a live one keeps its state.
func FuzzDecodeBucket(f *testing.F) {
	f.Add([]byte("\x00\x00\x00\x00\x00\x00\x00\x01\x7f\x00\x00\x00\x00\x00\x00\x00state"))
	f.Add([]byte{})
	f.Add([]byte("short"))
	f.Fuzz(func(t *testing.T, v []byte) {
		b, live, err := decodeBucket(time.Unix(0, 0).UTC(), v, time.Unix(0, 0))
		if err != nil && live {
			t.Fatal("error and live")
		}
		if live && !bytes.Equal(b.State, v[bucketHeader:]) {
			t.Fatalf("state %x, want %x", b.State, v[bucketHeader:])
		}
	})
}
