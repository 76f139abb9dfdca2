package queue

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cairnfs/cairn/internal/feature"
)

var recTime = time.Date(2024, 5, 1, 12, 0, 0, 123456000, time.UTC)

// goldenRecord and goldenRecordHex pin version 1 of the format: if this test
// fails, the encoding changed and records already on the topic would be
// misread. Change the format only by adding a version.
var goldenRecord = &Record{
	Kind: KindUpload,
	Entities: []Entity{{
		Namespace: "user",
		Key:       "u1",
		Values: []Value{
			{FQN: "user.age", Value: int64(31), ObservedAt: recTime},
			{FQN: "user.name", Value: "ann", ObservedAt: recTime.Add(time.Second)},
			{FQN: "user.score", Value: nil, ObservedAt: recTime.Add(-2 * time.Microsecond)},
		},
	}},
}

var goldenRecordHex = strings.Join([]string{
	"01",               // version 1
	"01",               // kind: upload
	"80c9d89de7d88b06", // base observed-at: zig-zag varint of 1714564800123456 µs
	"04",               // 4 names
	"04" + hex.EncodeToString([]byte("user")),
	"08" + hex.EncodeToString([]byte("user.age")),
	"09" + hex.EncodeToString([]byte("user.name")),
	"0a" + hex.EncodeToString([]byte("user.score")),
	"01",                                     // 1 entity
	"00",                                     // namespace: names[0], user
	"02" + "7531",                            // key "u1"
	"03",                                     // 3 values
	"01" + "00" + "01" + "3e",                // user.age, observed at base+0, int 31
	"02" + "80897a" + "03" + "03" + "616e6e", // user.name, base+1s, string "ann"
	"03" + "03" + "00",                       // user.score, base-2µs, null
}, "")

func TestRecordGolden(t *testing.T) {
	got, err := AppendRecord(nil, goldenRecord)
	if err != nil {
		t.Fatal(err)
	}
	if h := hex.EncodeToString(got); h != goldenRecordHex {
		t.Errorf("encoding changed:\n got %s\nwant %s", h, goldenRecordHex)
	}
	want, _ := hex.DecodeString(goldenRecordHex)
	r, err := DecodeRecord(want)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(r, goldenRecord) {
		t.Errorf("decoded golden bytes:\n got %+v\nwant %+v", r, goldenRecord)
	}
}

func TestRecordRoundTrip(t *testing.T) {
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		paris = time.FixedZone("CEST", 2*3600)
	}
	values := []any{
		nil,
		int64(0), int64(-1), int64(math.MaxInt64), int64(math.MinInt64),
		0.0, math.Copysign(0, -1), 3.25, math.Inf(-1), math.MaxFloat64,
		"", "ann", "日本語 ✓",
		true, false,
		[]byte{}, []byte{0, 1, 0xff},
		recTime, time.Date(1900, 1, 1, 0, 0, 0, 1000, time.UTC),
		[]any{"a", "b"}, []any{int64(1)}, []any{}, []any{[]any{1.5}, []any{}},
		[]float32{0, -1.5, 3e38}, []float32{},
		map[string]any{}, map[string]any{"a": json.Number("1"), "b": []any{"x", nil, true}, "c": map[string]any{"d": json.Number("-2.5e3")}},
	}
	observed := []time.Time{
		recTime,
		recTime.Add(time.Microsecond),
		recTime.Add(-time.Hour),
		recTime.Add(1234 * time.Nanosecond), // sub-microsecond part is dropped
		recTime.In(paris),                   // comes back in UTC
		time.Date(1969, 12, 31, 23, 59, 59, 999999000, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC),
		{}, // the zero time survives too
		time.Now(),
	}
	namespaces := []string{"user", "merchant", "u"}

	in := &Record{Kind: KindQueryResult}
	for i := range 25 {
		ns := namespaces[i%len(namespaces)]
		e := Entity{Namespace: ns, Key: fmt.Sprintf("key-%d", i)}
		for j, v := range values {
			e.Values = append(e.Values, Value{
				FQN:        fmt.Sprintf("%s.f%d", ns, (i+j)%7),
				Value:      v,
				ObservedAt: observed[(i*3+j)%len(observed)],
			})
		}
		in.Entities = append(in.Entities, e)
	}
	// A repeated entity and a repeated feature are carried as they are.
	in.Entities = append(in.Entities, in.Entities[0], Entity{Namespace: "user", Key: "7", Values: []Value{
		{FQN: "user.age", Value: int64(1), ObservedAt: recTime},
		{FQN: "user.age", Value: int64(2), ObservedAt: recTime},
	}})

	b, err := AppendRecord([]byte("prefix"), in)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("prefix")) {
		t.Fatal("AppendRecord did not append")
	}
	got, err := DecodeRecord(b[len("prefix"):])
	if err != nil {
		t.Fatal(err)
	}

	want := canonicalRecord(in)
	if !reflect.DeepEqual(got, want) {
		for i := range want.Entities {
			if !reflect.DeepEqual(got.Entities[i], want.Entities[i]) {
				t.Fatalf("entity %d:\n got %#v\nwant %#v", i, got.Entities[i], want.Entities[i])
			}
		}
		t.Fatalf("round trip:\n got %#v\nwant %#v", got, want)
	}
}

