// Package embedded is the online store for one machine: a Pebble database
// under a directory, written durably (every Write is synced to disk before
// it returns). It backs `cairn dev` and single-node deployments.
//
// # Layout
//
// All keys live in one Pebble keyspace:
//
//	m/format           the layout version, "1"
//	m/f/<fqn>          a feature's short id, uvarint
//	e/<ns>\x00<key>    one entity: every stored feature value of it
//
// An entity is one Pebble value: a format byte (1), then, sorted by
// feature id, for each stored feature its id (uvarint), observed-at in
// microseconds since the Unix epoch (varint), and the value in the codec of
// package feature, length-prefixed (uvarint) so that reads skip the values
// they were not asked for. A null is stored as the codec's null.
//
// Feature ids are short integers stored in the database itself rather than
// FQNs, so an entity with many features stays small. An id is assigned the
// first time a feature is written, synced before any entity uses it, and
// never reused; renaming a feature in the registry therefore starts it
// afresh, and the old values stay unreachable under the old name's id.
//
// # Writes
//
// Each Write call is one Pebble batch committed with sync. Per entity the
// store reads the stored value, applies newest-wins per feature by
// observed-at, and writes the result back, holding a lock for the entity
// (one of a fixed set of striped mutexes, chosen by hashing the entity's
// key) from the read until the batch is committed. Entities are locked in
// a fixed order, so concurrent writers never deadlock.
//
// # Reads
//
// A read decodes only the requested features. A stored value whose type no
// longer matches the feature's declared type (the registry changed the
// type since it was written) is reported as not found, never as a wrongly
// typed value: the old value cannot be served as the new type. It keeps its
// observed-at, so it is replaced by the first write of the feature that is
// not older than it. A value that does not decode at all is
// an error, since it means the data is damaged.
//
// # Sharing
//
// Pebble allows one open database per directory. Opening a directory that
// is already open in this process returns another handle onto the same
// database; the database closes when its last handle does. Different
// processes cannot share a directory: the second Open fails.
package embedded

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/cockroachdb/pebble"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/store"
)

// Options configures a Store. The zero value is ready to use.
type Options struct {
	// Logger receives Pebble's messages and the store's own. The default
	// is slog.Default().
	Logger *slog.Logger
	// CacheBytes is the size of Pebble's block cache, in bytes. The
	// default is 64 MiB.
	CacheBytes int64
	// MemTableBytes is the size of one Pebble memtable, in bytes. The
	// default is 32 MiB.
	MemTableBytes int64
}

const (
	defaultCacheBytes    = 64 << 20
	defaultMemTableBytes = 32 << 20
	maxMemTableBytes     = 1 << 30
)

// EnsureDefaults fills zero fields with their defaults.
func (o *Options) EnsureDefaults() {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.CacheBytes == 0 {
		o.CacheBytes = defaultCacheBytes
	}
	if o.MemTableBytes == 0 {
		o.MemTableBytes = defaultMemTableBytes
	}
}

// Validate reports every problem with o.
func (o Options) Validate() error {
	var errs []error
	if o.CacheBytes < 0 {
		errs = append(errs, fmt.Errorf("embedded: CacheBytes is %d, want 0 (default) or more", o.CacheBytes))
	}
	if o.MemTableBytes < 0 || o.MemTableBytes > maxMemTableBytes {
		errs = append(errs, fmt.Errorf("embedded: MemTableBytes is %d, want 0 (default) to %d", o.MemTableBytes, maxMemTableBytes))
	}
	return errors.Join(errs...)
}

// Store is a handle onto an embedded store. It is safe for concurrent use.
type Store struct {
	db  *sharedDB
	log *slog.Logger
	// mu guards closed; Read and Write hold it shared so that Close waits
	// for them.
	mu     sync.RWMutex
	closed bool
}

// ErrClosed is returned by operations on a closed Store.
var ErrClosed = errors.New("embedded: store is closed")

// Open opens the store under dir, creating the directory and the database
// if needed. If dir is already open in this process, Open returns another
// handle onto the same database and opts other than Logger are ignored.
func Open(dir string, opts Options) (*Store, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts.EnsureDefaults()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("embedded: open %s: %w", dir, err)
	}
	path, err := filepath.Abs(dir)
	if err == nil {
		path, err = filepath.EvalSymlinks(path)
	}
	if err != nil {
		return nil, fmt.Errorf("embedded: open %s: %w", dir, err)
	}

	registry.mu.Lock()
	defer registry.mu.Unlock()
	db, ok := registry.open[path]
	if !ok {
		if db, err = openDB(path, opts); err != nil {
			return nil, err
		}
		registry.open[path] = db
	}
	db.refs++
	return &Store{db: db, log: opts.Logger.With("store", "embedded", "dir", path)}, nil
}

