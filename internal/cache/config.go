package cache

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// Config configures a [Cache]. Start from [DefaultConfig]; a field's zero
// value means what it says (no namespace cached, misses not cached), not
// "the default".
type Config struct {
	// Namespaces lists the namespaces to cache, each at most once. Reads
	// of any other namespace go straight to the store.
	// Environment: DYNAMODB_CACHED_NAMESPACES (see [ParseNamespaces]).
	// Default: none.
	Namespaces []NamespaceConfig

	// CacheMisses makes the cache remember that something is not stored:
	// an entity the store does not have at all, and a feature an entity
	// does not have. When false, every such miss is read from the store
	// again, so a value written by any writer is seen by the next query.
	// Environment: DYNAMODB_LRU_CACHE_CACHE_MISSES. Default: true.
	CacheMisses bool

	// MaxBytes bounds the estimated memory of each cached namespace, in
	// bytes (as reported by cairn_cache_bytes); the least recently used
	// entities are evicted to stay within it. Entities found absent are
	// kept in at most an eighth of it, found ones in the rest. It applies
	// whether or not the namespace also has MaxEntries. Must be positive.
	// Environment: CAIRN_CACHE_MAX_BYTES. Default: 256 MiB
	// ([DefaultMaxBytes]).
	MaxBytes int64

	// Now is the clock deciding when cached values expire. Default:
	// time.Now (a nil Now means time.Now).
	Now func() time.Time
}

// DefaultMaxBytes is the default Config.MaxBytes: 256 MiB per namespace,
// room for about 150,000 found entities of 10 features of mixed types and
// 170,000 keys cached as absent.
const DefaultMaxBytes = 256 << 20

// absentShare is the part of a namespace's bounds given to entities found
// absent: one over absentShare.
const absentShare = 8

// NamespaceConfig is how one namespace is cached.
type NamespaceConfig struct {
	// Namespace is the namespace's name, as in the feature registry.
	Namespace string
	// TTL is how long a value read from the store may be served from the
	// cache, at most [MaxTTL]; a read may therefore be stale by up to TTL.
	TTL time.Duration
	// MaxEntries, when positive, bounds the number of found entities
	// cached, and an eighth of it (at least one) the entities cached as
	// absent; the least recently used entity is evicted to make room.
	// Config.MaxBytes bounds the namespace either way. Environment:
	// max_lru_size in DYNAMODB_CACHED_NAMESPACES. Default: 0, bounded by
	// Config.MaxBytes only.
	MaxEntries int
}

// MaxTTL bounds NamespaceConfig.TTL.
const MaxTTL = 100 * 365 * 24 * time.Hour

// DefaultConfig returns a Config with every default filled in and no
// namespace cached.
func DefaultConfig() Config {
	return Config{CacheMisses: true, MaxBytes: DefaultMaxBytes}
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	if c.MaxBytes <= 0 && len(c.Namespaces) > 0 {
		errs = append(errs, fmt.Errorf("cache: max bytes %d: want more than 0, every cached namespace is bounded", c.MaxBytes))
	}
	seen := make(map[string]int, len(c.Namespaces))
	for i, n := range c.Namespaces {
		for _, err := range n.problems() {
			errs = append(errs, fmt.Errorf("cache: namespace #%d: %w", i+1, err))
		}
		if j, dup := seen[n.Namespace]; dup && n.Namespace != "" {
			errs = append(errs, fmt.Errorf("cache: namespace #%d: %q is already configured by #%d", i+1, n.Namespace, j+1))
		} else {
			seen[n.Namespace] = i
		}
	}
	return errors.Join(errs...)
}

func (n NamespaceConfig) problems() []error {
	var errs []error
	if n.Namespace == "" {
		errs = append(errs, errors.New("no namespace name"))
	}
	if n.TTL <= 0 || n.TTL > MaxTTL {
		errs = append(errs, fmt.Errorf("TTL %v: want more than 0 and at most %v", n.TTL, MaxTTL))
	}
	if n.MaxEntries < 0 {
		errs = append(errs, fmt.Errorf("max entries %d: want 0 (bounded in bytes only) or more", n.MaxEntries))
	}
	return errs
}

// namespaceJSON is one element of the DYNAMODB_CACHED_NAMESPACES list.
type namespaceJSON struct {
	Namespace  *string `json:"namespace"`
	TTLSeconds *int64  `json:"ttl_seconds"`
	MaxLRUSize *int64  `json:"max_lru_size"`
}

// ParseNamespaces parses the cached-namespaces setting, a JSON list such as
//
//	[{"namespace": "user", "ttl_seconds": 86400, "max_lru_size": 10000}]
//
// namespace and ttl_seconds (a positive integer) are required; max_lru_size
// (a positive integer) is optional: it bounds the number of entities
// cached (NamespaceConfig.MaxEntries), and without it the namespace is
// bounded by Config.MaxBytes only, which applies in either case. Unknown fields, a namespace listed twice and values
// out of range are errors; every problem is reported, each naming its
// entry. An empty or blank string means no namespace is cached.
func ParseNamespaces(s string) ([]NamespaceConfig, error) {
	if len(bytes.TrimSpace([]byte(s))) == 0 {
		return nil, nil
	}
	var raw []json.RawMessage
	if err := decodeStrict(s, &raw); err != nil {
		return nil, fmt.Errorf("cached namespaces: want a JSON list of {\"namespace\", \"ttl_seconds\", \"max_lru_size\"?}: %w", err)
	}
	var errs []error
	out := make([]NamespaceConfig, 0, len(raw))
	seen := make(map[string]int, len(raw))
	for i, r := range raw {
		var doc namespaceJSON
		if err := decodeStrict(string(r), &doc); err != nil {
			errs = append(errs, fmt.Errorf("cached namespaces: entry #%d %s: %w", i+1, r, err))
			continue
		}
		name := ""
		if doc.Namespace != nil {
			name = *doc.Namespace
		}
		fail := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("cached namespaces: entry #%d (%q): "+format, append([]any{i + 1, name}, args...)...))
		}
		n := NamespaceConfig{Namespace: name}
		switch {
		case doc.Namespace == nil:
			fail("namespace is required")
		case name == "":
			fail("namespace is empty")
		}
		if j, dup := seen[name]; dup && name != "" {
			fail("namespace is already listed by entry #%d", j+1)
		} else {
			seen[name] = i
		}
		switch ttl := doc.TTLSeconds; {
		case ttl == nil:
			fail("ttl_seconds is required")
		case *ttl <= 0 || *ttl > int64(MaxTTL/time.Second):
			fail("ttl_seconds %d: want 1 to %d", *ttl, int64(MaxTTL/time.Second))
		default:
			n.TTL = time.Duration(*ttl) * time.Second
		}
		if size := doc.MaxLRUSize; size != nil {
			if *size <= 0 || *size > maxEntries {
				fail("max_lru_size %d: want 1 to %d, or leave it out to bound the namespace in bytes only", *size, int64(maxEntries))
			} else {
				n.MaxEntries = int(*size)
			}
		}
		out = append(out, n)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// maxEntries bounds max_lru_size to what an int holds on every platform.
const maxEntries = 1<<31 - 1

// decodeStrict decodes exactly one JSON value into v, refusing unknown
// fields and trailing data.
func decodeStrict(s string, v any) error {
	dec := json.NewDecoder(bytes.NewReader([]byte(s)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("unexpected data after the JSON value")
	}
	return nil
}
