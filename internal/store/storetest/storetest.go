// Package storetest is the conformance suite every online store backend
// passes: the same operations, the same results, whether the data lives in
// DynamoDB, Redis or Pebble.
//
// A backend's test calls [Run] with a function that opens a client of a
// store by name. The suite covers round trips of every feature type and
// their edge values, explicit nulls, missing entities and features,
// newest-wins per feature (including concurrent writers, each with its own
// client), large batches, awkward keys, and durability across reopening;
// and, for backends that keep the buckets of windowed features
// (store.BucketStore), their versions, concurrent read-modify-write, range
// reads, isolation, and that they leave entity reads and the key scan
// alone.
//
// Observed-at times span the whole range the API accepts, the years 1000
// to 2999, in namespaces with and without a maximum staleness. A store
// that expires entities (Redis key expiry, DynamoDB Time to Live) keeps
// each one at least until its newest value goes stale, observed-at plus
// the staleness: a value observed in the future is fresh until that
// future plus its staleness (queries compare the age now minus observed-at,
// negative for it, with the bound), so it must not expire before then. A
// value observed long ago is written and read back like any other; it is
// the query, not the store, that answers it as stale.
//
// Values the public API cannot produce are not tested: NaN and infinities
// (not valid JSON), null list elements, and non-canonical Go types.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/store"
)

// Store is the contract every online store backend implements.
type Store interface {
	// Read returns one Row per key, aligned with keys; each Row's Cells
	// aligned with feats. All feats belong to ns. A missing entity gives
	// Row{Found:false, Cells: all not-found}.
	Read(ctx context.Context, ns *feature.Namespace, keys []string, feats []*feature.Feature) ([]store.Row, error)
	// Write applies each EntityWrite newest-wins per feature by ObservedAt
	// (a value with an observed-at older than the stored one is skipped for
	// that feature only; equal or newer replaces). Entities within one call
	// are distinct (callers use store.Coalesce). Atomic per entity with
	// respect to concurrent writers (no lost updates, no older value ever
	// replacing a newer one). Explicit nil values are stored as null with
	// their observed-at. Errors that retrying cannot fix wrap
	// store.ErrRejected.
	Write(ctx context.Context, writes []store.EntityWrite) error
	// Close releases the client. Data written stays in the store.
	Close() error
}

// registryYAML declares the features the suite writes: two namespaces, one
// keyed by string and one by int, each with a feature of every type, and
// user_x, whose name extends user's so that keys built by plain
// concatenation of namespace and key collide.
const registryYAML = `
namespaces:
  - name: user
    primary_key: id
    max_staleness: infinity
    features:
      id: string
      age: int
      score: float
      name: string
      active: bool
      blob: bytes
      seen: datetime
      tags: list[string]
      counts: list[int]
      matrix: list[list[float]]
      visits: list[datetime]
      notes: list[json]
      embedding: vector[8]
      profile: json
  - name: merchant
    primary_key: id
    max_staleness: 1d
    features:
      id: int
      age: int
      score: float
      name: string
      active: bool
      blob: bytes
      seen: datetime
      tags: list[string]
      counts: list[int]
      matrix: list[list[float]]
      visits: list[datetime]
      notes: list[json]
      embedding: vector[8]
      profile: json
  - name: user_x
    primary_key: id
    features:
      id: string
      name: string
`

var parseRegistry = sync.OnceValues(func() (*feature.Registry, error) {
	return feature.Parse("storetest registry", []byte(registryYAML))
})

// Registry returns the feature registry the suite writes and reads, so a
// backend can set itself up with it (for example, warm a name mapping). It
// has namespaces user (string key) and merchant (int key), each with a
// feature of every type, and a small user_x (string key). It returns nil
// only if the suite's own registry text is invalid, which Run reports as a
// failure.
func Registry() *feature.Registry {
	r, _ := parseRegistry()
	return r
}

// Run runs the whole suite. open(t, name) returns a client of the store
// called name; opening the same name again must give a new client onto the
// same underlying data (same directory, table or database), so the suite
// can simulate several processes. The suite uses a fresh unique name per
// subtest, made of lowercase letters, digits and dashes (at most 48
// characters), and closes every client it opens before the subtest ends.
func Run(t *testing.T, open func(t *testing.T, name string) Store) {
	t.Helper()
	reg, err := parseRegistry()
	if err != nil {
		t.Fatalf("storetest: registry: %v", err)
	}
	var id [4]byte
	if _, err := rand.Read(id[:]); err != nil {
		t.Fatalf("storetest: run id: %v", err)
	}
	s := &suite{open: open, reg: reg, runID: hex.EncodeToString(id[:])}
	tests := []struct {
		name string
		fn   func(*testing.T)
	}{
		{"RoundTrip", s.testRoundTrip},
		{"FloatExtremes", s.testFloatExtremes},
		{"ObservedAtCanonical", s.testObservedAtCanonical},
		{"Null", s.testNull},
		{"MissingEntity", s.testMissingEntity},
		{"UnwrittenFeatures", s.testUnwrittenFeatures},
		{"Subset", s.testSubset},
		{"EmptyCalls", s.testEmptyCalls},
		{"NewestWins", s.testNewestWins},
		{"ConcurrentWriters", s.testConcurrentWriters},
		{"ManyEntities", s.testManyEntities},
		{"Keys", s.testKeys},
		{"Reopen", s.testReopen},
		{"RejectsWrongType", s.testRejectsWrongType},
		{"ScanKeys", s.testScanKeys},
		{"ObservedAtYearRange", s.testObservedAtYearRange},
		{"BucketVersions", s.testBucketVersions},
		{"BucketConcurrent", s.testBucketConcurrent},
		{"BucketRange", s.testBucketRange},
		{"BucketIsolation", s.testBucketIsolation},
		{"BucketsBesideEntities", s.testBucketsBesideEntities},
		{"BucketExpired", s.testBucketExpired},
	}
	for _, tc := range tests {
		t.Run(tc.name, tc.fn)
	}
}

