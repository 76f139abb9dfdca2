package redis

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/store"
)

// Read returns one Row per key, aligned with keys, each with one Cell per
// feature of feats, which must all belong to ns.
//
// The whole read is one pipeline, one round trip: a command per key, HMGET
// of the marker field and the requested features' fields, or HGETALL when
// feats are every feature of the namespace (see wholeHash). A stored value
// that does not decode as its feature's type is answered as not found and
// counted in cairn_redis_undecodable_values_total. A second round trip is
// made only when the first shows that the cached feature-id mapping is
// behind the server's: a requested feature got its id from another process
// since this one loaded the mapping, or an entity was written under a newer
// mapping generation.
func (s *Store) Read(ctx context.Context, ns *feature.Namespace, keys []string, feats []*feature.Feature) ([]store.Row, error) {
	return s.ReadInto(ctx, ns, keys, feats, nil)
}

// ReadInto is Read, filling rows and their cells where they are large
// enough (see store.ResetRows) instead of allocating new ones.
func (s *Store) ReadInto(ctx context.Context, ns *feature.Namespace, keys []string, feats []*feature.Feature, rows []store.Row) ([]store.Row, error) {
	if s.closed.Load() {
		return nil, errClosed
	}
	for _, f := range feats {
		if f.Namespace != ns {
			return nil, fmt.Errorf("redis: read %s: feature %s is not in namespace %s", ns.Name, f.FQN, ns.Name)
		}
	}
	rows = store.ResetRows(rows, len(keys), len(feats))
	if len(keys) == 0 {
		return rows, nil
	}
	start := time.Now()
	sc := scratchPool.Get().(*readScratch)
	again, err := s.readPass(ctx, ns, keys, feats, rows, true, sc)
	if err == nil && again {
		rows = store.ResetRows(rows, len(keys), len(feats))
		_, err = s.readPass(ctx, ns, keys, feats, rows, false, sc)
	}
	sc.release()
	s.m.observe(opRead, start, err)
	if err != nil {
		return nil, err
	}
	return rows, nil
}

// readScratch is the working memory of one read, kept in scratchPool
// between reads: a query of 100 entities × 50 features would otherwise
// allocate some 5,000 command arguments and 5,000 reply values.
type readScratch struct {
	// fields are the marker, then each distinct id of the read's features;
	// first[k] is the column (index in feats) of the first feature whose
	// id is fields[k], and dups pairs each other column having that id
	// with the first one.
	fields []any
	first  []int
	dups   [][2]int
	// unknown are the FQNs of the read's features without a cached id.
	unknown []string
	// byNum[n] is k for the id of number n in fields (whole-hash reads),
	// 0 for an id not asked for.
	byNum []int32
	// args holds every command's arguments, one after the other.
	args []any
	cmds []*goredis.RawCmd
	// The entities' replies, parsed, are elements off[i] to off[i+1] of
	// vals, or of spans when spanned is set (see elem); errs[i] is
	// entity i's error reply, if any.
	vals    [][]byte
	off     []int
	errs    []error
	spanned bool
	// planned, plannedNS and plannedFeats are the mapping, namespace and
	// features the plan above (fields to byNum) was made for, and
	// plannedWhole its choice of HGETALL; planned is nil when the plan
	// cannot be used again (it has unknown ids).
	planned      *idMap
	plannedNS    *feature.Namespace
	plannedFeats []*feature.Feature
	plannedWhole bool
	// out holds a read connection's commands, arena the bytes of its
	// replies' elements and spans where each is in arena (readconn.go).
	out   []byte
	arena []byte
	spans []span
	// strs holds the bytes of the decoded strings, in blocks of one
	// entity each, never the arena's (the next read overwrites it).
	strs feature.StringAlloc
}

var scratchPool = sync.Pool{New: func() any { return new(readScratch) }}

// maxPooledArgs bounds the scratch kept for the next read: the memory of
// an unusually large read goes back to the garbage collector.
const maxPooledArgs = 1 << 16

// maxPooledArena bounds the reply bytes kept for the next read.
const maxPooledArena = 4 << 20

