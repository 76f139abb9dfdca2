package redis

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Fields of the mapping hash other than FQNs. FQNs start with a letter, so
// these cannot collide with one.
const (
	genField    = "#gen"
	lastField   = "#last"
	layoutField = "#layout"
)

// layoutVersion is the version of the layout described in the package
// documentation. A new layout takes a new number; a store refuses a mapping
// of a layout it does not write.
const layoutVersion = "1"

// markerField is the entity field holding the generation the entity was
// written under. Ids are base 36 of numbers from 1, so it is never an id.
const markerField = "0"

// minReloadInterval spaces out reloads of the mapping triggered by entities
// of a generation this process does not know.
const minReloadInterval = time.Second

// idMap is one immutable snapshot of the mapping.
type idMap struct {
	// gen is the mapping's generation; "" when there was no mapping.
	gen   string
	byFQN map[string]string
	// field holds the ids of byFQN as interface values, ready to go into
	// commands without an allocation each (see seal).
	field map[string]any
}

// seal fills m.field from m.byFQN; m must not change afterwards.
func (m *idMap) seal() *idMap {
	m.field = make(map[string]any, len(m.byFQN))
	for fqn, id := range m.byFQN {
		m.field[fqn] = id
	}
	return m
}

// mapping is the FQN → short id mapping, cached from the mapping hash.
//
// Ids are the base-36 text of numbers drawn from a counter that only grows,
// assigned by a script that runs atomically in the server, so one FQN never
// has two ids and an id is never handed out twice. All of this lives in
// one hash, so it lives or dies as a whole: a server that loses it (a
// restart without persistence, a failover to a replica that missed the
// latest writes) starts a new generation, and the entities written under
// the old one are recognized by their marker field and treated as absent.
type mapping struct {
	key string
	cur atomic.Pointer[idMap]

	// mu serializes loading and assigning, both rare.
	mu         sync.Mutex
	lastReload time.Time
	// known is the newest generation ever seen, which a new generation
	// must exceed even if the server's clock went back.
	known string
	// unreached is the newest entity generation that the last reload found
	// newer than the mapping's (see catchUp).
	unreached string
}

func newMapping(key string) *mapping {
	m := &mapping{key: key}
	m.cur.Store((&idMap{byFQN: map[string]string{}}).seal())
	return m
}

// snapshot returns the current mapping; never modify it.
func (m *mapping) snapshot() *idMap { return m.cur.Load() }

// loadIDs replaces the cached mapping with the one stored. It refuses a
// mapping written for another layout or holding invalid ids.
func (s *Store) loadIDs(ctx context.Context) error {
	s.ids.mu.Lock()
	defer s.ids.mu.Unlock()
	start := time.Now()
	all, err := s.client.HGetAll(ctx, s.ids.key).Result()
	s.m.observe(opLoadIDs, start, err)
	if err != nil {
		return fmt.Errorf("redis: load feature ids from %q on %s: %w", s.ids.key, s.cfg.address(), err)
	}
	if v, ok := all[layoutField]; ok && v != layoutVersion {
		return fmt.Errorf("redis: feature ids in %q are of layout %q; this build reads layout %q", s.ids.key, v, layoutVersion)
	}
	next := &idMap{gen: all[genField], byFQN: make(map[string]string, len(all))}
	if next.gen != "" && !validGen(next.gen) {
		return fmt.Errorf("redis: feature ids in %q: invalid generation %q", s.ids.key, next.gen)
	}
	seen := make(map[string]string, len(all))
	for fqn, id := range all {
		if strings.HasPrefix(fqn, "#") {
			continue
		}
		if !validID(id) {
			return fmt.Errorf("redis: feature ids in %q: %s has invalid id %q", s.ids.key, fqn, id)
		}
		if other, dup := seen[id]; dup {
			return fmt.Errorf("redis: feature ids in %q give id %q to both %s and %s; fix the mapping before using it",
				s.ids.key, id, other, fqn)
		}
		seen[id] = fqn
		next.byFQN[fqn] = id
	}
	s.ids.lastReload = time.Now()
	s.publishLocked(next)
	return nil
}

// catchUp reloads the mapping because an entity was written under
// generation mark, newer than the cached one, and reports whether it did.
// A mark that a reload less than minReloadInterval ago did not reach (the
// server's mapping is older than some entities, which only a server that
// lost data twice can cause) does not cause another.
func (s *Store) catchUp(ctx context.Context, mark string) (bool, error) {
	s.ids.mu.Lock()
	futile := !newerGen(mark, s.ids.unreached) && time.Since(s.ids.lastReload) < minReloadInterval
	s.ids.mu.Unlock()
	if futile {
		return false, nil
	}
	if err := s.loadIDs(ctx); err != nil {
		return false, err
	}
	s.ids.mu.Lock()
	defer s.ids.mu.Unlock()
	if newerGen(mark, s.ids.cur.Load().gen) && newerGen(mark, s.ids.unreached) {
		s.ids.unreached = mark
	}
	return true, nil
}

