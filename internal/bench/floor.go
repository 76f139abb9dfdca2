package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	goredis "github.com/redis/go-redis/v9"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/store/redis"
)

// redisFloor is path (b): the round trip the Redis store makes for a
// query (see internal/store/redis/read.go), the same commands on the same
// kind of connection, whose replies it reads without decoding them. On a
// single server that is the store's own read connections (redis.RawReads);
// a cluster's reads go through go-redis, reading raw replies, as the
// store's do.
type redisFloor struct {
	client goredis.UniversalClient
	raw    *redis.RawReads
	// strFields are fields as strings, for raw.
	strFields []string
	foundBufs sync.Pool
	// prefix is the store's key prefix, ns the namespace read.
	prefix, ns string
	// whole: the query asks every feature of the namespace, and the store
	// reads each entity with HGETALL; otherwise with HMGET of fields, the
	// entity's marker, then the feature ids.
	whole  bool
	fields []any
	sets   []requestSet
	// entityKeys[i] are sets[i]'s keys as the store names them.
	entityKeys [][]string
	next       atomic.Uint64
}

// newRedisFloor connects with the options the Redis store uses and learns
// the ids of feats, the features asked for, from the store's mapping hash.
// Keys, the mapping and the entity marker are named by the store's own
// layout (redis.EntityKey, redis.MappingKey, redis.MarkerField), so that
// the floor reads exactly what the store writes.
func newRedisFloor(ctx context.Context, cfg redis.Config, ns *feature.Namespace, feats []*feature.Feature) (*redisFloor, error) {
	fl := &redisFloor{client: redis.NewClient(cfg), prefix: cfg.KeyPrefix, ns: ns.Name, whole: len(feats) == len(ns.Features)-1}
	if !cfg.Clustered {
		raw, err := redis.NewRawReads(cfg)
		if err != nil {
			fl.close()
			return nil, fmt.Errorf("bench: floor: %w", err)
		}
		fl.raw = raw
	}
	mapping := redis.MappingKey(cfg.KeyPrefix)
	ids, err := fl.client.HGetAll(ctx, mapping).Result()
	if err != nil {
		fl.close()
		return nil, fmt.Errorf("bench: floor: read the feature ids: %w", err)
	}
	fl.fields = append(fl.fields, redis.MarkerField)
	for _, f := range feats {
		id, ok := ids[f.FQN]
		if !ok {
			fl.close()
			return nil, fmt.Errorf("bench: floor: feature %s has no id in %s", f.FQN, mapping)
		}
		fl.fields = append(fl.fields, id)
	}
	if !fl.whole {
		for _, f := range fl.fields {
			fl.strFields = append(fl.strFields, f.(string))
		}
	}
	return fl, nil
}

func (fl *redisFloor) close() {
	if fl.raw != nil {
		fl.raw.Close()
	}
	_ = fl.client.Close()
}

// use makes sets the queries of the floor's calls.
func (fl *redisFloor) use(sets []requestSet) {
	fl.sets = sets
	fl.entityKeys = make([][]string, len(sets))
	for i, set := range sets {
		for _, k := range set.keys {
			fl.entityKeys[i] = append(fl.entityKeys[i], fl.entityKey(k))
		}
	}
}

// entityKey returns the key of the hash of entity key, as the store
// names it.
func (fl *redisFloor) entityKey(key string) string {
	return redis.EntityKey(fl.prefix, fl.ns, key)
}

// describe names the round trip of a query of n entities.
func (fl *redisFloor) describe(n int) string {
	cmd := fmt.Sprintf("HMGET of %d fields", len(fl.fields))
	if fl.whole {
		cmd = "HGETALL"
	}
	if n == 1 {
		return cmd
	}
	return fmt.Sprintf("pipeline of %d × %s", n, cmd)
}

// errNoEntity is a floor read that found no entity: the floor would be
// measuring something else than the store's reads.
var errNoEntity = errors.New("floor read found no entity")

