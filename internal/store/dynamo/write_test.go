package dynamo

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/store"
)

// requests returns cairn_dynamo_requests_total for op and outcome.
func requests(t testing.TB, s *Store, op, outcome string) float64 {
	t.Helper()
	return counterValue(t, s.m.requests.WithLabelValues(op, outcome))
}

// ageName is an entity write of user.age and user.name.
func ageName(ns *feature.Namespace, reg *feature.Registry, t testing.TB, key string, age int64, ageAt time.Time, name string, nameAt time.Time) store.EntityWrite {
	return store.EntityWrite{Namespace: ns, Key: key, Values: []store.Value{
		{Feature: feat(t, reg, "user.age"), Value: age, ObservedAt: ageAt},
		{Feature: feat(t, reg, "user.name"), Value: name, ObservedAt: nameAt},
	}}
}

// readAgeName reads user.age and user.name of keys.
func readAgeName(t testing.TB, s *Store, ns *feature.Namespace, reg *feature.Registry, keys ...string) []store.Row {
	t.Helper()
	rows, err := s.Read(context.Background(), ns, keys, []*feature.Feature{feat(t, reg, "user.age"), feat(t, reg, "user.name")})
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// A bulk write is transactional and guarded per feature: a transaction
// cancelled because one value is stale is sent again without that value,
// and nothing else is lost.
func TestBulkWriteTransactional(t *testing.T) {
	reg, ns := registry(t)
	s := open(t, testConfig(t, tableName("bulk")))
	ctx := context.Background()
	t1 := t0.Add(time.Second)
	if err := s.Write(ctx, []store.EntityWrite{ageName(ns, reg, t, "a", 2, t1, "old", t0)}); err != nil {
		t.Fatal(err)
	}
	updates := requests(t, s, opUpdateItem, "ok")
	units := counterValue(t, s.m.writeUnitsC)

	// a's age is older than the stored one, its name newer; b is new.
	err := s.Write(ctx, []store.EntityWrite{
		ageName(ns, reg, t, "a", 1, t0, "new", t1),
		ageName(ns, reg, t, "b", 7, t0, "bee", t0),
	})
	if err != nil {
		t.Fatal(err)
	}
	rows := readAgeName(t, s, ns, reg, "a", "b")
	if c := rows[0].Cells; c[0].Value != int64(2) || c[1].Value != "new" {
		t.Errorf("a: age %+v, name %+v; want 2 (the newer, kept) and new", c[0], c[1])
	}
	if c := rows[1].Cells; c[0].Value != int64(7) || c[1].Value != "bee" {
		t.Errorf("b: %+v, want written", c)
	}
	if n := requests(t, s, opTransactWriteItems, "cancelled"); n != 1 {
		t.Errorf("%v cancelled transactions, want 1", n)
	}
	if n := requests(t, s, opTransactWriteItems, "ok"); n != 1 {
		t.Errorf("%v committed transactions, want 1", n)
	}
	if n := counterValue(t, s.m.retries.WithLabelValues(opTransactWriteItems, reasonStaleValues)); n != 1 {
		t.Errorf("retries{TransactWriteItems,stale_values} = %v, want 1", n)
	}
	if n := counterValue(t, s.m.staleSkipped); n != 1 {
		t.Errorf("stale values skipped = %v, want 1", n)
	}
	if n := requests(t, s, opUpdateItem, "ok") - updates; n != 0 {
		t.Errorf("%v UpdateItem requests on the bulk path", n)
	}
	// Two small items per transaction, two transactions, two units each.
	if n := counterValue(t, s.m.writeUnitsC) - units; n != 8 {
		t.Errorf("write units = %v, want 8 (transactional writes cost double)", n)
	}
}

// With CheckTSForBulkWrites off, bulk writes are plain unconditional
// updates: one write unit per small entity, and an older value replaces a
// newer one (safe only for writers whose observed-at only increases).
func TestBulkWriteUnchecked(t *testing.T) {
	reg, ns := registry(t)
	cfg := testConfig(t, tableName("bulk-unchecked"))
	cfg.CheckTSForBulkWrites = false
	s := open(t, cfg)
	ctx := context.Background()
	t1 := t0.Add(time.Second)
	if err := s.Write(ctx, []store.EntityWrite{ageName(ns, reg, t, "a", 2, t1, "old", t1)}); err != nil {
		t.Fatal(err)
	}
	updates := requests(t, s, opUpdateItem, "ok")
	units := counterValue(t, s.m.writeUnitsC)
	err := s.Write(ctx, []store.EntityWrite{
		ageName(ns, reg, t, "a", 1, t0, "older", t0),
		ageName(ns, reg, t, "b", 7, t0, "bee", t0),
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := requests(t, s, opUpdateItem, "ok") - updates; n != 2 {
		t.Errorf("%v UpdateItem requests, want 2", n)
	}
	if n := requests(t, s, opTransactWriteItems, "ok") + requests(t, s, opTransactWriteItems, "cancelled"); n != 0 {
		t.Errorf("%v transactions with CheckTSForBulkWrites off", n)
	}
	if n := counterValue(t, s.m.writeUnitsC) - units; n != 2 {
		t.Errorf("write units = %v, want 2", n)
	}
	if c := readAgeName(t, s, ns, reg, "a")[0].Cells; c[0].Value != int64(1) || c[1].Value != "older" {
		t.Errorf("a = %+v; an unconditional write replaces whatever is stored", c)
	}
}

// With OnlyWriteNewerValues off, a single entity's write is unconditional.
func TestSingleWriteUnconditional(t *testing.T) {
	reg, ns := registry(t)
	cfg := testConfig(t, tableName("single-unconditional"))
	cfg.OnlyWriteNewerValues = false
	s := open(t, cfg)
	ctx := context.Background()
	for _, w := range []store.EntityWrite{
		ageName(ns, reg, t, "a", 2, t0.Add(time.Second), "newer", t0.Add(time.Second)),
		ageName(ns, reg, t, "a", 1, t0, "older", t0),
	} {
		if err := s.Write(ctx, []store.EntityWrite{w}); err != nil {
			t.Fatal(err)
		}
	}
	if c := readAgeName(t, s, ns, reg, "a")[0].Cells; c[0].Value != int64(1) || c[1].Value != "older" {
		t.Errorf("a = %+v, want the last write", c)
	}
	if n := requests(t, s, opUpdateItem, "condition_failed"); n != 0 {
		t.Errorf("%v failed conditions on an unconditional path", n)
	}
}

// An entity over 400 KB in a bulk write is rejected before any request;
// the others are written in one transaction.
func TestBulkOversizeRejected(t *testing.T) {
	reg, ns := registry(t)
	s := open(t, testConfig(t, tableName("bulk-oversize")))
	ctx := context.Background()
	blob := feat(t, reg, "user.blob")
	big := store.EntityWrite{Namespace: ns, Key: "huge", Values: []store.Value{
		{Feature: blob, Value: make([]byte, 401<<10), ObservedAt: t0},
	}}
	// Ids first, so that only entity writes are counted.
	if err := s.Write(ctx, []store.EntityWrite{ageName(ns, reg, t, "x", 0, t0, "x", t0)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, []store.EntityWrite{{Namespace: ns, Key: "x", Values: []store.Value{{Feature: blob, Value: []byte{1}, ObservedAt: t0}}}}); err != nil {
		t.Fatal(err)
	}
	err := s.Write(ctx, []store.EntityWrite{
		ageName(ns, reg, t, "a", 1, t0, "a", t0),
		big,
		ageName(ns, reg, t, "b", 2, t0, "b", t0),
	})
	if !errors.Is(err, store.ErrRejected) || !strings.Contains(err.Error(), `user "huge"`) {
		t.Fatalf("error %v, want a rejection naming the entity", err)
	}
	if n := requests(t, s, opTransactWriteItems, "ok"); n != 1 {
		t.Errorf("%v transactions, want 1 for the two good entities", n)
	}
	rows := readAgeName(t, s, ns, reg, "a", "huge", "b")
	if !rows[0].Found || !rows[2].Found || rows[1].Found {
		t.Errorf("found a %v, huge %v, b %v; want true, false, true", rows[0].Found, rows[1].Found, rows[2].Found)
	}
}

// An entity with more features than one update carries is written on the
// bulk path in rounds of transactions, never two updates of one item in
// one transaction, and reads back whole.
func TestBulkWideEntity(t *testing.T) {
	const n = 70
	var b strings.Builder
	b.WriteString("namespaces:\n  - name: wide\n    primary_key: id\n    features:\n      id: string\n")
	for i := range n {
		fmt.Fprintf(&b, "      f%03d: int\n", i)
	}
	reg, err := feature.Parse("wide", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	ns, _ := reg.Namespace("wide")
	s := open(t, testConfig(t, tableName("bulk-wide")))
	fs := ns.Features[1:]
	wide := store.EntityWrite{Namespace: ns, Key: "w"}
	for i, f := range fs {
		wide.Values = append(wide.Values, store.Value{Feature: f, Value: int64(i), ObservedAt: t0})
	}
	narrow := store.EntityWrite{Namespace: ns, Key: "n", Values: []store.Value{{Feature: fs[0], Value: int64(-1), ObservedAt: t0}}}
	if err := s.Write(context.Background(), []store.EntityWrite{wide, narrow}); err != nil {
		t.Fatal(err)
	}
	if got := requests(t, s, opTransactWriteItems, "ok"); got != 2 {
		t.Errorf("%v transactions, want 2 (features 1-64 of w with n, then 65-70)", got)
	}
	rows, err := s.Read(context.Background(), ns, []string{"w", "n"}, fs)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range rows[0].Cells {
		if !c.Found || c.Value != int64(i) {
			t.Errorf("w %s = %+v, want %d", fs[i].FQN, c, i)
		}
	}
	if c := rows[1].Cells[0]; c.Value != int64(-1) {
		t.Errorf("n = %+v", c)
	}
}

// Transactions are packed within DynamoDB's limits of 100 items and 4 MB.
func TestPackTransactions(t *testing.T) {
	acts := func(sizes ...int) []*action {
		out := make([]*action, len(sizes))
		for i, size := range sizes {
			out[i] = &action{size: size}
		}
		return out
	}
	shape := func(groups [][]*action) []int {
		var n []int
		for _, g := range groups {
			n = append(n, len(g))
		}
		return n
	}
	const mb = 1 << 20
	big := make([]int, 250)
	for i := range big {
		big[i] = 100
	}
	tests := []struct {
		sizes []int
		want  []int
	}{
		{[]int{10}, []int{1}},
		{big, []int{100, 100, 50}},
		{[]int{mb, mb, mb, mb, 1}, []int{4, 1}},
		{[]int{mb, mb, mb, mb - 1, 1, 1}, []int{5, 1}},
		{[]int{4 * mb, 1}, []int{1, 1}},
	}
	for _, tc := range tests {
		if got := shape(packTransactions(acts(tc.sizes...))); fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("packTransactions(%d items) = %v, want %v", len(tc.sizes), got, tc.want)
		}
	}
}

// Reads raced against a very short wait still answer correctly, and the
// races show in the hedge metrics.
func TestRequestRacing(t *testing.T) {
	reg, ns := registry(t)
	cfg := testConfig(t, tableName("racing"))
	cfg.EnableRequestRacing = true
	cfg.RequestRacingWaitTime = time.Microsecond
	cfg.GetItemMinBatchSize = 1
	promReg := prometheus.NewRegistry()
	s, err := Open(context.Background(), cfg, promReg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var ws []store.EntityWrite
	var keys []string
	for i := range 12 {
		k := fmt.Sprintf("k%d", i)
		keys = append(keys, k)
		ws = append(ws, ageName(ns, reg, t, k, int64(i), t0, k, t0))
	}
	if err := s.Write(context.Background(), ws); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		rows := readAgeName(t, s, ns, reg, keys...)
		for i, r := range rows {
			if r.Cells[0].Value != int64(i) || r.Cells[1].Value != keys[i] {
				t.Fatalf("%s = %+v", keys[i], r)
			}
		}
	}
	families, err := promReg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	started := -1.0
	for _, mf := range families {
		if mf.GetName() == "cairn_hedge_started_total" {
			started = mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	if started <= 0 {
		t.Errorf("cairn_hedge_started_total = %v, want races after a 1µs wait", started)
	}
}

// One client thread and one serde thread: concurrent reads and writes
// still all finish, and correctly.
func TestSmallPools(t *testing.T) {
	reg, ns := registry(t)
	cfg := testConfig(t, tableName("small-pools"))
	cfg.NumClientThreads, cfg.NumClientConnections, cfg.NumSerdeThreads = 1, 1, 1
	cfg.GetItemMinBatchSize = 1
	s := open(t, cfg)
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			var ws []store.EntityWrite
			for i := range 5 {
				k := fmt.Sprintf("w%d-%d", w, i)
				ws = append(ws, ageName(ns, reg, t, k, int64(i), t0, k, t0))
			}
			if err := s.Write(ctx, ws); err != nil {
				t.Error(err)
				return
			}
			keys := []string{ws[0].Key, ws[4].Key, "absent"}
			rows, err := s.Read(ctx, ns, keys, []*feature.Feature{feat(t, reg, "user.age")})
			if err != nil {
				t.Error(err)
				return
			}
			if rows[0].Cells[0].Value != int64(0) || rows[1].Cells[0].Value != int64(4) || rows[2].Found {
				t.Errorf("writer %d read %+v", w, rows)
			}
		})
	}
	wg.Wait()
}
