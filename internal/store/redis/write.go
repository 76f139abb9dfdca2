package redis

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/store"
)

// maxWriteAttempts bounds the round trips of one Write: the first, one
// after the scripts had to be loaded again, one after the mapping changed.
const maxWriteAttempts = 3

// pendingEntity is one entity of a Write call, checked and encoded.
type pendingEntity struct {
	ns, key string
	// redisKey is the key of the entity's hash.
	redisKey string
	// ttl is the expiry to set, in milliseconds; 0 for none.
	ttl int64
	// fqns and fields are aligned: each feature written, once, and its
	// field (observed-at and value).
	fqns   []string
	fields [][]byte
}

// Write applies writes newest-wins per feature.
//
// Each entity is one call of the write script, which compares and sets its
// fields atomically in the server; the calls of all entities, and a check
// of the mapping's generation, go in one pipeline: one round trip in the
// usual case. A value that is not canonical for its feature's type rejects
// the whole call with an error wrapping store.ErrRejected, before anything
// is written. Every request is idempotent, so a Write that failed midway
// can be repeated whole.
func (s *Store) Write(ctx context.Context, writes []store.EntityWrite) error {
	if s.closed.Load() {
		return errClosed
	}
	if len(writes) == 0 {
		return nil
	}
	pending, fqns, err := s.prepare(writes)
	if err != nil || len(pending) == 0 {
		return err
	}
	start := time.Now()
	err = s.write(ctx, pending, fqns)
	s.m.observe(opWrite, start, err)
	return err
}

// prepare checks and encodes writes. It returns the entities that have
// values and the distinct FQNs written.
func (s *Store) prepare(writes []store.EntityWrite) ([]pendingEntity, []string, error) {
	now := time.Now()
	pending := make([]pendingEntity, 0, len(writes))
	seen := map[string]bool{}
	var fqns []string
	ttls := map[*feature.Namespace]time.Duration{}
	for _, w := range writes {
		if err := w.Check(); err != nil {
			return nil, nil, fmt.Errorf("redis: write: %w: %w", store.ErrRejected, err)
		}
		if len(w.Values) == 0 {
			continue
		}
		vals := newestPerFeature(w.Values)
		p := pendingEntity{
			ns:       w.Namespace.Name,
			key:      w.Key,
			redisKey: s.entityKey(w.Namespace.Name, w.Key),
			fqns:     make([]string, len(vals)),
			fields:   make([][]byte, len(vals)),
		}
		var newest time.Time
		for i, v := range vals {
			field, err := appendField(nil, v.Value, v.ObservedAt)
			if err != nil {
				return nil, nil, fmt.Errorf("redis: write %s %q: %s: %w: %w", p.ns, p.key, v.Feature.FQN, store.ErrRejected, err)
			}
			p.fqns[i], p.fields[i] = v.Feature.FQN, field
			if !seen[v.Feature.FQN] {
				seen[v.Feature.FQN] = true
				fqns = append(fqns, v.Feature.FQN)
			}
			if v.ObservedAt.After(newest) {
				newest = v.ObservedAt
			}
		}
		ttl, ok := ttls[w.Namespace]
		if !ok {
			ttl = entityTTL(w.Namespace)
			ttls[w.Namespace] = ttl
		}
		if ttl > 0 {
			p.ttl = expiryMillis(now, newest, ttl)
		}
		pending = append(pending, p)
	}
	return pending, fqns, nil
}

// maxTTLMillis bounds the time to live given to the write script: the
// script holds it as a Lua number (a float64), exact up to 2^53, and Redis
// refuses an expiry whose deadline overflows an int64 of milliseconds. It
// is over 285,000 years, far past any observed-at a client can send.
const maxTTLMillis = 1 << 53

// expiryMillis returns the time to live, in milliseconds, of an entity
// written at now whose newest value was observed at newest, in a namespace
// whose values go stale after staleness (more than 0): the key lives until
// the newest value goes stale, newest + staleness, and at least staleness
// from now (a value observed long ago still lives a full staleness, as it
// did before it was known to be old).
//
// A value observed in the future (a client's clock ahead, or a value
// pinned far ahead on purpose, up to the year 2999) is fresh until that
// future plus its staleness, so the key must live that long. The
// arithmetic is in milliseconds since the epoch, saturating, never in
// time.Duration: a difference of more than 292 years overflows a Duration
// (time.Time.Sub saturates, and adding the staleness to the saturated
// value wrapped around to a negative TTL, which became 1 ms: the key
// expired at once, acknowledged values lost).
func expiryMillis(now, newest time.Time, staleness time.Duration) int64 {
	ahead := max(0, newest.UnixMilli()-now.UnixMilli())
	// Rounded up, so that the key never expires before the value is stale.
	stale := satAdd(staleness.Milliseconds(), min(1, int64(staleness%time.Millisecond)))
	return min(max(1, satAdd(ahead, stale)), maxTTLMillis)
}

