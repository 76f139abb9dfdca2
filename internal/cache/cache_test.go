package cache_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairnfs/cairn/internal/cache"
	"github.com/cairnfs/cairn/internal/store/storetest"
)

func TestHitAfterMiss(t *testing.T) {
	e := newEnv(t, 0, true)
	e.write("u1", t0, "age", int64(31), "name", "Ann")

	rows := e.read([]string{"u1"}, "age", "name")
	e.expectCalls(call{[]string{"u1"}, []string{"age", "name"}})
	e.check("first read", rows[0], true, cell{true, int64(31), false}, cell{true, "Ann", false})

	rows = e.read([]string{"u1"}, "age", "name")
	e.expectCalls()
	e.check("second read", rows[0], true, cell{true, int64(31), true}, cell{true, "Ann", true})
	if ts := rows[0].Cells[0].ObservedAt; !ts.Equal(t0) {
		t.Errorf("cached observed-at %v, want %v", ts, t0)
	}

	// Features in another order are still one lookup each.
	rows = e.read([]string{"u1"}, "name", "age")
	e.expectCalls()
	e.check("reordered", rows[0], true, cell{true, "Ann", true}, cell{true, int64(31), true})

	if got := e.metric("cairn_cache_hits_total"); got != 4 {
		t.Errorf("hits = %v, want 4", got)
	}
	if got := e.metric("cairn_cache_misses_total"); got != 2 {
		t.Errorf("misses = %v, want 2", got)
	}
	if got := e.metric("cairn_cache_entries"); got != 1 {
		t.Errorf("entries = %v, want 1", got)
	}
	if got := e.metric("cairn_cache_bytes"); got < 100 || got > 2000 {
		t.Errorf("bytes = %v, want a plausible estimate for one small entity", got)
	}
}

// A cached value is served until exactly TTL after it was read, then read
// again, so a newer stored value shows up at the latest TTL after it was
// written.
func TestTTL(t *testing.T) {
	e := newEnv(t, 0, true)
	e.write("u1", t0, "age", int64(1))
	e.read([]string{"u1"}, "age")
	e.expectCalls(call{[]string{"u1"}, []string{"age"}})

	e.write("u1", t0.Add(time.Second), "age", int64(2))
	e.clock.Set(ttl - time.Nanosecond)
	rows := e.read([]string{"u1"}, "age")
	e.expectCalls()
	e.check("just before TTL", rows[0], true, cell{true, int64(1), true})

	e.clock.Set(ttl)
	rows = e.read([]string{"u1"}, "age")
	e.expectCalls(call{[]string{"u1"}, []string{"age"}})
	e.check("at TTL", rows[0], true, cell{true, int64(2), false})

	rows = e.read([]string{"u1"}, "age")
	e.expectCalls()
	e.check("after re-read", rows[0], true, cell{true, int64(2), true})
}

// Each cached feature expires TTL after its own read.
func TestTTLPerFeature(t *testing.T) {
	e := newEnv(t, 0, true)
	e.write("u1", t0, "age", int64(1), "name", "a")
	e.read([]string{"u1"}, "age")
	e.clock.Set(ttl / 2)
	e.read([]string{"u1"}, "age", "name")
	e.expectCalls(call{[]string{"u1"}, []string{"age"}}, call{[]string{"u1"}, []string{"name"}})

	e.clock.Set(ttl)
	rows := e.read([]string{"u1"}, "age", "name")
	e.expectCalls(call{[]string{"u1"}, []string{"age"}})
	e.check("age expired, name not", rows[0], true, cell{true, int64(1), false}, cell{true, "a", true})
}

