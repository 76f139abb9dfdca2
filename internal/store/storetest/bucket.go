package storetest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/store"
)

// The bucket tests run against backends that implement store.BucketStore
// (the buckets of windowed features) and are skipped for the others.
//
// Bucket starts are whole seconds; the suite's buckets start at bucketBase
// and are an hour apart, and expire a day after the test writes them, so
// that no store expires them during the test.

// bucketBase is the start of the suite's first bucket.
var bucketBase = time.Date(2024, 5, 6, 0, 0, 0, 0, time.UTC)

// hour returns the start of the suite's bucket number n.
func hour(n int) time.Time { return bucketBase.Add(time.Duration(n) * time.Hour) }

// bucketExpiry is when the suite's buckets expire: far enough ahead.
func bucketExpiry() time.Time { return time.Now().Add(24 * time.Hour).Truncate(time.Second) }

// bucketStore returns st as a store.BucketStore, skipping the test when
// the backend keeps no buckets.
func bucketStore(t *testing.T, st Store) store.BucketStore {
	t.Helper()
	c, ok := st.(*client)
	if ok {
		st = c.Store
	}
	bs, ok := st.(store.BucketStore)
	if !ok {
		t.Skip("this backend keeps no buckets (no store.BucketStore): it cannot serve windowed features")
	}
	return bs
}

// counter is the state the tests store: a count, 8 bytes big-endian, then
// a tag naming what the bucket belongs to, so that a bucket read from the
// wrong place shows.
func counter(n uint64, tag string) []byte {
	return append(binary.BigEndian.AppendUint64(nil, n), tag...)
}

// parseCounter is the inverse of counter.
func parseCounter(t *testing.T, b []byte) (uint64, string) {
	t.Helper()
	if len(b) < 8 {
		t.Fatalf("bucket state of %d bytes, want at least 8", len(b))
	}
	return binary.BigEndian.Uint64(b), string(b[8:])
}

func getBucket(t *testing.T, bs store.BucketStore, k store.BucketKey) store.Bucket {
	t.Helper()
	b, err := bs.GetBucket(context.Background(), k)
	if err != nil {
		t.Fatalf("get bucket %s %q %s %s: %v", k.Namespace.Name, k.Key, k.Feature.FQN, k.Start.Format(time.RFC3339), err)
	}
	return b
}

func putBucket(t *testing.T, bs store.BucketStore, k store.BucketKey, state []byte, expect int64) bool {
	t.Helper()
	ok, err := bs.PutBucket(context.Background(), k, state, expect, bucketExpiry())
	if err != nil {
		t.Fatalf("put bucket %s %q %s %s expecting version %d: %v", k.Namespace.Name, k.Key, k.Feature.FQN, k.Start.Format(time.RFC3339), expect, err)
	}
	return ok
}

func readBuckets(t *testing.T, bs store.BucketStore, ns *feature.Namespace, key string, f *feature.Feature, from, to time.Time) []store.Bucket {
	t.Helper()
	got, err := bs.ReadBuckets(context.Background(), ns, key, f, from, to)
	if err != nil {
		t.Fatalf("read buckets %s %q %s [%s, %s]: %v", ns.Name, key, f.FQN, from.Format(time.RFC3339), to.Format(time.RFC3339), err)
	}
	return got
}

// checkBucket compares a bucket with the one expected.
func checkBucket(t *testing.T, label string, got store.Bucket, start time.Time, state []byte, version int64) {
	t.Helper()
	if !got.Start.Equal(start) || got.Version != version || !bytes.Equal(got.State, state) {
		t.Errorf("%s: got bucket start %s version %d state %x, want start %s version %d state %x",
			label, got.Start.Format(time.RFC3339), got.Version, got.State, start.Format(time.RFC3339), version, state)
	}
	if got.Start.Location() != time.UTC {
		t.Errorf("%s: bucket start %v is not in UTC", label, got.Start)
	}
}