// suite carries what every subtest needs.
type suite struct {
	open  func(t *testing.T, name string) Store
	reg   *feature.Registry
	runID string
	seq   atomic.Int64
}

// newName returns a store name unique to this run and subtest.
func (s *suite) newName(t *testing.T) string {
	slug := strings.ToLower(t.Name())
	if i := strings.LastIndexByte(slug, '/'); i >= 0 {
		slug = slug[i+1:]
	}
	slug = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, slug)
	if len(slug) > 20 {
		slug = slug[:20]
	}
	return fmt.Sprintf("cairn-st-%s-%d-%s", s.runID, s.seq.Add(1), slug)
}

// client is a Store the suite closes exactly once, either explicitly or
// when the test ends.
type client struct {
	Store
	once sync.Once
	err  error
}

func (c *client) Close() error {
	c.once.Do(func() { c.err = c.Store.Close() })
	return c.err
}

// connect opens a client of the store called name and closes it when the
// test ends.
func (s *suite) connect(t *testing.T, name string) *client {
	t.Helper()
	st := s.open(t, name)
	if st == nil {
		t.Fatalf("open(%q) returned a nil store", name)
	}
	c := &client{Store: st}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close store %q: %v", name, err)
		}
	})
	return c
}

func (s *suite) ns(t *testing.T, name string) *feature.Namespace {
	t.Helper()
	ns, ok := s.reg.Namespace(name)
	if !ok {
		t.Fatalf("namespace %q not in the suite registry", name)
	}
	return ns
}

func (s *suite) feat(t *testing.T, fqn string) *feature.Feature {
	t.Helper()
	f, ok := s.reg.Lookup(fqn)
	if !ok {
		t.Fatalf("feature %q not in the suite registry", fqn)
	}
	return f
}

// feats returns the namespace's features other than its primary key, in
// declaration order.
func feats(ns *feature.Namespace) []*feature.Feature {
	out := make([]*feature.Feature, 0, len(ns.Features))
	for _, f := range ns.Features {
		if f != ns.PrimaryKey {
			out = append(out, f)
		}
	}
	return out
}

// base is the reference time of the suite's writes; it has microseconds so
// that a store keeping only milliseconds or seconds fails.
var base = time.Date(2024, 5, 6, 7, 8, 9, 123456000, time.UTC)

// at returns base shifted by n microseconds.
func at(n int) time.Time { return base.Add(time.Duration(n) * time.Microsecond) }

func write(t *testing.T, st Store, writes ...store.EntityWrite) {
	t.Helper()
	if err := st.Write(context.Background(), writes); err != nil {
		t.Fatalf("write %d entities: %v", len(writes), err)
	}
}

// read reads and checks that the answer has the promised shape.
func read(t *testing.T, st Store, ns *feature.Namespace, keys []string, fs []*feature.Feature) []store.Row {
	t.Helper()
	rows, err := st.Read(context.Background(), ns, keys, fs)
	if err != nil {
		t.Fatalf("read %d %s keys: %v", len(keys), ns.Name, err)
	}
	if len(rows) != len(keys) {
		t.Fatalf("read %d keys: got %d rows", len(keys), len(rows))
	}
	for i, r := range rows {
		if len(r.Cells) != len(fs) {
			t.Fatalf("read key %q: got %d cells for %d features", keys[i], len(r.Cells), len(fs))
		}
	}
	return rows
}

// found is the expected cell of a stored value.
func found(v any, observedAt time.Time) store.Cell {
	return store.Cell{Found: true, Value: v, ObservedAt: observedAt}
}

// checkRow compares a row with its expectation; a want cell that is not
// Found expects nothing stored.
func checkRow(t *testing.T, label string, got store.Row, wantFound bool, fs []*feature.Feature, want []store.Cell) {
	t.Helper()
	if got.Found != wantFound {
		t.Errorf("%s: Row.Found = %v, want %v", label, got.Found, wantFound)
	}
	for i, f := range fs {
		checkCell(t, label+" "+f.FQN, got.Cells[i], want[i])
	}
}

func checkCell(t *testing.T, label string, got, want store.Cell) {
	t.Helper()
	if !want.Found {
		if got.Found || got.Value != nil || !got.ObservedAt.IsZero() {
			t.Errorf("%s: got Found=%v Value=%s ObservedAt=%v, want not found (nil value, zero time)",
				label, got.Found, show(got.Value), got.ObservedAt)
		}
		return
	}
	if !got.Found {
		t.Errorf("%s: not found, want %s observed at %v", label, show(want.Value), want.ObservedAt)
		return
	}
	if d := diff(want.Value, got.Value); d != "" {
		t.Errorf("%s: value: want != got: %s", label, d)
	}
	if msg := notUTC(got.Value); msg != "" {
		t.Errorf("%s: value: %s", label, msg)
	}
	wantAt := feature.CanonicalTime(want.ObservedAt)
	if !got.ObservedAt.Equal(wantAt) {
		t.Errorf("%s: ObservedAt = %s, want %s", label,
			got.ObservedAt.Format(time.RFC3339Nano), wantAt.Format(time.RFC3339Nano))
	} else if got.ObservedAt.Location() != time.UTC {
		t.Errorf("%s: ObservedAt %v is not in UTC", label, got.ObservedAt)
	}
}

