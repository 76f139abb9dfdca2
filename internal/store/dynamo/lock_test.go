package dynamo

import (
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseLockFile(t *testing.T) {
	good := "# ids\n\nnext 4\nuser.age 1\n  user.name 3  \n"
	l, err := ParseLockFile([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"user.age": "1", "user.name": "3"}; !maps.Equal(l.IDs, want) || l.Next != 4 {
		t.Fatalf("parsed %v next %d, want %v next 4", l.IDs, l.Next, want)
	}
	for _, tc := range []struct{ in, wantErr string }{
		{"user.age 1\n", `no "next N" line`},
		{"next 2\nnext 3\n", `line 2: a second "next" line`},
		{"next 0\n", "next \"0\""},
		{"next 02\n", "next \"02\""},
		{"next 3\nuser.age 1 2\n", `line 2: "user.age 1 2"`},
		{"next 3\nuser.age 1\nuser.age 2\n", `line 3: feature "user.age" listed twice, with ids "1" and "2"`},
		{"next 3\nuser.age 1\nuser.name 1\n", `line 3: id "1" given to both "user.age" and "user.name"`},
		{"next 3\nuser.age X\n", `feature "user.age": id "X"`},
		{"next 3\nuser.age 01\n", `id "01"`},
		{"next zz\nuser.age pk\n", `id "pk"`},
		{"next 3\n_meta.x 1\n", "reserved"},
		{"next 3\nage 1\n", "want namespace.name"},
		{"next 3\nuser.age 3\n", `feature "user.age" has id "3", not below next "3"`},
	} {
		if _, err := ParseLockFile([]byte(tc.in)); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("ParseLockFile(%q) = %v, want an error containing %q", tc.in, err, tc.wantErr)
		}
	}
}

// Ids are handed out in FQN order from next, so the same lock file and
// features give the same ids on every machine, and an id once given never
// changes, even when its feature is removed and others are added.
func TestLockFileAddDeterministicAndStable(t *testing.T) {
	a, b := NewLockFile(), NewLockFile()
	if _, err := a.Add([]string{"user.name", "user.age"}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Add([]string{"user.age", "user.name", "user.age"}); err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(a.IDs, b.IDs) || a.IDs["user.age"] != "1" || a.IDs["user.name"] != "2" || a.Next != 3 {
		t.Fatalf("a = %v next %d, b = %v next %d; want user.age 1, user.name 2, next 3 in both", a.IDs, a.Next, b.IDs, b.Next)
	}
	delete(a.IDs, "user.name") // the feature is removed from the lock file
	added, err := a.Add([]string{"user.age", "user.score"})
	if err != nil {
		t.Fatal(err)
	}
	if len(added) != 1 || a.IDs["user.age"] != "1" || a.IDs["user.score"] != "3" {
		t.Fatalf("after removing user.name and adding user.score: %v (added %v); want user.age 1, user.score 3 (2 never reused)", a.IDs, added)
	}
	// The key attributes' names are never ids.
	l := &LockFile{IDs: map[string]string{}, Next: 920} // 920 is "pk" in base 36
	if _, err := l.Add([]string{"user.x"}); err != nil || l.IDs["user.x"] != "pl" {
		t.Fatalf("id after next=pk: %v, %v; want pl", l.IDs, err)
	}
	if _, err := l.Add([]string{"x"}); err == nil {
		t.Error("Add accepted a name without a namespace")
	}
}

func TestLockFileRoundTrip(t *testing.T) {
	l := NewLockFile()
	if _, err := l.Add([]string{"user.c", "user.a", "user.b"}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "features.lock")
	if err := l.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if !strings.HasSuffix(string(b), "next 4\nuser.a 1\nuser.b 2\nuser.c 3\n") {
		t.Errorf("encoded:\n%s", b)
	}
	got, err := ReadLockFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(got.IDs, l.IDs) || got.Next != l.Next {
		t.Fatalf("read back %v next %d, wrote %v next %d", got.IDs, got.Next, l.IDs, l.Next)
	}
	if _, err := ReadLockFile(filepath.Join(t.TempDir(), "none")); err == nil || !strings.Contains(err.Error(), "CAIRN_FEATURES_LOCK") {
		t.Errorf("missing file: %v", err)
	}
}

func TestLockFileMergeAndCheck(t *testing.T) {
	l := &LockFile{IDs: map[string]string{"user.age": "1", "user.name": "2"}, Next: 3}
	table := &LockFile{IDs: map[string]string{"user.age": "1", "user.score": "7"}, Next: 9}
	if err := l.Merge(table); err != nil {
		t.Fatal(err)
	}
	if l.IDs["user.score"] != "7" || l.Next != 9 {
		t.Fatalf("merged %v next %d; want user.score 7, next 9", l.IDs, l.Next)
	}
	bad := &LockFile{IDs: map[string]string{"user.age": "5", "user.other": "2"}, Next: 6}
	err := l.Merge(bad)
	for _, want := range []string{`feature "user.age" has id "1" in the lock file and "5" in the table`,
		`id "2" belongs to "user.name" in the lock file and to "user.other" in the table`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Merge error %v, want it to contain %q", err, want)
		}
	}
	if l.IDs["user.age"] != "1" || l.IDs["user.other"] != "" || l.Next != 9 {
		t.Errorf("a failed Merge changed the lock file: %v next %d", l.IDs, l.Next)
	}
	if err := l.Check([]string{"user.age", "user.zip", "user.city"}); err == nil || !strings.Contains(err.Error(), "user.city, user.zip") {
		t.Errorf("Check = %v, want an error naming user.city, user.zip", err)
	}
	if err := l.Check([]string{"user.age"}); err != nil {
		t.Errorf("Check of a locked feature: %v", err)
	}
}

// A lock file that parses encodes to one that parses to the same mapping.
func FuzzParseLockFile(f *testing.F) {
	f.Add([]byte("next 4\nuser.age 1\nuser.name 3\n"))
	f.Add([]byte("# c\nnext zz\nx.y pk\n"))
	f.Add([]byte("next 1\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := ParseLockFile(b)
		if err != nil {
			return
		}
		again, err := ParseLockFile(l.Encode())
		if err != nil {
			t.Fatalf("encoding of a parsed lock file does not parse: %v\n%s", err, l.Encode())
		}
		if !maps.Equal(again.IDs, l.IDs) || again.Next != l.Next {
			t.Fatalf("round trip changed the lock file: %v next %d -> %v next %d", l.IDs, l.Next, again.IDs, again.Next)
		}
	})
}
