package dynamo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/store"
	"github.com/cairnfs/cairn/internal/testserver"
)

// The two regions of these tests. moto keeps one set of tables per region,
// so one moto server holds both replicas of a table, and nothing passes
// between them but what replicate copies.
const regionA, regionB = "us-east-1", "us-west-2"

// regionClient is a raw client of region on the test server.
func regionClient(t testing.TB, region string) *dynamodb.Client {
	return dynamodb.New(dynamodb.Options{
		Region:       region,
		BaseEndpoint: aws.String(testserver.Moto(t)),
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
	})
}

// regionConfig is testConfig in region, taking ids from lock (nil: none).
func regionConfig(t testing.TB, table, region string, lock *LockFile) Config {
	cfg := testConfig(t, table)
	cfg.Region = region
	cfg.FeatureIDs = lock
	return cfg
}

// scanAll returns every item of table in one region by key.
func scanAll(t testing.TB, c *dynamodb.Client, table string) map[string]map[string]types.AttributeValue {
	t.Helper()
	items := map[string]map[string]types.AttributeValue{}
	in := &dynamodb.ScanInput{TableName: aws.String(table), ConsistentRead: aws.Bool(true)}
	for {
		out, err := c.Scan(context.Background(), in)
		if err != nil {
			t.Fatalf("scan %s: %v", table, err)
		}
		for _, it := range out.Items {
			items[showAV(it["pk"])+"|"+showAV(it["sk"])] = it
		}
		if len(out.LastEvaluatedKey) == 0 {
			return items
		}
		in.ExclusiveStartKey = out.LastEvaluatedKey
	}
}

// replicate does what Global Tables do once both regions' writes have
// crossed: for each item, one region's version wins whole (last writer
// wins, per item), and both regions end up holding it. pickB says, for an
// item both regions hold, whether region B's version wins: the tests try
// every outcome a real replication could have.
func replicate(t testing.TB, table string, a, b *dynamodb.Client, pickB func(key string) bool) {
	t.Helper()
	ia, ib := scanAll(t, a, table), scanAll(t, b, table)
	keys := map[string]bool{}
	for k := range ia {
		keys[k] = true
	}
	for k := range ib {
		keys[k] = true
	}
	for k := range keys {
		win, okA := ia[k]
		if vb, okB := ib[k]; okB && (!okA || pickB(k)) {
			win = vb
		}
		for _, c := range []*dynamodb.Client{a, b} {
			if _, err := c.PutItem(context.Background(), &dynamodb.PutItemInput{TableName: aws.String(table), Item: win}); err != nil {
				t.Fatalf("replicate %s: %v", k, err)
			}
		}
	}
}

// value is the test value of feature f written by writer i.
func value(f *feature.Feature, i int) any {
	switch f.Type.Kind {
	case feature.KindInt:
		return int64(i)
	case feature.KindFloat:
		return float64(i)
	case feature.KindString:
		return fmt.Sprintf("w%d", i)
	case feature.KindBool:
		return i%2 == 0
	}
	panic("no test value for " + f.FQN)
}

// Issue 12: with ids from the lock file, writers of two regions meeting
// new features concurrently, in any order, end with each feature holding
// one id, no id shared, and every value readable in both regions under its
// feature, whichever region's version of each item replication keeps.
func TestGlobalTableLockedIDsNeverConflict(t *testing.T) {
	reg, ns := registry(t)
	fqns := []string{"user.age", "user.score", "user.name", "user.active"}
	lock := NewLockFile()
	if _, err := lock.Add(fqns); err != nil {
		t.Fatal(err)
	}
	ca, cb := regionClient(t, regionA), regionClient(t, regionB)
	for seed := range uint64(3) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			table := tableName("gt-lock")
			// Two writers per region, racing.
			var stores []*Store
			for _, region := range []string{regionA, regionA, regionB, regionB} {
				stores = append(stores, open(t, regionConfig(t, table, region, lock)))
			}
			var wg sync.WaitGroup
			errs := make([]error, len(stores))
			for i, s := range stores {
				wg.Go(func() {
					own := store.EntityWrite{Namespace: ns, Key: fmt.Sprintf("k%d", i)}
					shared := store.EntityWrite{Namespace: ns, Key: "shared"}
					for j := range fqns {
						f := feat(t, reg, fqns[(i+j)%len(fqns)])
						own.Values = append(own.Values, store.Value{Feature: f, Value: value(f, i), ObservedAt: t0})
						shared.Values = append(shared.Values, store.Value{Feature: f, Value: value(f, i), ObservedAt: t0.Add(time.Duration(i) * time.Second)})
					}
					errs[i] = s.Write(context.Background(), []store.EntityWrite{own, shared})
				})
			}
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(seed, 12))
			replicate(t, table, ca, cb, func(string) bool { return rng.IntN(2) == 0 })

			for _, region := range []string{regionA, regionB} {
				if got := mappingItems(t, regionClient(t, region), table); !maps.Equal(got, lock.IDs) {
					t.Errorf("%s: mapping %v, want the lock file's %v", region, got, lock.IDs)
				}
				// A process starting now, with or without the lock file,
				// finds one id per feature and no id shared.
				fresh := open(t, regionConfig(t, table, region, lock))
				ids, err := fresh.FeatureIDs(context.Background())
				if err != nil {
					t.Fatalf("%s: %v", region, err)
				}
				if !maps.Equal(ids.IDs, lock.IDs) {
					t.Errorf("%s: table ids %v, want %v", region, ids.IDs, lock.IDs)
				}
				open(t, regionConfig(t, table, region, nil))
				// Every writer's own entity reads back, under the right
				// features, in both regions.
				fs := make([]*feature.Feature, len(fqns))
				for j, fqn := range fqns {
					fs[j] = feat(t, reg, fqn)
				}
				keys := []string{"k0", "k1", "k2", "k3"}
				rows, err := fresh.Read(context.Background(), ns, keys, fs)
				if err != nil {
					t.Fatal(err)
				}
				for i, row := range rows {
					for j, c := range row.Cells {
						if want := value(fs[j], i); !c.Found || c.Value != want {
							t.Errorf("%s: %s %s = %+v, want %v", region, keys[i], fs[j].FQN, c, want)
						}
					}
				}
			}
		})
	}
}