// notUTC reports a datetime in v, at any depth of list, that is not in UTC.
func notUTC(v any) string {
	switch x := v.(type) {
	case time.Time:
		if x.Location() != time.UTC {
			return fmt.Sprintf("datetime %v is not in UTC", x)
		}
	case []any:
		for i, e := range x {
			if msg := notUTC(e); msg != "" {
				return fmt.Sprintf("element %d: %s", i, msg)
			}
		}
	}
	return ""
}

// entity builds an EntityWrite of values all observed at one time; vals
// alternates feature names (without namespace) and values.
func (s *suite) entity(t *testing.T, ns *feature.Namespace, key string, observedAt time.Time, vals ...any) store.EntityWrite {
	t.Helper()
	w := store.EntityWrite{Namespace: ns, Key: key}
	for i := 0; i+1 < len(vals); i += 2 {
		f := s.feat(t, ns.Name+"."+vals[i].(string))
		w.Values = append(w.Values, store.Value{Feature: f, Value: vals[i+1], ObservedAt: observedAt})
	}
	return w
}

// expect returns the cells an EntityWrite should read back as, for fs.
func expect(w store.EntityWrite, fs []*feature.Feature) []store.Cell {
	out := make([]store.Cell, len(fs))
	for i, f := range fs {
		for _, v := range w.Values {
			if v.Feature == f {
				out[i] = found(v.Value, v.ObservedAt)
			}
		}
	}
	return out
}

func num(s string) json.Number { return json.Number(s) }

// roundTripCases are whole entities of edge values, one per entity.
func (s *suite) roundTripCases(t *testing.T, ns *feature.Namespace) []store.EntityWrite {
	allBytes := make([]byte, 256)
	for i := range allBytes {
		allBytes[i] = byte(i)
	}
	long := strings.Repeat("x", 64<<10)
	return []store.EntityWrite{
		s.entity(t, ns, "typical", at(1),
			"age", int64(31),
			"score", 0.125,
			"name", "Ada Lovelace",
			"active", true,
			"blob", []byte("hello"),
			"seen", time.Date(2023, 12, 31, 23, 59, 59, 999999000, time.UTC),
			"tags", []any{"a", "b", "c"},
			"counts", []any{int64(1), int64(2), int64(3)},
			"matrix", []any{[]any{1.5, -2.25}, []any{}, []any{3.0}},
			"visits", []any{time.Date(2020, 2, 29, 12, 0, 0, 1000, time.UTC)},
			"notes", []any{map[string]any{"k": "v"}, map[string]any{}},
			"embedding", []float32{0.1, -0.2, 0.3, -0.4, 0.5, -0.6, 0.7, -0.8},
			"profile", map[string]any{"plan": "pro", "seats": num("12"), "ratio": num("0.75")},
		),
		s.entity(t, ns, "empty", at(2),
			"age", int64(0),
			"score", 0.0,
			"name", "",
			"active", false,
			"blob", []byte{},
			"seen", time.Unix(0, 0).UTC(),
			"tags", []any{},
			"counts", []any{},
			"matrix", []any{},
			"visits", []any{},
			"notes", []any{},
			"embedding", []float32{0, 0, 0, 0, 0, 0, 0, 0},
			"profile", map[string]any{},
		),
		s.entity(t, ns, "extremes", at(3),
			"age", int64(math.MaxInt64),
			"score", -1234567.890625,
			"name", long,
			"active", true,
			"blob", allBytes,
			"seen", time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC),
			"tags", []any{"", " ", "x"},
			"counts", []any{int64(math.MinInt64), int64(-1), int64(0), int64(math.MaxInt64)},
			"matrix", []any{[]any{0.1, 0.2, 0.30000000000000004}, []any{-0.5}},
			"visits", []any{
				time.Date(1969, 12, 31, 23, 59, 59, 999999000, time.UTC),
				time.Date(1, 1, 1, 0, 0, 0, 1000, time.UTC),
			},
			"notes", []any{map[string]any{"n": nil, "deep": map[string]any{"a": []any{}}}},
			"embedding", []float32{math.MaxFloat32, -math.MaxFloat32, math.SmallestNonzeroFloat32, 1, -1, 0.5, 1e-30, 3.4e38},
			"profile", map[string]any{"big": num("12345678901234567890"), "neg": num("-9223372036854775808"), "exp": num("1e-7")},
		),
		s.entity(t, ns, "negative", at(4),
			"age", int64(math.MinInt64),
			"score", -0.5,
			"name", "-",
			"active", false,
			"blob", []byte{0},
			"seen", time.Date(1901, 12, 13, 20, 45, 52, 1000, time.UTC),
			"tags", []any{"-1"},
			"counts", []any{int64(-42)},
			"matrix", []any{[]any{-1e-300, -1e300}},
			"visits", []any{time.Date(1066, 10, 14, 9, 0, 0, 0, time.UTC)},
			"notes", []any{map[string]any{"x": num("-1.5")}},
			"embedding", []float32{-1, -2, -3, -4, -5, -6, -7, -8},
			"profile", map[string]any{"t": false, "f": num("-0.001")},
		),
		s.entity(t, ns, "unicode", at(5),
			"age", int64(-1),
			"score", 1.0/3.0,
			"name", "Zoë 世界 🎉 \"quoted\" \\ tab\t newline\n nul\x00 end",
			"active", true,
			"blob", []byte{0xff, 0xfe, 0x00, 0x80, 'a'},
			"seen", time.Date(2024, 2, 29, 0, 0, 0, 1000, time.UTC),
			"tags", []any{"日本語", "🎉", "a#b", "a\x00b"},
			"counts", []any{int64(7)},
			"matrix", []any{[]any{}, []any{}},
			"visits", []any{time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)},
			"notes", []any{map[string]any{"ключ": "значение"}},
			"embedding", []float32{1, 2, 3, 4, 5, 6, 7, 8},
			"profile", map[string]any{
				"":       "empty key",
				"名前":     "値",
				"nested": map[string]any{"list": []any{num("1"), "two", true, nil, map[string]any{"x": []any{}}}, "null": nil},
				"s":      "quote \" and \\ and </script>",
			},
		),
	}
}