// canonicalRecord returns r as it comes back from a round trip: observed-at in
// UTC, truncated to the microsecond.
func canonicalRecord(r *Record) *Record {
	out := &Record{Kind: r.Kind, Entities: make([]Entity, len(r.Entities))}
	for i, e := range r.Entities {
		out.Entities[i] = Entity{Namespace: e.Namespace, Key: e.Key, Values: make([]Value, len(e.Values))}
		for j, v := range e.Values {
			v.ObservedAt = time.UnixMicro(v.ObservedAt.UnixMicro()).UTC()
			out.Entities[i].Values[j] = v
		}
	}
	return out
}

func TestRecordRoundTripNaN(t *testing.T) {
	// NaN is not equal to itself, so compare bits.
	nan := math.Float64frombits(0x7ff8000000000001)
	nan32 := math.Float32frombits(0x7fc00001)
	in := &Record{Kind: KindUpload, Entities: []Entity{{Namespace: "user", Key: "u1", Values: []Value{
		{FQN: "user.score", Value: nan, ObservedAt: recTime},
		{FQN: "user.embedding", Value: []float32{nan32}, ObservedAt: recTime},
	}}}}
	b, err := AppendRecord(nil, in)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	vs := got.Entities[0].Values
	if f, ok := vs[0].Value.(float64); !ok || math.Float64bits(f) != math.Float64bits(nan) {
		t.Errorf("float NaN came back as %#v", vs[0].Value)
	}
	if v, ok := vs[1].Value.([]float32); !ok || len(v) != 1 || math.Float32bits(v[0]) != math.Float32bits(nan32) {
		t.Errorf("vector NaN came back as %#v", vs[1].Value)
	}
}

func TestRecordEmpty(t *testing.T) {
	for _, in := range []*Record{
		{Kind: KindUpload},
		{Kind: KindQueryResult, Entities: []Entity{{Namespace: "user", Key: "u1"}}},
	} {
		b, err := AppendRecord(nil, in)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeRecord(b)
		if err != nil {
			t.Fatal(err)
		}
		if got.Kind != in.Kind || len(got.Entities) != len(in.Entities) {
			t.Errorf("%x decoded to %+v, want %+v", b, got, in)
		}
		for i := range in.Entities {
			if len(got.Entities[i].Values) != 0 || got.Entities[i].Key != in.Entities[i].Key {
				t.Errorf("%x decoded to %+v, want %+v", b, got, in)
			}
		}
	}
}

// recBytes builds record bytes by hand for the corrupt-record cases.
type recBytes []byte

func (e recBytes) u(x uint64) recBytes    { return binary.AppendUvarint(e, x) }
func (e recBytes) v(x int64) recBytes     { return binary.AppendVarint(e, x) }
func (e recBytes) s(s string) recBytes    { return append(e.u(uint64(len(s))), s...) }
func (e recBytes) raw(p ...byte) recBytes { return append(e, p...) }

// clone keeps the cases below from sharing backing arrays.
func (e recBytes) clone() recBytes { return append(recBytes(nil), e...) }

