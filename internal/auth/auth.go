// Package auth is the HTTP API's authentication: API keys with scopes, read
// from a YAML file of their names, the SHA-256 of their tokens (never the
// tokens) and their scopes, and reloaded on demand without dropping a
// request.
//
// A request presents its token as "Authorization: Bearer <token>"
// ([ParseBearer]). [Keys.Authenticate] hashes it with SHA-256 and compares
// the hash with every key's in constant time ([Set.Lookup]), so the time an
// answer takes tells nothing of how close a guess came.
package auth

import (
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"sync/atomic"
)

// Scope is what a key may do.
type Scope string

// The scopes.
const (
	// Query allows online queries (POST /v1/query/online).
	Query Scope = "query"
	// Upload allows uploads (POST /v1/upload_features).
	Upload Scope = "upload"
	// Admin allows /metrics when CAIRN_METRICS_REQUIRE_AUTH is set.
	Admin Scope = "admin"
)

// Scopes lists every scope, in the order documentation names them.
var Scopes = []Scope{Query, Upload, Admin}

func (s Scope) known() bool { return s == Query || s == Upload || s == Admin }

// Key is an authenticated key: its name and its scopes.
type Key struct {
	// Name is the key's name in the file; it labels the key's metrics and
	// log lines.
	Name   string
	scopes []Scope
}

// Allows reports whether the key has scope s.
func (k *Key) Allows(s Scope) bool {
	for _, have := range k.scopes {
		if have == s {
			return true
		}
	}
	return false
}

// Keys is the set of keys of a file, swapped whole by [Keys.Reload] so that
// a request in flight sees either the old set or the new one, never a mix,
// and never waits.
type Keys struct {
	path string
	log  *slog.Logger
	set  atomic.Pointer[Set]
}

// Open reads the keys file at path. A file that does not read or validate
// is an error; log receives the reloads' outcomes (nil discards them).
func Open(path string, log *slog.Logger) (*Keys, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s, err := ReadFile(path)
	if err != nil {
		return nil, err
	}
	k := &Keys{path: path, log: log}
	k.set.Store(s)
	return k, nil
}

// Reload reads the file again and, when it reads and validates, puts its
// keys in use at once. A file that does not keeps the keys in use: the
// error is returned and logged.
func (k *Keys) Reload() error {
	s, err := ReadFile(k.path)
	if err != nil {
		k.log.Error("api keys: reload failed, keeping the keys in use", "file", k.path, "keys", k.set.Load().Len(), "err", err)
		return err
	}
	k.set.Store(s)
	k.log.Info("api keys: reloaded", "file", k.path, "keys", s.Len())
	return nil
}

// Path is the keys file's path.
func (k *Keys) Path() string { return k.path }

// Len is the number of keys in use.
func (k *Keys) Len() int { return k.set.Load().Len() }

// Authenticate returns the key whose token the Authorization header values
// present. The error is a *[HeaderError] when the header is missing or
// malformed, and [ErrUnknownToken] when no key has the token.
func (k *Keys) Authenticate(authorization []string) (*Key, error) {
	token, err := ParseBearer(authorization)
	if err != nil {
		return nil, err
	}
	key, ok := k.set.Load().Lookup(token)
	if !ok {
		return nil, ErrUnknownToken
	}
	return key, nil
}

// ReadFile reads and validates a keys file.
func ReadFile(path string) (*Set, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("api keys: %w", err)
	}
	s, err := Parse(data)
	if err != nil {
		// The message may quote the file (a YAML error, a name): a
		// token pasted into it by mistake must not reach the log.
		return nil, fmt.Errorf("api keys file %s: %s", path, tokenShaped.ReplaceAllString(err.Error(), TokenPrefix+"<redacted>"))
	}
	return s, nil
}

// tokenShaped matches a token of NewKey's making.
var tokenShaped = regexp.MustCompile(regexp.QuoteMeta(TokenPrefix) + `[A-Za-z0-9_-]{43}`)