// publishLocked makes next the current mapping, noting a change of
// generation. s.ids.mu must be held.
func (s *Store) publishLocked(next *idMap) {
	if newerGen(next.gen, s.ids.known) {
		s.ids.known = next.gen
	}
	if prev := s.ids.cur.Load(); prev.gen != next.gen {
		if prev.gen != "" {
			s.m.generations.Inc()
			s.log.Warn("feature-id mapping has a new generation: the server lost the old one, and the entities written under it",
				"key", s.ids.key, "old", prev.gen, "new", next.gen)
		}
	}
	s.ids.cur.Store(next.seal())
}

// rememberIDs adds ids learned from the server for generation gen (found
// by readers, which never assign). Ids of another generation are ignored:
// the caller reloads the mapping instead.
func (s *Store) rememberIDs(gen string, learned map[string]string) {
	s.ids.mu.Lock()
	defer s.ids.mu.Unlock()
	cur := s.ids.cur.Load()
	if cur.gen != gen || len(learned) == 0 {
		return
	}
	next := &idMap{gen: gen, byFQN: maps.Clone(cur.byFQN)}
	maps.Copy(next.byFQN, learned)
	s.publishLocked(next)
}

// maxAssignRounds bounds the rounds of assigning ids in one call: a second
// is needed only when the generation changed under the first.
const maxAssignRounds = 3

// ensureIDs returns a mapping that has an id for each of fqns, assigning
// ids in the server to those that have none.
func (s *Store) ensureIDs(ctx context.Context, fqns []string) (*idMap, error) {
	for range maxAssignRounds {
		cur := s.ids.snapshot()
		missing := missingIDs(cur, fqns)
		if cur.gen != "" && len(missing) == 0 {
			return cur, nil
		}
		if err := s.assignIDs(ctx, missing); err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("redis: assign feature ids in %q: the mapping's generation kept changing", s.ids.key)
}

// missingIDs returns the distinct FQNs among fqns without an id in m.
func missingIDs(m *idMap, fqns []string) []string {
	var missing []string
	for _, fqn := range fqns {
		if _, ok := m.byFQN[fqn]; !ok && !slices.Contains(missing, fqn) {
			missing = append(missing, fqn)
		}
	}
	return missing
}

// assignIDs runs the ids script for fqns (possibly none, which creates the
// mapping's generation) and caches the result.
func (s *Store) assignIDs(ctx context.Context, fqns []string) error {
	s.ids.mu.Lock()
	defer s.ids.mu.Unlock()
	cur := s.ids.cur.Load()
	if missing := missingIDs(cur, fqns); cur.gen != "" && len(missing) == 0 {
		return nil // assigned by a concurrent call
	}
	args := make([]any, 0, 2+len(fqns))
	args = append(args, layoutVersion, s.ids.known)
	for _, f := range fqns {
		args = append(args, f)
	}
	start := time.Now()
	res, err := s.runScript(ctx, s.scripts.ids, []string{s.ids.key}, args)
	s.m.observe(opAssignIDs, start, err)
	if err != nil {
		return fmt.Errorf("redis: assign ids to %d features in %q on %s: %w", len(fqns), s.ids.key, s.cfg.address(), err)
	}
	out, err := res.StringSlice()
	if err != nil || len(out) != 1+len(fqns) || !validGen(out[0]) {
		return fmt.Errorf("redis: assign ids in %q: unexpected answer %v (%v)", s.ids.key, res.Val(), err)
	}
	gen, ids := out[0], out[1:]
	next := &idMap{gen: gen}
	if gen == cur.gen {
		next.byFQN = maps.Clone(cur.byFQN)
	} else {
		// A new generation: the ids cached so far mean nothing in it.
		next.byFQN = make(map[string]string, len(fqns))
	}
	for i, fqn := range fqns {
		if !validID(ids[i]) {
			return fmt.Errorf("redis: assign ids in %q: %s got invalid id %q", s.ids.key, fqn, ids[i])
		}
		if old, ok := next.byFQN[fqn]; ok && old != ids[i] {
			return fmt.Errorf("redis: feature ids in %q changed the id of %s from %q to %q; ids must never change",
				s.ids.key, fqn, old, ids[i])
		}
		next.byFQN[fqn] = ids[i]
	}
	s.publishLocked(next)
	return nil
}

// validID reports whether s can be a feature id: base 36, lowercase, of a
// number from 1.
func validID(s string) bool {
	n, err := strconv.ParseUint(s, 36, 64)
	return err == nil && n > 0 && s == strconv.FormatUint(n, 36)
}

// validGen reports whether s can be a generation: base 36, lowercase.
func validGen(s string) bool {
	n, err := strconv.ParseUint(s, 36, 64)
	return err == nil && s == strconv.FormatUint(n, 36)
}

// newerGen reports whether generation a is newer than b; "" is older than
// every generation, and an invalid one is older than every valid one.
func newerGen(a, b string) bool {
	if a == b {
		return false
	}
	na, errA := strconv.ParseUint(a, 36, 64)
	if a == "" || errA != nil {
		return false
	}
	nb, errB := strconv.ParseUint(b, 36, 64)
	if b == "" || errB != nil {
		return true
	}
	return na > nb
}

// isNil reports whether err is Redis's nil reply.
func isNil(err error) bool { return errors.Is(err, goredis.Nil) }