func TestDecodeRecordCorrupt(t *testing.T) {
	head := recBytes{1, byte(KindUpload)}.v(0)         // version, kind, base
	names := head.clone().u(2).s("user").s("user.age") // names[0] user, names[1] user.age
	user := names.clone().u(1).u(0).s("u1")            // one entity: user/u1
	overflow := bytes.Repeat([]byte{0xff}, 10)

	cases := []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "empty"},
		{"version 0", recBytes{0, 1}, "version 0 is unknown (this reader knows version 1)"},
		{"version 2", recBytes{2, 1, 0, 0, 0}, "version 2 is unknown"},
		{"no kind", recBytes{1}, "truncated before the kind"},
		{"kind 0", recBytes{1, 0, 0, 0, 0}, "kind 0 is unknown"},
		{"kind 3", recBytes{1, 3, 0, 0, 0}, "kind 3 is unknown"},
		{"no base", recBytes{1, 1}, "base observed-at: truncated"},
		{"base truncated", recBytes{1, 1, 0x80}, "base observed-at: truncated"},
		{"base overflows", recBytes{1, 1}.raw(overflow...).raw(1), "base observed-at: varint overflows 64 bits"},
		{"no names", head.clone(), "name count: truncated"},
		{"name count too big", head.clone().u(1000).s("user"), "name count: 1000 is more than the remaining 5 bytes can hold"},
		{"name count huge", head.clone().u(math.MaxUint64), "name count: 18446744073709551615 is more than the remaining 0 bytes can hold"},
		{"name truncated", head.clone().u(2).s("user").raw(9, 'u', 's'), "names[1]: length 9 is past the end (2 bytes remain)"},
		{"name empty", head.clone().u(1).s("").raw(0), "names[0]: empty"},
		{"name not UTF-8", head.clone().u(1).s("us\xffer"), "names[0]: not UTF-8"},
		{"name twice", head.clone().u(2).s("user").s("user"), `names[1]: "user" appears twice`},
		{"no entity count", names.clone(), "entity count: truncated"},
		{"entity count too big", names.clone().u(2).u(0).s("u1").u(0), "entity count: 2 is more than the remaining 5 bytes can hold"},
		{"namespace index out of range", names.clone().u(1).u(2).s("u1").u(0), "entities[0]: namespace: index 2 out of range (2 names)"},
		{"namespace with a dot", names.clone().u(1).u(1).s("u1").u(0), `entities[0]: namespace "user.age" contains a dot`},
		{"key truncated", names.clone().u(1).u(0).raw(5, 'u', '1').u(0), "entities[0] (user): key: length 5 is past the end (3 bytes remain)"},
		{"key empty", names.clone().u(1).u(0).s("").u(0).u(0), "entities[0] (user): empty key"},
		{"key not UTF-8", names.clone().u(1).u(0).s("\xc3").u(0), "entities[0] (user): key: not UTF-8"},
		{"key too long", names.clone().u(1).u(0).s(strings.Repeat("k", feature.MaxKeyLen+1)).u(0), "entities[0] (user): key is 1025 bytes, over the limit of 1024"},
		{"no value count", user.clone(), "entities[0] (user/u1): value count: truncated"},
		{"value count too big", user.clone().u(2).u(1).v(0).raw(0), "entities[0] (user/u1): value count: 2 is more than the remaining 3 bytes can hold"},
		{"feature index out of range", user.clone().u(1).u(7).v(0).raw(0), "entities[0] (user/u1): values[0]: feature: index 7 out of range (2 names)"},
		{"feature is the namespace", user.clone().u(1).u(0).v(0).raw(0), `entities[0] (user/u1): values[0]: feature "user" is not in namespace "user"`},
		{"observed-at truncated", user.clone().u(1).u(1).raw(0x80, 0x80, 0x80), "entities[0] (user/u1): values[0] (user.age): observed-at: truncated"},
		{"observed-at overflows", user.clone().u(1).u(1).raw(overflow...).raw(1, 0), "entities[0] (user/u1): values[0] (user.age): observed-at: varint overflows 64 bits"},
		{"value unknown tag", user.clone().u(1).u(1).v(0).raw(99), "entities[0] (user/u1): values[0] (user.age): value: corrupt value: unknown tag 99"},
		{"value truncated", user.clone().u(1).u(1).v(0).raw(3, 5, 'a', 'b'), "entities[0] (user/u1): values[0] (user.age): value: corrupt value: bad length"},
		{"value string not UTF-8", user.clone().u(1).u(1).v(0).raw(3).s("\xff"), "entities[0] (user/u1): values[0] (user.age): value: corrupt value: string is not UTF-8"},
		{"left over bytes", user.clone().u(1).u(1).v(0).raw(0, 0, 0), "2 bytes left over after the last entity"},
		{"second entity truncated", names.clone().u(2).u(0).s("u1").u(1).u(1).v(0).raw(0).u(0).s("u2").u(1).u(1).raw(0x80, 0x80), "entities[1] (user/u2): values[0] (user.age): observed-at: truncated"},
	}

	// A feature of another namespace, or a name that only looks like one of
	// this namespace's features.
	for _, fqn := range []string{"merchant.x", "username", "user.", "use.x"} {
		b := head.clone().u(2).s("user").s(fqn).u(1).u(0).s("u1").u(1).u(1).v(0).raw(0)
		cases = append(cases, struct {
			name string
			b    []byte
			want string
		}{"feature " + fqn, b, fmt.Sprintf("entities[0] (user/u1): values[0]: feature %q is not in namespace \"user\"", fqn)})
	}

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := DecodeRecord(c.b)
			if err == nil {
				t.Fatalf("decoded %x to %+v, want an error", c.b, r)
			}
			if !errors.Is(err, ErrBadRecord) {
				t.Errorf("error %q does not wrap ErrBadRecord", err)
			}
			if want := "queue: bad record: " + c.want; !strings.HasPrefix(err.Error(), want) {
				t.Errorf("error\n %q\nwant it to start with\n %q", err, want)
			}
		})
	}

	t.Run("value errors wrap feature.ErrCorrupt", func(t *testing.T) {
		_, err := DecodeRecord(user.clone().u(1).u(1).v(0).raw(99))
		if !errors.Is(err, feature.ErrCorrupt) || !errors.Is(err, ErrBadRecord) {
			t.Errorf("error %q should wrap both ErrBadRecord and feature.ErrCorrupt", err)
		}
	})

	t.Run("every truncation of the golden record", func(t *testing.T) {
		full, _ := hex.DecodeString(goldenRecordHex)
		for n := range len(full) {
			if _, err := DecodeRecord(full[:n]); !errors.Is(err, ErrBadRecord) {
				t.Errorf("first %d of %d bytes: got %v, want ErrBadRecord", n, len(full), err)
			}
		}
	})
}

