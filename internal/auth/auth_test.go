package auth

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

func hashOf(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	// Written aside and renamed, as an operator's tooling should, so that
	// a reload never reads half a file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestParseReportsEveryProblem(t *testing.T) {
	t.Parallel()
	good := hashOf("a")
	for _, tc := range []struct {
		name, yaml string
		want       []string // substrings of the error; none: valid
	}{
		{"valid", "keys:\n  - {name: a, sha256: " + good + ", scopes: [query, upload, admin]}\n", nil},
		{"empty list", "keys: []\n", nil},
		{"duplicate name", "keys:\n  - {name: a, sha256: " + good + ", scopes: [query]}\n  - {name: a, sha256: " + hashOf("b") + ", scopes: [query]}\n",
			[]string{"name used twice"}},
		{"duplicate hash", "keys:\n  - {name: a, sha256: " + good + ", scopes: [query]}\n  - {name: b, sha256: " + good + ", scopes: [query]}\n",
			[]string{"same sha256"}},
		{"short hash", "keys:\n  - {name: a, sha256: abcd, scopes: [query]}\n", []string{"64 hex digits"}},
		{"not hex", "keys:\n  - {name: a, sha256: " + strings.Repeat("z", 64) + ", scopes: [query]}\n", []string{"64 hex digits"}},
		{"the token itself", "keys:\n  - {name: a, sha256: cairn_secret, scopes: [query]}\n", []string{"never the token"}},
		{"unknown scope", "keys:\n  - {name: a, sha256: " + good + ", scopes: [read]}\n", []string{`unknown scope "read"`}},
		{"no scope", "keys:\n  - {name: a, sha256: " + good + "}\n", []string{"no scopes"}},
		{"no name", "keys:\n  - {sha256: " + good + ", scopes: [query]}\n", []string{"no name"}},
		{"every problem at once", "keys:\n  - {name: a, sha256: x, scopes: []}\n  - {name: a, sha256: " + good + ", scopes: [root]}\n",
			[]string{"64 hex digits", "no scopes", "name used twice", `unknown scope "root"`}},
		{"unknown field", "keys:\n  - {name: a, sha256: " + good + ", scopes: [query], token: x}\n", []string{"token"}},
		{"not YAML", "keys: [", []string{"want YAML"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml))
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Parse accepted %q", tc.yaml)
			}
			if strings.Contains(err.Error(), "cairn_secret") {
				t.Errorf("the error shows the value given as sha256: %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func TestLookupFindsOnlyTheRightToken(t *testing.T) {
	t.Parallel()
	s, err := Parse([]byte("keys:\n  - {name: ranker, sha256: " + hashOf("tok-r") + ", scopes: [query]}\n  - {name: loader, sha256: " + hashOf("tok-l") + ", scopes: [upload, admin]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	k, ok := s.Lookup("tok-l")
	if !ok || k.Name != "loader" || !k.Allows(Upload) || !k.Allows(Admin) || k.Allows(Query) {
		t.Fatalf("Lookup(tok-l) = %+v, %v", k, ok)
	}
	k, ok = s.Lookup("tok-r")
	if !ok || k.Name != "ranker" || !k.Allows(Query) || k.Allows(Upload) {
		t.Fatalf("Lookup(tok-r) = %+v, %v", k, ok)
	}
	for _, bad := range []string{"", "tok", "tok-r ", "TOK-R", hashOf("tok-r")} {
		if k, ok := s.Lookup(bad); ok {
			t.Errorf("Lookup(%q) found %q", bad, k.Name)
		}
	}
}

func TestParseBearer(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		values []string
		token  string // "" → an error
	}{
		{"canonical", []string{"Bearer cairn_abc-DEF_1.2~3+4/5=="}, "cairn_abc-DEF_1.2~3+4/5=="},
		{"lowercase scheme", []string{"bearer tok"}, "tok"},
		{"shouting scheme", []string{"BEARER tok"}, "tok"},
		{"several spaces", []string{"Bearer   tok"}, "tok"},
		{"missing", nil, ""},
		{"empty", []string{""}, ""},
		{"repeated", []string{"Bearer tok", "Bearer tok"}, ""},
		{"basic", []string{"Basic dXNlcjpwYXNz"}, ""},
		{"no space", []string{"Bearertok"}, ""},
		{"no token", []string{"Bearer "}, ""},
		{"space in token", []string{"Bearer tok en"}, ""},
		{"tab in token", []string{"Bearer tok\ten"}, ""},
		{"tab separator", []string{"Bearer\ttok"}, ""},
		{"equals inside", []string{"Bearer a=b"}, ""},
		{"only equals", []string{"Bearer =="}, ""},
		{"oversized", []string{"Bearer " + strings.Repeat("a", MaxHeaderBytes)}, ""},
		{"non-ASCII", []string{"Bearer tökén"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseBearer(tc.values)
			if tc.token == "" {
				var he *HeaderError
				if !errors.As(err, &he) {
					t.Fatalf("ParseBearer(%q) = %q, %v: want a *HeaderError", tc.values, got, err)
				}
				return
			}
			if err != nil || got != tc.token {
				t.Fatalf("ParseBearer(%q) = %q, %v: want %q", tc.values, got, err, tc.token)
			}
		})
	}
}

// FuzzParseBearer checks that any header either yields a token that is a
// b64token and a suffix of the header, or a *HeaderError; never a panic.
func FuzzParseBearer(f *testing.F) {
	for _, s := range []string{"Bearer tok", "bearer cairn_x==", "Bearer  a b", "Basic x", "", "Bearer", "Bearer =", "Bearer a\x00"} {
		f.Add(s, false)
	}
	f.Add("Bearer tok", true)
	f.Fuzz(func(t *testing.T, v string, twice bool) {
		values := []string{v}
		if twice {
			values = append(values, v)
		}
		token, err := ParseBearer(values)
		if err != nil {
			var he *HeaderError
			if !errors.As(err, &he) || token != "" {
				t.Fatalf("ParseBearer(%q) = %q, %v", v, token, err)
			}
			return
		}
		if twice || len(v) > MaxHeaderBytes || !strings.HasSuffix(v, token) || !b64token(token) ||
			!strings.EqualFold(v[:7], "Bearer ") || strings.ContainsAny(token, " \t\r\n") {
			t.Fatalf("ParseBearer(%q) accepted token %q", v, token)
		}
	})
}

// FuzzParse checks that any keys file either parses into keys that each
// have a name, known scopes and can be looked up by nothing but their hash,
// or is refused; never a panic.
func FuzzParse(f *testing.F) {
	f.Add([]byte("keys:\n  - {name: a, sha256: " + hashOf("a") + ", scopes: [query]}\n"))
	f.Add([]byte("keys: []\n"))
	f.Add([]byte("keys:\n  - name: a\n    sha256: x\n"))
	f.Add([]byte("- a\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(data)
		if err != nil {
			return
		}
		names := map[string]bool{}
		for i, k := range s.keys {
			if k.Name == "" || names[k.Name] || len(k.scopes) == 0 {
				t.Fatalf("accepted key %d: %+v", i, k)
			}
			names[k.Name] = true
			for _, sc := range k.scopes {
				if !sc.known() {
					t.Fatalf("accepted scope %q", sc)
				}
			}
		}
		if _, ok := s.Lookup(string(data)); ok && s.Len() > 0 {
			// Only a token whose SHA-256 is in the file matches.
			h := sha256.Sum256(data)
			found := false
			for _, kh := range s.hashes {
				found = found || kh == h
			}
			if !found {
				t.Fatal("Lookup matched a token whose hash is not in the file")
			}
		}
	})
}

func TestNewKeyEntryAuthenticatesItsToken(t *testing.T) {
	t.Parallel()
	token, entry, err := NewKey("ranking-service", []Scope{Query, Upload})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(token, TokenPrefix) || len(token) != len(TokenPrefix)+43 {
		t.Fatalf("token %q: want %s and 43 base64url characters", token, TokenPrefix)
	}
	if _, err := ParseBearer([]string{"Bearer " + token}); err != nil {
		t.Fatalf("the token does not parse as a bearer token: %v", err)
	}
	y := entry.YAML()
	if strings.Contains(y, token) || strings.Contains(y, token[len(TokenPrefix):]) {
		t.Fatalf("the entry holds the token: %s", y)
	}
	s, err := Parse([]byte("keys:\n" + indent(y)))
	if err != nil {
		t.Fatalf("the printed entry does not parse: %v\n%s", err, y)
	}
	k, ok := s.Lookup(token)
	if !ok || k.Name != "ranking-service" || !k.Allows(Query) || !k.Allows(Upload) || k.Allows(Admin) {
		t.Fatalf("Lookup = %+v, %v", k, ok)
	}
	other, _, err := NewKey("x", []Scope{Query})
	if err != nil || other == token {
		t.Fatalf("a second key: %q, %v", other, err)
	}
}

func indent(s string) string {
	lines := strings.SplitAfter(s, "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = "  " + l
		}
	}
	return strings.Join(lines, "")
}

func TestNewKeyRefusesBadInput(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		scopes []Scope
	}{
		{"", []Scope{Query}},
		{"a", nil},
		{"a", []Scope{"read"}},
		{"a", []Scope{Query, Query}},
	} {
		if tok, _, err := NewKey(tc.name, tc.scopes); err == nil {
			t.Errorf("NewKey(%q, %v) = %q: want an error", tc.name, tc.scopes, tok)
		}
	}
	if got := ParseScopes(" query, upload ,,"); len(got) != 2 || got[0] != Query || got[1] != Upload {
		t.Errorf("ParseScopes = %v", got)
	}
}

func TestReloadKeepsKeysOnABadFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "keys.yaml")
	writeFile(t, path, "keys:\n  - {name: old, sha256: "+hashOf("old-token")+", scopes: [query]}\n")
	keys, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if k, err := keys.Authenticate([]string{"Bearer old-token"}); err != nil || k.Name != "old" {
		t.Fatalf("Authenticate = %+v, %v", k, err)
	}
	if _, err := keys.Authenticate([]string{"Bearer new-token"}); !errors.Is(err, ErrUnknownToken) {
		t.Fatalf("an unknown token: %v", err)
	}

	writeFile(t, path, "keys:\n  - {name: new, sha256: nothex, scopes: [query]}\n")
	if err := keys.Reload(); err == nil {
		t.Fatal("Reload accepted a malformed file")
	}
	if _, err := keys.Authenticate([]string{"Bearer old-token"}); err != nil {
		t.Fatalf("after a failed reload the old key is gone: %v", err)
	}
	os.Remove(path)
	if err := keys.Reload(); err == nil {
		t.Fatal("Reload accepted a missing file")
	}
	if _, err := keys.Authenticate([]string{"Bearer old-token"}); err != nil {
		t.Fatalf("after a failed reload the old key is gone: %v", err)
	}

	writeFile(t, path, "keys:\n  - {name: new, sha256: "+hashOf("new-token")+", scopes: [query]}\n")
	if err := keys.Reload(); err != nil {
		t.Fatal(err)
	}
	if k, err := keys.Authenticate([]string{"Bearer new-token"}); err != nil || k.Name != "new" {
		t.Fatalf("after a reload: %+v, %v", k, err)
	}
	if _, err := keys.Authenticate([]string{"Bearer old-token"}); !errors.Is(err, ErrUnknownToken) {
		t.Fatalf("a revoked key still authenticates: %v", err)
	}
}

