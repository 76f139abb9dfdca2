package dynamo

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cairnfs/cairn/internal/store"
	"github.com/cairnfs/cairn/internal/store/storetest"
	"github.com/cairnfs/cairn/internal/testserver/faultproxy"
)

// TestBucketItems checks a bucket item as docs/dynamodb.md describes it
// (keys, state, version, the table's TTL attribute), and that each bucket
// operation is one request of its kind, counted with its capacity units:
// a put one PutItem (a refused one too, with outcome condition_failed), a
// week of hourly buckets one Query.
func TestBucketItems(t *testing.T) {
	cfg := testConfig(t, tableName("buckets"))
	s := open(t, cfg)
	ctx := context.Background()
	reg := storetest.Registry()
	ns, _ := reg.Namespace("user")
	f, _ := reg.Lookup("user.score")
	start := time.Date(2024, 5, 6, 0, 0, 0, 0, time.UTC) // 1714953600
	expire := time.Unix(1800000000, 0)
	k := store.BucketKey{Namespace: ns, Key: "u1", Feature: f, Start: start}
	state := bytes.Repeat([]byte{7}, 100)

	requests := func(op, outcome string) float64 {
		return testutil.ToFloat64(s.m.requests.WithLabelValues(op, outcome))
	}
	if ok, err := s.PutBucket(ctx, k, state, 0, expire); !ok || err != nil {
		t.Fatalf("put: %v %v", ok, err)
	}
	id := s.names.lookup([]string{f.FQN})[0]
	raw, err := rawClient(t).GetItem(ctx, &dynamodb.GetItemInput{
		TableName: aws.String(cfg.Table),
		Key:       itemKey("user#u1", "b#"+id+"#001714953600"),
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]types.AttributeValue{
		"pk":   &types.AttributeValueMemberS{Value: "user#u1"},
		"sk":   &types.AttributeValueMemberS{Value: "b#" + id + "#001714953600"},
		"st":   &types.AttributeValueMemberB{Value: state},
		"ver":  &types.AttributeValueMemberN{Value: "1"},
		"_ttl": &types.AttributeValueMemberN{Value: "1800000000"},
	}
	if tok, _ := raw.Item["tok"].(*types.AttributeValueMemberB); tok == nil || len(tok.Value) != 8 {
		t.Errorf("attribute tok = %v, want 8 bytes", raw.Item["tok"])
	}
	delete(raw.Item, "tok")
	if len(raw.Item) != len(want) {
		t.Errorf("bucket item has %d attributes, want %d: %v", len(raw.Item), len(want), raw.Item)
	}
	for name, w := range want {
		if fmt.Sprint(raw.Item[name]) != fmt.Sprint(w) {
			t.Errorf("attribute %s = %v, want %v", name, raw.Item[name], w)
		}
	}
	size := BucketItemSize(k, id, state, 1, expire)
	if size != ItemSize(raw.Item)+len("tok")+8 {
		t.Errorf("BucketItemSize = %d, the stored item's size %d", size, ItemSize(raw.Item)+len("tok")+8)
	}

	puts, refused, w0 := requests(opPutItem, "ok"), requests(opPutItem, "condition_failed"), testutil.ToFloat64(s.m.writeUnitsC)
	if ok, err := s.PutBucket(ctx, k, state, 0, expire); ok || err != nil {
		t.Fatalf("put expecting 0 over version 1: %v %v", ok, err)
	}
	if ok, err := s.PutBucket(ctx, k, state, 1, expire); !ok || err != nil {
		t.Fatalf("put expecting 1: %v %v", ok, err)
	}
	if d := requests(opPutItem, "ok") - puts; d != 1 {
		t.Errorf("PutItem ok: %v more, want 1", d)
	}
	if d := requests(opPutItem, "condition_failed") - refused; d != 1 {
		t.Errorf("PutItem condition_failed: %v more, want 1", d)
	}
	if d := testutil.ToFloat64(s.m.writeUnitsC) - w0; d != 2 {
		t.Errorf("write units: %v more, want 2 (a refused put is charged)", d)
	}
	gets, r0 := requests(opGetItem, "ok"), testutil.ToFloat64(s.m.readUnits)
	if b, err := s.GetBucket(ctx, k); err != nil || b.Version != 2 {
		t.Fatalf("get: %+v %v", b, err)
	}
	if d := requests(opGetItem, "ok") - gets; d != 1 {
		t.Errorf("GetItem: %v more, want 1", d)
	}
	if d := testutil.ToFloat64(s.m.readUnits) - r0; d != 1 {
		t.Errorf("read units of a strongly consistent get: %v, want 1", d)
	}

	// A week of hourly buckets: one Query, one eventually consistent read
	// unit per 8 KiB in all.
	total := 0
	for i := range 168 {
		bk := store.BucketKey{Namespace: ns, Key: "u2", Feature: f, Start: start.Add(time.Duration(i) * time.Hour)}
		if ok, err := s.PutBucket(ctx, bk, state, 0, expire); !ok || err != nil {
			t.Fatalf("put %d: %v %v", i, ok, err)
		}
		total += BucketItemSize(bk, id, state, 1, expire)
	}
	queries, r0 := requests(opQuery, "ok"), testutil.ToFloat64(s.m.readUnits)
	got, err := s.ReadBuckets(ctx, ns, "u2", f, start, start.Add(167*time.Hour))
	if err != nil || len(got) != 168 {
		t.Fatalf("read a week: %d buckets, %v", len(got), err)
	}
	if d := requests(opQuery, "ok") - queries; d != 1 {
		t.Errorf("Query: %v requests for a week of hourly buckets, want 1", d)
	}
	wantUnits := ReadUnits(total, false)
	if d := testutil.ToFloat64(s.m.readUnits) - r0; d != wantUnits {
		t.Errorf("read units of the week: %v, want %v (%d bytes)", d, wantUnits, total)
	}
	t.Logf("a week of hourly buckets with 100-byte states: %d bytes, %v read units", total, wantUnits)
}

// TestBucketPages reads more buckets than one Query page holds (1 MB):
// every one comes back, in order.
func TestBucketPages(t *testing.T) {
	s := open(t, testConfig(t, tableName("bucketpages")))
	ctx := context.Background()
	reg := storetest.Registry()
	ns, _ := reg.Namespace("user")
	f, _ := reg.Lookup("user.score")
	start := time.Date(2024, 5, 6, 0, 0, 0, 0, time.UTC)
	const n = 120 // of 10 KB: 1.2 MB
	for i := range n {
		bk := store.BucketKey{Namespace: ns, Key: "big", Feature: f, Start: start.Add(time.Duration(i) * time.Minute)}
		state := append(bytes.Repeat([]byte{1}, 10<<10), strconv.Itoa(i)...)
		if ok, err := s.PutBucket(ctx, bk, state, 0, time.Now().Add(time.Hour)); !ok || err != nil {
			t.Fatalf("put %d: %v %v", i, ok, err)
		}
	}
	queries := testutil.ToFloat64(s.m.requests.WithLabelValues(opQuery, "ok"))
	got, err := s.ReadBuckets(ctx, ns, "big", f, start, start.Add(n*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("got %d buckets, want %d", len(got), n)
	}
	for i, b := range got {
		if !b.Start.Equal(start.Add(time.Duration(i)*time.Minute)) || !bytes.HasSuffix(b.State, []byte("\x01"+strconv.Itoa(i))) {
			t.Fatalf("bucket %d: start %s, state ending %q", i, b.Start, b.State[len(b.State)-4:])
		}
	}
	pages := testutil.ToFloat64(s.m.requests.WithLabelValues(opQuery, "ok")) - queries
	if pages < 2 {
		t.Errorf("1.2 MB of buckets in %v Query pages, want at least 2", pages)
	}
}

// FuzzParseBucketItem: an item with any sort key, version and state
// parses or fails cleanly, and one that parses keeps its start in its sort
// key.
func FuzzParseBucketItem(f *testing.F) {
	f.Add("b#1#001714953600", "1", []byte("state"))
	f.Add("b#1#-00000000001", "0", []byte{})
	f.Add("b#1#", "x", []byte(nil))
	f.Add("e", "1", []byte("s"))
	f.Fuzz(func(t *testing.T, sk, ver string, state []byte) {
		item := map[string]types.AttributeValue{
			"pk":            &types.AttributeValueMemberS{Value: "user#u"},
			"sk":            &types.AttributeValueMemberS{Value: sk},
			bucketVerAttr:   &types.AttributeValueMemberN{Value: ver},
			bucketStateAttr: &types.AttributeValueMemberB{Value: state},
		}
		b, err := parseBucketItem("1", item)
		if err != nil {
			return
		}
		if got := bucketSK("1", b.Start); got != sk {
			t.Fatalf("parsed start %v from sort key %q, which gives back %q", b.Start, sk, got)
		}
		if b.Version < 1 || !bytes.Equal(b.State, state) {
			t.Fatalf("version %d, state %x from %q, %x", b.Version, b.State, ver, state)
		}
	})
}

// TestBucketPutAnswerLost: a put whose answer is lost after DynamoDB
// applied it is sent again by the retries, and its condition then fails
// against its own write. Regression: that was answered ok false, so the
// writer read the bucket back, found its events in it, and folded them in
// a second time. The put must be answered ok, and a put that truly lost
// (another writer's version) still not.
func TestBucketPutAnswerLost(t *testing.T) {
	p := openProxied(t, "bucketlost", 3)
	ctx := context.Background()
	reg := storetest.Registry()
	ns, _ := reg.Namespace("user")
	f, _ := reg.Lookup("user.score")
	k := store.BucketKey{Namespace: ns, Key: "u1", Feature: f, Start: time.Date(2024, 5, 6, 0, 0, 0, 0, time.UTC)}
	expire := time.Now().Add(time.Hour)
	if ok, err := p.PutBucket(ctx, k, []byte("one"), 0, expire); !ok || err != nil {
		t.Fatalf("first put: %v %v", ok, err)
	}
	for expect, state := range []string{"two", "three"} {
		lost := p.rule(t, faultproxy.Rule{Operations: []string{"PutItem"}, Fault: faultproxy.DropResponse, Count: 1})
		ok, err := p.PutBucket(ctx, k, []byte(state), int64(expect+1), expire)
		if p.proxy.Fired(lost) != 1 {
			t.Fatal("the answer was not dropped")
		}
		if !ok || err != nil {
			t.Errorf("put expecting %d, whose answer was lost: ok %v, %v; want ok", expect+1, ok, err)
		}
		b, err := p.GetBucket(ctx, k)
		if err != nil || b.Version != int64(expect+2) || string(b.State) != state {
			t.Errorf("bucket after the put: %+v %v", b, err)
		}
	}
	if ok, err := p.PutBucket(ctx, k, []byte("stale"), 2, expire); ok || err != nil {
		t.Errorf("put expecting a stale version: ok %v, %v; want refused", ok, err)
	}
}