func (s *suite) testRoundTrip(t *testing.T) {
	st := s.connect(t, s.newName(t))
	for _, nsName := range []string{"user", "merchant"} {
		ns := s.ns(t, nsName)
		fs := feats(ns)
		cases := s.roundTripCases(t, ns)
		keys := make([]string, len(cases))
		for i := range cases {
			if ns.PrimaryKey.Type.Kind == feature.KindInt {
				cases[i].Key = strconv.Itoa(i + 1)
			}
			keys[i] = cases[i].Key
		}
		write(t, st, cases...)
		rows := read(t, st, ns, keys, fs)
		for i, w := range cases {
			checkRow(t, fmt.Sprintf("%s %q", ns.Name, w.Key), rows[i], true, fs, expect(w, fs))
		}
	}
}

// testFloatExtremes writes floats at the ends of the float64 range, all of
// which the API accepts as JSON numbers.
func (s *suite) testFloatExtremes(t *testing.T) {
	st := s.connect(t, s.newName(t))
	ns := s.ns(t, "user")
	values := []float64{
		math.MaxFloat64, -math.MaxFloat64,
		math.SmallestNonzeroFloat64, -math.SmallestNonzeroFloat64,
		2.2250738585072014e-308, // smallest normal
		1e-130, 1e126, 1e-200, 1e200,
		math.Pi, 9007199254740993, // 2^53+1 rounds to 2^53 as float64
		math.Copysign(0, -1),
	}
	var ws []store.EntityWrite
	var keys []string
	for i, v := range values {
		key := fmt.Sprintf("f%d", i)
		keys = append(keys, key)
		ws = append(ws, s.entity(t, ns, key, at(i), "score", v, "matrix", []any{[]any{v, -v}}))
	}
	write(t, st, ws...)
	fs := []*feature.Feature{s.feat(t, "user.score"), s.feat(t, "user.matrix")}
	rows := read(t, st, ns, keys, fs)
	for i, w := range ws {
		checkRow(t, fmt.Sprintf("%g", values[i]), rows[i], true, fs, expect(w, fs))
	}
}

// testObservedAtCanonical writes observed-at times with nanoseconds and in
// other zones; they read back in UTC truncated to the microsecond.
func (s *suite) testObservedAtCanonical(t *testing.T) {
	st := s.connect(t, s.newName(t))
	ns := s.ns(t, "user")
	zone := time.FixedZone("UTC+5:30", 5*3600+1800)
	times := []time.Time{
		time.Date(2024, 1, 2, 3, 4, 5, 123456789, time.UTC),
		time.Date(2024, 1, 2, 8, 34, 5, 999999999, zone),
		time.Date(1960, 6, 7, 8, 9, 10, 1001, time.UTC),
		time.Date(2262, 4, 11, 23, 47, 16, 854775000, time.UTC), // past time.Duration's range
	}
	var ws []store.EntityWrite
	var keys []string
	for i, ts := range times {
		key := fmt.Sprintf("t%d", i)
		keys = append(keys, key)
		ws = append(ws, s.entity(t, ns, key, ts, "age", int64(i), "seen", feature.CanonicalTime(ts)))
	}
	write(t, st, ws...)
	fs := []*feature.Feature{s.feat(t, "user.age"), s.feat(t, "user.seen")}
	rows := read(t, st, ns, keys, fs)
	for i, w := range ws {
		checkRow(t, keys[i], rows[i], true, fs, expect(w, fs))
	}
}

func (s *suite) testNull(t *testing.T) {
	st := s.connect(t, s.newName(t))
	ns := s.ns(t, "user")
	fs := feats(ns)

	// Every feature explicitly null: found, with a nil value.
	var vals []any
	for _, f := range fs {
		vals = append(vals, f.Name, nil)
	}
	allNull := s.entity(t, ns, "nulls", at(10), vals...)
	write(t, st, allNull)
	rows := read(t, st, ns, []string{"nulls"}, fs)
	checkRow(t, "all null", rows[0], true, fs, expect(allNull, fs))

	// A null replaces an older value and is replaced by a newer one; an
	// older value does not replace a newer null.
	write(t, st, s.entity(t, ns, "n", at(10), "age", int64(1), "name", "old"))
	write(t, st, s.entity(t, ns, "n", at(20), "age", nil, "name", nil))
	write(t, st, s.entity(t, ns, "n", at(15), "age", int64(2)))
	write(t, st, s.entity(t, ns, "n", at(30), "name", "new"))
	two := []*feature.Feature{s.feat(t, "user.age"), s.feat(t, "user.name")}
	rows = read(t, st, ns, []string{"n"}, two)
	checkRow(t, "null then values", rows[0], true, two, []store.Cell{found(nil, at(20)), found("new", at(30))})
}