// call is one request of path (b): the store's command for one entity,
// or a pipeline of one per entity, each reply read raw, as the store reads
// them.
func (fl *redisFloor) call(ctx context.Context) error {
	i := fl.next.Add(1) % uint64(len(fl.sets))
	set := &fl.sets[i]
	if fl.raw != nil {
		return fl.rawCall(ctx, fl.entityKeys[i])
	}
	if len(set.keys) == 1 {
		cmd := goredis.NewRawCmd(ctx, fl.args(set.keys[0])...)
		if err := fl.client.Process(ctx, cmd); err != nil {
			return err
		}
		return fl.found(cmd.Val())
	}
	pipe := fl.client.Pipeline()
	cmds := make([]*goredis.RawCmd, len(set.keys))
	for i, k := range set.keys {
		cmds[i] = goredis.NewRawCmd(ctx, fl.args(k)...)
		_ = pipe.Process(ctx, cmds[i])
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return err
	}
	for _, c := range cmds {
		if err := fl.found(c.Val()); err != nil {
			return err
		}
	}
	return nil
}

// rawCall is call on the store's kind of read connections.
func (fl *redisFloor) rawCall(ctx context.Context, keys []string) error {
	p, _ := fl.foundBufs.Get().(*[]bool)
	if p == nil {
		p = new([]bool)
	}
	defer fl.foundBufs.Put(p)
	found, err := fl.raw.Read(ctx, keys, fl.strFields, (*p)[:0])
	*p = found
	if err != nil {
		return err
	}
	for _, ok := range found {
		if !ok {
			return errNoEntity
		}
	}
	return nil
}

// args returns the command reading the entity key, as the store sends it.
func (fl *redisFloor) args(key string) []any {
	if fl.whole {
		return []any{"hgetall", fl.entityKey(key)}
	}
	args := make([]any, 2, 2+len(fl.fields))
	args[0], args[1] = "hmget", fl.entityKey(key)
	return append(args, fl.fields...)
}

// found checks, without parsing the reply, that it is not an error and
// holds an entity: HGETALL's is not empty, HMGET's first value, the
// marker, is not null.
func (fl *redisFloor) found(raw []byte) error {
	if len(raw) == 0 || raw[0] == '-' || raw[0] == '!' {
		return fmt.Errorf("floor read: %.100q", raw)
	}
	line, rest, _ := bytes.Cut(raw, []byte("\r\n"))
	if fl.whole && (string(line[1:]) == "0") || !fl.whole && (bytes.HasPrefix(rest, []byte("$-1\r\n")) || bytes.HasPrefix(rest, []byte("_\r\n"))) {
		return errNoEntity
	}
	return nil
}

// serverCPU returns the CPU time the Redis server has used, in seconds
// (INFO cpu: used_cpu_user and used_cpu_sys).
func (fl *redisFloor) serverCPU(ctx context.Context) (float64, bool) {
	info, err := fl.client.Info(ctx, "cpu").Result()
	if err != nil {
		return 0, false
	}
	var secs float64
	n := 0
	for _, line := range strings.Split(info, "\n") {
		name, val, _ := strings.Cut(strings.TrimSpace(line), ":")
		if name == "used_cpu_user" || name == "used_cpu_sys" {
			v, err := strconv.ParseFloat(val, 64)
			if err != nil {
				return 0, false
			}
			secs += v
			n++
		}
	}
	return secs, n == 2
}

// deleteAll removes the entities written and the mapping hash, which live
// under a prefix of the benchmark's own.
func (fl *redisFloor) deleteAll(ctx context.Context, keys []string) error {
	const batch = 1000
	for lo := 0; lo < len(keys); lo += batch {
		pipe := fl.client.Pipeline()
		for _, k := range keys[lo:min(lo+batch, len(keys))] {
			pipe.Unlink(ctx, fl.entityKey(k))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return err
		}
	}
	return fl.client.Unlink(ctx, redis.MappingKey(fl.prefix)).Err()
}