// registry holds the databases open in this process, by directory.
var registry = struct {
	mu   sync.Mutex
	open map[string]*sharedDB
}{open: map[string]*sharedDB{}}

// lockStripes is the number of entity locks; entities whose keys hash to
// the same stripe share a lock.
const lockStripes = 512

// sharedDB is one open Pebble database and the state every handle onto it
// shares.
type sharedDB struct {
	path  string
	pdb   *pebble.DB
	ids   *ids
	seed  maphash.Seed
	locks [lockStripes]sync.Mutex
	// refs counts open handles; guarded by registry.mu.
	refs int
}

const (
	formatKey     = "m/format"
	formatVersion = "1"
	entityPrefix  = "e/"
)

func openDB(path string, opts Options) (*sharedDB, error) {
	cache := pebble.NewCache(opts.CacheBytes)
	defer cache.Unref()
	pdb, err := pebble.Open(path, &pebble.Options{
		Cache:        cache,
		MemTableSize: uint64(opts.MemTableBytes),
		Logger:       pebbleLogger{opts.Logger.With("store", "embedded", "dir", path)},
	})
	if err != nil {
		return nil, fmt.Errorf("embedded: open %s: %w", path, err)
	}
	db := &sharedDB{path: path, pdb: pdb, seed: maphash.MakeSeed()}
	if err := db.checkFormat(); err != nil {
		_ = pdb.Close()
		return nil, fmt.Errorf("embedded: open %s: %w", path, err)
	}
	if db.ids, err = loadIDs(pdb); err != nil {
		_ = pdb.Close()
		return nil, fmt.Errorf("embedded: open %s: %w", path, err)
	}
	return db, nil
}

// checkFormat stamps a new database with the layout version and refuses a
// database written in another.
func (db *sharedDB) checkFormat() error {
	v, closer, err := db.pdb.Get([]byte(formatKey))
	if errors.Is(err, pebble.ErrNotFound) {
		return db.pdb.Set([]byte(formatKey), []byte(formatVersion), pebble.Sync)
	}
	if err != nil {
		return fmt.Errorf("read layout version: %w", err)
	}
	defer closer.Close()
	if string(v) != formatVersion {
		return fmt.Errorf("layout version %q, this build reads %q", v, formatVersion)
	}
	return nil
}

// Close releases the handle; the database closes with its last handle.
// Closing a closed Store does nothing.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	registry.mu.Lock()
	defer registry.mu.Unlock()
	s.db.refs--
	if s.db.refs > 0 {
		return nil
	}
	delete(registry.open, s.db.path)
	if err := s.db.pdb.Close(); err != nil {
		return fmt.Errorf("embedded: close %s: %w", s.db.path, err)
	}
	return nil
}

// entityKey returns the Pebble key of an entity.
func entityKey(ns, key string) []byte {
	b := make([]byte, 0, len(entityPrefix)+len(ns)+1+len(key))
	b = append(b, entityPrefix...)
	b = append(b, ns...)
	b = append(b, 0)
	return append(b, key...)
}

// Read returns one Row per key, aligned with keys, each with one Cell per
// feature of feats, which all belong to ns.
func (s *Store) Read(ctx context.Context, ns *feature.Namespace, keys []string, feats []*feature.Feature) ([]store.Row, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	ids := make([]uint64, len(feats))
	for i, f := range feats {
		ids[i], _ = s.db.ids.lookup(f.FQN) // 0: never written
	}
	rows := make([]store.Row, len(keys))
	var es []entry
	for i, key := range keys {
		if i%64 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("embedded: read %d %s keys: %w", len(keys), ns.Name, err)
			}
		}
		rows[i].Cells = make([]store.Cell, len(feats))
		var err error
		if es, err = s.readEntity(ns, key, feats, ids, rows[i].Cells, es[:0]); err != nil {
			return nil, fmt.Errorf("embedded: read %s %q: %w", ns.Name, key, err)
		}
		rows[i].Found = len(es) > 0
	}
	return rows, nil
}

// readEntity fills cells for one entity and returns its decoded entries
// (appended to es), which are empty when the entity is not stored.
func (s *Store) readEntity(ns *feature.Namespace, key string, feats []*feature.Feature, ids []uint64, cells []store.Cell, es []entry) ([]entry, error) {
	v, closer, err := s.db.pdb.Get(entityKey(ns.Name, key))
	if errors.Is(err, pebble.ErrNotFound) {
		return es, nil
	}
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	if es, err = decodeEntity(v, es); err != nil {
		return nil, err
	}
	for j, f := range feats {
		k, ok := slices.BinarySearchFunc(es, ids[j], func(e entry, id uint64) int {
			switch {
			case e.id < id:
				return -1
			case e.id > id:
				return 1
			}
			return 0
		})
		if ids[j] == 0 || !ok {
			continue
		}
		cell, err := es[k].cell(f.Type)
		if errors.Is(err, feature.ErrTypeMismatch) {
			s.log.Debug("stored value does not match the declared type; reading it as absent",
				"feature", f.FQN, "key", key, "err", err)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.FQN, err)
		}
		cells[j] = cell
	}
	return es, nil
}

