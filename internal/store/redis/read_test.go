package redis

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	goredis "github.com/redis/go-redis/v9"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/store"
	"github.com/cairnfs/cairn/internal/store/storetest"
	"github.com/cairnfs/cairn/internal/testserver"
)

// openReg opens a store of cfg whose metrics go to a registry of its own,
// both closed or dropped when the test ends.
func openReg(t *testing.T, cfg Config) (*Store, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	s, err := Open(context.Background(), cfg, reg, quiet)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, reg
}

// ownConfig is the configuration of a store of srv under prefix.
func ownConfig(srv *ownServer, prefix string) Config {
	c := DefaultConfig()
	c.Addr = srv.addr()
	c.KeyPrefix = prefix
	c.PoolSize = 4
	return c
}

// nonKey returns the features of ns other than its primary key, in
// declaration order.
func nonKey(ns *feature.Namespace) []*feature.Feature {
	var fs []*feature.Feature
	for _, f := range ns.Features {
		if f != ns.PrimaryKey {
			fs = append(fs, f)
		}
	}
	return fs
}

// sampleValue returns a value of f's type (one of the storetest registry's
// features, by name) that differs with v.
func sampleValue(t *testing.T, f *feature.Feature, v int) any {
	t.Helper()
	switch f.Name {
	case "age":
		return int64(30 + v)
	case "score":
		return 0.5 + float64(v)
	case "name":
		return fmt.Sprintf("name %d", v)
	case "active":
		return v%2 == 0
	case "blob":
		return []byte{byte(v), 0, '\r', '\n'}
	case "seen":
		return time.Date(2024, 1, 1+v, 2, 3, 4, 5000, time.UTC)
	case "tags":
		return []any{"a", strconv.Itoa(v), ""}
	case "counts":
		return []any{int64(v), int64(-1)}
	case "matrix":
		return []any{[]any{1.5, float64(v)}, []any{}}
	case "visits":
		return []any{time.Date(2020, 2, 29, 12, 0, v, 1000, time.UTC)}
	case "notes":
		return []any{map[string]any{"k": strconv.Itoa(v)}}
	case "embedding":
		return []float32{float32(v), -1, 0.5, 0, 1e-3, 2, 3, 4}
	case "profile":
		return map[string]any{"plan": "pro", "seats": json.Number(strconv.Itoa(v))}
	}
	t.Fatalf("no sample value for %s", f.FQN)
	return nil
}

// expected holds what reads must answer: each written key's cells by FQN.
type expected map[string]map[string]store.Cell

// put writes, for key of ns, the features of fs with their sample values
// of variant v observed at at (nil for the FQNs in nulls), and records
// them in e.
func (e expected) put(t *testing.T, s *Store, ns *feature.Namespace, key string, at time.Time, v int, fs []*feature.Feature, nulls ...string) {
	t.Helper()
	w := store.EntityWrite{Namespace: ns, Key: key}
	if e[key] == nil {
		e[key] = map[string]store.Cell{}
	}
	for _, f := range fs {
		val := sampleValue(t, f, v)
		if slices.Contains(nulls, f.FQN) {
			val = nil
		}
		w.Values = append(w.Values, store.Value{Feature: f, Value: val, ObservedAt: at})
		e[key][f.FQN] = store.Cell{Found: true, Value: val, ObservedAt: at}
	}
	write(t, s, w)
}

// wantNoneCounted fails t unless the store of reg counted no undecodable
// value and sent no read again.
func wantNoneCounted(t *testing.T, reg *prometheus.Registry) {
	t.Helper()
	if n := metricValue(t, reg, "cairn_redis_undecodable_values_total"); n != 0 {
		t.Errorf("undecodable values: %v, want none", n)
	}
	if n := metricValue(t, reg, "cairn_redis_read_fallbacks_total"); n != 0 {
		t.Errorf("reads sent again: %v, want none", n)
	}
}

// userStore opens a store under a prefix of the test's own and returns it
// with its metrics, namespace user of the storetest registry, its features
// but the key, and an observed-at to write them with.
func userStore(t *testing.T) (*Store, *prometheus.Registry, *feature.Namespace, []*feature.Feature, time.Time) {
	t.Helper()
	s, reg := openReg(t, testConfig(t, uniquePrefix(t)))
	ns, _ := storetest.Registry().Namespace("user")
	return s, reg, ns, nonKey(ns), time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
}