func TestAppendRecordRejects(t *testing.T) {
	ok := Value{FQN: "user.age", Value: int64(1), ObservedAt: recTime}
	cases := []struct {
		name string
		r    *Record
		want string
	}{
		{"nil", nil, "nil record"},
		{"kind 0", &Record{}, "kind 0 is unknown"},
		{"kind 9", &Record{Kind: 9}, "kind 9 is unknown"},
		{"empty namespace", &Record{Kind: KindUpload, Entities: []Entity{{Key: "u1"}}}, "entities[0]: empty namespace"},
		{"dotted namespace", &Record{Kind: KindUpload, Entities: []Entity{{Namespace: "a.b", Key: "u1"}}}, `entities[0]: namespace "a.b" contains a dot`},
		{"empty key", &Record{Kind: KindUpload, Entities: []Entity{{Namespace: "user"}}}, "entities[0] (user): empty key"},
		{"long key", &Record{Kind: KindUpload, Entities: []Entity{{Namespace: "user", Key: strings.Repeat("k", feature.MaxKeyLen+1)}}}, "entities[0] (user): key is 1025 bytes"},
		{"key not UTF-8", &Record{Kind: KindUpload, Entities: []Entity{{Namespace: "user", Key: "\xff"}}}, "entities[0] (user): key is not UTF-8"},
		{"feature of another namespace", &Record{Kind: KindUpload, Entities: []Entity{
			{Namespace: "user", Key: "u1", Values: []Value{ok}},
			{Namespace: "user", Key: "u2", Values: []Value{ok, {FQN: "merchant.x", ObservedAt: recTime}}},
		}}, `entities[1] (user/u2): values[1]: feature "merchant.x" is not in namespace "user"`},
		{"unsupported value", &Record{Kind: KindUpload, Entities: []Entity{
			{Namespace: "user", Key: "u1", Values: []Value{{FQN: "user.age", Value: 31, ObservedAt: recTime}}},
		}}, "entities[0] (user/u1): values[0] (user.age): encode value: unsupported Go type int"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := []byte("keep")
			got, err := AppendRecord(b, c.r)
			if err == nil {
				t.Fatalf("encoded %+v, want an error", c.r)
			}
			if !errors.Is(err, ErrBadRecord) {
				t.Errorf("error %q does not wrap ErrBadRecord", err)
			}
			if want := "queue: bad record: " + c.want; !strings.HasPrefix(err.Error(), want) {
				t.Errorf("error\n %q\nwant it to start with\n %q", err, want)
			}
			if string(got) != "keep" {
				t.Errorf("AppendRecord returned %q on error, want b unextended", got)
			}
		})
	}
}

