package redis

import (
	"bytes"
	"context"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/cairnfs/cairn/internal/store"
	"github.com/cairnfs/cairn/internal/store/storetest"
	"github.com/cairnfs/cairn/internal/testserver"
)

// TestBucketExpiry checks the layout of docs/redis.md and its expiry: both
// keys of a feature's buckets expire with its latest bucket; a bucket whose
// expiry has passed reads as absent, a put expecting version 0 starts it
// afresh, and the next put deletes the expired buckets' fields.
func TestBucketExpiry(t *testing.T) {
	prefix := uniquePrefix(t)
	s := openT(t, prefix)
	raw := rawClient(t)
	ctx := context.Background()
	reg := storetest.Registry()
	ns, _ := reg.Namespace("user")
	f, _ := reg.Lookup("user.age")
	base := time.Date(2024, 5, 6, 0, 0, 0, 0, time.UTC)
	k := func(i int) store.BucketKey {
		return store.BucketKey{Namespace: ns, Key: "u1", Feature: f, Start: base.Add(time.Duration(i) * time.Hour)}
	}
	start := func(i int) string { return strconv.FormatInt(k(i).Start.Unix(), 10) }
	hash, index := BucketKeys(prefix, "user", "u1", "age")
	if want := prefix + "{user:u1}:b:age"; hash != want {
		t.Errorf("bucket hash %q, want %q", hash, want)
	}
	now := time.Now().Truncate(time.Second)
	late, later := now.Add(time.Hour), now.Add(2*time.Hour)
	put := func(i int, state string, expect int64, expireAt time.Time) {
		t.Helper()
		if ok, err := s.PutBucket(ctx, k(i), []byte(state), expect, expireAt); !ok || err != nil {
			t.Fatalf("put %d: %v %v", i, ok, err)
		}
	}
	put(0, "zero", 0, later)
	put(1, "one", 0, late)
	for _, key := range []string{hash, index} {
		at, err := raw.ExpireTime(ctx, key).Result()
		if err != nil || at != time.Duration(later.Unix())*time.Second {
			t.Errorf("%s expires at %v (%v), want %d, the latest bucket's expiry", key, at, err, later.Unix())
		}
	}
	fields, err := raw.HGetAll(ctx, hash).Result()
	if err != nil || fields[start(0)] != "zero" || fields["v"+start(0)] != "1" || len(fields[("t"+start(0))]) != 8 || len(fields) != 6 {
		t.Errorf("bucket hash: %q, %v", fields, err)
	}

	// Bucket 0 expires (its index score moved into the past, as time
	// would).
	if err := raw.ZAdd(ctx, index, goredis.Z{Score: float64(now.Add(-time.Second).Unix()), Member: start(0)}).Err(); err != nil {
		t.Fatal(err)
	}
	if b, err := s.GetBucket(ctx, k(0)); err != nil || b.Version != 0 || b.State != nil {
		t.Errorf("expired bucket: %+v, %v; want absent", b, err)
	}
	got, err := s.ReadBuckets(ctx, ns, "u1", f, k(0).Start, k(5).Start)
	if err != nil || len(got) != 1 || string(got[0].State) != "one" {
		t.Errorf("read: %+v, %v; want bucket 1 only", got, err)
	}
	put(2, "two", 0, late) // trims bucket 0
	fields, _ = raw.HGetAll(ctx, hash).Result()
	if _, ok := fields[start(0)]; ok || len(fields) != 6 {
		t.Errorf("after a put, the expired bucket's fields remain: %q", fields)
	}
	for _, key := range []string{hash, index} {
		if at, _ := raw.ExpireTime(ctx, key).Result(); at != time.Duration(late.Unix())*time.Second {
			t.Errorf("%s expires at %v, want %d, now the latest bucket's", key, at, late.Unix())
		}
	}
	put(0, "zero again", 0, later)
	if b, _ := s.GetBucket(ctx, k(0)); b.Version != 1 || string(b.State) != "zero again" {
		t.Errorf("recreated bucket: %+v", b)
	}

	// A bucket already expired when put is gone at once, keys and all
	// when it is the only one.
	other := store.BucketKey{Namespace: ns, Key: "u2", Feature: f, Start: base}
	if ok, err := s.PutBucket(ctx, other, []byte("x"), 0, now.Add(-time.Minute)); !ok || err != nil {
		t.Fatalf("put: %v %v", ok, err)
	}
	oh, oi := BucketKeys(prefix, "user", "u2", "age")
	if n, _ := raw.Exists(ctx, oh, oi).Result(); n != 0 {
		t.Errorf("%d keys of an expired bucket remain", n)
	}
}