func TestNegativeCaching(t *testing.T) {
	e := newEnv(t, 0, true)
	e.write("u1", t0, "age", int64(31))

	rows := e.read([]string{"nobody"}, "age")
	e.expectCalls(call{[]string{"nobody"}, []string{"age"}})
	e.check("first read", rows[0], false, cell{false, nil, false})

	// A negative entry says the entity has nothing stored at all, so it
	// answers features the first read did not ask for too.
	rows = e.read([]string{"nobody"}, "age", "name")
	e.expectCalls()
	e.check("negative hit", rows[0], false, cell{false, nil, true}, cell{false, nil, true})
	if got := e.metric("cairn_cache_negative_hits_total"); got != 2 {
		t.Errorf("negative hits = %v, want 2", got)
	}

	// A feature the entity does not have is cached as such, apart from
	// the features it has.
	e.read([]string{"u1"}, "age", "name")
	e.expectCalls(call{[]string{"u1"}, []string{"age", "name"}})
	rows = e.read([]string{"u1"}, "age", "name")
	e.expectCalls()
	e.check("absent feature", rows[0], true, cell{true, int64(31), true}, cell{false, nil, true})

	// The entity written meanwhile is seen once the negative entry expires.
	e.write("nobody", t0, "age", int64(7))
	e.clock.Set(ttl - 1)
	rows = e.read([]string{"nobody"}, "age")
	e.expectCalls()
	e.check("within TTL", rows[0], false, cell{false, nil, true})
	e.clock.Set(ttl)
	rows = e.read([]string{"nobody"}, "age", "name")
	e.expectCalls(call{[]string{"nobody"}, []string{"age", "name"}})
	e.check("after TTL", rows[0], true, cell{true, int64(7), false}, cell{false, nil, false})
}

func TestNegativeCachingOff(t *testing.T) {
	e := newEnv(t, 0, false)
	e.write("u1", t0, "age", int64(31))
	for i := range 3 {
		rows := e.read([]string{"nobody"}, "age")
		e.expectCalls(call{[]string{"nobody"}, []string{"age"}})
		e.check(fmt.Sprint("absent entity, read ", i), rows[0], false, cell{false, nil, false})
	}
	// Only the stored feature is cached; the absent one is read every time.
	e.read([]string{"u1"}, "age", "name")
	e.expectCalls(call{[]string{"u1"}, []string{"age", "name"}})
	rows := e.read([]string{"u1"}, "age", "name")
	e.expectCalls(call{[]string{"u1"}, []string{"name"}})
	e.check("absent feature", rows[0], true, cell{true, int64(31), true}, cell{false, nil, false})

	// A value written meanwhile is seen at once.
	e.write("nobody", t0, "age", int64(7))
	e.write("u1", t0, "name", "Ann")
	rows = e.read([]string{"nobody", "u1"}, "age", "name")
	e.expectCalls(call{[]string{"nobody", "u1"}, []string{"age", "name"}})
	e.check("new entity", rows[0], true, cell{true, int64(7), false}, cell{false, nil, false})
	e.check("new feature", rows[1], true, cell{true, int64(31), true}, cell{true, "Ann", false})
	if got := e.metric("cairn_cache_negative_hits_total"); got != 0 {
		t.Errorf("negative hits = %v, want 0", got)
	}
}

// A stored null is a value, cached whether or not misses are.
func TestNullIsCached(t *testing.T) {
	e := newEnv(t, 0, false)
	e.write("u1", t0, "name", nil)
	e.read([]string{"u1"}, "name")
	rows := e.read([]string{"u1"}, "name")
	e.expectCalls(call{[]string{"u1"}, []string{"name"}})
	e.check("null", rows[0], true, cell{true, nil, true})
}

