// Package cache keeps the feature values a query server read from the
// online store in memory, per namespace, so that hot entities are answered
// without a store read. A [Cache] wraps any store's Read and is itself
// one; namespaces not configured pass straight through.
//
// # What is cached
//
// The cache holds, per entity (a namespace and a key), the cells of the
// features read so far: only features that were fetched are cached. A
// later read asking for features the entity has no fresh cell for fetches
// exactly those, and a feature is never answered as absent merely because
// it was not among the cached ones.
//
// Every cell expires on its own, the namespace's TTL after the store read
// that answered it was issued (the time is taken before the read, so a
// served value is never older than TTL measured from any moment the store
// could have answered it). An expired cell is read again. There is no
// invalidation on writes: a query may see a value up to TTL old.
//
// A read answered by the store is one of three kinds:
//
//   - A stored value, or a stored null: always cached.
//   - A feature the entity does not have (Cell.Found false in a found
//     Row): cached as "not stored" for that feature only, if
//     Config.CacheMisses.
//   - An entity the store does not have at all (Row.Found false): if
//     Config.CacheMisses, a negative entry. Every store's Read reports
//     Row.Found false only when the entity has no stored value for any
//     feature (the storetest suite checks that a found entity is found
//     even when none of the requested features is stored), so a negative
//     entry answers every feature of the entity as not stored, not just
//     those of the read that made it, until it expires. It is never made
//     from a found Row, and a later read that finds the entity replaces
//     it; it therefore hides nothing that was stored when it was read.
//
// When two reads of one entity race, the newer read's answer wins, per
// feature and for the entity's existence.
//
// # Reads
//
// A Read looks up every key under the namespace's lock, answering what it
// can. What is left is fetched in a single store read: the distinct keys
// lacking any cell, and the distinct features any of them lacks. A key
// may thus be read for a feature it had cached; that fresh answer
// replaces the cached cell, while the answer returned for it is the
// cached one. Concurrent misses of the same entity each read the store.
// Cells answered from the cache carry store.Cell.CacheHit.
//
// Cached values are shared by every reader: callers must not modify the
// slices and maps in the values returned.
//
// # Memory
//
// Every cached namespace is bounded. Its entities' estimated memory (the
// cairn_cache_bytes gauge, from the size of each cell's value and the
// cache's own overhead) stays within [Config.MaxBytes]; with
// NamespaceConfig.MaxEntries set, at most that many found entities are
// kept as well. The least recently used entity is evicted to make room.
//
// Entities found absent (negative entries) are kept apart, in at most an
// eighth of the namespace's bytes (and of MaxEntries, when set), so that a
// client reading random keys evicts only other absent keys and never
// crowds out the values the cache exists for; found entities get the other
// seven eighths. Entities whose every cell has expired are removed as new
// ones arrive.
package cache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/store"
)

// Store is the online store the cache reads through.
type Store interface {
	// Read returns one row per key, each with cells aligned with feats.
	Read(ctx context.Context, ns *feature.Namespace, keys []string, feats []*feature.Feature) ([]store.Row, error)
}

// Cache is a per-namespace LRU cache of store reads. It is safe for
// concurrent use.
type Cache struct {
	next   Store
	spaces map[string]*space // by namespace name; read-only after New
	now    func() time.Time
	epoch  time.Time
}

// space is one cached namespace.
type space struct {
	name        string
	ttl         int64 // ticks
	cacheMisses bool
	m           spaceMetrics

	// mu guards both pools; an entity is in at most one of them.
	mu struct {
		sync.Mutex
		found  pool // entities with stored cells
		absent pool // entities the store does not have (negUntil set)
	}
}

// pool is a least-recently-used set of entities bounded in number and in
// estimated bytes. It is used with its space's lock held.
type pool struct {
	lru        *simplelru.LRU[string, *entity]
	bytes      int64 // sum of the entities' size
	maxBytes   int64
	maxEntries int // 0: no bound on the number
}

func newPool(maxBytes int64, maxEntries int) (pool, error) {
	// The bounds are enforced here rather than by the LRU, so that every
	// removal is accounted for.
	lru, err := simplelru.NewLRU[string, *entity](math.MaxInt, nil)
	return pool{lru: lru, maxBytes: maxBytes, maxEntries: maxEntries}, err
}

// add inserts e under key, evicting the least recently used entities to
// make room. An entity larger than the whole bound is not cached.
func (p *pool) add(key string, e *entity, evicted prometheus.Counter) {
	if e.size > p.maxBytes {
		return
	}
	for p.lru.Len() > 0 && (p.maxEntries > 0 && p.lru.Len() >= p.maxEntries || p.bytes+e.size > p.maxBytes) {
		p.removeOldest(evicted)
	}
	// A key may be a slice of a larger request buffer; keep only its own
	// bytes.
	p.lru.Add(strings.Clone(key), e)
	p.bytes += e.size
}

// resize accounts for e, held under key, now being size bytes, evicting
// the least recently used entities while the pool is over its bound.
func (p *pool) resize(e *entity, size int64, evicted prometheus.Counter) {
	p.bytes += size - e.size
	e.size = size
	for p.bytes > p.maxBytes && p.lru.Len() > 0 {
		p.removeOldest(evicted)
	}
}

