package redis

import (
	"context"
	_ "embed"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

var (
	//go:embed write.lua
	writeLua string
	//go:embed ids.lua
	idsLua string
	//go:embed bucket_put.lua
	bucketPutLua string
	//go:embed bucket_read.lua
	bucketReadLua string
)

// scripts are the store's Lua scripts. They are loaded at Open and called
// by their SHA-1; a server that answers NOSCRIPT (it restarted, or a
// replica without them took over) gets them loaded again.
type scripts struct {
	write *goredis.Script
	ids   *goredis.Script
	// bucketPut and bucketRead keep the buckets of windowed features
	// (bucket.go).
	bucketPut  *goredis.Script
	bucketRead *goredis.Script
}

func newScripts() scripts {
	return scripts{
		write:      goredis.NewScript(writeLua),
		ids:        goredis.NewScript(idsLua),
		bucketPut:  goredis.NewScript(bucketPutLua),
		bucketRead: goredis.NewScript(bucketReadLua),
	}
}

// all returns every script.
func (sc scripts) all() []*goredis.Script {
	return []*goredis.Script{sc.write, sc.ids, sc.bucketPut, sc.bucketRead}
}

// loadScripts loads every script into the server (every primary of a
// cluster).
func (s *Store) loadScripts(ctx context.Context) error {
	start := time.Now()
	var err error
	for _, sc := range s.scripts.all() {
		if err = sc.Load(ctx, s.client).Err(); err != nil {
			break
		}
	}
	s.m.observe(opLoadScripts, start, err)
	if err != nil {
		return fmt.Errorf("redis: load scripts into %s: %w", s.cfg.address(), err)
	}
	return nil
}

// reloadScripts loads the scripts again after a NOSCRIPT answer.
func (s *Store) reloadScripts(ctx context.Context) error {
	s.m.reloads.Inc()
	s.log.Info("server no longer knows the scripts (restart or failover); loading them again")
	return s.loadScripts(ctx)
}

// runScript runs sc alone (not in a pipeline) by its SHA-1, loading the
// scripts again and retrying once if the server does not know it.
func (s *Store) runScript(ctx context.Context, sc *goredis.Script, keys []string, args []any) (*goredis.Cmd, error) {
	cmd := sc.EvalSha(ctx, s.client, keys, args...)
	if !isNoScript(cmd.Err()) {
		return cmd, cmd.Err()
	}
	if err := s.reloadScripts(ctx); err != nil {
		return nil, err
	}
	cmd = sc.EvalSha(ctx, s.client, keys, args...)
	return cmd, cmd.Err()
}

// Error codes the server and the scripts answer with.
const (
	codeNoScript  = "NOSCRIPT"
	codeWrongType = "WRONGTYPE"
	// codeNewerGen: the entity was written under a newer mapping
	// generation than the one the client sent (write.lua).
	codeNewerGen = "CAIRNGEN"
)

func isNoScript(err error) bool { return goredis.HasErrorPrefix(err, codeNoScript) }