// Only fetched features are cached; asking for more fetches only what is
// missing, in one store read batched across keys, and never answers a
// feature as absent because it was not cached.
func TestPartialFeatures(t *testing.T) {
	e := newEnv(t, 0, true)
	for _, k := range []string{"u1", "u2", "u3"} {
		e.write(k, t0, "age", int64(len(k)), "name", "name of "+k, "active", true)
	}
	e.read([]string{"u1", "u2"}, "age")
	e.expectCalls(call{[]string{"u1", "u2"}, []string{"age"}})

	rows := e.read([]string{"u1", "u2"}, "age", "name")
	e.expectCalls(call{[]string{"u1", "u2"}, []string{"name"}})
	for i, k := range []string{"u1", "u2"} {
		e.check(k, rows[i], true, cell{true, int64(2), true}, cell{true, "name of " + k, false})
	}

	// u3 lacks everything, u1 only active: one read of the union.
	rows = e.read([]string{"u1", "u3"}, "name", "active")
	e.expectCalls(call{[]string{"u1", "u3"}, []string{"name", "active"}})
	e.check("u1", rows[0], true, cell{true, "name of u1", true}, cell{true, true, false})
	e.check("u3", rows[1], true, cell{true, "name of u3", false}, cell{true, true, false})

	rows = e.read([]string{"u1", "u2", "u3"}, "age", "name", "active")
	e.expectCalls(call{[]string{"u2", "u3"}, []string{"age", "active"}})
	e.check("u1", rows[0], true, cell{true, int64(2), true}, cell{true, "name of u1", true}, cell{true, true, true})
	e.check("u2", rows[1], true, cell{true, int64(2), true}, cell{true, "name of u2", true}, cell{true, true, false})
	e.check("u3", rows[2], true, cell{true, int64(2), false}, cell{true, "name of u3", true}, cell{true, true, true})

	rows = e.read([]string{"u3", "u2", "u1"}, "active", "name", "age")
	e.expectCalls()
	for i := range rows {
		for j, c := range rows[i].Cells {
			if !c.CacheHit || !c.Found {
				t.Errorf("row %d cell %d: %+v, want a cached value", i, j, c)
			}
		}
	}
}

// Repeated keys and features are read from the store once and answered
// in every position.
func TestRepeatedKeysAndFeatures(t *testing.T) {
	e := newEnv(t, 0, true)
	e.write("u1", t0, "age", int64(31))
	rows := e.read([]string{"u1", "nobody", "u1"}, "age", "age")
	e.expectCalls(call{[]string{"u1", "nobody"}, []string{"age"}})
	for _, i := range []int{0, 2} {
		e.check(fmt.Sprint("row ", i), rows[i], true, cell{true, int64(31), false}, cell{true, int64(31), false})
	}
	e.check("nobody", rows[1], false, cell{false, nil, false}, cell{false, nil, false})
	rows = e.read([]string{"u1", "u1"}, "age")
	e.expectCalls()
	e.check("again", rows[1], true, cell{true, int64(31), true})
}

func TestSizeBound(t *testing.T) {
	e := newEnv(t, 2, true)
	for _, k := range []string{"u1", "u2", "u3"} {
		e.write(k, t0, "age", int64(len(k)))
	}
	e.read([]string{"u1"}, "age")
	e.read([]string{"u2"}, "age")
	e.read([]string{"u1"}, "age") // u1 is now the most recently used
	e.read([]string{"u3"}, "age") // evicts u2
	e.expectCalls(call{[]string{"u1"}, []string{"age"}}, call{[]string{"u2"}, []string{"age"}}, call{[]string{"u3"}, []string{"age"}})

	e.read([]string{"u1", "u3"}, "age")
	e.expectCalls()
	e.read([]string{"u2"}, "age")
	e.expectCalls(call{[]string{"u2"}, []string{"age"}})

	if got := e.metric("cairn_cache_evictions_total", "size"); got != 2 {
		t.Errorf("size evictions = %v, want 2", got)
	}
	if got := e.metric("cairn_cache_entries"); got != 2 {
		t.Errorf("entries = %v, want 2", got)
	}
}