func (sc *readScratch) release() {
	if cap(sc.args) > maxPooledArgs || cap(sc.vals) > 2*maxPooledArgs || cap(sc.arena) > maxPooledArena {
		return
	}
	clear(sc.args[:cap(sc.args)])
	clear(sc.vals[:cap(sc.vals)])
	clear(sc.errs[:cap(sc.errs)])
	clear(sc.cmds[:cap(sc.cmds)])
	clear(sc.unknown[:cap(sc.unknown)])
	scratchPool.Put(sc)
}

// plan fills sc.fields, sc.first, sc.dups and sc.unknown for feats.
func (sc *readScratch) plan(ids *idMap, feats []*feature.Feature) {
	sc.fields = append(sc.fields[:0], markerField)
	sc.first = append(sc.first[:0], -1)
	sc.dups = sc.dups[:0]
	sc.unknown = sc.unknown[:0]
next:
	for j, f := range feats {
		field, ok := ids.field[f.FQN]
		if !ok {
			if !slices.Contains(sc.unknown, f.FQN) {
				sc.unknown = append(sc.unknown, f.FQN)
			}
			continue
		}
		// Features rarely repeat an id, but may: a linear search costs
		// less than a map for the few dozen features of a query.
		for k := 1; k < len(sc.fields); k++ {
			if sc.fields[k] == field {
				sc.dups = append(sc.dups, [2]int{j, sc.first[k]})
				continue next
			}
		}
		sc.fields = append(sc.fields, field)
		sc.first = append(sc.first, j)
	}
}

// wholeHash reports whether the read asks every feature of ns, so that
// HGETALL answers the same fields as HMGET would, plus only those of
// features no longer registered. It is chosen then because a server takes
// about half the time over it: HMGET looks each field up in the compact
// (listpack) encoding of small hashes by scanning it from the start, while
// HGETALL reads it once. It fills sc.byNum for the read.
func (sc *readScratch) wholeHash(ns *feature.Namespace) bool {
	if len(sc.unknown) > 0 || len(sc.fields)-1 != len(ns.Features)-1 {
		return false
	}
	most := 0
	for _, f := range sc.fields[1:] {
		n := idNumber(f.(string))
		if n < 0 {
			return false
		}
		most = max(most, n)
	}
	// Ids are handed out in sequence, so they are small; a mapping
	// holding far more features than ns has is read with HMGET rather
	// than given a large index.
	if most > 1024+8*len(sc.fields) {
		return false
	}
	if cap(sc.byNum) > most {
		sc.byNum = sc.byNum[:most+1]
		clear(sc.byNum)
	} else {
		sc.byNum = make([]int32, most+1)
	}
	for k, f := range sc.fields[1:] {
		sc.byNum[idNumber(f.(string))] = int32(k + 1)
	}
	return true
}

// column returns k of the field named name in a whole-hash read, 0 for the
// marker and -1 for a field not asked for.
func (sc *readScratch) column(name []byte) int {
	// Ids of one or two characters, nearly all of them, are read from a
	// table; a whole-hash read of 100 entities looks up 5,100 names.
	var n int
	switch {
	case len(name) == 1:
		n = int(base36[name[0]])
	case len(name) == 2 && name[0] != '0' && base36[name[0]] >= 0 && base36[name[1]] >= 0:
		n = int(base36[name[0]])*36 + int(base36[name[1]])
	default:
		n = idNumber(name)
	}
	switch {
	case n == 0:
		return 0
	case n < 0 || n >= len(sc.byNum) || sc.byNum[n] == 0:
		return -1
	}
	return int(sc.byNum[n])
}

// base36 holds the value of each base-36 digit (0-9, a-z), -1 for other
// bytes.
var base36 = func() (t [256]int8) {
	for i := range t {
		t[i] = -1
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = int8(c - '0')
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = int8(c-'a') + 10
	}
	return t
}()

// idNumber returns the number whose base-36 text is id, or -1 when id is
// not such a text (ids are canonical: no leading zero, lowercase).
func idNumber[T string | []byte](id T) int {
	if len(id) == 0 || len(id) > 6 || (len(id) > 1 && id[0] == '0') {
		return -1
	}
	n := 0
	for i := range len(id) {
		switch c := id[i]; {
		case c >= '0' && c <= '9':
			n = n*36 + int(c-'0')
		case c >= 'a' && c <= 'z':
			n = n*36 + int(c-'a') + 10
		default:
			return -1
		}
	}
	return n
}

