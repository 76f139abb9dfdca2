package query_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/query"
	"github.com/cairnfs/cairn/internal/store"
	"github.com/cairnfs/cairn/internal/store/embedded"
)

const registryYAML = `
namespaces:
  - name: user
    primary_key: id
    max_staleness: 1h
    features:
      id: string
      age: int
      name: {type: string, max_staleness: infinity}
  - name: merchant
    primary_key: id
    features: {id: int, city: string}
`

// registryAndStore returns registryYAML's registry and an embedded store
// closed when the test ends.
func registryAndStore(t *testing.T) (*feature.Registry, *embedded.Store) {
	t.Helper()
	reg, err := feature.Parse("t.yaml", []byte(registryYAML))
	if err != nil {
		t.Fatal(err)
	}
	st, err := embedded.Open(t.TempDir(), embedded.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return reg, st
}

// Answers come grouped by namespace, then key, then output; values older
// than their staleness are absent, and a query's staleness replaces the
// declared one.
func TestQuery(t *testing.T) {
	reg, st := registryAndStore(t)
	user, _ := reg.Namespace("user")
	merchant, _ := reg.Namespace("merchant")
	f := func(fqn string) *feature.Feature { x, _ := reg.Lookup(fqn); return x }
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	old := now.Add(-2 * time.Hour)
	err := st.Write(context.Background(), []store.EntityWrite{
		{Namespace: user, Key: "u1", Values: []store.Value{
			{Feature: f("user.age"), Value: int64(30), ObservedAt: old}, // stale after 1h
			{Feature: f("user.name"), Value: "Ada", ObservedAt: old}}},  // never stale
		{Namespace: user, Key: "u2", Values: []store.Value{{Feature: f("user.age"), Value: int64(40), ObservedAt: now}}},
		{Namespace: merchant, Key: "7", Values: []store.Value{{Feature: f("merchant.city"), Value: "Oslo", ObservedAt: old}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	eng := query.NewEngine(st, nil, func() time.Time { return now })
	run := func(staleness map[*feature.Feature]feature.Staleness) string {
		fields := eng.Query(context.Background(), &query.Request{
			Keys:      map[*feature.Namespace][]string{user: {"u1", "u2", "nobody"}, merchant: {"7"}},
			Outputs:   []*feature.Feature{f("user.name"), f("merchant.city"), f("user.age"), f("user.id"), f("merchant.id")},
			Staleness: staleness,
		})
		var lines []string
		for _, fl := range fields {
			if fl.Err != nil {
				t.Fatalf("%s %s: %v", fl.Feature.FQN, fl.Key, fl.Err)
			}
			lines = append(lines, fmt.Sprintf("%s %s=%v", fl.Key, fl.Feature.FQN, fl.Value))
		}
		return strings.Join(lines, "\n")
	}
	want := strings.Join([]string{
		"u1 user.name=Ada", "u1 user.age=<nil>", "u1 user.id=u1",
		"u2 user.name=<nil>", "u2 user.age=40", "u2 user.id=u2",
		"nobody user.name=<nil>", "nobody user.age=<nil>", "nobody user.id=nobody",
		"7 merchant.city=Oslo", "7 merchant.id=7",
	}, "\n")
	if got := run(nil); got != want {
		t.Errorf("answer:\n%s\nwant:\n%s", got, want)
	}
	// 3h lets the old age through; 10m hides the never-stale name.
	got := run(map[*feature.Feature]feature.Staleness{f("user.age"): feature.Staleness(3 * time.Hour), f("user.name"): feature.Staleness(10 * time.Minute)})
	for _, line := range []string{"u1 user.age=30", "u1 user.name=<nil>"} {
		if !strings.Contains(got, line) {
			t.Errorf("with staleness overrides, answer lacks %q:\n%s", line, got)
		}
	}
}

// A group's Column reads every row as Group.Value does: store cells (a
// stale one served as absent), the primary key, absent entities, and the
// fields of a group made of fields.
func TestGroupColumn(t *testing.T) {
	reg, st := registryAndStore(t)
	user, _ := reg.Namespace("user")
	f := func(fqn string) *feature.Feature { x, _ := reg.Lookup(fqn); return x }
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	err := st.Write(context.Background(), []store.EntityWrite{
		{Namespace: user, Key: "u1", Values: []store.Value{
			{Feature: f("user.age"), Value: int64(30), ObservedAt: now.Add(-2 * time.Hour)}, // stale
			{Feature: f("user.name"), Value: "Ada", ObservedAt: now.Add(-time.Minute)}}},
		{Namespace: user, Key: "u2", Values: []store.Value{{Feature: f("user.age"), Value: int64(40), ObservedAt: now}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	eng := query.NewEngine(st, nil, func() time.Time { return now })
	a := eng.Answer(context.Background(), &query.Request{
		Keys:    map[*feature.Namespace][]string{user: {"u1", "u2", "nobody"}},
		Outputs: []*feature.Feature{f("user.name"), f("user.id"), f("user.age")},
	})
	defer a.Release()
	fields := a.Fields(nil)
	fg := query.FieldsGroup(user, a.Groups[0].Keys, a.Groups[0].Outs, fields)
	for name, g := range map[string]*query.Group{"store": &a.Groups[0], "fields": &fg} {
		var got []string
		for o := range g.Outs {
			col := g.Column(o)
			for i := range g.Keys {
				v, at := col.Value(i)
				wv, wat := g.Value(i, o)
				if fmt.Sprint(v) != fmt.Sprint(wv) || !at.Equal(wat) {
					t.Errorf("%s: %s of %s: Column gives %v at %v, Value %v at %v", name, g.Outs[o].FQN, g.Keys[i], v, at, wv, wat)
				}
				got = append(got, fmt.Sprintf("%v@%d", v, at.Unix()))
			}
		}
		want := fmt.Sprintf("Ada@%d <nil>@%d <nil>@%d u1@%d u2@%d nobody@%d <nil>@%d 40@%d <nil>@%d",
			now.Add(-time.Minute).Unix(), zeroUnix, zeroUnix, zeroUnix, zeroUnix, zeroUnix, zeroUnix, now.Unix(), zeroUnix)
		if s := strings.Join(got, " "); s != want {
			t.Errorf("%s: columns\n%s\nwant\n%s", name, s, want)
		}
	}
}

// zeroUnix is the zero time's Unix seconds: an absent value's observed-at.
var zeroUnix = time.Time{}.Unix()
