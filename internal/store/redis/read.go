package redis

import (
	"context"
	"fmt"
	"slices"
	"time"
	"unsafe"

	goredis "github.com/redis/go-redis/v9"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/store"
)

// Read returns one Row per key, aligned with keys, each with one Cell per
// feature of feats, which must all belong to ns.
//
// The whole read is one pipeline, one round trip: an HMGET per key of the
// marker field and the requested features' fields. A stored value that
// does not decode as its feature's type is answered as not found and
// counted in cairn_redis_undecodable_values_total. A second round trip is
// made only when the first shows that the cached feature-id mapping is
// behind the server's: a requested feature got its id from another process
// since this one loaded the mapping, or an entity was written under a newer
// mapping generation.
func (s *Store) Read(ctx context.Context, ns *feature.Namespace, keys []string, feats []*feature.Feature) ([]store.Row, error) {
	if s.closed.Load() {
		return nil, errClosed
	}
	for _, f := range feats {
		if f.Namespace != ns {
			return nil, fmt.Errorf("redis: read %s: feature %s is not in namespace %s", ns.Name, f.FQN, ns.Name)
		}
	}
	n := len(feats)
	rows := make([]store.Row, len(keys))
	cells := make([]store.Cell, len(keys)*n)
	for i := range rows {
		rows[i].Cells = cells[i*n : (i+1)*n : (i+1)*n]
	}
	if len(keys) == 0 {
		return rows, nil
	}
	start := time.Now()
	again, err := s.readPass(ctx, ns, keys, feats, rows, true)
	if err == nil && again {
		clear(cells)
		for i := range rows {
			rows[i].Found = false
		}
		_, err = s.readPass(ctx, ns, keys, feats, rows, false)
	}
	s.m.observe(opRead, start, err)
	if err != nil {
		return nil, err
	}
	return rows, nil
}