// check fails t unless rows answer keys and feats as e says.
func (e expected) check(t *testing.T, what string, rows []store.Row, keys []string, feats []*feature.Feature) {
	t.Helper()
	if len(rows) != len(keys) {
		t.Fatalf("%s: %d rows for %d keys", what, len(rows), len(keys))
	}
	for i, k := range keys {
		cells, written := e[k]
		if rows[i].Found != written {
			t.Errorf("%s: key %q found %v, want %v", what, k, rows[i].Found, written)
		}
		if len(rows[i].Cells) != len(feats) {
			t.Fatalf("%s: key %q: %d cells for %d features", what, k, len(rows[i].Cells), len(feats))
		}
		for j, f := range feats {
			got, want := rows[i].Cells[j], cells[f.FQN]
			if got.Found != want.Found || !storetest.Equal(got.Value, want.Value) || !got.ObservedAt.Equal(want.ObservedAt) || got.CacheHit {
				t.Errorf("%s: key %q, cell %d (%s) = %+v, want %+v", what, k, j, f.FQN, got, want)
			}
		}
	}
}

// wantWhole fails t unless a read of feats from s takes the whole-hash
// path (HGETALL) when whole is set, and HMGET when not.
func wantWhole(t *testing.T, s *Store, ns *feature.Namespace, feats []*feature.Feature, whole bool) {
	t.Helper()
	sc := new(readScratch)
	sc.plan(s.ids.snapshot(), feats)
	if got := sc.wholeHash(ns); got != whole {
		t.Fatalf("whole-hash read of %d features: %v, want %v", len(feats), got, whole)
	}
}

// commandCalls returns how many times the server of c ran each command,
// by lowercase name, from INFO commandstats.
func commandCalls(t *testing.T, c *goredis.Client) map[string]int {
	t.Helper()
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	calls := map[string]int{}
	for _, line := range strings.Split(info, "\n") {
		name, stats, ok := strings.Cut(strings.TrimSpace(line), ":")
		name, isCmd := strings.CutPrefix(name, "cmdstat_")
		if !ok || !isCmd {
			continue
		}
		for _, kv := range strings.Split(stats, ",") {
			if n, ok := strings.CutPrefix(kv, "calls="); ok {
				calls[name], err = strconv.Atoi(n)
				if err != nil {
					t.Fatalf("INFO commandstats: %q", line)
				}
			}
		}
	}
	return calls
}

// reversed returns fs in reverse order.
func reversed(fs []*feature.Feature) []*feature.Feature {
	r := slices.Clone(fs)
	slices.Reverse(r)
	return r
}

