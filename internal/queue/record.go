package queue

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/cairnfs/cairn/internal/feature"
)

// The record encoding, version 1 (docs/records.md has the full description):
//
//	version   byte, 1
//	kind      byte, a Kind
//	base      zig-zag varint, microseconds since the Unix epoch (UTC)
//	names     uvarint count, then per name: uvarint length, UTF-8 bytes
//	entities  uvarint count, then per entity:
//	  namespace  uvarint index into names
//	  key        uvarint length, UTF-8 bytes
//	  values     uvarint count, then per value:
//	    fqn        uvarint index into names
//	    observed   zig-zag varint, microseconds after base
//	    value      tagged value (feature.AppendValue)
//
// A version never changes meaning: a new field or a new kind takes a new
// version, and readers keep decoding every version they know.
const recordVersion = 1

// The least number of bytes each repeated element takes; counts are checked
// against them before anything is allocated.
const (
	minNameLen   = 2 // length, one byte of name
	minEntityLen = 4 // namespace index, key length, one byte of key, value count
	minValueLen  = 3 // name index, observed-at delta, value tag
)

// Kind says what produced a record.
type Kind uint8

// The kinds of record. A new kind is a format change and takes a new version.
const (
	// KindUpload is values uploaded through the API.
	KindUpload Kind = 1
	// KindQueryResult is cacheable query results to persist.
	KindQueryResult Kind = 2
)

func (k Kind) known() bool { return k == KindUpload || k == KindQueryResult }

