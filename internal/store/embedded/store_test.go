package embedded

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/store"
	"github.com/cairnfs/cairn/internal/store/storetest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func testOptions() Options {
	return Options{Logger: quiet, CacheBytes: 1 << 20, MemTableBytes: 1 << 20}
}

func TestConformance(t *testing.T) {
	root := t.TempDir()
	storetest.Run(t, func(t *testing.T, name string) storetest.Store {
		s, err := Open(filepath.Join(root, name), testOptions())
		if err != nil {
			t.Fatalf("open %s: %v", name, err)
		}
		return s
	})
}

func openT(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir, testOptions())
	if err != nil {
		t.Fatalf("open %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

func mustParse(t *testing.T, yaml string) *feature.Registry {
	t.Helper()
	r, err := feature.Parse("test", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// A registry that changes a feature's type must not make the store serve
// the old value as the new type: it reads as absent until rewritten.
func TestTypeChangeReadsAsAbsent(t *testing.T) {
	dir := t.TempDir()
	before := mustParse(t, "namespaces:\n- name: user\n  primary_key: id\n  features: {id: string, age: int, emb: 'vector[2]', name: string}\n")
	after := mustParse(t, "namespaces:\n- name: user\n  primary_key: id\n  features: {id: string, age: string, emb: 'vector[3]', name: string}\n")
	ts := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	ctx := context.Background()

	feat := func(r *feature.Registry, fqn string) *feature.Feature {
		f, ok := r.Lookup(fqn)
		if !ok {
			t.Fatalf("no %s", fqn)
		}
		return f
	}
	s := openT(t, dir)
	ns, _ := before.Namespace("user")
	if err := s.Write(ctx, []store.EntityWrite{{Namespace: ns, Key: "u1", Values: []store.Value{
		{Feature: feat(before, "user.age"), Value: int64(7), ObservedAt: ts},
		{Feature: feat(before, "user.emb"), Value: []float32{1, 2}, ObservedAt: ts},
		{Feature: feat(before, "user.name"), Value: "x", ObservedAt: ts},
	}}}); err != nil {
		t.Fatal(err)
	}

	ns2, _ := after.Namespace("user")
	fs := []*feature.Feature{feat(after, "user.age"), feat(after, "user.emb"), feat(after, "user.name")}
	rows, err := s.Read(ctx, ns2, []string{"u1"}, fs)
	if err != nil {
		t.Fatal(err)
	}
	r := rows[0]
	if !r.Found || r.Cells[0].Found || r.Cells[1].Found || !r.Cells[2].Found || r.Cells[2].Value != "x" {
		t.Fatalf("after type change: got %+v, want age and emb absent, name found", r)
	}

	// The next write of the new type replaces the unreadable value.
	if err := s.Write(ctx, []store.EntityWrite{{Namespace: ns2, Key: "u1", Values: []store.Value{
		{Feature: fs[0], Value: "seven", ObservedAt: ts.Add(time.Second)},
	}}}); err != nil {
		t.Fatal(err)
	}
	rows, err = s.Read(ctx, ns2, []string{"u1"}, fs[:1])
	if err != nil {
		t.Fatal(err)
	}
	if c := rows[0].Cells[0]; !c.Found || c.Value != "seven" {
		t.Fatalf("after rewrite: got %+v, want seven", c)
	}
}

// Opening a directory that is already open shares the database; it closes
// with the last handle, after which the directory can be opened again.
func TestOpenSharesDatabase(t *testing.T) {
	dir := t.TempDir()
	a, err := Open(dir, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(filepath.Join(dir, "."), testOptions())
	if err != nil {
		t.Fatalf("second open of an open directory: %v", err)
	}
	if a.db != b.db {
		t.Fatal("second open did not share the database")
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	ns, _ := storetest.Registry().Namespace("user")
	if _, err := a.Read(context.Background(), ns, []string{"x"}, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("read on closed handle: got %v, want ErrClosed", err)
	}
	if _, err := b.Read(context.Background(), ns, []string{"x"}, nil); err != nil {
		t.Fatalf("read on the other handle: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	registry.mu.Lock()
	n := len(registry.open)
	registry.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d databases still open after closing every handle", n)
	}
	c := openT(t, dir)
	if c.db == a.db {
		t.Fatal("reopen after the last close reused the closed database")
	}
}

func TestOptionsValidate(t *testing.T) {
	err := Options{CacheBytes: -1, MemTableBytes: 2 << 30}.Validate()
	if err == nil {
		t.Fatal("want an error")
	}
	for _, want := range []string{"CacheBytes", "MemTableBytes"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	if _, err := Open(t.TempDir(), Options{CacheBytes: -1}); err == nil {
		t.Error("Open accepted invalid options")
	}
	if err := (Options{}).Validate(); err != nil {
		t.Errorf("zero options: %v", err)
	}
}

// Feature ids survive reopening and new features get fresh ids.
func TestFeatureIDsPersist(t *testing.T) {
	dir := t.TempDir()
	reg := storetest.Registry()
	ns, _ := reg.Namespace("user")
	age, _ := reg.Lookup("user.age")
	name, _ := reg.Lookup("user.name")
	ts := time.Unix(1, 0)
	ctx := context.Background()

	s, err := Open(dir, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, []store.EntityWrite{{Namespace: ns, Key: "k", Values: []store.Value{{Feature: age, Value: int64(1), ObservedAt: ts}}}}); err != nil {
		t.Fatal(err)
	}
	ageID, _ := s.db.ids.lookup(age.FQN)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, dir)
	if id, ok := s.db.ids.lookup(age.FQN); !ok || id != ageID {
		t.Fatalf("after reopen user.age has id %d (%v), want %d", id, ok, ageID)
	}
	if err := s.Write(ctx, []store.EntityWrite{{Namespace: ns, Key: "k", Values: []store.Value{{Feature: name, Value: "n", ObservedAt: ts}}}}); err != nil {
		t.Fatal(err)
	}
	if id, _ := s.db.ids.lookup(name.FQN); id == ageID || id == 0 {
		t.Fatalf("user.name got id %d, user.age has %d", id, ageID)
	}
}