func (s *suite) testMissingEntity(t *testing.T) {
	st := s.connect(t, s.newName(t))
	ns := s.ns(t, "user")
	fs := feats(ns)
	u1 := s.entity(t, ns, "u1", at(1), "age", int64(1), "name", "one")
	u3 := s.entity(t, ns, "u3", at(3), "age", int64(3), "profile", map[string]any{"k": num("3")})
	write(t, st, u1, u3)
	keys := []string{"u0", "u1", "u2", "u3", "u4"}
	rows := read(t, st, ns, keys, fs)
	none := make([]store.Cell, len(fs))
	checkRow(t, "u0", rows[0], false, fs, none)
	checkRow(t, "u1", rows[1], true, fs, expect(u1, fs))
	checkRow(t, "u2", rows[2], false, fs, none)
	checkRow(t, "u3", rows[3], true, fs, expect(u3, fs))
	checkRow(t, "u4", rows[4], false, fs, none)

	// The same key in another namespace is another entity.
	m := s.ns(t, "merchant")
	mrows := read(t, st, m, []string{"1", "3"}, feats(m))
	for i, r := range mrows {
		checkRow(t, fmt.Sprintf("merchant row %d", i), r, false, feats(m), make([]store.Cell, len(feats(m))))
	}
	write(t, st, s.entity(t, m, "1", at(9), "age", int64(99)))
	rows = read(t, st, ns, []string{"u1"}, fs)
	checkRow(t, "u1 after merchant write", rows[0], true, fs, expect(u1, fs))
}

func (s *suite) testUnwrittenFeatures(t *testing.T) {
	st := s.connect(t, s.newName(t))
	ns := s.ns(t, "user")
	fs := feats(ns)
	w := s.entity(t, ns, "partial", at(5), "age", int64(40), "embedding", []float32{1, 1, 1, 1, 2, 2, 2, 2})
	write(t, st, w)
	rows := read(t, st, ns, []string{"partial"}, fs)
	checkRow(t, "partial", rows[0], true, fs, expect(w, fs))

	// An entity is found even when none of the requested features is stored.
	unwritten := []*feature.Feature{s.feat(t, "user.name"), s.feat(t, "user.tags")}
	rows = read(t, st, ns, []string{"partial"}, unwritten)
	checkRow(t, "partial, unwritten features only", rows[0], true, unwritten, make([]store.Cell, 2))
}

func (s *suite) testSubset(t *testing.T) {
	st := s.connect(t, s.newName(t))
	ns := s.ns(t, "merchant")
	var ws []store.EntityWrite
	for i, key := range []string{"7", "8"} {
		c := s.roundTripCases(t, ns)[i]
		c.Key = key
		ws = append(ws, c)
	}
	write(t, st, ws...)
	subsets := [][]*feature.Feature{
		{s.feat(t, "merchant.name")},
		{s.feat(t, "merchant.profile"), s.feat(t, "merchant.age")},
		{s.feat(t, "merchant.embedding"), s.feat(t, "merchant.score"), s.feat(t, "merchant.embedding")},
	}
	for _, fs := range subsets {
		rows := read(t, st, ns, []string{"8", "7"}, fs)
		checkRow(t, "8", rows[0], true, fs, expect(ws[1], fs))
		checkRow(t, "7", rows[1], true, fs, expect(ws[0], fs))
	}
}

func (s *suite) testEmptyCalls(t *testing.T) {
	st := s.connect(t, s.newName(t))
	ns := s.ns(t, "user")
	if err := st.Write(context.Background(), nil); err != nil {
		t.Errorf("write no entities: %v", err)
	}
	write(t, st, store.EntityWrite{Namespace: ns, Key: "novalues"})
	rows := read(t, st, ns, nil, feats(ns))
	if len(rows) != 0 {
		t.Errorf("read no keys: got %d rows", len(rows))
	}
	rows = read(t, st, ns, []string{"novalues"}, feats(ns))
	checkRow(t, "entity written with no values", rows[0], false, feats(ns), make([]store.Cell, len(feats(ns))))
}

func (s *suite) testNewestWins(t *testing.T) {
	st := s.connect(t, s.newName(t))
	ns := s.ns(t, "user")
	fs := []*feature.Feature{s.feat(t, "user.age"), s.feat(t, "user.name")}
	mixed := func(key string, ageAt time.Time, age int64, nameAt time.Time, name string) store.EntityWrite {
		return store.EntityWrite{Namespace: ns, Key: key, Values: []store.Value{
			{Feature: fs[0], Value: age, ObservedAt: ageAt},
			{Feature: fs[1], Value: name, ObservedAt: nameAt},
		}}
	}
	check := func(label, key string, want ...store.Cell) {
		t.Helper()
		rows := read(t, st, ns, []string{key}, fs)
		checkRow(t, label, rows[0], true, fs, want)
	}

	// Per feature, within one entity write: age from the first write, name
	// from the second.
	write(t, st, mixed("e", at(200), 1, at(100), "first"))
	write(t, st, mixed("e", at(100), 2, at(200), "second"))
	check("mixed timestamps", "e", found(int64(1), at(200)), found("second", at(200)))

	// A write older in every feature changes nothing.
	write(t, st, mixed("e", at(50), 3, at(50), "older"))
	check("older write", "e", found(int64(1), at(200)), found("second", at(200)))

	// An equal observed-at replaces.
	write(t, st, mixed("e", at(200), 4, at(199), "older by 1µs"))
	check("equal observed-at", "e", found(int64(4), at(200)), found("second", at(200)))

	// Two entities in one call, each decided on its own.
	write(t, st, mixed("f", at(500), 10, at(500), "f1"))
	write(t, st, mixed("e", at(300), 5, at(150), "stale"), mixed("f", at(400), 11, at(600), "f2"))
	check("batch e", "e", found(int64(5), at(300)), found("second", at(200)))
	check("batch f", "f", found(int64(10), at(500)), found("f2", at(600)))

	// Far-apart times, including before 1970.
	old := time.Date(1950, 1, 1, 0, 0, 0, 1000, time.UTC)
	write(t, st, mixed("g", old, 1, old, "1950"))
	write(t, st, mixed("g", old.Add(-time.Microsecond), 2, old.Add(time.Microsecond), "1950+1µs"))
	check("pre-epoch", "g", found(int64(1), old), found("1950+1µs", old.Add(time.Microsecond)))
}

