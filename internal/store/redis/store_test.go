package redis

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"math"
	"os"
	"os/exec"
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

func TestMain(m *testing.M) {
	// go-redis logs every failed dial; the outage tests cause many.
	goredis.SetLogger(discardLogger{})
	os.Exit(testserver.Run(m))
}

type discardLogger struct{}

func (discardLogger) Printf(context.Context, string, ...any) {}

var quiet = slog.New(slog.DiscardHandler)

// prefixSeq makes the key prefixes of one test binary unique; the run's
// start time keeps them apart from other runs against a shared server.
var (
	prefixSeq atomic.Int64
	runID     = time.Now().Format("150405.000000")
)

// uniquePrefix returns a key prefix no other test uses.
func uniquePrefix(t testing.TB) string {
	return "cairn-test:" + runID + ":" + strconv.FormatInt(prefixSeq.Add(1), 10) + ":"
}

func testConfig(t testing.TB, prefix string) Config {
	c := DefaultConfig()
	c.Addr = testserver.Redis(t)
	c.KeyPrefix = prefix
	c.PoolSize = 8
	return c
}

// openT opens a store under prefix, closed when the test ends.
func openT(t testing.TB, prefix string) *Store {
	t.Helper()
	s, err := Open(context.Background(), testConfig(t, prefix), nil, quiet)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// rawClient returns a plain client of the test server, closed when the
// test ends.
func rawClient(t testing.TB) *goredis.Client {
	c := goredis.NewClient(&goredis.Options{Addr: testserver.Redis(t)})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestConformance(t *testing.T) {
	base := uniquePrefix(t)
	storetest.Run(t, func(t *testing.T, name string) storetest.Store {
		s, err := Open(context.Background(), testConfig(t, base+name+":"), prometheus.NewRegistry(), quiet)
		if err != nil {
			t.Fatalf("open %s: %v", name, err)
		}
		return s
	})
}

func mustParse(t *testing.T, yaml string) *feature.Registry {
	t.Helper()
	r, err := feature.Parse("test", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func feat(t *testing.T, r *feature.Registry, fqn string) *feature.Feature {
	t.Helper()
	f, ok := r.Lookup(fqn)
	if !ok {
		t.Fatalf("no feature %s", fqn)
	}
	return f
}

func write(t *testing.T, s *Store, ws ...store.EntityWrite) {
	t.Helper()
	if err := s.Write(context.Background(), ws); err != nil {
		t.Fatalf("write: %v", err)
	}
}

func read(t *testing.T, s *Store, ns *feature.Namespace, keys []string, fs ...*feature.Feature) []store.Row {
	t.Helper()
	rows, err := s.Read(context.Background(), ns, keys, fs)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return rows
}

func entity(ns *feature.Namespace, key string, at time.Time, vals ...any) store.EntityWrite {
	w := store.EntityWrite{Namespace: ns, Key: key}
	for i := 0; i+1 < len(vals); i += 2 {
		w.Values = append(w.Values, store.Value{Feature: vals[i].(*feature.Feature), Value: vals[i+1], ObservedAt: at})
	}
	return w
}

// The layout documented in doc.go and docs/redis.md, read with plain
// commands.
func TestRawLayout(t *testing.T) {
	prefix := uniquePrefix(t)
	s := openT(t, prefix)
	reg := storetest.Registry()
	ns, _ := reg.Namespace("user")
	age, name, tags := feat(t, reg, "user.age"), feat(t, reg, "user.name"), feat(t, reg, "user.tags")
	at := time.Date(1969, 12, 31, 23, 59, 59, 999999000, time.UTC) // -1µs
	write(t, s, entity(ns, "u\x001", at, age, int64(-2), name, nil, tags, []any{"a"}))

	ctx := context.Background()
	rc := rawClient(t)
	ids, err := rc.HGetAll(ctx, prefix+"ids").Result()
	if err != nil {
		t.Fatal(err)
	}
	if ids["#layout"] != "1" || !validGen(ids["#gen"]) || ids["#last"] != "3" {
		t.Fatalf("mapping hash: %q", ids)
	}
	if ids["user.age"] != "1" || ids["user.name"] != "2" || ids["user.tags"] != "3" {
		t.Fatalf("ids: %q, want user.age 1, user.name 2, user.tags 3 (in order of first write)", ids)
	}

	key := prefix + "{user:u\x001}"
	got, err := rc.HGetAll(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	// -1µs, sign bit flipped: 0x7fff_ffff_ffff_ffff.
	ts := "\x7f\xff\xff\xff\xff\xff\xff\xff"
	want := map[string]string{
		"0": ids["#gen"],
		"1": ts + "\x01\x03",          // int, zig-zag varint of -2
		"2": ts + "\x00",              // null
		"3": ts + "\x08\x01\x03\x01a", // list of 1: string of 1 byte
	}
	if len(got) != len(want) {
		t.Fatalf("HGETALL %q = %q, want %q", key, got, want)
	}
	for f, v := range want {
		if got[f] != v {
			t.Errorf("field %s = %q, want %q", f, got[f], v)
		}
	}
	if ttl, _ := rc.PTTL(ctx, key).Result(); ttl != -1 {
		t.Errorf("PTTL = %v, want none: user never goes stale", ttl)
	}

	// A micro-second after the epoch sorts after a microsecond before it.
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(int64(1))^signBit)
	if string(b[:]) <= ts {
		t.Errorf("observed-at bytes do not sort as times: %x <= %x", b, ts)
	}

	// The redis-cli commands of docs/redis.md show the same.
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Log("redis-cli not installed; skipping the command-line check")
		return
	}
	host, port, _ := strings.Cut(testserver.Redis(t), ":")
	out, err := exec.Command(cli, "-h", host, "-p", port, "--no-raw", "HGET", prefix+"ids", "user.age").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != `"1"` {
		t.Errorf("redis-cli HGET ids user.age: %q, %v", out, err)
	}
	write(t, s, entity(ns, "u1", at, age, int64(-2))) // a NUL cannot be passed in a command line
	out, err = exec.Command(cli, "-h", host, "-p", port, "--no-raw", "HGET", prefix+"{user:u1}", "1").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != `"\x7f\xff\xff\xff\xff\xff\xff\xff\x01\x03"` {
		t.Errorf("redis-cli HGET entity 1: %q, %v", out, err)
	}
}

// The key of an entity whose namespace has a finite staleness expires
// after the longest staleness of its features.
func TestTTL(t *testing.T) {
	reg := mustParse(t, `
namespaces:
  - name: short
    primary_key: id
    max_staleness: 300ms
    features: {id: string, a: int}
  - name: mixed
    primary_key: id
    max_staleness: 1h
    features:
      id: string
      a: int
      b: {type: int, max_staleness: 2h}
  - name: forever
    primary_key: id
    max_staleness: 1h
    features:
      id: string
      a: int
      b: {type: int, max_staleness: infinity}
`)
	prefix := uniquePrefix(t)
	s := openT(t, prefix)
	rc := rawClient(t)
	ctx := context.Background()
	now := time.Now()
	pttl := func(ns, key string) time.Duration {
		t.Helper()
		d, err := rc.PTTL(ctx, prefix+"{"+ns+":"+key+"}").Result()
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	short, _ := reg.Namespace("short")
	mixed, _ := reg.Namespace("mixed")
	forever, _ := reg.Namespace("forever")
	sa := feat(t, reg, "short.a")
	write(t, s,
		entity(short, "k", now, sa, int64(1)),
		entity(mixed, "k", now, feat(t, reg, "mixed.a"), int64(1)),
		entity(mixed, "future", now.Add(time.Hour), feat(t, reg, "mixed.a"), int64(1)),
		entity(forever, "k", now, feat(t, reg, "forever.a"), int64(1)),
	)
	if d := pttl("short", "k"); d <= 0 || d > 300*time.Millisecond {
		t.Errorf("short: PTTL %v, want in (0, 300ms]", d)
	}
	if d := pttl("mixed", "k"); d <= time.Hour || d > 2*time.Hour {
		t.Errorf("mixed: PTTL %v, want the longest staleness, 2h", d)
	}
	if d := pttl("mixed", "future"); d <= 2*time.Hour+59*time.Minute {
		t.Errorf("mixed, observed an hour ahead: PTTL %v, want about 3h", d)
	}
	if d := pttl("forever", "k"); d != -1 {
		t.Errorf("forever: PTTL %v, want none (-1)", d)
	}

	// A write that stores nothing (older than the stored value) does not
	// extend the expiry; one that stores something does.
	time.Sleep(100 * time.Millisecond)
	write(t, s, entity(short, "k", now.Add(-time.Second), sa, int64(0)))
	if d := pttl("short", "k"); d > 200*time.Millisecond {
		t.Errorf("short after a stale write: PTTL %v, want at most 200ms", d)
	}
	write(t, s, entity(short, "k", time.Now(), sa, int64(2)))
	if d := pttl("short", "k"); d < 250*time.Millisecond {
		t.Errorf("short after a fresh write: PTTL %v, want it raised back to about 300ms", d)
	}
	time.Sleep(400 * time.Millisecond)
	if rows := read(t, s, short, []string{"k"}, sa); rows[0].Found {
		t.Errorf("short after its staleness: %+v, want expired", rows[0])
	}

	// A namespace whose bound became infinite removes the expiry on write.
	unbounded := mustParse(t, "namespaces:\n- name: mixed\n  primary_key: id\n  features: {id: string, a: int}\n")
	ns2, _ := unbounded.Namespace("mixed")
	write(t, s, entity(ns2, "k", time.Now(), feat(t, unbounded, "mixed.a"), int64(3)))
	if d := pttl("mixed", "k"); d != -1 {
		t.Errorf("mixed after its staleness became infinite: PTTL %v, want none", d)
	}
}

// Regression: the expiry of a value observed more than 292 years ahead
// was computed in time.Duration, overflowed, and became 1 ms, so an
// acknowledged upload observed in the year 2300 or 2999 vanished. The key
// must live until the value goes stale: observed-at plus the staleness.
func TestTTLFarFuture(t *testing.T) {
	reg := mustParse(t, `
namespaces:
  - name: day
    primary_key: id
    max_staleness: 1d
    features: {id: string, a: int}
`)
	prefix := uniquePrefix(t)
	s := openT(t, prefix)
	rc := rawClient(t)
	ctx := context.Background()
	day, _ := reg.Namespace("day")
	a := feat(t, reg, "day.a")
	years := []int{2300, 2999}
	for _, y := range years {
		observed := time.Date(y, 12, 31, 23, 59, 59, 999999000, time.UTC)
		key := strconv.Itoa(y)
		write(t, s, entity(day, key, observed, a, int64(y)))
		// Read as a plain integer of milliseconds: go-redis's PTTL
		// answers a Duration, which a TTL this long overflows.
		got, err := rc.Do(ctx, "PTTL", prefix+"{day:"+key+"}").Int64()
		if err != nil {
			t.Fatal(err)
		}
		want := observed.UnixMilli() + 24*3600*1000 - time.Now().UnixMilli()
		if got < want-60_000 || got > want+60_000 {
			t.Errorf("observed in %d: PTTL %d ms, want about %d (until observed-at + 1d)", y, got, want)
		}
	}
	time.Sleep(20 * time.Millisecond)
	keys := make([]string, len(years))
	for i, y := range years {
		keys[i] = strconv.Itoa(y)
	}
	for i, row := range read(t, s, day, keys, a) {
		if !row.Found || row.Cells[0].Value != int64(years[i]) {
			t.Errorf("observed in %d: read back %+v, want the value", years[i], row)
		}
	}
}

// The time to live saturates instead of overflowing, and never lets a key
// expire before its newest value is stale.
func TestExpiryMillis(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	far := time.Date(2999, 12, 31, 23, 59, 59, 0, time.UTC)
	tests := []struct {
		name      string
		newest    time.Time
		staleness time.Duration
		want      int64
	}{
		{"observed now", now, time.Hour, 3600_000},
		{"observed long ago lives a full staleness", time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC), time.Hour, 3600_000},
		{"observed ahead", now.Add(time.Minute), time.Hour, 3660_000},
		{"sub-millisecond staleness rounds up", now, time.Microsecond, 1},
		{"fractional millisecond rounds up", now, 1500 * time.Microsecond, 2},
		{"observed in 2999", far, 24 * time.Hour, far.UnixMilli() - now.UnixMilli() + 86400_000},
		{"longest staleness, in 2999", far, math.MaxInt64, far.UnixMilli() - now.UnixMilli() + int64(math.MaxInt64/time.Millisecond) + 1},
		{"saturates", time.Date(292277024, 1, 1, 0, 0, 0, 0, time.UTC), math.MaxInt64, maxTTLMillis},
	}
	for _, tt := range tests {
		if got := expiryMillis(now, tt.newest, tt.staleness); got != tt.want {
			t.Errorf("%s: expiryMillis = %d, want %d", tt.name, got, tt.want)
		}
	}
}

// A registry that changes a feature's type must not make the store serve
// the old value as the new type: it reads as absent until rewritten.
func TestTypeChangeReadsAsAbsent(t *testing.T) {
	before := mustParse(t, "namespaces:\n- name: user\n  primary_key: id\n  features: {id: string, age: int, emb: 'vector[2]', name: string}\n")
	after := mustParse(t, "namespaces:\n- name: user\n  primary_key: id\n  features: {id: string, age: string, emb: 'vector[3]', name: string}\n")
	ts := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	reg := prometheus.NewRegistry()
	s, err := Open(context.Background(), testConfig(t, uniquePrefix(t)), reg, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ns, _ := before.Namespace("user")
	write(t, s, entity(ns, "u1", ts, feat(t, before, "user.age"), int64(7),
		feat(t, before, "user.emb"), []float32{1, 2}, feat(t, before, "user.name"), "x"))

	ns2, _ := after.Namespace("user")
	fs := []*feature.Feature{feat(t, after, "user.age"), feat(t, after, "user.emb"), feat(t, after, "user.name")}
	r := read(t, s, ns2, []string{"u1"}, fs...)[0]
	if !r.Found || r.Cells[0].Found || r.Cells[1].Found || !r.Cells[2].Found || r.Cells[2].Value != "x" {
		t.Fatalf("after type change: got %+v, want age and emb absent, name found", r)
	}
	if n := metricValue(t, reg, "cairn_redis_undecodable_values_total"); n != 2 {
		t.Errorf("undecodable values counted: %v, want 2", n)
	}
	write(t, s, entity(ns2, "u1", ts.Add(time.Second), fs[0], "seven"))
	if c := read(t, s, ns2, []string{"u1"}, fs[0])[0].Cells[0]; !c.Found || c.Value != "seven" {
		t.Fatalf("after rewrite: got %+v, want seven", c)
	}
}

// When the server loses the mapping (here: deleted by hand), ids start
// again from 1 in a new generation; a process that cached the old ids must
// neither read nor write with them.
func TestMappingLoss(t *testing.T) {
	prefix := uniquePrefix(t)
	regA := prometheus.NewRegistry()
	a, err := Open(context.Background(), testConfig(t, prefix), regA, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	reg := storetest.Registry()
	ns, _ := reg.Namespace("user")
	age, name := feat(t, reg, "user.age"), feat(t, reg, "user.name")
	ts := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	write(t, a, entity(ns, "old", ts, age, int64(40), name, "old"))

	ctx := context.Background()
	rc := rawClient(t)
	if err := rc.Del(ctx, prefix+"ids").Err(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Millisecond) // generations are milliseconds

	// A new process writes user.name, which now gets id 1: user.age's id
	// in the old generation.
	b := openT(t, prefix)
	write(t, b, entity(ns, "new", ts, name, "new"))

	// a is behind: the new entity tells it, and the old one is garbage.
	rows := read(t, a, ns, []string{"old", "new"}, age, name)
	if rows[0].Found {
		t.Errorf("old entity: %+v, want absent (written under the lost mapping)", rows[0])
	}
	if !rows[1].Found || rows[1].Cells[0].Found || rows[1].Cells[1].Value != "new" {
		t.Errorf("new entity: %+v, want name \"new\" and no age", rows[1])
	}
	if n := metricValue(t, regA, "cairn_redis_mapping_generation_changes_total"); n != 1 {
		t.Errorf("generation changes counted: %v, want 1", n)
	}

	// Writing the old entity replaces it whole, under the new generation.
	write(t, a, entity(ns, "old", ts.Add(time.Second), age, int64(41)))
	rows = read(t, b, ns, []string{"old"}, age, name)
	if r := rows[0]; !r.Found || r.Cells[0].Value != int64(41) || r.Cells[1].Found {
		t.Errorf("old entity rewritten: %+v, want age 41 only", r)
	}
}

// A reader opened before any feature had an id learns the ids writers
// assign later, without assigning any itself.
func TestReaderLearnsIDs(t *testing.T) {
	prefix := uniquePrefix(t)
	reader := openT(t, prefix)
	writer := openT(t, prefix)
	reg := storetest.Registry()
	ns, _ := reg.Namespace("user")
	age, name := feat(t, reg, "user.age"), feat(t, reg, "user.name")
	ts := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

	if r := read(t, reader, ns, []string{"k"}, age)[0]; r.Found {
		t.Fatalf("empty store: %+v", r)
	}
	if n, _ := rawClient(t).Exists(context.Background(), prefix+"ids").Result(); n != 0 {
		t.Fatal("a read created the mapping")
	}
	write(t, writer, entity(ns, "k", ts, age, int64(1)))
	write(t, writer, entity(ns, "k", ts, name, "n"))
	r := read(t, reader, ns, []string{"k"}, name, age)[0]
	if !r.Found || r.Cells[0].Value != "n" || r.Cells[1].Value != int64(1) {
		t.Fatalf("after writes: %+v", r)
	}
}

// A key that holds something other than a hash rejects the write of its
// entity (retrying cannot help) and reads as absent.
func TestWrongTypeRejected(t *testing.T) {
	prefix := uniquePrefix(t)
	s := openT(t, prefix)
	reg := storetest.Registry()
	ns, _ := reg.Namespace("user")
	if err := rawClient(t).Set(context.Background(), prefix+"{user:k}", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	err := s.Write(context.Background(), []store.EntityWrite{
		entity(ns, "k", time.Now(), feat(t, reg, "user.age"), int64(1)),
		entity(ns, "other", time.Now(), feat(t, reg, "user.age"), int64(2)),
	})
	if !errors.Is(err, store.ErrRejected) {
		t.Fatalf("write over a string key: %v, want ErrRejected", err)
	}
	rows := read(t, s, ns, []string{"other", "k"}, feat(t, reg, "user.age"))
	if r := rows[0]; r.Cells[0].Value != int64(2) {
		t.Errorf("the other entity of the call: %+v, want written", r)
	}
	if r := rows[1]; r.Found {
		t.Errorf("the entity whose key is a string: %+v, want absent", r)
	}
}

// A key prefix with glob characters lists only its own keys.
func TestScanKeysGlobPrefix(t *testing.T) {
	base := uniquePrefix(t)
	star, plain := openT(t, base+"a*:"), openT(t, base+"ab:")
	reg := storetest.Registry()
	ns, _ := reg.Namespace("user")
	age := feat(t, reg, "user.age")
	write(t, star, entity(ns, "mine", time.Now(), age, int64(1)))
	write(t, plain, entity(ns, "other", time.Now(), age, int64(1)))
	var got []string
	if err := star.ScanKeys(context.Background(), ns, func(k string) error { got = append(got, k); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != "mine" {
		t.Errorf("ScanKeys under prefix %q: %q, want [mine]", base+"a*:", got)
	}
}

func TestOpenUnreachable(t *testing.T) {
	c := DefaultConfig()
	c.Addr = "127.0.0.1:1" // nothing listens on port 1
	c.DialTimeout = 200 * time.Millisecond
	start := time.Now()
	_, err := Open(context.Background(), c, prometheus.NewRegistry(), quiet)
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("open of an unreachable server: %v, want an error naming the address", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("open took %v to fail", d)
	}
}

func TestClosed(t *testing.T) {
	s := openT(t, uniquePrefix(t))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	ns, _ := storetest.Registry().Namespace("user")
	if _, err := s.Read(context.Background(), ns, []string{"k"}, nil); !errors.Is(err, errClosed) {
		t.Errorf("read after close: %v", err)
	}
}

// metricValue returns the value of the counter called name in reg.
func metricValue(t testing.TB, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() != labels[i+1] {
						continue metric
					}
				}
			}
			total += m.GetCounter().GetValue()
		}
	}
	return total
}