// pendingEntity is one entity of a Write call, ready to merge.
type pendingEntity struct {
	key     []byte
	entries []entry
}

// Write applies writes newest-wins per feature, in one batch synced to
// disk before Write returns. A value that is not canonical for its
// feature's type rejects the whole call with an error wrapping
// store.ErrRejected, before anything is written.
func (s *Store) Write(ctx context.Context, writes []store.EntityWrite) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	if len(writes) == 0 {
		return nil
	}
	pending, err := s.prepare(writes)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("embedded: write %d entities: %w", len(writes), err)
	}

	stripes := make([]int, 0, len(pending))
	for _, p := range pending {
		stripes = append(stripes, int(maphash.Bytes(s.db.seed, p.key)%lockStripes))
	}
	slices.Sort(stripes)
	stripes = slices.Compact(stripes)
	for _, i := range stripes {
		s.db.locks[i].Lock()
	}
	defer func() {
		for _, i := range stripes {
			s.db.locks[i].Unlock()
		}
	}()

	// An indexed batch reads its own writes, so an entity repeated within
	// one call still merges correctly.
	batch := s.db.pdb.NewIndexedBatch()
	defer batch.Close()
	var stored []entry
	var buf []byte
	for _, p := range pending {
		if stored, buf, err = s.mergeInto(batch, p, stored[:0], buf[:0]); err != nil {
			return fmt.Errorf("embedded: write %q: %w", p.key, err)
		}
	}
	if batch.Empty() {
		return nil
	}
	if err := batch.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("embedded: write %d entities: %w", len(writes), err)
	}
	return nil
}

// prepare checks and encodes the values of writes and resolves their
// feature ids, assigning new ones.
func (s *Store) prepare(writes []store.EntityWrite) ([]pendingEntity, error) {
	var fqns []string
	pending := make([]pendingEntity, 0, len(writes))
	for _, w := range writes {
		if err := w.Check(); err != nil {
			return nil, fmt.Errorf("embedded: write: %w: %w", store.ErrRejected, err)
		}
		if len(w.Values) == 0 {
			continue
		}
		p := pendingEntity{key: entityKey(w.Namespace.Name, w.Key), entries: make([]entry, len(w.Values))}
		for i, v := range w.Values {
			enc, err := feature.AppendValue(nil, v.Value)
			if err != nil {
				return nil, fmt.Errorf("embedded: write %s %q: %s: %w: %w", w.Namespace.Name, w.Key, v.Feature.FQN, store.ErrRejected, err)
			}
			p.entries[i] = entry{micros: v.ObservedAt.UnixMicro(), value: enc}
			fqns = append(fqns, v.Feature.FQN)
		}
		pending = append(pending, p)
	}
	ids, err := s.db.ids.ensure(s.db.pdb, fqns)
	if err != nil {
		return nil, fmt.Errorf("embedded: write %d entities: %w", len(writes), err)
	}
	for i := range pending {
		for j := range pending[i].entries {
			pending[i].entries[j].id, ids = ids[0], ids[1:]
		}
		// Stable, so that of two values of one feature the later applies last.
		slices.SortStableFunc(pending[i].entries, func(a, b entry) int {
			switch {
			case a.id < b.id:
				return -1
			case a.id > b.id:
				return 1
			}
			return 0
		})
	}
	return pending, nil
}

// mergeInto merges p into the entity stored in batch (or the database
// under it) and sets the result in batch if anything changed. stored and
// buf are scratch space, returned for reuse.
func (s *Store) mergeInto(batch *pebble.Batch, p pendingEntity, stored []entry, buf []byte) ([]entry, []byte, error) {
	v, closer, err := batch.Get(p.key)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
	case err != nil:
		return stored, buf, err
	default:
		defer closer.Close()
		if stored, err = decodeEntity(v, stored); err != nil {
			// Retrying cannot repair a damaged entity.
			return stored, buf, fmt.Errorf("%w: %w", store.ErrRejected, err)
		}
	}
	merged, changed := merge(stored, p.entries)
	if !changed {
		return stored, buf, nil
	}
	buf = appendEntity(buf, merged)
	if bytes.Equal(buf, v) {
		return stored, buf, nil
	}
	// Set copies key and value into the batch, so buf and the stored value
	// may be reused once it returns.
	return stored, buf, batch.Set(p.key, buf, nil)
}