// TestAuthenticateDuringReloads rotates keys while requests authenticate: a
// key present in every version of the file must never fail.
func TestAuthenticateDuringReloads(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "keys.yaml")
	version := func(i int) string {
		return "keys:\n  - {name: stable, sha256: " + hashOf("stable") + ", scopes: [query]}\n" +
			"  - {name: rotating, sha256: " + hashOf("rot-"+string(rune('a'+i%26))) + ", scopes: [upload]}\n"
	}
	writeFile(t, path, version(0))
	keys, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	var checks atomic.Int64
	for range 4 {
		wg.Go(func() {
			for !stop.Load() {
				k, err := keys.Authenticate([]string{"Bearer stable"})
				if err != nil || k.Name != "stable" {
					t.Errorf("during reloads: %+v, %v", k, err)
					return
				}
				checks.Add(1)
			}
		})
	}
	for i := 1; i <= 200; i++ {
		content := version(i)
		if i%10 == 0 {
			content = "keys: [" // a bad write now and then
		}
		writeFile(t, path, content)
		err := keys.Reload()
		if (err != nil) != (i%10 == 0) {
			t.Fatalf("reload %d: %v", i, err)
		}
	}
	stop.Store(true)
	wg.Wait()
	if checks.Load() == 0 {
		t.Fatal("no request authenticated during the reloads")
	}
}

// A token pasted into the file by mistake, wherever it lands, is not
// repeated by the error that refuses the file (and that a reload logs).
func TestReadFileErrorsHideTokens(t *testing.T) {
	t.Parallel()
	token, _, err := NewKey("a", []Scope{Query})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for i, content := range []string{
		"keys:\n  - {name: a, sha256: " + token + ", scopes: [query]}\n",
		"keys:\n  - {name: " + token + ", sha256: x, scopes: [query]}\n",
		"keys:\n  - {name: a, sha256: " + hashOf(token) + ", scopes: " + token + "}\n",
		"keys:\n  - {name: a, sha256: " + hashOf(token) + ", scopes: [" + token + "]}\n",
		token + "\n",
	} {
		path := filepath.Join(dir, fmt.Sprint(i, ".yaml"))
		writeFile(t, path, content)
		_, err := ReadFile(path)
		if err == nil {
			t.Fatalf("file %d accepted", i)
		}
		if strings.Contains(err.Error(), token[len(TokenPrefix):]) {
			t.Errorf("file %d: the error shows the token: %v", i, err)
		}
	}
}