// testConcurrentWriters runs several writers, each with its own client of
// one store, in step over the same entities:
//
//   - entity e<r> gets, in round r, one value from every writer, each of its
//     own feature; a lost update (two read-modify-writes racing) shows as a
//     feature missing at the end;
//   - entity hot gets, every round, values of shared features at random
//     observed-at times, each value a function of its time; the end state
//     must hold, per feature, the value of the greatest time ever written.
func (s *suite) testConcurrentWriters(t *testing.T) {
	const (
		rounds = 30
		spread = 1000 // µs of observed-at range on the hot entity
	)
	name := s.newName(t)
	ns := s.ns(t, "user")
	fs := []*feature.Feature{s.feat(t, "user.age"), s.feat(t, "user.name"), s.feat(t, "user.score"), s.feat(t, "user.seen")}
	writers := len(fs) // writer i owns fs[i] on the round entities
	valueAt := func(f *feature.Feature, ts time.Time) any {
		us := ts.UnixMicro()
		switch f.Type.Kind {
		case feature.KindInt:
			return us
		case feature.KindString:
			return "v" + strconv.FormatInt(us, 10)
		case feature.KindFloat:
			return float64(us) / 8
		default:
			return ts
		}
	}
	roundKey := func(r int) string { return fmt.Sprintf("e%02d", r) }
	roundAt := func(r, writer int) time.Time { return at(r*writers + writer) }
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)

	clients := make([]*client, writers)
	for i := range clients {
		clients[i] = s.connect(t, name)
	}
	// newest[i][j] is the greatest observed-at writer i wrote for fs[j] on
	// the hot entity.
	newest := make([][]time.Time, writers)
	errs := make([]error, writers)
	// Writers start each round together, so that they collide.
	barrier := make([]sync.WaitGroup, rounds)
	for r := range barrier {
		barrier[r].Add(writers)
	}
	var wg sync.WaitGroup
	for i := range writers {
		newest[i] = make([]time.Time, len(fs))
		wg.Go(func() {
			rng := mrand.New(mrand.NewPCG(seed, uint64(i)))
			for r := range rounds {
				barrier[r].Done()
				barrier[r].Wait()
				if errs[i] != nil {
					continue // keep meeting the others at each round
				}
				own := fs[i]
				ts := roundAt(r, i)
				batch := []store.EntityWrite{{Namespace: ns, Key: roundKey(r), Values: []store.Value{
					{Feature: own, Value: valueAt(own, ts), ObservedAt: ts},
				}}}
				hot := store.EntityWrite{Namespace: ns, Key: "hot"}
				for j, f := range fs {
					if rng.IntN(2) == 0 {
						continue
					}
					ts := at(rng.IntN(spread))
					hot.Values = append(hot.Values, store.Value{Feature: f, Value: valueAt(f, ts), ObservedAt: ts})
					if ts.After(newest[i][j]) {
						newest[i][j] = ts
					}
				}
				if len(hot.Values) > 0 {
					batch = append(batch, hot)
				}
				errs[i] = clients[i].Write(context.Background(), batch)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent write: %v", err)
	}

	reader := s.connect(t, name)
	keys := []string{"hot"}
	for r := range rounds {
		keys = append(keys, roundKey(r))
	}
	rows := read(t, reader, ns, keys, fs)
	want := make([]store.Cell, len(fs))
	anyHot := false
	for j, f := range fs {
		var max time.Time
		for i := range writers {
			if ts := newest[i][j]; ts.After(max) {
				max = ts
			}
		}
		if !max.IsZero() {
			want[j] = found(valueAt(f, max), max)
			anyHot = true
		}
	}
	checkRow(t, "hot", rows[0], anyHot, fs, want)
	for r := range rounds {
		for i, f := range fs {
			want[i] = found(valueAt(f, roundAt(r, i)), roundAt(r, i))
		}
		checkRow(t, keys[r+1], rows[r+1], true, fs, want)
	}
}

func (s *suite) testManyEntities(t *testing.T) {
	const written, readN = 150, 250
	st := s.connect(t, s.newName(t))
	ns := s.ns(t, "user")
	fs := []*feature.Feature{s.feat(t, "user.age"), s.feat(t, "user.name"), s.feat(t, "user.embedding")}
	ws := make([]store.EntityWrite, written)
	byKey := map[string]store.EntityWrite{}
	for i := range ws {
		key := fmt.Sprintf("k%03d", i)
		ws[i] = s.entity(t, ns, key, at(i), "age", int64(i), "name", strings.Repeat("n", i),
			"embedding", []float32{float32(i), 1, 2, 3, 4, 5, 6, 7})
		byKey[key] = ws[i]
	}
	write(t, st, ws...)

	// Read 250 keys in a scrambled order, absent ones mixed in, with one key
	// asked twice.
	keys := make([]string, 0, readN+1)
	for i := range readN {
		keys = append(keys, fmt.Sprintf("k%03d", (i*97+13)%readN))
	}
	keys = append(keys, keys[0])
	rows := read(t, st, ns, keys, fs)
	for i, k := range keys {
		w, ok := byKey[k]
		checkRow(t, k, rows[i], ok, fs, expect(w, fs))
	}
}

func (s *suite) testKeys(t *testing.T) {
	st := s.connect(t, s.newName(t))
	user, merchant := s.ns(t, "user"), s.ns(t, "merchant")
	strKeys := []string{
		"a#b", "a b", " lead", "trail ", "ünïcödé 世界 🎉", "a/b", `a\b`, "a:b", "a|b",
		"user#a", "user", "a", "ab", "A", "%", "'", `"`, "a\x00b", "\t",
		strings.Repeat("k", feature.MaxKeyLen),
	}
	intKeys := []string{"0", "-1", "1", "10", "9223372036854775807", "-9223372036854775808"}
	fs := []*feature.Feature{s.feat(t, "user.name"), s.feat(t, "user.age")}
	mfs := []*feature.Feature{s.feat(t, "merchant.name"), s.feat(t, "merchant.age")}
	var ws, mws []store.EntityWrite
	for i, k := range strKeys {
		ws = append(ws, s.entity(t, user, k, at(i), "name", "user "+k, "age", int64(i)))
	}
	for i, k := range intKeys {
		mws = append(mws, s.entity(t, merchant, k, at(i), "name", "merchant "+k, "age", int64(-i)))
	}
	write(t, st, ws...)
	write(t, st, mws...)
	rows := read(t, st, user, strKeys, fs)
	for i, w := range ws {
		checkRow(t, fmt.Sprintf("user %q", w.Key), rows[i], true, fs, expect(w, fs))
	}
	rows = read(t, st, merchant, intKeys, mfs)
	for i, w := range mws {
		checkRow(t, "merchant "+w.Key, rows[i], true, mfs, expect(w, mfs))
	}
	// Keys that are prefixes or neighbours of stored keys are absent.
	absent := []string{"a#", "a#b ", "ab#", "user#", "a\x00", "k", "ü"}
	rows = read(t, st, user, absent, fs)
	for i, k := range absent {
		checkRow(t, fmt.Sprintf("absent %q", k), rows[i], false, fs, make([]store.Cell, len(fs)))
	}
	rows = read(t, st, merchant, []string{"2", "-10", "100"}, mfs)
	for i, r := range rows {
		checkRow(t, fmt.Sprintf("absent merchant %d", i), r, false, mfs, make([]store.Cell, len(mfs)))
	}

	// user "_xk" and user_x "k" are different entities, whatever the
	// separator a backend puts between namespace and key.
	ux := s.ns(t, "user_x")
	uxfs := []*feature.Feature{s.feat(t, "user_x.name")}
	write(t, st, s.entity(t, ux, "k", at(1), "name", "user_x k"), s.entity(t, ux, "#k", at(1), "name", "user_x #k"))
	rows = read(t, st, user, []string{"_xk", "_x#k", "x#k"}, fs)
	for i, r := range rows {
		checkRow(t, fmt.Sprintf("user %d beside user_x", i), r, false, fs, make([]store.Cell, len(fs)))
	}
	rows = read(t, st, ux, []string{"k", "#k"}, uxfs)
	checkRow(t, "user_x k", rows[0], true, uxfs, []store.Cell{found("user_x k", at(1))})
	checkRow(t, "user_x #k", rows[1], true, uxfs, []store.Cell{found("user_x #k", at(1))})
}

func (s *suite) testReopen(t *testing.T) {
	name := s.newName(t)
	ns := s.ns(t, "user")
	fs := feats(ns)
	first := s.roundTripCases(t, ns)[0]

	st := s.connect(t, name)
	write(t, st, first)
	if err := st.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	st = s.connect(t, name)
	rows := read(t, st, ns, []string{first.Key}, fs)
	checkRow(t, "after reopen", rows[0], true, fs, expect(first, fs))
	// Write after reopening: a newer value, an older one, a new entity.
	write(t, st,
		s.entity(t, ns, first.Key, at(100), "age", int64(32)),
		s.entity(t, ns, "second", at(7), "name", "two", "matrix", []any{[]any{2.0}}),
	)
	write(t, st, s.entity(t, ns, first.Key, at(0), "name", "stale"))
	if err := st.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	st = s.connect(t, name)
	want := expect(first, fs)
	want[0] = found(int64(32), at(100)) // fs[0] is user.age
	second := s.entity(t, ns, "second", at(7), "name", "two", "matrix", []any{[]any{2.0}})
	rows = read(t, st, ns, []string{first.Key, "second"}, fs)
	checkRow(t, "after second reopen", rows[0], true, fs, want)
	checkRow(t, "second", rows[1], true, fs, expect(second, fs))
}

// testRejectsWrongType writes values that are not canonical for their
// feature's type; retrying cannot fix that, so the error wraps
// store.ErrRejected, and nothing wrong is ever read back.
func (s *suite) testRejectsWrongType(t *testing.T) {
	st := s.connect(t, s.newName(t))
	ns := s.ns(t, "user")
	bad := []store.EntityWrite{
		s.entity(t, ns, "bad1", at(1), "age", "not an int"),
		s.entity(t, ns, "bad2", at(1), "embedding", []float32{1, 2, 3}),
		s.entity(t, ns, "bad3", at(1), "tags", []any{"a", int64(1)}),
		s.entity(t, ns, "bad4", at(1), "score", 1),
	}
	for _, w := range bad {
		err := st.Write(context.Background(), []store.EntityWrite{w})
		if !errors.Is(err, store.ErrRejected) {
			t.Errorf("write %s = %v: got error %v, want one wrapping store.ErrRejected",
				w.Values[0].Feature.FQN, show(w.Values[0].Value), err)
		}
	}
	fs := []*feature.Feature{s.feat(t, "user.age"), s.feat(t, "user.embedding"), s.feat(t, "user.tags"), s.feat(t, "user.score")}
	rows := read(t, st, ns, []string{"bad1", "bad2", "bad3", "bad4"}, fs)
	for i, r := range rows {
		if c := r.Cells[i]; c.Found && c.Value != nil {
			if err := feature.Check(fs[i].Type, c.Value); err != nil {
				t.Errorf("bad%d: read back a wrongly typed value %s: %v", i+1, show(c.Value), err)
			}
		}
	}
}

// Scanner is implemented by stores that can list their entity keys, which
// the Bloom filter of present keys is built from.
type Scanner interface {
	ScanKeys(ctx context.Context, ns *feature.Namespace, fn func(key string) error) error
}

func (s *suite) testScanKeys(t *testing.T) {
	st := s.connect(t, s.newName(t))
	sc, ok := st.Store.(Scanner)
	if !ok {
		t.Skip("this backend cannot list its keys (no ScanKeys): the Bloom filter cannot be used in front of it")
	}
	user, userX, merchant := s.ns(t, "user"), s.ns(t, "user_x"), s.ns(t, "merchant")
	want := map[string]bool{}
	var ws []store.EntityWrite
	for i := range 300 {
		k := fmt.Sprintf("u%03d", i)
		if i%50 == 0 {
			k += "\x00odd ü#"
		}
		want[k] = true
		ws = append(ws, s.entity(t, user, k, at(i), "age", int64(i)))
	}
	ws = append(ws, s.entity(t, userX, "x1", at(1), "name", "other namespace"), s.entity(t, merchant, "7", at(1), "name", "m"))
	write(t, st, ws...)

	got := map[string]int{}
	if err := sc.ScanKeys(context.Background(), user, func(k string) error { got[k]++; return nil }); err != nil {
		t.Fatal(err)
	}
	for k := range want {
		if got[k] != 1 {
			t.Errorf("key %q listed %d times, want once", k, got[k])
		}
	}
	for k := range got {
		if !want[k] {
			t.Errorf("key %q listed but never written to user", k)
		}
	}
	stop := errors.New("stop")
	n := 0
	err := sc.ScanKeys(context.Background(), merchant, func(k string) error {
		n++
		if k != "7" {
			t.Errorf("merchant key %q, want 7", k)
		}
		return stop
	})
	if !errors.Is(err, stop) || n != 1 {
		t.Errorf("an error from fn must stop the scan and be returned: %v after %d keys", err, n)
	}
}

// The ends of the years the API accepts for observed_at.
var (
	firstObservedAt = time.Date(1000, 1, 1, 0, 0, 0, 1000, time.UTC)
	lastObservedAt  = time.Date(2999, 12, 31, 23, 59, 59, 999999000, time.UTC)
)

// testObservedAtYearRange writes values observed at both ends of the
// years the API accepts, in a namespace that never goes stale (user) and
// in one with a maximum staleness of a day (merchant), and reads them back
// after a pause long enough for a key given a wrong expiry to have
// expired. Regression: Redis computed the expiry of a value observed more
// than 292 years ahead in time.Duration, which overflowed; the key got a
// time to live of 1 ms and the acknowledged value vanished.
func (s *suite) testObservedAtYearRange(t *testing.T) {
	st := s.connect(t, s.newName(t))
	var ws []store.EntityWrite
	for _, nsName := range []string{"user", "merchant"} {
		ns := s.ns(t, nsName)
		for i, ts := range []time.Time{firstObservedAt, lastObservedAt, base} {
			key := strconv.Itoa(i + 1)
			ws = append(ws, s.entity(t, ns, key, ts, "age", int64(ts.Year()), "name", ts.Format(time.RFC3339Nano)))
		}
	}
	write(t, st, ws...)
	check := func(when string, score store.Cell) {
		t.Helper()
		// A key given a time to live of a few milliseconds expires
		// meanwhile.
		time.Sleep(50 * time.Millisecond)
		for _, nsName := range []string{"user", "merchant"} {
			ns := s.ns(t, nsName)
			fs := []*feature.Feature{s.feat(t, nsName+".age"), s.feat(t, nsName+".name"), s.feat(t, nsName+".score")}
			rows := read(t, st, ns, []string{"1", "2", "3"}, fs)
			for i, w := range ws {
				if w.Namespace != ns {
					continue
				}
				want := expect(w, fs)
				if w.Key == "2" {
					want[2] = score
				}
				label := fmt.Sprintf("%s: %s %s observed %s", when, nsName, w.Key, w.Values[0].ObservedAt.Format(time.RFC3339))
				checkRow(t, label, rows[i%3], true, fs, want)
			}
		}
	}
	check("after the write", store.Cell{})
	// A later write of another feature, observed now, must not shorten
	// the life of the value observed in 2999 (key 2).
	for _, nsName := range []string{"user", "merchant"} {
		write(t, st, s.entity(t, s.ns(t, nsName), "2", base, "score", 0.5))
	}
	check("after a later write observed now", found(0.5, base))
}