// A read of every feature of a namespace (HGETALL) answers what reads of
// the features one by one and in subsets (HMGET) answer, cell for cell,
// whatever the order of the features and with features repeated.
func TestReadWholeHashMatchesFields(t *testing.T) {
	srv := startOwnServer(t, freePort(t), "--appendonly", "no")
	s, reg := openReg(t, ownConfig(srv, uniquePrefix(t)))
	admin := goredis.NewClient(&goredis.Options{Addr: srv.addr()})
	defer admin.Close()
	ctx := context.Background()

	sreg := storetest.Registry()
	ns, _ := sreg.Namespace("user")
	all := nonKey(ns)
	age, name, tags, profile := feat(t, sreg, "user.age"), feat(t, sreg, "user.name"), feat(t, sreg, "user.tags"), feat(t, sreg, "user.profile")
	t0 := time.Date(2024, 5, 6, 7, 8, 9, 123456000, time.UTC)
	e := expected{}
	e.put(t, s, ns, "full", t0, 1, all)
	e.put(t, s, ns, "nulls", t0.Add(time.Second), 2, all, "user.name", "user.profile", "user.embedding")
	e.put(t, s, ns, "partial", t0.Add(2*time.Second), 3, []*feature.Feature{age, tags})
	e.put(t, s, ns, "partial", t0.Add(3*time.Second), 4, []*feature.Feature{name})
	keys := []string{"partial", "absent", "full", "nulls"}

	type shape struct {
		name  string
		feats []*feature.Feature
		whole bool
	}
	shapes := []shape{
		{"all", all, true},
		{"all reversed", reversed(all), true},
		{"all reversed, age and name twice", append(reversed(all), age, name), true},
		{"all, profile first and twice", append([]*feature.Feature{profile}, all...), true},
		{"all but age", all[1:], false},
		{"all but profile, reversed", reversed(all[:len(all)-1]), false},
		{"tags, age, tags, name", []*feature.Feature{tags, age, tags, name}, false},
		{"profile twice", []*feature.Feature{profile, profile}, false},
	}
	for _, f := range all {
		shapes = append(shapes, shape{"only " + f.Name, []*feature.Feature{f}, false})
	}
	keySets := [][]string{keys, {"full"}, {"absent"}, {"partial"}}

	// The rows of a read must not change with later reads, which reuse
	// the read's buffers.
	first, err := s.Read(ctx, ns, keys, all)
	if err != nil {
		t.Fatal(err)
	}
	defer e.check(t, "the first read, after all the others", first, keys, all)

	var rows []store.Row // reused by every read, as the query server does
	for _, sh := range shapes {
		wantWhole(t, s, ns, sh.feats, sh.whole)
		for _, ks := range keySets {
			what := fmt.Sprintf("read %q of %s", ks, sh.name)
			before := commandCalls(t, admin)
			rows, err = s.ReadInto(ctx, ns, ks, sh.feats, rows)
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			after := commandCalls(t, admin)
			hgetall, hmget := after["hgetall"]-before["hgetall"], after["hmget"]-before["hmget"]
			if sh.whole && (hgetall != len(ks) || hmget != 0) || !sh.whole && (hmget != len(ks) || hgetall != 0) {
				t.Errorf("%s: the server ran HGETALL %d times and HMGET %d times, want %d of %s",
					what, hgetall, hmget, len(ks), map[bool]string{true: "HGETALL", false: "HMGET"}[sh.whole])
			}
			e.check(t, what, rows, ks, sh.feats)
		}
	}
	wantNoneCounted(t, reg)
}