// Why the lock file: ids allocated at run time by a counter in each region
// give the first new feature of each region the same id, and replication
// then holds one id for two features. The store refuses to start on such a
// table rather than mix their values.
func TestGlobalTableCounterIDsConflict(t *testing.T) {
	reg, ns := registry(t)
	table := tableName("gt-counter")
	a := open(t, regionConfig(t, table, regionA, nil))
	b := open(t, regionConfig(t, table, regionB, nil))
	ctx := context.Background()
	age, name := feat(t, reg, "user.age"), feat(t, reg, "user.name")
	if err := a.Write(ctx, []store.EntityWrite{{Namespace: ns, Key: "k", Values: []store.Value{{Feature: age, Value: int64(1), ObservedAt: t0}}}}); err != nil {
		t.Fatal(err)
	}
	if err := b.Write(ctx, []store.EntityWrite{{Namespace: ns, Key: "k", Values: []store.Value{{Feature: name, Value: "x", ObservedAt: t0}}}}); err != nil {
		t.Fatal(err)
	}
	replicate(t, table, regionClient(t, regionA), regionClient(t, regionB), func(string) bool { return false })
	m := mappingItems(t, regionClient(t, regionA), table)
	if m["user.age"] != m["user.name"] {
		t.Fatalf("mapping %v: the two regions' counters gave different ids; this test expects the collision it documents", m)
	}
	_, err := Open(ctx, regionConfig(t, table, regionA, nil), prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), `gives id "1" to both`) {
		t.Errorf("Open on a table with one id for two features = %v, want an error naming the id", err)
	}
	if _, err := a.FeatureIDs(ctx); err == nil || !strings.Contains(err.Error(), `gives id "1" to both "user.age" and "user.name"`) {
		t.Errorf("FeatureIDs = %v, want an error naming the id and both features", err)
	}
}

// A table whose ids were allocated at run time moves to a lock file
// without any value being rewritten: the lock file takes the table's
// mapping (cairn features lock --from-store), new features get ids above
// every id the counter handed out, and a lock file that disagrees with the
// table is refused at start, naming both ids.
func TestLockFileMigratesTableMapping(t *testing.T) {
	reg, ns := registry(t)
	ctx := context.Background()
	table := tableName("gt-migrate")
	old := open(t, regionConfig(t, table, regionA, nil))
	if err := old.Write(ctx, []store.EntityWrite{ageName(ns, reg, t, "k1", 7, t0, "ada", t0)}); err != nil {
		t.Fatal(err)
	}
	before := scanAll(t, regionClient(t, regionA), table)

	fromTable, err := old.FeatureIDs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	lock := NewLockFile()
	if err := lock.Merge(fromTable); err != nil {
		t.Fatal(err)
	}
	if _, err := lock.Add([]string{"user.score", "user.age", "user.name"}); err != nil {
		t.Fatal(err)
	}
	if lock.IDs["user.score"] != "3" || lock.Next != 4 {
		t.Fatalf("lock %v next %d; want user.score 3 after the table's 1 and 2", lock.IDs, lock.Next)
	}

	s := open(t, regionConfig(t, table, regionA, lock))
	if rows := readAgeName(t, s, ns, reg, "k1"); rows[0].Cells[0].Value != int64(7) || rows[0].Cells[1].Value != "ada" {
		t.Fatalf("values under the locked ids: %+v", rows[0].Cells)
	}
	after := scanAll(t, regionClient(t, regionA), table)
	for k, item := range before {
		if showItem(item) != showItem(after[k]) {
			t.Errorf("item %s rewritten by opening with the lock file:\n%s\n%s", k, showItem(item), showItem(after[k]))
		}
	}
	score := feat(t, reg, "user.score")
	if err := s.Write(ctx, []store.EntityWrite{{Namespace: ns, Key: "k2", Values: []store.Value{{Feature: score, Value: 1.5, ObservedAt: t0}}}}); err != nil {
		t.Fatal(err)
	}
	if m := mappingItems(t, regionClient(t, regionA), table); m["user.score"] != "3" {
		t.Errorf("mapping after writing user.score: %v, want user.score 3", m)
	}
	blob := feat(t, reg, "user.blob")
	err = s.Write(ctx, []store.EntityWrite{{Namespace: ns, Key: "k2", Values: []store.Value{{Feature: blob, Value: []byte("x"), ObservedAt: t0}}}})
	if err == nil || !strings.Contains(err.Error(), "user.blob have no id in the feature lock file") {
		t.Errorf("writing a feature the lock file lacks = %v, want an error naming it", err)
	}
	// A process still allocating at run time never reuses a locked id.
	if err := old.Write(ctx, []store.EntityWrite{{Namespace: ns, Key: "k3", Values: []store.Value{{Feature: blob, Value: []byte("x"), ObservedAt: t0}}}}); err != nil {
		t.Fatal(err)
	}
	if m := mappingItems(t, regionClient(t, regionA), table); m["user.blob"] != "4" {
		t.Errorf("run-time allocation after the lock file: user.blob got %q, want 4 (above every locked id)", m["user.blob"])
	}

	for _, tc := range []struct {
		ids  map[string]string
		want []string
	}{
		{map[string]string{"user.age": "2", "user.name": "1", "user.score": "3", "user.blob": "4"}, []string{
			`feature "user.age" has id "2" in the lock file but "1" in table`,
			`id "1" belongs to "user.name" in the lock file but to "user.age" in table`,
		}},
		{map[string]string{"user.age": "1", "user.score": "3", "user.blob": "4"}, []string{
			`feature "user.name" has id "2" in table ` + fmt.Sprintf("%q", table) + ` but none in the lock file`,
		}},
	} {
		_, err := Open(ctx, regionConfig(t, table, regionA, &LockFile{IDs: tc.ids, Next: 9}), prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
		for _, w := range tc.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("Open with lock %v = %v, want it to contain %q", tc.ids, err, w)
			}
		}
	}
}

