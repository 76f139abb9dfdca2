package dynamo

import (
	"context"
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/store"
)

// A created table has Time to Live on, and items of a namespace whose
// values all go stale carry their expiry; others never expire.
func TestItemTTL(t *testing.T) {
	reg, err := feature.Parse("ttl.yaml", []byte(`
namespaces:
  - name: session
    primary_key: id
    max_staleness: 1h
    features: {id: string, clicks: int, last: {type: datetime, max_staleness: 2h}}
  - name: user
    primary_key: id
    max_staleness: 1h
    features: {id: string, age: int, name: {type: string, max_staleness: infinity}}
`))
	if err != nil {
		t.Fatal(err)
	}
	s := open(t, testConfig(t, tableName("ttl")))
	ctx := context.Background()
	ttl, err := s.tbl.client.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(s.cfg.Table)})
	if err != nil {
		t.Fatal(err)
	}
	if d := ttl.TimeToLiveDescription; d == nil || aws.ToString(d.AttributeName) != ttlAttr || d.TimeToLiveStatus != types.TimeToLiveStatusEnabled {
		t.Errorf("time to live: %+v, want enabled on %s", d, ttlAttr)
	}

	session, _ := reg.Namespace("session")
	user, _ := reg.Namespace("user")
	clicks, _ := reg.Lookup("session.clicks")
	age, _ := reg.Lookup("user.age")
	before := time.Now()
	err = s.Write(ctx, []store.EntityWrite{
		{Namespace: session, Key: "s1", Values: []store.Value{{Feature: clicks, Value: int64(3), ObservedAt: before}}},
		{Namespace: user, Key: "u1", Values: []store.Value{{Feature: age, Value: int64(30), ObservedAt: before}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	raw := func(pk string) map[string]types.AttributeValue {
		out, err := s.tbl.client.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(s.cfg.Table), Key: itemKey(pk, entitySK)})
		if err != nil {
			t.Fatal(err)
		}
		return out.Item
	}
	n, ok := raw("session#s1")[ttlAttr].(*types.AttributeValueMemberN)
	if !ok {
		t.Fatalf("session item has no %s attribute", ttlAttr)
	}
	exp, _ := strconv.ParseInt(n.Value, 10, 64)
	// The longest staleness of the namespace's features: 2h, rounded up
	// to the second.
	if lo, hi := before.Add(2*time.Hour).Unix(), time.Now().Add(2*time.Hour).Unix()+1; exp < lo || exp > hi {
		t.Errorf("session expiry %d, want between %d and %d (write time + 2h)", exp, lo, hi)
	}
	if _, has := raw("user#u1")[ttlAttr]; has {
		t.Errorf("user item expires although user.name never goes stale")
	}
	// The expiry does not disturb reads.
	rows, err := s.Read(ctx, session, []string{"s1"}, []*feature.Feature{clicks})
	if err != nil || !rows[0].Found || rows[0].Cells[0].Value != int64(3) {
		t.Fatalf("read back %+v, %v", rows, err)
	}
}

// Regression: the expiry was the write time plus the staleness, so an
// acknowledged value observed in the future (up to the year 2999 the API
// accepts) was deleted by Time to Live long before it went stale, and a
// later write observed now lowered the expiry of an item holding such a
// value. The expiry is when the newest value goes stale, and it is only
// ever raised; a namespace whose values never go stale removes it.
func TestItemTTLFarFuture(t *testing.T) {
	reg, err := feature.Parse("ttl.yaml", []byte(`
namespaces:
  - name: day
    primary_key: id
    max_staleness: 1d
    features: {id: string, a: int, b: int}
`))
	if err != nil {
		t.Fatal(err)
	}
	forever, err := feature.Parse("ttl.yaml", []byte(`
namespaces:
  - name: day
    primary_key: id
    features: {id: string, a: int, b: int}
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, guarded := range []bool{true, false} {
		t.Run(map[bool]string{true: "guarded", false: "unguarded"}[guarded], func(t *testing.T) {
			cfg := testConfig(t, tableName("ttlfar"))
			cfg.OnlyWriteNewerValues = guarded
			cfg.CheckTSForBulkWrites = guarded
			s := open(t, cfg)
			ctx := context.Background()
			day, _ := reg.Namespace("day")
			a, _ := reg.Lookup("day.a")
			b, _ := reg.Lookup("day.b")
			expiry := func(key string) (int64, bool) {
				t.Helper()
				out, err := s.tbl.client.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(s.cfg.Table), Key: itemKey(entityPK("day", key), entitySK)})
				if err != nil {
					t.Fatal(err)
				}
				n, ok := out.Item[ttlAttr].(*types.AttributeValueMemberN)
				if !ok {
					return 0, false
				}
				v, err := strconv.ParseInt(n.Value, 10, 64)
				if err != nil {
					t.Fatalf("%s = %q", ttlAttr, n.Value)
				}
				return v, true
			}
			far := time.Date(2999, 12, 31, 23, 59, 59, 999999000, time.UTC)
			want := far.Add(24*time.Hour).Unix() + 1 // rounded up
			// One entity alone (UpdateItem), two at once (the bulk path).
			write := func(at time.Time, f *feature.Feature, keys ...string) {
				t.Helper()
				var ws []store.EntityWrite
				for _, k := range keys {
					ws = append(ws, store.EntityWrite{Namespace: day, Key: k, Values: []store.Value{{Feature: f, Value: int64(at.Year()), ObservedAt: at}}})
				}
				if err := s.Write(ctx, ws); err != nil {
					t.Fatal(err)
				}
			}
			write(far, a, "one")
			write(far, a, "bulk1", "bulk2")
			for _, k := range []string{"one", "bulk1", "bulk2"} {
				if got, ok := expiry(k); !ok || got != want {
					t.Errorf("%s observed in 2999: %s = %d (%v), want %d (observed-at + 1d)", k, ttlAttr, got, ok, want)
				}
			}
			// A later write observed now keeps the later expiry.
			now := time.Now()
			write(now, b, "one")
			write(now, b, "bulk1", "bulk2")
			for _, k := range []string{"one", "bulk1", "bulk2"} {
				if got, ok := expiry(k); !ok || got != want {
					t.Errorf("%s after a write observed now: %s = %d (%v), want it kept at %d", k, ttlAttr, got, ok, want)
				}
				rows, err := s.Read(ctx, day, []string{k}, []*feature.Feature{a, b})
				if err != nil || rows[0].Cells[0].Value != int64(2999) || rows[0].Cells[1].Value != int64(now.Year()) {
					t.Errorf("%s read back %+v, %v; want both values", k, rows, err)
				}
			}
			// A write of a fresh entity observed now: the write time plus 1d.
			write(now, a, "fresh")
			if got, ok := expiry("fresh"); !ok || got < now.Add(24*time.Hour).Unix() || got > time.Now().Add(24*time.Hour).Unix()+1 {
				t.Errorf("fresh: %s = %d (%v), want the write time + 1d", ttlAttr, got, ok)
			}
			// The namespace's values never go stale any more: the expiry goes.
			fday, _ := forever.Namespace("day")
			fa, _ := forever.Lookup("day.a")
			err := s.Write(ctx, []store.EntityWrite{{Namespace: fday, Key: "one", Values: []store.Value{{Feature: fa, Value: int64(1), ObservedAt: far}}}})
			if err != nil {
				t.Fatal(err)
			}
			if got, ok := expiry("one"); ok {
				t.Errorf("one after its namespace stopped going stale: %s = %d, want none", ttlAttr, got)
			}
		})
	}
}

// The expiry is when the newest value goes stale, at least the staleness
// after the write, in whole seconds rounded up.
func TestItemExpiry(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	far := time.Date(2999, 12, 31, 23, 59, 59, 0, time.UTC)
	tests := []struct {
		name   string
		newest time.Time
		ttl    time.Duration
		want   int64
	}{
		{"observed now", now, time.Hour, now.Unix() + 3600},
		{"observed in the year 1000", time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC), time.Hour, now.Unix() + 3600},
		{"observed in 2999", far, 24 * time.Hour, far.Unix() + 86400},
		{"longest staleness in 2999", far, math.MaxInt64, far.Unix() + int64(math.MaxInt64/time.Second) + 1},
		{"fraction of a second rounds up", now, 1500 * time.Millisecond, now.Unix() + 2},
	}
	for _, tt := range tests {
		if got := itemExpiry(now, tt.newest, tt.ttl); got != tt.want {
			t.Errorf("%s: itemExpiry = %d, want %d", tt.name, got, tt.want)
		}
	}
}
