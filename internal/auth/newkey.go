package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// TokenPrefix starts every token NewKey makes, so that a leaked token is
// recognizable (by secret scanners, in a log line) for what it is.
const TokenPrefix = "cairn_"

// NewKey returns a fresh token, 32 random bytes base64url-encoded after
// TokenPrefix, and the file entry of a key with that token, name and
// scopes. The token is returned once: the entry holds only its SHA-256.
func NewKey(name string, scopes []Scope) (token string, entry Entry, err error) {
	entry = Entry{Name: name, Scopes: scopes}
	var errs []error
	if name == "" {
		errs = append(errs, errors.New("no name"))
	}
	if len(scopes) == 0 {
		errs = append(errs, fmt.Errorf("no scopes: want at least one of %s", scopeList()))
	}
	seen := map[Scope]bool{}
	for _, s := range scopes {
		if !s.known() {
			errs = append(errs, fmt.Errorf("unknown scope %q: want %s", s, scopeList()))
		}
		if seen[s] {
			errs = append(errs, fmt.Errorf("scope %q given twice", s))
		}
		seen[s] = true
	}
	if err := errors.Join(errs...); err != nil {
		return "", Entry{}, err
	}
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	token = TokenPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	h := sha256.Sum256([]byte(token))
	entry.SHA256 = hex.EncodeToString(h[:])
	return token, entry, nil
}

// ParseScopes parses a comma-separated list of scopes, such as
// "query,upload".
func ParseScopes(s string) []Scope {
	var out []Scope
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, Scope(p))
		}
	}
	return out
}

// YAML returns the entry as the lines to add under the file's "keys:".
func (e Entry) YAML() string {
	out, err := yaml.Marshal([]Entry{e})
	if err != nil {
		// Strings and a list of strings always marshal.
		return fmt.Sprintf("- name: %q\n  sha256: %s\n  scopes: %v\n", e.Name, e.SHA256, e.Scopes)
	}
	return string(out)
}