// intUploadRecord is what an upload of rows rows of feats int features, all
// observed at one time, becomes.
func intUploadRecord(rows, feats int) *Record {
	r := &Record{Kind: KindUpload, Entities: make([]Entity, rows)}
	for i := range r.Entities {
		vs := make([]Value, feats)
		for j := range vs {
			vs[j] = Value{FQN: fmt.Sprintf("user.f%d", j), Value: int64((i*7 + j) % 100), ObservedAt: recTime}
		}
		r.Entities[i] = Entity{Namespace: "user", Key: fmt.Sprintf("u%d", i), Values: vs}
	}
	return r
}

func TestRecordSize(t *testing.T) {
	const rows, feats = 1000, 10
	r := intUploadRecord(rows, feats)
	b, err := AppendRecord(nil, r)
	if err != nil {
		t.Fatal(err)
	}

	// The bound, from the layout: a fixed part (version, kind, base, the
	// name table once, the entity count), then per entity a namespace
	// index, a key length, the key and a value count (1 byte each here),
	// and per value a name index (1 byte: 11 names), an observed-at delta
	// (1 byte: always 0), a tag and the zig-zag varint of a value below
	// 100 (at most 2 bytes). Names and timestamps are never repeated.
	bound := 2 + binary.MaxVarintLen64 + 1 + len("user") + 1 + 2
	for j := range feats {
		bound += 1 + len(fmt.Sprintf("user.f%d", j))
	}
	for i := range rows {
		bound += 3 + len(fmt.Sprintf("u%d", i))
	}
	const perValue = 1 + 1 + 1 + 2
	bound += rows * feats * perValue
	if len(b) > bound {
		t.Errorf("1,000 rows × 10 int features encode to %d bytes, over the bound of %d", len(b), bound)
	}

	// The naive alternative, JSON of the same record, repeats every name
	// and every timestamp: about 70 bytes per value against at most 5.
	naive, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if len(b)*10 > len(naive) {
		t.Errorf("encoding is %d bytes, JSON %d: want under a tenth", len(b), len(naive))
	}
	t.Logf("1,000 rows × 10 int features: %d bytes (bound %d), JSON %d bytes", len(b), bound, len(naive))
}

func TestDecodeRecordAllocationBound(t *testing.T) {
	// The densest record there is: 3-byte null values. Each decodes to a
	// Value struct, so the allocation is a fixed multiple of the input.
	r := &Record{Kind: KindUpload, Entities: []Entity{{Namespace: "user", Key: "u1"}}}
	for range 20000 {
		r.Entities[0].Values = append(r.Entities[0].Values, Value{FQN: "user.age", ObservedAt: recTime})
	}
	b, err := AppendRecord(nil, r)
	if err != nil {
		t.Fatal(err)
	}
	perByte := func(b []byte) float64 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, _ = DecodeRecord(b)
		runtime.ReadMemStats(&after)
		return float64(after.TotalAlloc-before.TotalAlloc) / float64(len(b))
	}
	// Valid: 56 bytes of Value per 3 bytes of input, about 19 per byte.
	if got := perByte(b); got > 30 {
		t.Errorf("decoding a valid record allocated %.1f bytes per input byte, want at most 30", got)
	}
	// Corrupt at the very end: no more than the valid record.
	b[len(b)-1] = 99
	if got := perByte(b); got > 30 {
		t.Errorf("decoding a corrupt record allocated %.1f bytes per input byte, want at most 30", got)
	}
}