// remove takes e, held under key, out of the pool without counting an
// eviction.
func (p *pool) remove(key string, e *entity) {
	if p.lru.Remove(key) {
		p.bytes -= e.size
	}
}

// removeOldest removes the least recently used entity, counting it in
// evictions.
func (p *pool) removeOldest(evictions prometheus.Counter) {
	if _, e, ok := p.lru.RemoveOldest(); ok {
		p.bytes -= e.size
		evictions.Inc()
	}
}

// sweep removes up to limit least recently used entities that hold
// nothing valid at now. Removing a few per insertion keeps expired
// entities from piling up until the bound evicts them.
func (p *pool) sweep(now int64, limit int, evictions prometheus.Counter) {
	for ; limit > 0; limit-- {
		_, e, ok := p.lru.GetOldest()
		if !ok || e.live(now) {
			return
		}
		p.removeOldest(evictions)
	}
}

// New returns a cache in front of next. Metrics are registered with reg
// unless it is nil; log (slog.Default() when nil) receives the bounds of
// each namespace cached.
func New(next Store, cfg Config, reg prometheus.Registerer, log *slog.Logger) (*Cache, error) {
	if next == nil {
		return nil, errors.New("cache: no store to read through")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	m := newMetrics()
	if reg != nil {
		if err := m.register(reg); err != nil {
			return nil, err
		}
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	c := &Cache{next: next, spaces: make(map[string]*space, len(cfg.Namespaces)), now: now, epoch: now()}
	for _, n := range cfg.Namespaces {
		sp := &space{
			name:        n.Namespace,
			ttl:         int64(n.TTL),
			cacheMisses: cfg.CacheMisses,
			m:           m.space(n.Namespace),
		}
		absentBytes, absentEntries, foundEntries := cfg.MaxBytes/absentShare, 0, 0
		if n.MaxEntries > 0 {
			absentEntries, foundEntries = max(1, n.MaxEntries/absentShare), n.MaxEntries
		}
		var err1, err2 error
		sp.mu.found, err1 = newPool(cfg.MaxBytes-absentBytes, foundEntries)
		sp.mu.absent, err2 = newPool(absentBytes, absentEntries)
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("cache: namespace %s: %w", n.Namespace, err)
		}
		c.spaces[n.Namespace] = sp
		log.Info("cache: namespace cached", "namespace", n.Namespace, "ttl", n.TTL, "max_bytes", cfg.MaxBytes,
			"max_entries", n.MaxEntries, "cache_misses", cfg.CacheMisses)
	}
	return c, nil
}

// ticks returns the cache's clock: nanoseconds since New, measured on the
// monotonic clock when Config.Now provides one.
func (c *Cache) ticks() int64 { return int64(c.now().Sub(c.epoch)) }

// Read returns one row per key, each with cells aligned with feats, from
// the cache where it can and from the store otherwise. Cells answered by
// the cache have CacheHit set. Errors of the store are returned as they
// are.
func (c *Cache) Read(ctx context.Context, ns *feature.Namespace, keys []string, feats []*feature.Feature) ([]store.Row, error) {
	return c.ReadInto(ctx, ns, keys, feats, nil)
}

// ReadInto is Read, reusing rows and their cells for the answer when they
// are large enough; a read answered entirely from the cache then
// allocates nothing. Reads of namespaces not cached return the store's
// rows instead.
func (c *Cache) ReadInto(ctx context.Context, ns *feature.Namespace, keys []string, feats []*feature.Feature, rows []store.Row) ([]store.Row, error) {
	sp := c.spaces[ns.Name]
	if sp == nil || len(feats) == 0 {
		return c.next.Read(ctx, ns, keys, feats)
	}
	rows = store.ResetRows(rows, len(keys), len(feats))
	if sp.lookup(keys, feats, rows, c.ticks()) == 0 {
		return rows, nil
	}
	if err := c.fill(ctx, sp, ns, keys, feats, rows); err != nil {
		return nil, err
	}
	return rows, nil
}

// Put keeps values a query computed for one entity (its resolvers' answer,
// observed at at) as if the store had just answered them, so that the
// server serves them until they are persisted instead of computing them
// again. A namespace not cached keeps nothing. A store read issued
// earlier and answered later does not replace them.
func (c *Cache) Put(ns *feature.Namespace, key string, feats []*feature.Feature, values []any, at time.Time) {
	sp := c.spaces[ns.Name]
	if sp == nil || len(feats) == 0 {
		return
	}
	cells := make([]store.Cell, len(feats))
	for i, v := range values {
		cells[i] = store.Cell{Found: true, Value: v, ObservedAt: at}
	}
	sp.record([]string{key}, feats, []store.Row{{Found: true, Cells: cells}}, c.ticks())
}

// lookup answers from the cache what it can of rows at now, and returns
// how many cells are left unanswered (CacheHit false).
func (sp *space) lookup(keys []string, feats []*feature.Feature, rows []store.Row, now int64) (missing int) {
	var hits, negative int
	sp.mu.Lock()
	for i, key := range keys {
		e, ok := sp.mu.found.lru.Get(key)
		if !ok {
			e, ok = sp.mu.absent.lru.Get(key)
		}
		if !ok {
			missing += len(feats)
			continue
		}
		cells := rows[i].Cells
		if e.negUntil > now {
			for j := range cells {
				cells[j] = store.Cell{CacheHit: true}
			}
			hits += len(cells)
			negative += len(cells)
			continue
		}
		next := 0
		for j, f := range feats {
			k := e.find(f, next)
			if k < 0 || e.slots[k].until <= now {
				missing++
				continue
			}
			next = k + 1
			cells[j] = e.slots[k].cell
			rows[i].Found = true // only a found entity has slots
			hits++
			if !cells[j].Found {
				negative++
			}
		}
	}
	sp.mu.Unlock()
	if hits > 0 {
		sp.m.hits.Add(float64(hits))
	}
	if negative > 0 {
		sp.m.negativeHits.Add(float64(negative))
	}
	if missing > 0 {
		sp.m.misses.Add(float64(missing))
	}
	return missing
}

// fill reads the cells of rows that lookup left unanswered from the store,
// in one read, and records the answer.
func (c *Cache) fill(ctx context.Context, sp *space, ns *feature.Namespace, keys []string, feats []*feature.Feature, rows []store.Row) error {
	// fetchAt[i] is the index in fetchKeys of keys[i], or -1 when row i is
	// fully answered; featAt[j] the index in fetchFeats of feats[j], or -1.
	fetchAt := make([]int, len(keys))
	var fetchKeys []string
	keyAt := map[string]int{}
	needed := make([]bool, len(feats))
	for i, key := range keys {
		fetchAt[i] = -1
		for j, cell := range rows[i].Cells {
			if cell.CacheHit {
				continue
			}
			needed[j] = true
			if fetchAt[i] >= 0 {
				continue
			}
			k, ok := keyAt[key]
			if !ok {
				k = len(fetchKeys)
				keyAt[key] = k
				fetchKeys = append(fetchKeys, key)
			}
			fetchAt[i] = k
		}
	}
	featAt := make([]int, len(feats))
	var fetchFeats []*feature.Feature
	for j, f := range feats {
		featAt[j] = -1
		if !needed[j] {
			continue
		}
		k := slices.Index(fetchFeats, f)
		if k < 0 {
			k = len(fetchFeats)
			fetchFeats = append(fetchFeats, f)
		}
		featAt[j] = k
	}

	readAt := c.ticks()
	got, err := c.next.Read(ctx, ns, fetchKeys, fetchFeats)
	if err != nil {
		return err
	}
	if len(got) != len(fetchKeys) {
		return fmt.Errorf("cache: %s: store answered %d rows for %d keys", ns.Name, len(got), len(fetchKeys))
	}
	for _, r := range got {
		if len(r.Cells) != len(fetchFeats) {
			return fmt.Errorf("cache: %s: store answered %d cells for %d features", ns.Name, len(r.Cells), len(fetchFeats))
		}
	}
	for i := range rows {
		k := fetchAt[i]
		if k < 0 {
			continue
		}
		r := got[k]
		rows[i].Found = rows[i].Found || r.Found
		for j, cell := range rows[i].Cells {
			if !cell.CacheHit {
				cell = r.Cells[featAt[j]]
				cell.CacheHit = false
				rows[i].Cells[j] = cell
			}
		}
	}
	sp.record(fetchKeys, fetchFeats, got, readAt)
	return nil
}

// record stores the answer rows to a store read of keys and feats issued
// at readAt.
func (sp *space) record(keys []string, feats []*feature.Feature, rows []store.Row, readAt int64) {
	until := readAt + sp.ttl
	sp.mu.Lock()
	defer sp.mu.Unlock()
	for i, key := range keys {
		row := rows[i]
		if !row.Found && !sp.cacheMisses {
			continue
		}
		from := &sp.mu.found
		e, ok := from.lru.Peek(key)
		if !ok {
			from = &sp.mu.absent
			e, ok = from.lru.Peek(key)
		}
		if !ok {
			from, e = nil, &entity{}
		}
		if !e.update(feats, row, readAt, until, sp.cacheMisses) && !ok {
			continue
		}
		to := &sp.mu.found
		if e.negUntil > 0 {
			to = &sp.mu.absent
		}
		size := e.estimate(key)
		if from == to {
			to.resize(e, size, sp.m.evictedSize)
			continue
		}
		if from != nil {
			from.remove(key, e) // found, then absent, or the other way
		}
		e.size = size
		to.add(key, e, sp.m.evictedSize)
	}
	sp.mu.found.sweep(readAt, len(keys)+1, sp.m.evictedExpired)
	sp.mu.absent.sweep(readAt, len(keys)+1, sp.m.evictedExpired)
	sp.m.entries.Set(float64(sp.mu.found.lru.Len() + sp.mu.absent.lru.Len()))
	sp.m.absentEntries.Set(float64(sp.mu.absent.lru.Len()))
	sp.m.bytes.Set(float64(sp.mu.found.bytes + sp.mu.absent.bytes))
}