// Fields of an entity's hash that no feature of the read has as its id
// (those of features no longer registered, or put there by hand) leave a
// whole-hash read unchanged.
func TestReadWholeHashIgnoresUnknownFields(t *testing.T) {
	prefix := uniquePrefix(t)
	s, reg := openReg(t, testConfig(t, prefix))
	ctx := context.Background()
	sreg := storetest.Registry()
	ns, _ := sreg.Namespace("user")
	merchant, _ := sreg.Namespace("merchant")
	all := nonKey(ns)
	at := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	e := expected{}
	// Merchant's features get ids 1 to 13 and user's the next ones, so
	// that the user's hash can hold ids below the highest one read that
	// are not read.
	e.put(t, s, merchant, "1", at, 0, nonKey(merchant))
	e.put(t, s, ns, "k", at, 1, all)
	e.put(t, s, ns, "p", at, 2, all[:3])
	keys := []string{"k", "p", "absent"}
	subset := reversed(all[1:])
	wantWhole(t, s, ns, all, true)
	wantWhole(t, s, ns, subset, false)

	ids := s.ids.snapshot()
	merchantID := ids.byFQN["merchant.score"]
	ageID := ids.byFQN["user.age"]
	if n, m := idNumber(merchantID), idNumber(ageID); n <= 0 || n >= m {
		t.Fatalf("merchant.score has id %q, user.age %q: want a smaller number for merchant's", merchantID, ageID)
	}
	// A stored int observed later than the entity's values: taken for the
	// field of one of the read's features, it would show in the answer.
	v := string(field(t, int64(99), at.Add(time.Hour)))
	extra := map[string]string{
		"zz":                   v, // a large id, unused
		"01":                   v, // not canonical: 1 with a leading zero
		"00":                   "1",
		"0" + ageID:            v, // not canonical: user.age's id with a leading zero
		strings.ToUpper(ageID): v,
		merchantID:             v,
		"1234567":              v,
		"-1":                   v,
		"":                     v,
		ageID + " ":            v,
	}
	// The hashes are rebuilt with the extra fields first and the marker
	// last, so that a field taken for the marker would be met before it.
	rc := rawClient(t)
	resp2 := goredis.NewClient(&goredis.Options{Addr: testserver.Redis(t), Protocol: 2}) // HGETALL in field order
	defer resp2.Close()
	for _, k := range []string{"k", "p"} {
		key := s.entityKey(ns.Name, k)
		stored, err := rc.HGetAll(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		args := []any{}
		for f, x := range extra {
			args = append(args, f, x)
		}
		for f, x := range stored {
			if f != markerField {
				args = append(args, f, x)
			}
		}
		args = append(args, markerField, stored[markerField])
		if _, err := rc.TxPipelined(ctx, func(p goredis.Pipeliner) error {
			p.Del(ctx, key)
			p.HSet(ctx, key, args...)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		order, err := resp2.Do(ctx, "hgetall", key).Slice()
		if err != nil || len(order) < 2 || order[len(order)-2] != markerField {
			t.Fatalf("HGETALL %q after rebuilding: %q, %v; want the marker last", key, order, err)
		}
	}
	for _, feats := range [][]*feature.Feature{all, append(all, all[0]), subset} {
		rows, err := s.Read(ctx, ns, keys, feats)
		if err != nil {
			t.Fatalf("read of %d features: %v", len(feats), err)
		}
		e.check(t, fmt.Sprintf("read of %d features", len(feats)), rows, keys, feats)
	}
	wantNoneCounted(t, reg)
}

// An entity whose key holds something other than a hash reads as absent,
// in both kinds of read, and is counted; the other entities of the read are
// answered.
func TestReadWrongTypeKey(t *testing.T) {
	s, reg, ns, all, at := userStore(t)
	ctx := context.Background()
	e := expected{}
	e.put(t, s, ns, "a", at, 1, all)
	e.put(t, s, ns, "b", at, 2, all[2:5])
	if err := rawClient(t).Set(ctx, s.entityKey(ns.Name, "bad"), "not a hash", 0).Err(); err != nil {
		t.Fatal(err)
	}
	subset := []*feature.Feature{all[3], all[0], all[3]}
	wantWhole(t, s, ns, all, true)
	wantWhole(t, s, ns, subset, false)

	counted := 0.0
	for _, feats := range [][]*feature.Feature{all, subset} {
		for _, keys := range [][]string{{"a", "bad", "b"}, {"bad"}, {"bad", "bad", "a"}} {
			what := fmt.Sprintf("read %q of %d features", keys, len(feats))
			rows, err := s.Read(ctx, ns, keys, feats)
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			e.check(t, what, rows, keys, feats)
			for _, k := range keys {
				if k == "bad" {
					counted++
				}
			}
			if n := metricValue(t, reg, "cairn_redis_undecodable_values_total"); n != counted {
				t.Errorf("%s: undecodable values counted %v, want %v", what, n, counted)
			}
		}
	}
	if n := metricValue(t, reg, "cairn_redis_read_fallbacks_total"); n != 0 {
		t.Errorf("reads sent again: %v, want none: WRONGTYPE is answered from the first replies", n)
	}
}

// afterRoundTrip is a go-redis hook that calls fn after each command or
// pipeline sent.
type afterRoundTrip struct{ fn func() }

func (h afterRoundTrip) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (h afterRoundTrip) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		err := next(ctx, cmd)
		h.fn()
		return err
	}
}

func (h afterRoundTrip) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		err := next(ctx, cmds)
		h.fn()
		return err
	}
}