// Expired entities do not stay in a namespace without a size bound.
func TestExpiredRemoved(t *testing.T) {
	e := newEnv(t, 0, true)
	for i := range 10 {
		e.read([]string{fmt.Sprint("k", i)}, "age")
	}
	if got := e.metric("cairn_cache_entries"); got != 10 {
		t.Fatalf("entries = %v, want 10", got)
	}
	e.clock.Set(ttl)
	for i := range 5 {
		e.read([]string{fmt.Sprint("new", i)}, "age")
	}
	if got := e.metric("cairn_cache_entries"); got != 5 {
		t.Errorf("entries = %v, want 5", got)
	}
	if got := e.metric("cairn_cache_evictions_total", "expired"); got != 10 {
		t.Errorf("expired evictions = %v, want 10", got)
	}
}

// Byte accounting returns to zero when everything is removed.
func TestBytesAccounting(t *testing.T) {
	e := newEnv(t, 3, true)
	e.write("u1", t0, "age", int64(1), "name", strings.Repeat("x", 1000), "embedding", []float32{1, 2, 3, 4, 5, 6, 7, 8})
	e.read([]string{"u1"}, "age")
	small := e.metric("cairn_cache_bytes")
	e.read([]string{"u1"}, "age", "name", "embedding")
	if big := e.metric("cairn_cache_bytes"); big < small+1000 {
		t.Errorf("bytes %v after caching a 1000-byte string, %v before", big, small)
	}
	e.clock.Set(ttl)
	for i := range 3 {
		e.read([]string{fmt.Sprint("absent", i)}, "age")
	}
	e.clock.Set(3 * ttl)
	e.read([]string{"lastA"}, "age")
	perNegative := e.metric("cairn_cache_bytes")
	e.clock.Set(5 * ttl)
	e.read([]string{"lastB"}, "age")
	if got := e.metric("cairn_cache_bytes"); got != perNegative {
		t.Errorf("bytes = %v with one negative entry, want %v as before", got, perNegative)
	}
}

func TestUncachedNamespacePassesThrough(t *testing.T) {
	e := newEnv(t, 0, true)
	m, _ := storetest.Registry().Namespace("merchant")
	fs := featsOf(t, m, "age")
	for range 2 {
		rows, err := e.c.Read(context.Background(), m, []string{"1"}, fs)
		if err != nil {
			t.Fatal(err)
		}
		if rows[0].Cells[0].CacheHit {
			t.Error("uncached namespace answered from the cache")
		}
	}
	if n := len(e.st.take()); n != 2 {
		t.Errorf("%d store reads, want 2", n)
	}
}

func TestStoreError(t *testing.T) {
	e := newEnv(t, 0, true)
	e.read([]string{"u1"}, "age")
	e.st.take()
	if err := e.st.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := e.c.Read(context.Background(), e.user, []string{"u1", "u2"}, e.feats("age"))
	if err == nil {
		t.Fatal("read through a closed store succeeded")
	}
	// The cached entity is still served.
	rows := e.read([]string{"u1"}, "age")
	e.check("cached", rows[0], false, cell{false, nil, true})
}