// command returns the arguments of the command reading key, carved from
// sc.args.
func (sc *readScratch) command(key string, whole bool) []any {
	start := len(sc.args)
	if whole {
		sc.args = append(sc.args, "hgetall", key)
	} else {
		sc.args = append(sc.args, "hmget", key)
		sc.args = append(sc.args, sc.fields...)
	}
	return sc.args[start:len(sc.args):len(sc.args)]
}

// readPass reads keys once with the current mapping and fills rows. On the
// first pass it also looks up the features without a cached id, and it
// reports whether another pass is needed because the mapping was updated.
func (s *Store) readPass(ctx context.Context, ns *feature.Namespace, keys []string, feats []*feature.Feature, rows []store.Row, first bool, sc *readScratch) (again bool, err error) {
	ids := s.ids.snapshot()
	var whole, lookup bool
	if sc.planned == ids && sc.plannedNS == ns && slices.Equal(sc.plannedFeats, feats) {
		// The same features as this scratch's last read, under the same
		// mapping: a query server's reads mostly are.
		whole = sc.plannedWhole
	} else {
		sc.plan(ids, feats)
		lookup = first && len(sc.unknown) > 0
		whole = !lookup && sc.wholeHash(ns)
		sc.planned, sc.plannedNS = nil, nil
		if len(sc.unknown) == 0 {
			sc.planned, sc.plannedNS, sc.plannedWhole = ids, ns, whole
			sc.plannedFeats = append(sc.plannedFeats[:0], feats...)
		}
	}

	var lookupCmd *goredis.SliceCmd
	viaClient := true
	if s.reads != nil && !lookup {
		err = s.readConnRead(ctx, ns, keys, whole, sc)
		if sur, ok := errors.AsType[*errSurprise](err); ok {
			// An error reply other than WRONGTYPE (LOADING, ...) or a
			// reply of another shape: go-redis reads it again, and
			// handles it as it handles every other command. An error
			// reply is counted as a fallback when go-redis meets it too.
			if _, reply := errors.AsType[*replyError](sur.err); !reply {
				s.m.rawFallbacks.Inc()
			}
		} else {
			viaClient = false
		}
	}
	if viaClient {
		lookupCmd, err = s.clientRead(ctx, ns, keys, whole, lookup, sc)
	}
	if err != nil {
		return false, fmt.Errorf("redis: read %d %s keys from %s: %w", len(keys), ns.Name, s.cfg.address(), err)
	}
	if lookupCmd != nil {
		if again, err = s.learnIDs(ctx, ids, sc.unknown, lookupCmd.Val()); err != nil {
			return false, err
		}
	}

	newest, err := s.fill(ns, keys, feats, rows, sc, ids, whole, 0, len(keys))
	if err != nil {
		return false, err
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

// readConnRead reads keys on a read connection (see readconn.go) and
// leaves the replies in sc.arena, sc.spans, sc.off and sc.errs.
func (s *Store) readConnRead(ctx context.Context, ns *feature.Namespace, keys []string, whole bool, sc *readScratch) error {
	sc.out = sc.out[:0]
	for _, k := range keys {
		sc.out = sc.appendRead(sc.out, s.cfg.KeyPrefix, ns.Name, k, whole)
	}
	err := s.reads.roundTrip(ctx, len(keys), sc)
	sc.spanned = err == nil
	return err
}

// elem returns element p of the parsed replies, nil for a null: a slice of
// sc.arena after a read on a read connection, of go-redis's replies after
// one through go-redis.
func (sc *readScratch) elem(p int) []byte {
	if !sc.spanned {
		return sc.vals[p]
	}
	sp := sc.spans[p]
	if sp.n < 0 {
		return nil
	}
	end := int(sp.off) + int(sp.n)
	return sc.arena[sp.off:end:end]
}

// appendRead appends the command reading the entity key of ns (the key
// EntityKey names) in RESP, HGETALL or HMGET of sc.fields, without making
// the key a string.
func (sc *readScratch) appendRead(b []byte, prefix, ns, key string, whole bool) []byte {
	n := 2
	if !whole {
		n += len(sc.fields)
	}
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(n), 10)
	if whole {
		b = append(b, "\r\n$7\r\nhgetall\r\n$"...)
	} else {
		b = append(b, "\r\n$5\r\nhmget\r\n$"...)
	}
	b = strconv.AppendInt(b, int64(len(prefix)+len(ns)+len(key)+3), 10)
	b = append(b, '\r', '\n')
	b = append(b, prefix...)
	b = append(b, '{')
	b = append(b, ns...)
	b = append(b, ':')
	b = append(b, key...)
	b = append(b, "}\r\n"...)
	if !whole {
		for _, f := range sc.fields {
			b = appendBulk(b, f.(string))
		}
	}
	return b
}

// clientRead reads keys through go-redis, with the lookup of sc.unknown's
// ids in the same pipeline when lookup is set, and leaves the replies in
// sc.vals, sc.off and sc.errs.
func (s *Store) clientRead(ctx context.Context, ns *feature.Namespace, keys []string, whole, lookup bool, sc *readScratch) (lookupCmd *goredis.SliceCmd, err error) {
	per := 2
	if !whole {
		per += len(sc.fields)
	}
	if need := len(keys) * per; cap(sc.args) < need {
		sc.args = make([]any, 0, need)
	}
	sc.args = sc.args[:0]
	sc.cmds = sc.cmds[:0]
	for _, k := range keys {
		sc.cmds = append(sc.cmds, goredis.NewRawCmd(ctx, sc.command(s.entityKey(ns.Name, k), whole)...))
	}
	if len(keys) == 1 && !lookup {
		// One command needs no pipeline.
		err = s.client.Process(ctx, sc.cmds[0])
	} else {
		pipe := s.client.Pipeline()
		if lookup {
			lookupCmd = pipe.HMGet(ctx, s.ids.key, append([]string{genField}, sc.unknown...)...)
		}
		for _, c := range sc.cmds {
			_ = pipe.Process(ctx, c)
		}
		_, err = pipe.Exec(ctx)
	}
	if err == nil {
		// A raw command fails only when its round trip does, after
		// go-redis's retries: error replies come back as replies.
		err = s.parseReplies(ctx, ns, keys, sc)
	}
	return lookupCmd, err
}

// fill fills rows[lo:hi] from the parsed replies in sc, and returns the
// newest mapping generation met there if newer than ids.gen.
func (s *Store) fill(ns *feature.Namespace, keys []string, feats []*feature.Feature, rows []store.Row, sc *readScratch, ids *idMap, whole bool, lo, hi int) (newest string, _ error) {
	for i := lo; i < hi; i++ {
		if err := sc.errs[i]; err != nil {
			s.m.undecodable.Inc()
			s.log.Warn("entity key holds something other than a hash; reading it as absent",
				"key", s.entityKey(ns.Name, keys[i]), "err", err)
			continue
		}
		lo, hi := sc.off[i], sc.off[i+1]
		var mark []byte
		if whole {
			for p := lo; p+1 < hi; p += 2 {
				if sc.column(sc.elem(p)) == 0 {
					mark = sc.elem(p + 1)
					break
				}
			}
		} else {
			if hi-lo != len(sc.fields) {
				return "", fmt.Errorf("redis: read %s %q: HMGET of %d fields answered %d values", ns.Name, keys[i], len(sc.fields), hi-lo)
			}
			mark = sc.elem(lo)
		}
		if mark == nil {
			continue // no such entity
		}
		if string(mark) != ids.gen {
			// An entity of an older generation is garbage: its ids mean
			// nothing in the current mapping. One of a newer generation
			// means this process is behind.
			if m := string(mark); newerGen(m, ids.gen) && newerGen(m, newest) {
				newest = m
			}
			continue
		}
		rows[i].Found = true
		cells := rows[i].Cells
		// The entity's strings share blocks of their own: a row kept (a
		// cache's) keeps no other entity's bytes alive.
		sc.strs.Reset()
		if whole {
			for p := lo; p+1 < hi; p += 2 {
				if k := sc.column(sc.elem(p)); k > 0 {
					if v := sc.elem(p + 1); v != nil {
						s.decodeInto(sc, cells, sc.first[k], feats, v, keys[i])
					}
				}
			}
		} else {
			for k := 1; k < hi-lo; k++ {
				if v := sc.elem(lo + k); v != nil {
					s.decodeInto(sc, cells, sc.first[k], feats, v, keys[i])
				}
			}
		}
		for _, d := range sc.dups {
			cells[d[0]] = cells[d[1]]
		}
	}
	return newest, nil
}

// decodeInto decodes the stored field v into cells[j], the column of
// feats[j], its strings' bytes from sc.strs; a field that does not decode
// leaves the cell not found.
func (s *Store) decodeInto(sc *readScratch, cells []store.Cell, j int, feats []*feature.Feature, v []byte, key string) {
	f := feats[j]
	if err := decodeFieldInto(&cells[j], v, f.Type, &sc.strs); err != nil {
		s.m.undecodable.Inc()
		s.log.Debug("stored value does not decode as its feature's type; reading it as absent",
			"feature", f.FQN, "key", key, "err", err)
	}
}

// parseReplies parses the raw replies of sc.cmds into sc.vals, sc.off and
// sc.errs. A key holding something other than a hash fails its own command
// only (WRONGTYPE), and reads as absent. Any other error reply, such as a
// cluster's redirection (MOVED, ASK) or a server still loading its data
// (LOADING), sends the whole read again as commands that go-redis parses
// itself, and so handles as it handles every other command.
func (s *Store) parseReplies(ctx context.Context, ns *feature.Namespace, keys []string, sc *readScratch) error {
	sc.vals, sc.off, sc.errs, sc.spanned = sc.vals[:0], append(sc.off[:0], 0), sc.errs[:0], false
	for i := range sc.cmds {
		var err error
		sc.vals, err = appendFlat(sc.vals, sc.cmds[i].Val())
		var re *replyError
		switch {
		case err == nil:
		case errors.As(err, &re) && re.hasPrefix(codeWrongType):
		default:
			return s.readParsed(ctx, ns, keys, sc)
		}
		sc.off = append(sc.off, len(sc.vals))
		sc.errs = append(sc.errs, err)
	}
	return nil
}

// readParsed sends again the commands of sc.cmds, as go-redis commands
// whose replies go-redis parses, and fills sc.vals, sc.off and sc.errs from
// them.
func (s *Store) readParsed(ctx context.Context, ns *feature.Namespace, keys []string, sc *readScratch) error {
	s.m.rawFallbacks.Inc()
	cmds := make([]*goredis.Cmd, len(sc.cmds))
	pipe := s.client.Pipeline()
	for i, c := range sc.cmds {
		cmds[i] = goredis.NewCmd(ctx, c.Args()...)
		_ = pipe.Process(ctx, cmds[i])
	}
	_, _ = pipe.Exec(ctx)
	sc.vals, sc.off, sc.errs, sc.spanned = sc.vals[:0], append(sc.off[:0], 0), sc.errs[:0], false
	for _, c := range cmds {
		err := c.Err()
		if err != nil && !goredis.HasErrorPrefix(err, codeWrongType) {
			return err
		}
		if err == nil {
			if sc.vals, err = appendParsed(sc.vals, c.Val()); err != nil {
				return err
			}
		}
		sc.off = append(sc.off, len(sc.vals))
		sc.errs = append(sc.errs, err)
	}
	return nil
}

// appendParsed appends the elements of v, a reply go-redis parsed (an
// array, or a RESP3 map, of strings and nils), as appendFlat would.
func appendParsed(dst [][]byte, v any) ([][]byte, error) {
	elem := func(e any) ([]byte, error) {
		switch e := e.(type) {
		case nil:
			return nil, nil
		case string:
			return append([]byte{}, e...), nil
		}
		return nil, fmt.Errorf("unexpected reply element of type %T", e)
	}
	switch v := v.(type) {
	case []any:
		for _, e := range v {
			b, err := elem(e)
			if err != nil {
				return dst, err
			}
			dst = append(dst, b)
		}
	case map[any]any:
		for k, e := range v {
			kb, err := elem(k)
			if err != nil {
				return dst, err
			}
			b, err := elem(e)
			if err != nil {
				return dst, err
			}
			dst = append(dst, kb, b)
		}
	default:
		return dst, fmt.Errorf("unexpected reply of type %T", v)
	}
	return dst, nil
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