// testBucketVersions walks one bucket through its versions: absent, created
// with expect 0, replaced with the current version, and refused (ok false,
// nothing written) with a stale version, with expect 0 once it exists, and
// with a version it never had.
func (s *suite) testBucketVersions(t *testing.T) {
	name := s.newName(t)
	bs := bucketStore(t, s.connect(t, name))
	ns, f := s.ns(t, "user"), s.feat(t, "user.age")
	k := store.BucketKey{Namespace: ns, Key: "u1", Feature: f, Start: hour(3)}

	if b := getBucket(t, bs, k); b.Version != 0 || b.State != nil {
		t.Fatalf("absent bucket: got version %d state %x, want version 0 and nil state", b.Version, b.State)
	}
	if putBucket(t, bs, k, counter(1, "x"), 4) {
		t.Fatal("put expecting version 4 of an absent bucket succeeded")
	}
	if b := getBucket(t, bs, k); b.Version != 0 {
		t.Fatalf("a refused put stored version %d", b.Version)
	}
	// A state of every byte value, and one as large as a sketch.
	states := [][]byte{counter(1, "\x00\xff\x00"), bytes.Repeat([]byte{0, 1, 0xfe, 0xff}, 4096), counter(3, "third")}
	for i, state := range states {
		if !putBucket(t, bs, k, state, int64(i)) {
			t.Fatalf("put expecting the stored version %d was refused", i)
		}
		checkBucket(t, fmt.Sprintf("after put %d", i+1), getBucket(t, bs, k), k.Start, state, int64(i+1))
	}
	last := states[len(states)-1]
	for _, expect := range []int64{0, 1, 2, 4, 100} {
		if putBucket(t, bs, k, counter(99, "stale"), expect) {
			t.Errorf("put expecting version %d of a bucket at version 3 succeeded", expect)
		}
		checkBucket(t, fmt.Sprintf("after a refused put expecting %d", expect), getBucket(t, bs, k), k.Start, last, 3)
	}
	// Another client sees the same bucket.
	other := bucketStore(t, s.connect(t, name))
	checkBucket(t, "from another client", getBucket(t, other, k), k.Start, last, 3)

	// Keys no store can keep are rejected before anything is written.
	for _, bad := range []store.BucketKey{
		{Namespace: ns, Key: "u1", Feature: f, Start: hour(3).Add(time.Millisecond)},
		{Namespace: ns, Key: "u1", Feature: f, Start: time.Unix(-3600, 0)},
		{Namespace: ns, Key: "", Feature: f, Start: hour(3)},
		{Namespace: ns, Key: "u1", Feature: s.feat(t, "merchant.age"), Start: hour(3)},
	} {
		ok, err := bs.PutBucket(context.Background(), bad, counter(1, ""), 0, bucketExpiry())
		if ok || !errors.Is(err, store.ErrRejected) {
			t.Errorf("put of bucket %q %s at %s: ok %v, error %v; want an error wrapping store.ErrRejected", bad.Key, bad.Feature.FQN, bad.Start.Format(time.RFC3339Nano), ok, err)
		}
	}
}