// readPass reads keys once with the current mapping and fills rows. On the
// first pass it also looks up the features without a cached id, and it
// reports whether another pass is needed because the mapping was updated.
func (s *Store) readPass(ctx context.Context, ns *feature.Namespace, keys []string, feats []*feature.Feature, rows []store.Row, first bool) (again bool, err error) {
	ids := s.ids.snapshot()
	// fields are the marker, then each distinct id of feats; col[j] is the
	// index in fields of feats[j], 0 when it has no id.
	fields := make([]any, 1, len(feats)+1)
	fields[0] = markerField
	col := make([]int, len(feats))
	// at finds a repeated id: feats rarely repeat one, but may.
	at := make(map[string]int, len(feats))
	var unknown []string
	for j, f := range feats {
		field, ok := ids.field[f.FQN]
		if !ok {
			if !slices.Contains(unknown, f.FQN) {
				unknown = append(unknown, f.FQN)
			}
			continue
		}
		id := field.(string)
		if k, dup := at[id]; dup {
			col[j] = k
			continue
		}
		fields = append(fields, field)
		col[j] = len(fields) - 1
		at[id] = col[j]
	}

	var lookup *goredis.SliceCmd
	cmds := make([]*goredis.SliceCmd, len(keys))
	if len(keys) == 1 && !(first && len(unknown) > 0) {
		// One command needs no pipeline.
		cmds[0] = hmget(ctx, s.client, s.entityKey(ns.Name, keys[0]), fields)
		err = cmds[0].Err()
	} else {
		pipe := s.client.Pipeline()
		if first && len(unknown) > 0 {
			lookup = pipe.HMGet(ctx, s.ids.key, append([]string{genField}, unknown...)...)
		}
		for i, k := range keys {
			cmds[i] = hmget(ctx, pipe, s.entityKey(ns.Name, k), fields)
		}
		_, err = pipe.Exec(ctx)
	}
	if err != nil {
		// A key holding something other than a hash fails its own command
		// only, and reads as absent; any other error fails the read.
		for _, c := range cmds {
			if err := c.Err(); err != nil && !goredis.HasErrorPrefix(err, codeWrongType) {
				return false, fmt.Errorf("redis: read %d %s keys from %s: %w", len(keys), ns.Name, s.cfg.address(), err)
			}
		}
		if lookup != nil && lookup.Err() != nil {
			return false, fmt.Errorf("redis: read %d %s keys from %s: look up feature ids: %w", len(keys), ns.Name, s.cfg.address(), lookup.Err())
		}
	}

	if lookup != nil {
		if again, err = s.learnIDs(ctx, ids, unknown, lookup.Val()); err != nil {
			return false, err
		}
	}
	newest := "" // the newest generation of an entity, if newer than ids.gen
	for i, cmd := range cmds {
		if err := cmd.Err(); err != nil {
			s.m.undecodable.Inc()
			s.log.Warn("entity key holds something other than a hash; reading it as absent",
				"key", s.entityKey(ns.Name, keys[i]), "err", err)
			continue
		}
		vals := cmd.Val()
		if len(vals) != len(fields) {
			return false, fmt.Errorf("redis: read %s %q: HMGET of %d fields answered %d values", ns.Name, keys[i], len(fields), len(vals))
		}
		mark, ok := vals[0].(string)
		if !ok {
			continue // no such entity
		}
		if mark != ids.gen {
			// An entity of an older generation is garbage: its ids mean
			// nothing in the current mapping. One of a newer generation
			// means this process is behind.
			if newerGen(mark, ids.gen) && newerGen(mark, newest) {
				newest = mark
			}
			continue
		}
		rows[i].Found = true
		for j, f := range feats {
			if col[j] == 0 {
				continue
			}
			v, ok := vals[col[j]].(string)
			if !ok {
				continue
			}
			cell, err := decodeField(bytesOf(v), f.Type)
			if err != nil {
				s.m.undecodable.Inc()
				s.log.Debug("stored value does not decode as its feature's type; reading it as absent",
					"feature", f.FQN, "key", keys[i], "err", err)
				continue
			}
			rows[i].Cells[j] = cell
		}
	}
	if first && newest != "" {
		reloaded, err := s.catchUp(ctx, newest)
		if err != nil {
			return false, err
		}
		again = again || reloaded
	}
	return again, nil
}

// learnIDs takes the answer to looking up the generation and the ids of the
// FQNs in unknown, which had no cached id, and reports whether the mapping
// changed so that the read is worth repeating.
func (s *Store) learnIDs(ctx context.Context, ids *idMap, unknown []string, vals []any) (bool, error) {
	if len(vals) != 1+len(unknown) {
		return false, fmt.Errorf("redis: look up %d feature ids in %q: answered %d values", len(unknown), s.ids.key, len(vals))
	}
	gen, _ := vals[0].(string)
	if gen != ids.gen {
		return true, s.loadIDs(ctx)
	}
	learned := map[string]string{}
	for i, fqn := range unknown {
		if id, ok := vals[1+i].(string); ok && validID(id) {
			learned[fqn] = id
		}
	}
	if len(learned) == 0 {
		return false, nil
	}
	s.rememberIDs(gen, learned)
	return true, nil
}

// bytesOf returns the bytes of s without copying them, for decoding: a
// read decodes some thousands of fields, and decodeField neither modifies
// nor keeps its input (the codec copies what it returns).
func bytesOf(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// hmget sends HMGET key fields... through c, or queues it when c is a
// pipeline. Unlike c.HMGet, it takes the fields as they go into every
// command of a read, ready-made. The command's error is in the command.
func hmget(ctx context.Context, c interface {
	Process(context.Context, goredis.Cmder) error
}, key string, fields []any) *goredis.SliceCmd {
	args := make([]any, 2, 2+len(fields))
	args[0], args[1] = "hmget", key
	cmd := goredis.NewSliceCmd(ctx, append(args, fields...)...)
	_ = c.Process(ctx, cmd)
	return cmd
}