// showItem prints an item with its attributes in a stable order.
func showItem(item map[string]types.AttributeValue) string {
	var b strings.Builder
	for _, k := range sortedKeys(item) {
		fmt.Fprintf(&b, "%s=%s ", k, showAV(item[k]))
	}
	return b.String()
}

func sortedKeys(m map[string]types.AttributeValue) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Global Tables keep one region's whole item when both wrote it in the
// failover window (per item, last writer wins): the other region's newer
// values of other features in that item are lost, the loss docs/multi-region.md
// states. Outside the window nothing goes backwards: the replicated item
// carries each feature's observed-at, and the active region's newest-wins
// update compares against it feature by feature.
func TestReplicatedItemNeverRegressed(t *testing.T) {
	reg, ns := registry(t)
	ctx := context.Background()
	lock := NewLockFile()
	if _, err := lock.Add([]string{"user.age", "user.name"}); err != nil {
		t.Fatal(err)
	}
	table := tableName("gt-lww")
	a := open(t, regionConfig(t, table, regionA, lock))
	b := open(t, regionConfig(t, table, regionB, lock))
	sec := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }
	age, name := feat(t, reg, "user.age"), feat(t, reg, "user.name")
	write := func(s *Store, v ...store.Value) {
		t.Helper()
		if err := s.Write(ctx, []store.EntityWrite{{Namespace: ns, Key: "k", Values: v}}); err != nil {
			t.Fatal(err)
		}
	}
	// The window: both regions write k before either's write replicates.
	write(a, store.Value{Feature: age, Value: int64(10), ObservedAt: sec(10)}, store.Value{Feature: name, Value: "a", ObservedAt: sec(30)})
	write(b, store.Value{Feature: age, Value: int64(20), ObservedAt: sec(20)})
	replicate(t, table, regionClient(t, regionA), regionClient(t, regionB), func(string) bool { return true }) // B's item wins

	rows := readAgeName(t, a, ns, reg, "k")
	if c := rows[0].Cells; c[0].Value != int64(20) || c[1].Found {
		t.Fatalf("after B's item won: %+v; want age 20 and A's name lost (the failover window's loss)", c)
	}
	// After the window, region A is active again: a replayed older value
	// is skipped, newer ones land.
	write(a, store.Value{Feature: age, Value: int64(15), ObservedAt: sec(15)}, store.Value{Feature: name, Value: "b", ObservedAt: sec(5)})
	rows = readAgeName(t, a, ns, reg, "k")
	if c := rows[0].Cells; c[0].Value != int64(20) || !c[0].ObservedAt.Equal(sec(20)) || c[1].Value != "b" {
		t.Fatalf("after replaying age 15 @15s and name b @5s: %+v; want age 20 @20s (not regressed), name b", c)
	}
	write(a, store.Value{Feature: age, Value: int64(25), ObservedAt: sec(25)})
	if c := readAgeName(t, a, ns, reg, "k")[0].Cells; c[0].Value != int64(25) {
		t.Fatalf("age = %+v, want 25", c[0])
	}
}