// satAdd returns a+b, saturated to the range of int64.
func satAdd(a, b int64) int64 {
	s := a + b
	switch {
	case a > 0 && b > 0 && s < 0:
		return math.MaxInt64
	case a < 0 && b < 0 && s >= 0:
		return math.MinInt64
	}
	return s
}

// newestPerFeature returns vals with one value per feature, the newest (of
// equals, the later in vals), in order of first appearance. The write
// script compares each field with the stored one, so a feature must not
// appear twice in one call of it.
func newestPerFeature(vals []store.Value) []store.Value {
	dup := false
	for i := range vals {
		for j := range i {
			if vals[j].Feature.FQN == vals[i].Feature.FQN {
				dup = true
			}
		}
	}
	if !dup {
		return vals
	}
	out := make([]store.Value, 0, len(vals))
	index := map[string]int{}
	for _, v := range vals {
		i, seen := index[v.Feature.FQN]
		if !seen {
			index[v.Feature.FQN] = len(out)
			out = append(out, v)
			continue
		}
		if !v.ObservedAt.Before(out[i].ObservedAt) {
			out[i] = v
		}
	}
	return out
}

// entityTTL returns the expiry of the entities of ns: the longest
// staleness bound of its features, or 0 (no expiry) when one of them never
// goes stale.
func entityTTL(ns *feature.Namespace) time.Duration {
	var ttl time.Duration
	for _, f := range ns.Features {
		d := f.Staleness()
		if d == 0 {
			return 0
		}
		ttl = max(ttl, d)
	}
	return ttl
}

// write runs the write script for every pending entity.
func (s *Store) write(ctx context.Context, pending []pendingEntity, fqns []string) error {
	var rejected []error
	for range maxWriteAttempts {
		ids, err := s.ensureIDs(ctx, fqns)
		if err != nil {
			return err
		}
		pipe := s.client.Pipeline()
		// The generation is checked in the same round trip: if the server
		// lost the mapping since it was cached, the ids just used are
		// meaningless and the entities are written again under the new
		// one (which replaces what this attempt wrote).
		genCmd := pipe.HGet(ctx, s.ids.key, genField)
		cmds := make([]*goredis.Cmd, len(pending))
		for i, p := range pending {
			args := make([]any, 0, 2+2*len(p.fqns))
			args = append(args, ids.gen, p.ttl)
			for j, fqn := range p.fqns {
				args = append(args, ids.byFQN[fqn], p.fields[j])
			}
			cmds[i] = s.scripts.write.EvalSha(ctx, pipe, []string{p.redisKey}, args...)
		}
		_, _ = pipe.Exec(ctx) // errors are per command, below

		gen, err := genCmd.Result()
		if err != nil && !isNil(err) {
			return fmt.Errorf("redis: write %d entities to %s: %w", len(pending), s.cfg.address(), err)
		}
		if gen != ids.gen {
			if err := s.loadIDs(ctx); err != nil {
				return err
			}
			if slices.ContainsFunc(cmds, func(c *goredis.Cmd) bool { return isNoScript(c.Err()) }) {
				if err := s.reloadScripts(ctx); err != nil {
					return err
				}
			}
			continue
		}

		var again []pendingEntity
		noScript, newer := false, false
		var skipped int64
		for i, cmd := range cmds {
			p := pending[i]
			res, err := cmd.Int64Slice()
			switch {
			case err == nil && len(res) == 2:
				skipped += res[1]
			case err == nil:
				return fmt.Errorf("redis: write %s %q: unexpected script answer %v", p.ns, p.key, res)
			case isNoScript(err):
				noScript = true
				again = append(again, p)
			case goredis.HasErrorPrefix(err, codeNewerGen):
				newer = true
				again = append(again, p)
			case goredis.HasErrorPrefix(err, codeWrongType):
				// Something other than cairn owns the key.
				rejected = append(rejected, fmt.Errorf("redis: write %s %q: key %q: %w: %w", p.ns, p.key, p.redisKey, store.ErrRejected, err))
			default:
				return fmt.Errorf("redis: write %s %q (one of %d entities) to %s: %w", p.ns, p.key, len(pending), s.cfg.address(), err)
			}
		}
		s.m.staleSkipped.Add(float64(skipped))
		if len(again) == 0 {
			return errors.Join(rejected...)
		}
		if noScript {
			if err := s.reloadScripts(ctx); err != nil {
				return err
			}
		}
		if newer {
			if err := s.loadIDs(ctx); err != nil {
				return err
			}
		}
		pending = again
	}
	return fmt.Errorf("redis: write %d entities to %s: still failing after %d attempts (scripts missing or the mapping changing)",
		len(pending), s.cfg.address(), maxWriteAttempts)
}