// sameRecord reports whether a and b hold the same record, comparing values
// by their encoding so that NaNs compare equal to themselves.
func sameRecord(a, b *Record) error {
	if a.Kind != b.Kind || len(a.Entities) != len(b.Entities) {
		return fmt.Errorf("kind %d with %d entities, then kind %d with %d", a.Kind, len(a.Entities), b.Kind, len(b.Entities))
	}
	for i := range a.Entities {
		ea, eb := &a.Entities[i], &b.Entities[i]
		if ea.Namespace != eb.Namespace || ea.Key != eb.Key || len(ea.Values) != len(eb.Values) {
			return fmt.Errorf("entities[%d]: %s/%s with %d values, then %s/%s with %d", i, ea.Namespace, ea.Key, len(ea.Values), eb.Namespace, eb.Key, len(eb.Values))
		}
		for j := range ea.Values {
			va, vb := &ea.Values[j], &eb.Values[j]
			pa, _ := feature.AppendValue(nil, va.Value)
			pb, _ := feature.AppendValue(nil, vb.Value)
			if va.FQN != vb.FQN || va.ObservedAt != vb.ObservedAt || !bytes.Equal(pa, pb) {
				return fmt.Errorf("entities[%d].values[%d]: %#v, then %#v", i, j, *va, *vb)
			}
		}
	}
	return nil
}

func FuzzDecodeRecord(f *testing.F) {
	golden, _ := hex.DecodeString(goldenRecordHex)
	f.Add(golden)
	seeds := []*Record{
		{Kind: KindUpload},
		intUploadRecord(3, 2),
		{Kind: KindQueryResult, Entities: []Entity{
			{Namespace: "user", Key: "u1", Values: []Value{
				{FQN: "user.score", Value: 1.5, ObservedAt: recTime},
				{FQN: "user.active", Value: true, ObservedAt: recTime.Add(-time.Hour)},
				{FQN: "user.raw", Value: []byte{1, 2}, ObservedAt: recTime},
				{FQN: "user.signup", Value: recTime, ObservedAt: recTime.Add(time.Minute)},
				{FQN: "user.tags", Value: []any{"a", []any{int64(1)}}, ObservedAt: recTime},
				{FQN: "user.embedding", Value: []float32{1, 2}, ObservedAt: recTime},
				{FQN: "user.doc", Value: map[string]any{"a": json.Number("1")}, ObservedAt: recTime},
			}},
			{Namespace: "merchant", Key: "42", Values: []Value{{FQN: "merchant.name", ObservedAt: time.Time{}}}},
		}},
	}
	for _, r := range seeds {
		b, err := AppendRecord(nil, r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}

	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeRecord(b)
		if err != nil {
			if !errors.Is(err, ErrBadRecord) {
				t.Fatalf("error %q does not wrap ErrBadRecord", err)
			}
			return
		}
		// Whatever decodes must encode, and decode again to the same record.
		recBytes, err := AppendRecord(nil, r)
		if err != nil {
			t.Fatalf("decoded record does not encode: %v", err)
		}
		r2, err := DecodeRecord(recBytes)
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if err := sameRecord(r, r2); err != nil {
			t.Fatalf("round trip changed the record: %v", err)
		}
		enc2, err := AppendRecord(nil, r2)
		if err != nil || !bytes.Equal(recBytes, enc2) {
			t.Fatalf("encoding is not deterministic: %x then %x (%v)", recBytes, enc2, err)
		}
	})
}

func BenchmarkAppendRecord(b *testing.B) {
	r := intUploadRecord(1000, 10)
	buf, err := AppendRecord(nil, r)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if buf, err = AppendRecord(buf[:0], r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeRecord(b *testing.B) {
	buf, err := AppendRecord(nil, intUploadRecord(1000, 10))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeRecord(buf); err != nil {
			b.Fatal(err)
		}
	}
}