// String returns the kind's name for logs and metric labels: "upload",
// "query_result", or "kind(N)" for a kind this package does not know.
func (k Kind) String() string {
	switch k {
	case KindUpload:
		return "upload"
	case KindQueryResult:
		return "query_result"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Record is one message on the persistence topic: values for one or more
// entities.
type Record struct {
	// Kind says what produced the record.
	Kind Kind
	// Entities may repeat an entity; the writer coalesces them.
	Entities []Entity
}

// Entity is the values for one entity of one namespace.
type Entity struct {
	// Namespace is the namespace's name, such as "user".
	Namespace string
	// Key is the canonical primary key (see feature.ParseKey): non-empty
	// UTF-8 of at most feature.MaxKeyLen bytes.
	Key string
	// Values may name a feature more than once; the writer keeps the newest.
	Values []Value
}

// Value is one feature value and the time it was observed.
type Value struct {
	// FQN is the feature's fully-qualified name, such as "user.age"; it
	// belongs to the entity's namespace.
	FQN string
	// Value is canonical for the feature's type (see package feature), or
	// nil for an explicit null.
	Value any
	// ObservedAt is kept to the microsecond and comes back in UTC.
	ObservedAt time.Time
}

// ErrBadRecord is wrapped by every error AppendRecord and DecodeRecord
// return: the record breaks a rule of the format, and retrying cannot help.
var ErrBadRecord = errors.New("queue: bad record")

// AppendRecord appends r's encoding to b. It refuses a record whose
// structure DecodeRecord would reject: r must have a known kind, every entity
// a namespace without a dot and a valid key, and every value a feature of its
// entity's namespace. Values must be canonical (see package feature); they
// are not checked against their features' types, which the record does not
// carry. On error, b is returned unextended.
func AppendRecord(b []byte, r *Record) ([]byte, error) {
	if r == nil {
		return b, fmt.Errorf("%w: nil record", ErrBadRecord)
	}
	if !r.Kind.known() {
		return b, fmt.Errorf("%w: kind %d is unknown", ErrBadRecord, r.Kind)
	}
	// First pass: check the record and number its names in order of first
	// use, so that encoding is deterministic.
	index := make(map[string]uint64)
	var names []string
	intern := func(s string) {
		if _, ok := index[s]; !ok {
			index[s] = uint64(len(names))
			names = append(names, s)
		}
	}
	var base int64
	haveBase := false
	for i := range r.Entities {
		e := &r.Entities[i]
		if err := checkNamespace(e.Namespace); err != nil {
			return b, fmt.Errorf("%w: entities[%d]: %w", ErrBadRecord, i, err)
		}
		if err := checkKey(e.Key); err != nil {
			return b, fmt.Errorf("%w: entities[%d] (%s): %w", ErrBadRecord, i, e.Namespace, err)
		}
		intern(e.Namespace)
		for j := range e.Values {
			v := &e.Values[j]
			if err := checkFQN(v.FQN, e.Namespace); err != nil {
				return b, fmt.Errorf("%w: entities[%d] (%s/%s): values[%d]: %w", ErrBadRecord, i, e.Namespace, e.Key, j, err)
			}
			intern(v.FQN)
			if !haveBase {
				base, haveBase = v.ObservedAt.UnixMicro(), true
			}
		}
	}

	out := append(b, recordVersion, byte(r.Kind))
	out = binary.AppendVarint(out, base)
	out = binary.AppendUvarint(out, uint64(len(names)))
	for _, n := range names {
		out = appendString(out, n)
	}
	out = binary.AppendUvarint(out, uint64(len(r.Entities)))
	for i := range r.Entities {
		e := &r.Entities[i]
		out = binary.AppendUvarint(out, index[e.Namespace])
		out = appendString(out, e.Key)
		out = binary.AppendUvarint(out, uint64(len(e.Values)))
		for j := range e.Values {
			v := &e.Values[j]
			out = binary.AppendUvarint(out, index[v.FQN])
			// Wrapping subtraction: base+delta gives the time back exactly
			// even when the difference overflows.
			out = binary.AppendVarint(out, v.ObservedAt.UnixMicro()-base)
			var err error
			if out, err = feature.AppendValue(out, v.Value); err != nil {
				return b, fmt.Errorf("%w: entities[%d] (%s/%s): values[%d] (%s): %w", ErrBadRecord, i, e.Namespace, e.Key, j, v.FQN, err)
			}
		}
	}
	return out, nil
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// DecodeRecord decodes a record. Every error wraps ErrBadRecord and says what
// is wrong and where (the version, the entity and value being read, ...).
// DecodeRecord never panics, and allocates at most a small multiple of
// len(b) however the bytes are corrupted.
func DecodeRecord(b []byte) (*Record, error) {
	r, err := decodeRecord(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRecord, err)
	}
	return r, nil
}

func decodeRecord(b []byte) (*Record, error) {
	if len(b) == 0 {
		return nil, errors.New("empty")
	}
	switch b[0] {
	case recordVersion:
		return decodeV1(b[1:])
	}
	return nil, fmt.Errorf("version %d is unknown (this reader knows version %d)", b[0], recordVersion)
}

// decodeV1 decodes what follows the version byte of a version 1 record.
func decodeV1(b []byte) (*Record, error) {
	if len(b) == 0 {
		return nil, errors.New("truncated before the kind")
	}
	r := &Record{Kind: Kind(b[0])}
	if !r.Kind.known() {
		return nil, fmt.Errorf("kind %d is unknown", b[0])
	}
	d := decoder{rest: b[1:]}

	base, err := d.varint()
	if err != nil {
		return nil, fmt.Errorf("base observed-at: %w", err)
	}
	names, err := d.names()
	if err != nil {
		return nil, err
	}

	n, err := d.count(minEntityLen)
	if err != nil {
		return nil, fmt.Errorf("entity count: %w", err)
	}
	r.Entities = make([]Entity, n)
	for i := range r.Entities {
		e := &r.Entities[i]
		if err := d.entity(e, names, base); err != nil {
			return nil, fmt.Errorf("entities[%d]%s: %w", i, e.where(), err)
		}
	}
	if len(d.rest) > 0 {
		return nil, fmt.Errorf("%d bytes left over after the last entity", len(d.rest))
	}
	return r, nil
}

// decoder reads the front of rest, advancing it.
type decoder struct {
	rest []byte
}

var errTruncated = errors.New("truncated")

func (d *decoder) uvarint() (uint64, error) {
	x, n := binary.Uvarint(d.rest)
	if n <= 0 {
		if n == 0 {
			return 0, errTruncated
		}
		return 0, errors.New("varint overflows 64 bits")
	}
	d.rest = d.rest[n:]
	return x, nil
}

func (d *decoder) varint() (int64, error) {
	x, n := binary.Varint(d.rest)
	if n <= 0 {
		if n == 0 {
			return 0, errTruncated
		}
		return 0, errors.New("varint overflows 64 bits")
	}
	d.rest = d.rest[n:]
	return x, nil
}

// count reads an element count and checks that the remaining bytes can hold
// that many elements of at least minLen bytes each.
func (d *decoder) count(minLen int) (int, error) {
	n, err := d.uvarint()
	if err != nil {
		return 0, err
	}
	if n > uint64(len(d.rest)/minLen) {
		return 0, fmt.Errorf("%d is more than the remaining %d bytes can hold", n, len(d.rest))
	}
	return int(n), nil
}

// string reads a length-prefixed UTF-8 string.
func (d *decoder) string() (string, error) {
	n, err := d.uvarint()
	if err != nil {
		return "", fmt.Errorf("length: %w", err)
	}
	if n > uint64(len(d.rest)) {
		return "", fmt.Errorf("length %d is past the end (%d bytes remain)", n, len(d.rest))
	}
	p := d.rest[:n]
	d.rest = d.rest[n:]
	if !utf8.Valid(p) {
		return "", errors.New("not UTF-8")
	}
	return string(p), nil
}

func (d *decoder) names() ([]string, error) {
	n, err := d.count(minNameLen)
	if err != nil {
		return nil, fmt.Errorf("name count: %w", err)
	}
	names := make([]string, n)
	seen := make(map[string]struct{}, n)
	for i := range names {
		s, err := d.string()
		if err != nil {
			return nil, fmt.Errorf("names[%d]: %w", i, err)
		}
		if s == "" {
			return nil, fmt.Errorf("names[%d]: empty", i)
		}
		if _, dup := seen[s]; dup {
			return nil, fmt.Errorf("names[%d]: %q appears twice", i, s)
		}
		seen[s] = struct{}{}
		names[i] = s
	}
	return names, nil
}

// name reads an index into names.
func (d *decoder) name(names []string) (string, error) {
	i, err := d.uvarint()
	if err != nil {
		return "", err
	}
	if i >= uint64(len(names)) {
		return "", fmt.Errorf("index %d out of range (%d names)", i, len(names))
	}
	return names[i], nil
}

// entity decodes one entity into e, setting each of its fields only once
// the field is valid, so that e.where can name the entity in errors.
func (d *decoder) entity(e *Entity, names []string, base int64) error {
	ns, err := d.name(names)
	if err != nil {
		return fmt.Errorf("namespace: %w", err)
	}
	if err := checkNamespace(ns); err != nil {
		return err
	}
	e.Namespace = ns
	key, err := d.string()
	if err != nil {
		return fmt.Errorf("key: %w", err)
	}
	if err := checkKey(key); err != nil {
		return err
	}
	e.Key = key
	n, err := d.count(minValueLen)
	if err != nil {
		return fmt.Errorf("value count: %w", err)
	}
	e.Values = make([]Value, n)
	for j := range e.Values {
		v := &e.Values[j]
		if err := d.value(v, ns, names, base); err != nil {
			if v.FQN != "" {
				return fmt.Errorf("values[%d] (%s): %w", j, v.FQN, err)
			}
			return fmt.Errorf("values[%d]: %w", j, err)
		}
	}
	return nil
}

// where names a partly decoded entity in an error: " (namespace/key)", or
// as much of it as is known.
func (e *Entity) where() string {
	switch {
	case e.Key != "":
		return " (" + e.Namespace + "/" + e.Key + ")"
	case e.Namespace != "":
		return " (" + e.Namespace + ")"
	}
	return ""
}

// value decodes one value into v, setting FQN only once it is valid.
func (d *decoder) value(v *Value, ns string, names []string, base int64) error {
	fqn, err := d.name(names)
	if err != nil {
		return fmt.Errorf("feature: %w", err)
	}
	if err := checkFQN(fqn, ns); err != nil {
		return err
	}
	v.FQN = fqn
	delta, err := d.varint()
	if err != nil {
		return fmt.Errorf("observed-at: %w", err)
	}
	v.ObservedAt = time.UnixMicro(base + delta).UTC()
	if v.Value, d.rest, err = feature.DecodeValue(d.rest); err != nil {
		return fmt.Errorf("value: %w", err)
	}
	return nil
}

func checkNamespace(ns string) error {
	if ns == "" {
		return errors.New("empty namespace")
	}
	for i := 0; i < len(ns); i++ {
		if ns[i] == '.' {
			return fmt.Errorf("namespace %q contains a dot", ns)
		}
	}
	if !utf8.ValidString(ns) {
		return fmt.Errorf("namespace %q is not UTF-8", ns)
	}
	return nil
}

func checkKey(key string) error {
	switch {
	case key == "":
		return errors.New("empty key")
	case len(key) > feature.MaxKeyLen:
		return fmt.Errorf("key is %d bytes, over the limit of %d", len(key), feature.MaxKeyLen)
	case !utf8.ValidString(key):
		return errors.New("key is not UTF-8")
	}
	return nil
}

// checkFQN reports whether fqn names a feature of namespace ns: ns, a dot,
// then a non-empty feature name.
func checkFQN(fqn, ns string) error {
	if len(fqn) <= len(ns)+1 || fqn[:len(ns)] != ns || fqn[len(ns)] != '.' {
		return fmt.Errorf("feature %q is not in namespace %q", fqn, ns)
	}
	if !utf8.ValidString(fqn) {
		return fmt.Errorf("feature %q is not UTF-8", fqn)
	}
	return nil
}