// testBucketConcurrent has 8 writers, each with its own client, add 1 to a
// counter in one hot bucket by read-modify-write, retrying when another
// writer got there first; no increment may be lost, and every successful
// put must have given the bucket one more version.
func (s *suite) testBucketConcurrent(t *testing.T) {
	const writers, increments = 8, 6
	name := s.newName(t)
	ns, f := s.ns(t, "user"), s.feat(t, "user.score")
	k := store.BucketKey{Namespace: ns, Key: "hot", Feature: f, Start: hour(0)}
	clients := make([]store.BucketStore, writers)
	for i := range clients {
		clients[i] = bucketStore(t, s.connect(t, name))
	}
	errs := make([]error, writers)
	var lost [writers]int
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			ctx := context.Background()
			for range increments {
				for {
					b, err := clients[i].GetBucket(ctx, k)
					if err != nil {
						errs[i] = err
						return
					}
					var n uint64
					if b.Version > 0 {
						if len(b.State) != 8 {
							errs[i] = fmt.Errorf("bucket state %x, want 8 bytes", b.State)
							return
						}
						n = binary.BigEndian.Uint64(b.State)
					}
					ok, err := clients[i].PutBucket(ctx, k, binary.BigEndian.AppendUint64(nil, n+1), b.Version, bucketExpiry())
					if err != nil {
						errs[i] = err
						return
					}
					if ok {
						break
					}
					lost[i]++
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent read-modify-write: %v", err)
	}
	t.Logf("puts refused because another writer got there first: %v", lost)
	b := getBucket(t, clients[0], k)
	if n := binary.BigEndian.Uint64(b.State); n != writers*increments || b.Version != writers*increments {
		t.Errorf("after %d increments: count %d at version %d; want both %d", writers*increments, n, b.Version, writers*increments)
	}
}

// testBucketRange stores 200 hourly buckets and reads ranges of them.
func (s *suite) testBucketRange(t *testing.T) {
	const n = 200
	st := s.connect(t, s.newName(t))
	bs := bucketStore(t, st)
	ns, f := s.ns(t, "merchant"), s.feat(t, "merchant.score")
	const key = "42"
	// Written out of order, by 4 writers.
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for w := range 4 {
		wg.Go(func() {
			for i := n - 1 - w; i >= 0; i -= 4 {
				k := store.BucketKey{Namespace: ns, Key: key, Feature: f, Start: hour(i)}
				ok, err := bs.PutBucket(context.Background(), k, counter(uint64(i), "r"), 0, bucketExpiry())
				if err == nil && !ok {
					err = fmt.Errorf("put of new bucket %d refused", i)
				}
				if err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	check := func(from, to time.Time, first, last int) {
		t.Helper()
		label := fmt.Sprintf("[%s, %s]", from.Format(time.RFC3339), to.Format(time.RFC3339))
		got := readBuckets(t, bs, ns, key, f, from, to)
		want := max(0, last-first+1)
		if len(got) != want {
			t.Errorf("%s: got %d buckets, want %d (%d to %d)", label, len(got), want, first, last)
		}
		for j := range min(len(got), want) {
			checkBucket(t, fmt.Sprintf("%s: bucket %d", label, j), got[j], hour(first+j), counter(uint64(first+j), "r"), 1)
		}
	}
	check(hour(0), hour(n-1), 0, n-1)
	check(hour(-1000), hour(n+1000), 0, n-1)
	check(hour(50), hour(149), 50, 149)
	check(hour(50).Add(time.Second), hour(149).Add(-time.Second), 51, 148)
	check(hour(7), hour(7), 7, 7)
	check(hour(7).Add(time.Second), hour(8).Add(-time.Second), 1, 0)
	check(hour(n), hour(n+10), 1, 0)
	check(hour(10), hour(9), 1, 0)
	check(store.MinBucketStart, store.MaxBucketStart, 0, n-1)
}

// testBucketIsolation stores a bucket at the same start for every pairing
// of two namespaces whose entity keys could be confused, three entities
// and two features, and reads each back on its own.
func (s *suite) testBucketIsolation(t *testing.T) {
	st := s.connect(t, s.newName(t))
	bs := bucketStore(t, st)
	user, userX := s.ns(t, "user"), s.ns(t, "user_x")
	type place struct {
		ns  *feature.Namespace
		key string
		f   *feature.Feature
	}
	places := []place{
		{user, "a", s.feat(t, "user.age")},
		{user, "a", s.feat(t, "user.name")},
		{user, "b", s.feat(t, "user.age")},
		{user, "b", s.feat(t, "user.name")},
		{user, "a\x00b", s.feat(t, "user.age")},
		{user, "a}:b", s.feat(t, "user.age")},
		{user, "_xa", s.feat(t, "user.name")},
		{userX, "a", s.feat(t, "user_x.name")},
	}
	tag := func(p place) string { return p.ns.Name + "|" + p.key + "|" + p.f.FQN }
	for _, p := range places {
		for i := range 3 {
			k := store.BucketKey{Namespace: p.ns, Key: p.key, Feature: p.f, Start: hour(i)}
			if !putBucket(t, bs, k, counter(uint64(i), tag(p)), 0) {
				t.Fatalf("put of new bucket %s %d refused", tag(p), i)
			}
		}
	}
	// A second version of one of them only.
	hot := places[0]
	if !putBucket(t, bs, store.BucketKey{Namespace: hot.ns, Key: hot.key, Feature: hot.f, Start: hour(1)}, counter(10, tag(hot)), 1) {
		t.Fatal("second put refused")
	}
	for pi, p := range places {
		got := readBuckets(t, bs, p.ns, p.key, p.f, hour(0), hour(10))
		if len(got) != 3 {
			t.Errorf("%q: got %d buckets, want 3", tag(p), len(got))
			continue
		}
		for i, b := range got {
			n, bt := 0, ""
			if len(b.State) >= 8 {
				u, s := parseCounter(t, b.State)
				n, bt = int(u), s
			}
			wantN, wantV := i, int64(1)
			if pi == 0 && i == 1 {
				wantN, wantV = 10, 2
			}
			if bt != tag(p) || n != wantN || b.Version != wantV || !b.Start.Equal(hour(i)) {
				t.Errorf("%q bucket %d: got %q count %d version %d start %s; want %q count %d version %d start %s",
					tag(p), i, bt, n, b.Version, b.Start.Format(time.RFC3339), tag(p), wantN, wantV, hour(i).Format(time.RFC3339))
			}
			checkBucket(t, tag(p), getBucket(t, bs, store.BucketKey{Namespace: p.ns, Key: p.key, Feature: p.f, Start: hour(i)}), hour(i), b.State, b.Version)
		}
	}
	if got := readBuckets(t, bs, user, "c", s.feat(t, "user.age"), hour(0), hour(10)); len(got) != 0 {
		t.Errorf("entity without buckets: got %d buckets", len(got))
	}
	if got := readBuckets(t, bs, user, "a", s.feat(t, "user.score"), hour(0), hour(10)); len(got) != 0 {
		t.Errorf("feature without buckets: got %d buckets", len(got))
	}
}

// testBucketsBesideEntities checks that buckets change nothing for entity
// reads and the key scan: an entity with values and buckets reads as
// before, one with buckets only is absent and not listed, and an entity
// listed once.
func (s *suite) testBucketsBesideEntities(t *testing.T) {
	st := s.connect(t, s.newName(t))
	bs := bucketStore(t, st)
	ns := s.ns(t, "user")
	fs := []*feature.Feature{s.feat(t, "user.age"), s.feat(t, "user.name")}
	w := s.entity(t, ns, "both", at(1), "age", int64(7), "name", "Ada")
	write(t, st, w)
	for _, key := range []string{"both", "buckets-only"} {
		for _, f := range append(fs, s.feat(t, "user.score")) {
			for i := range 3 {
				if !putBucket(t, bs, store.BucketKey{Namespace: ns, Key: key, Feature: f, Start: hour(i)}, counter(uint64(i), ""), 0) {
					t.Fatal("put of new bucket refused")
				}
			}
		}
	}
	// And a value written after the buckets.
	w2 := s.entity(t, ns, "both", at(2), "name", "Grace")
	write(t, st, w2)
	rows := read(t, st, ns, []string{"both", "buckets-only"}, fs)
	checkRow(t, "entity with buckets", rows[0], true, fs, []store.Cell{found(int64(7), at(1)), found("Grace", at(2))})
	checkRow(t, "buckets only", rows[1], false, fs, make([]store.Cell, len(fs)))
	all := feats(ns)
	rows = read(t, st, ns, []string{"both"}, all)
	for i, f := range all {
		if c := rows[0].Cells[i]; c.Found != (f.Name == "age" || f.Name == "name") {
			t.Errorf("entity with buckets: feature %s found %v", f.FQN, c.Found)
		}
	}

	sc, ok := st.Store.(Scanner)
	if !ok {
		return
	}
	got := map[string]int{}
	if err := sc.ScanKeys(context.Background(), ns, func(k string) error { got[k]++; return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got["both"] != 1 {
		t.Errorf("key scan listed %v; want only the entity with values, once", got)
	}
}

// testBucketExpired puts a bucket already past its expiry. Stores differ on
// when an expired bucket disappears (DynamoDB's Time to Live deletes
// within days; Redis and the embedded store hide it at once), but each must
// be consistent: the version GetBucket answers is the one PutBucket
// accepts next, and a range read either has the bucket or not, without
// error.
func (s *suite) testBucketExpired(t *testing.T) {
	bs := bucketStore(t, s.connect(t, s.newName(t)))
	ns, f := s.ns(t, "user"), s.feat(t, "user.age")
	k := store.BucketKey{Namespace: ns, Key: "gone", Feature: f, Start: hour(0)}
	ok, err := bs.PutBucket(context.Background(), k, counter(1, "expired"), 0, time.Now().Add(-time.Minute).Truncate(time.Second))
	if !ok || err != nil {
		t.Fatalf("put of an expired bucket: ok %v, %v", ok, err)
	}
	got := readBuckets(t, bs, ns, "gone", f, hour(0), hour(1))
	b := getBucket(t, bs, k)
	t.Logf("expired bucket: version %d, %d in a range read", b.Version, len(got))
	if b.Version != 0 && b.Version != 1 {
		t.Fatalf("expired bucket at version %d, want 0 (gone) or 1 (not yet)", b.Version)
	}
	if !putBucket(t, bs, k, counter(2, "again"), b.Version) {
		t.Fatalf("put expecting the version GetBucket answered (%d) refused", b.Version)
	}
	checkBucket(t, "after the put", getBucket(t, bs, k), k.Start, counter(2, "again"), b.Version+1)
}