// A read answered entirely from the cache allocates nothing when the
// caller reuses its rows.
func TestHitDoesNotAllocate(t *testing.T) {
	e := newEnv(t, 0, true)
	e.write("u1", t0, "age", int64(1), "name", "a", "score", 0.5)
	fs := e.feats("age", "name", "score")
	keys := []string{"u1"}
	ctx := context.Background()
	rows, err := e.c.Read(ctx, e.user, keys, fs)
	if err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		rows, err = e.c.ReadInto(ctx, e.user, keys, fs, rows)
		if err != nil || !rows[0].Cells[2].CacheHit {
			t.Fatalf("rows %+v, err %v", rows, err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per hit, want 0", allocs)
	}
}

// Concurrent readers with a moving clock always get the stored values.
func TestConcurrentReaders(t *testing.T) {
	e := newEnv(t, 20, true)
	names := []string{"age", "name", "score", "active"}
	keys := make([]string, 40)
	for i := range keys {
		keys[i] = fmt.Sprint("u", i)
		if i%4 != 0 { // every fourth entity is absent
			e.write(keys[i], t0, "age", int64(i), "name", keys[i], "score", float64(i)/2, "active", i%2 == 0)
		}
	}
	want := func(i int, name string) any {
		switch name {
		case "age":
			return int64(i)
		case "name":
			return keys[i]
		case "score":
			return float64(i) / 2
		}
		return i%2 == 0
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for range 300 {
				if g == 0 {
					e.clock.Advance(ttl / 50)
				}
				idx := r.Perm(len(keys))[:1+r.IntN(5)]
				fnames := r.Perm(len(names))[:1+r.IntN(len(names))]
				ks := make([]string, len(idx))
				for j, i := range idx {
					ks[j] = keys[i]
				}
				var fs []string
				for _, j := range fnames {
					fs = append(fs, names[j])
				}
				rows, err := e.c.Read(context.Background(), e.user, ks, e.feats(fs...))
				if err != nil {
					t.Error(err)
					return
				}
				for j, i := range idx {
					if rows[j].Found != (i%4 != 0) {
						t.Errorf("%s: found %v", keys[i], rows[j].Found)
					}
					for k, name := range fs {
						c := rows[j].Cells[k]
						if i%4 == 0 && c.Found || i%4 != 0 && (!c.Found || c.Value != want(i, name)) {
							t.Errorf("%s.%s: %+v", keys[i], name, c)
						}
					}
				}
			}
		})
	}
	wg.Wait()
	if e.metric("cairn_cache_hits_total") == 0 || e.metric("cairn_cache_misses_total") == 0 {
		t.Errorf("hits %v, misses %v: want both", e.metric("cairn_cache_hits_total"), e.metric("cairn_cache_misses_total"))
	}
	// 20 found entities, and an eighth as many absent ones.
	if got := e.metric("cairn_cache_entries"); got > 20+2 {
		t.Errorf("entries = %v, beyond the bound of 20+2", got)
	}
	if got := e.metric("cairn_cache_absent_entries"); got > 2 {
		t.Errorf("absent entries = %v, beyond the bound of 2", got)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	cfg := cache.DefaultConfig()
	cfg.Namespaces = []cache.NamespaceConfig{{Namespace: "user"}, {Namespace: "user", TTL: time.Second, MaxEntries: -1}}
	_, err := cache.New(&counting{}, cfg, nil, quiet)
	if err == nil {
		t.Fatal("New accepted a bad config")
	}
	for _, want := range []string{"#1: TTL 0s", "#2: max entries -1", `#2: "user" is already configured by #1`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

// Two caches cannot register their metrics with one registry; the second
// fails with an error rather than a panic.
func TestNewReportsRegistrationError(t *testing.T) {
	e := newEnv(t, 0, true)
	if _, err := cache.New(e.st, cache.DefaultConfig(), e.reg, quiet); err == nil {
		t.Fatal("second registration succeeded")
	}
}

var _ cache.Store = (*cache.Cache)(nil)

// Absent keys shared one LRU with found entities, so a client asking for
// random ids evicted the values the cache exists for. They now have their
// own eighth of the bound.
func TestAbsentKeysDoNotEvictFoundEntities(t *testing.T) {
	e := newEnv(t, 16, true)
	var found []string
	for i := range 10 {
		k := fmt.Sprint("u", i)
		e.write(k, t0, "age", int64(i))
		found = append(found, k)
	}
	e.read(found, "age")
	for i := range 1000 {
		e.read([]string{fmt.Sprint("random-", i)}, "age")
	}
	e.st.take()
	rows := e.read(found, "age")
	e.expectCalls()
	for i, r := range rows {
		e.check(found[i], r, true, cell{true, int64(i), true})
	}
	if got := e.metric("cairn_cache_absent_entries"); got != 2 {
		t.Errorf("absent entries = %v, want 2 (an eighth of 16)", got)
	}
}
