package auth

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// File is the keys file:
//
//	keys:
//	  - name: ranking-service
//	    sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//	    scopes: [query]
type File struct {
	Keys []Entry `yaml:"keys"`
}

// Entry is one key of the file.
type Entry struct {
	// Name identifies the key in metrics and logs; unique in the file.
	Name string `yaml:"name"`
	// SHA256 is the hex SHA-256 of the key's token (64 hex digits).
	SHA256 string `yaml:"sha256"`
	// Scopes are what the key may do: at least one of query, upload,
	// admin.
	Scopes []Scope `yaml:"scopes,flow"`
}

// Set is a validated set of keys.
type Set struct {
	keys   []Key
	hashes [][sha256.Size]byte // hashes[i] is keys[i]'s
}

// Len is the number of keys.
func (s *Set) Len() int { return len(s.keys) }

// Parse reads and validates a keys file's contents, reporting every problem
// at once: names must be unique and non-empty, hashes 64 hex digits and
// unique, scopes known and at least one per key. An empty list of keys is
// valid (every request is then refused).
func Parse(data []byte) (*Set, error) {
	var f File
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("want YAML `keys: [{name, sha256, scopes}]`: %w", err)
	}
	var errs []error
	s := &Set{}
	names := map[string]bool{}
	hashes := map[[sha256.Size]byte]string{}
	for i, e := range f.Keys {
		at := fmt.Sprintf("key %d (%q)", i+1, e.Name)
		if e.Name == "" {
			errs = append(errs, fmt.Errorf("key %d: no name", i+1))
		} else if names[e.Name] {
			errs = append(errs, fmt.Errorf("%s: name used twice", at))
		}
		names[e.Name] = true
		var h [sha256.Size]byte
		raw, err := hex.DecodeString(e.SHA256)
		switch {
		case len(e.SHA256) != 2*sha256.Size || err != nil:
			// The value is not shown: a token pasted here by mistake
			// must not reach the log.
			errs = append(errs, fmt.Errorf("%s: sha256 is %d characters, not all hex digits or not 64 of them: want the 64 hex digits of the token's SHA-256 (never the token)", at, len(e.SHA256)))
		default:
			copy(h[:], raw)
			if other, dup := hashes[h]; dup {
				errs = append(errs, fmt.Errorf("%s: same sha256 as key %q: each key needs its own token", at, other))
			}
			hashes[h] = e.Name
		}
		if len(e.Scopes) == 0 {
			errs = append(errs, fmt.Errorf("%s: no scopes: want at least one of %s", at, scopeList()))
		}
		for _, sc := range e.Scopes {
			if !sc.known() {
				errs = append(errs, fmt.Errorf("%s: unknown scope %q: want %s", at, sc, scopeList()))
			}
		}
		s.keys = append(s.keys, Key{Name: e.Name, scopes: e.Scopes})
		s.hashes = append(s.hashes, h)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

func scopeList() string {
	var names []string
	for _, s := range Scopes {
		names = append(names, string(s))
	}
	return strings.Join(names, ", ")
}

// Lookup returns the key whose token is token. The token's SHA-256 is
// compared with every key's hash, each in constant time and without
// stopping at a match, so that the time taken depends on the number of keys
// only, not on the token. (A map keyed by hash would be as safe, since
// learning a hash's prefix by timing tells nothing of a token: it is the
// scan that makes this evident without that argument; with tens of keys it
// costs well under a microsecond.)
func (s *Set) Lookup(token string) (*Key, bool) {
	h := sha256.Sum256([]byte(token))
	found := -1
	for i := range s.hashes {
		if subtle.ConstantTimeCompare(h[:], s.hashes[i][:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return nil, false
	}
	return &s.keys[found], true
}