// An error reply other than WRONGTYPE (here NOPERM, from an ACL that
// denies one entity's key) sends the whole read again as commands go-redis
// parses: the read fails with the server's error when that fails too, and
// answers in full when it succeeds.
func TestReadFallbackOnErrorReply(t *testing.T) {
	srv := startOwnServer(t, freePort(t), "--appendonly", "no")
	ctx := context.Background()
	prefix := uniquePrefix(t)
	admin := goredis.NewClient(&goredis.Options{Addr: srv.addr()})
	defer admin.Close()
	full, _ := openReg(t, ownConfig(srv, prefix))

	sreg := storetest.Registry()
	ns, _ := sreg.Namespace("user")
	all := nonKey(ns)
	at := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	e := expected{}
	e.put(t, full, ns, "ok1", at, 1, all)
	e.put(t, full, ns, "ok2", at, 2, all[:4])
	e.put(t, full, ns, "no", at, 3, all)

	// The user may run every command, on the mapping and the entities
	// whose key starts with "ok" only.
	acl := func(extra ...string) {
		t.Helper()
		args := []any{"acl", "setuser", "limited", "on", ">pw", "+@all", "resetkeys",
			"~" + prefix + "ids", "~" + strings.TrimSuffix(full.entityKey(ns.Name, "ok"), "}") + "*"}
		for _, x := range extra {
			args = append(args, x)
		}
		if err := admin.Do(ctx, args...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	acl()
	cfg := ownConfig(srv, prefix)
	cfg.Username, cfg.Password = "limited", "pw"
	s, reg := openReg(t, cfg) // PING, HGETALL of the mapping, SCRIPT LOAD
	if got, want := len(s.ids.snapshot().byFQN), len(all); got != want {
		t.Fatalf("the limited user's store loaded %d ids, want %d", got, want)
	}
	fallbacks := func() float64 { return metricValue(t, reg, "cairn_redis_read_fallbacks_total") }

	subset := append(reversed(all[2:]), all[5])
	wantWhole(t, s, ns, all, true)
	wantWhole(t, s, ns, subset, false)
	shapes := []struct {
		name  string
		feats []*feature.Feature
	}{{"whole hash", all}, {"fields", subset}}

	for _, sh := range shapes {
		rows, err := s.Read(ctx, ns, []string{"ok1", "ok2"}, sh.feats)
		if err != nil {
			t.Fatalf("%s: read of allowed keys: %v", sh.name, err)
		}
		e.check(t, sh.name+": read of allowed keys", rows, []string{"ok1", "ok2"}, sh.feats)
	}
	if n := fallbacks(); n != 0 {
		t.Fatalf("reads of allowed keys sent again %v times", n)
	}

	want := 0.0
	for _, sh := range shapes {
		for _, keys := range [][]string{{"ok1", "no", "ok2"}, {"no"}} {
			what := fmt.Sprintf("%s: read %q", sh.name, keys)
			_, err := s.Read(ctx, ns, keys, sh.feats)
			if err == nil || !strings.Contains(err.Error(), "NOPERM") {
				t.Errorf("%s: %v, want the server's NOPERM", what, err)
			}
			want++
			if n := fallbacks(); n != want {
				t.Errorf("%s: reads sent again %v times in all, want %v", what, n, want)
			}
		}
	}

	// Once the first replies are in, the key is allowed: the read sent
	// again answers every entity, and reads one whose key is not a hash as
	// absent.
	if err := admin.Set(ctx, full.entityKey(ns.Name, "ok-string"), "not a hash", 0).Err(); err != nil {
		t.Fatal(err)
	}
	undecodable := 0.0
	var grant atomic.Bool
	s.client.AddHook(afterRoundTrip{fn: func() {
		if grant.CompareAndSwap(true, false) {
			acl("~" + full.entityKey(ns.Name, "no"))
		}
	}})
	for _, sh := range shapes {
		for _, keys := range [][]string{{"ok1", "no", "ok-string", "ok2", "ok-absent"}, {"no"}} {
			what := fmt.Sprintf("%s: read %q, allowed after the first replies", sh.name, keys)
			acl() // deny "no" again
			grant.Store(true)
			rows, err := s.Read(ctx, ns, keys, sh.feats)
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			e.check(t, what, rows, keys, sh.feats)
			want++
			if n := fallbacks(); n != want {
				t.Errorf("%s: reads sent again %v times in all, want %v", what, n, want)
			}
			if slices.Contains(keys, "ok-string") {
				undecodable++
			}
			if n := metricValue(t, reg, "cairn_redis_undecodable_values_total"); n != undecodable {
				t.Errorf("%s: undecodable values counted %v in all, want %v", what, n, undecodable)
			}
		}
	}
}

// A read of many entities
// answers every entity as it does when read alone, absent and
// wrong-typed keys included, in both paths.
func TestReadLargeMatchesSingle(t *testing.T) {
	s, reg, ns, all, at := userStore(t)
	ctx := context.Background()
	e := expected{}
	var keys []string
	bad := 0
	for i := range 100 {
		k := fmt.Sprintf("k%03d", i)
		keys = append(keys, k)
		switch i % 7 {
		case 3: // never written
		case 5:
			if err := rawClient(t).Set(ctx, s.entityKey(ns.Name, k), "not a hash", 0).Err(); err != nil {
				t.Fatal(err)
			}
			bad++
		case 6:
			e.put(t, s, ns, k, at.Add(time.Duration(i)*time.Second), i, all[i%4:i%4+3])
		default:
			e.put(t, s, ns, k, at.Add(time.Duration(i)*time.Second), i, all)
		}
	}
	subset := []*feature.Feature{all[4], all[1], all[4], all[0]}
	for _, feats := range [][]*feature.Feature{all, subset} {
		rows, err := s.Read(ctx, ns, keys, feats)
		if err != nil {
			t.Fatal(err)
		}
		e.check(t, fmt.Sprintf("read of %d keys, %d features", len(keys), len(feats)), rows, keys, feats)
		for _, k := range keys {
			one, err := s.Read(ctx, ns, []string{k}, feats)
			if err != nil {
				t.Fatal(err)
			}
			e.check(t, "read of "+k+" alone", one, []string{k}, feats)
		}
	}
	// Each bad key counted once per read of the two, alone and in bulk.
	if n, want := metricValue(t, reg, "cairn_redis_undecodable_values_total"), float64(4*bad); n != want {
		t.Errorf("undecodable values counted %v, want %v", n, want)
	}
}

// A whole-hash read's name lookup agrees with idNumber on every name of
// up to three bytes.
func TestColumnMatchesIDNumber(t *testing.T) {
	sc := &readScratch{byNum: make([]int32, 36*36*36)}
	for i := range sc.byNum {
		sc.byNum[i] = int32(i%7 + 1)
	}
	names := [][]byte{{}}
	for c := 0; c < 256; c++ {
		names = append(names, []byte{byte(c)})
		for _, d := range []byte("09az_A\xff") {
			names = append(names, []byte{byte(c), d}, []byte{d, byte(c)}, []byte{byte(c), d, 'a'})
		}
	}
	for _, name := range names {
		want := -1
		switch n := idNumber(name); {
		case n == 0:
			want = 0
		case n > 0 && n < len(sc.byNum) && sc.byNum[n] != 0:
			want = int(sc.byNum[n])
		}
		if got := sc.column(name); got != want {
			t.Fatalf("column(%q) = %d, want %d (idNumber %d)", name, got, want, idNumber(name))
		}
	}
}

// The values a read answers own their bytes: overwriting the read's
// arena, and reading other entities into other rows, leaves them as they
// were. Strings, which share a block per entity, would show it first.
func TestReadValuesOutliveTheArena(t *testing.T) {
	s, _, ns, all, at := userStore(t)
	ctx := context.Background()
	e := expected{}
	var keys []string
	for i := range 40 {
		k := fmt.Sprintf("k%02d", i)
		keys = append(keys, k)
		e.put(t, s, ns, k, at.Add(time.Duration(i)*time.Second), i, all)
	}
	subset := []*feature.Feature{all[2], all[6], all[2]}
	for _, feats := range [][]*feature.Feature{all, subset} {
		rows, err := s.Read(ctx, ns, keys[:20], feats)
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			sc := scratchPool.Get().(*readScratch)
			a := sc.arena[:cap(sc.arena)]
			for i := range a {
				a[i] = '#'
			}
			scratchPool.Put(sc)
			if _, err := s.Read(ctx, ns, keys[20:], feats); err != nil {
				t.Fatal(err)
			}
		}
		e.check(t, fmt.Sprintf("read of 20 keys, %d features, after other reads", len(feats)), rows, keys[:20], feats)
	}
}