// FuzzParseBuckets: a script reply of any strings parses or fails
// cleanly, and a bucket that parses keeps its state and a version from 1.
func FuzzParseBuckets(f *testing.F) {
	f.Add("1714953600", "1", "state")
	f.Add("-1", "0", "")
	f.Add("x", "9223372036854775808", "\x00")
	f.Fuzz(func(t *testing.T, start, ver, state string) {
		bs, err := parseBuckets([]any{start, ver, state})
		if err != nil {
			return
		}
		if len(bs) != 1 || bs[0].Version < 1 || string(bs[0].State) != state {
			t.Fatalf("parsed %+v from %q %q %q", bs, start, ver, state)
		}
	})
}

// dropAnswerProxy forwards TCP connections to a Redis server; armed, it
// forwards the next client chunk holding the mark, lets the server run it,
// and closes the connection instead of relaying the answer.
type dropAnswerProxy struct {
	ln    net.Listener
	mark  []byte
	armed atomic.Bool
	fired atomic.Int64
}

func startDropAnswerProxy(t *testing.T, target string, mark []byte) *dropAnswerProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &dropAnswerProxy{ln: ln, mark: mark}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			var swallow atomic.Bool // the answers are dropped
			go func() {
				defer c.Close()
				buf := make([]byte, 64<<10)
				for {
					n, err := s.Read(buf)
					if n > 0 && !swallow.Load() {
						if _, werr := c.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
			go func() {
				defer s.Close()
				defer c.Close()
				buf := make([]byte, 64<<10)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						drop := bytes.Contains(buf[:n], p.mark) && p.armed.CompareAndSwap(true, false)
						if drop {
							swallow.Store(true)
						}
						if _, werr := s.Write(buf[:n]); werr != nil {
							return
						}
						if drop {
							time.Sleep(100 * time.Millisecond) // the server runs it
							p.fired.Add(1)
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return p
}

// TestBucketPutAnswerLost: a put whose answer is lost after the script ran
// is sent again by go-redis, and the script then meets the put's own
// write. Regression: that was answered ok false, so the writer read the
// bucket back and folded its events in a second time. It must be answered
// ok, and a put that truly lost still not.
func TestBucketPutAnswerLost(t *testing.T) {
	p := startDropAnswerProxy(t, testserver.Redis(t), []byte(newScripts().bucketPut.Hash()))
	cfg := testConfig(t, uniquePrefix(t))
	cfg.Addr = p.ln.Addr().String()
	cfg.MaxRetries = 3
	s, err := Open(context.Background(), cfg, nil, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	reg := storetest.Registry()
	ns, _ := reg.Namespace("user")
	f, _ := reg.Lookup("user.score")
	k := store.BucketKey{Namespace: ns, Key: "u1", Feature: f, Start: time.Date(2024, 5, 6, 0, 0, 0, 0, time.UTC)}
	expire := time.Now().Add(time.Hour)
	for expect, state := range []string{"one", "two"} {
		p.armed.Store(true)
		ok, err := s.PutBucket(ctx, k, []byte(state), int64(expect), expire)
		if p.armed.Load() {
			t.Fatal("the answer was not dropped")
		}
		if !ok || err != nil {
			t.Errorf("put expecting %d, whose answer was lost: ok %v, %v; want ok", expect, ok, err)
		}
		b, err := s.GetBucket(ctx, k)
		if err != nil || b.Version != int64(expect+1) || string(b.State) != state {
			t.Errorf("bucket after the put: %+v %v", b, err)
		}
	}
	if ok, err := s.PutBucket(ctx, k, []byte("stale"), 1, expire); ok || err != nil {
		t.Errorf("put expecting a stale version: ok %v, %v; want refused", ok, err)
	}
	if n := p.fired.Load(); n != 2 {
		t.Errorf("answers dropped: %d, want 2", n)
	}
}
