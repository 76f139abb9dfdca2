package main

import (
	"errors"
	"fmt"
	"net/url"

	"github.com/cairnfs/cairn/internal/bloom"
	"github.com/cairnfs/cairn/internal/cache"
	"github.com/cairnfs/cairn/internal/config"
	"github.com/cairnfs/cairn/internal/store/dynamo"
	"github.com/cairnfs/cairn/internal/writer"
)

// preflight checks, before anything is opened, every knob the command will
// read: the store's (for the scheme of storeURI), the read path's when
// serving, the writer's when writing, the shared ones. It returns one error
// listing every problem, each once.
func preflight(env *config.Env, storeURI string, serve, write bool) error {
	var errs []error
	if u, err := url.Parse(storeURI); err == nil {
		switch u.Scheme {
		case dynamo.URIScheme:
			_, err = dynamoConfig(env, storeURI)
		case "redis", "rediss", "valkey", "valkeys":
			_, err = redisConfig(env, storeURI)
		}
		errs = append(errs, err)
	}
	if serve {
		if _, err := bloom.ParseSpecs(env.String("CAIRN_BLOOM_NAMESPACES")); err != nil {
			errs = append(errs, fmt.Errorf("CAIRN_BLOOM_NAMESPACES: %w", err))
		}
		if _, err := cache.ParseNamespaces(env.String("DYNAMODB_CACHED_NAMESPACES")); err != nil {
			errs = append(errs, fmt.Errorf("DYNAMODB_CACHED_NAMESPACES: %w", err))
		}
		env.Bool("DYNAMODB_LRU_CACHE_CACHE_MISSES")
		env.Bool("DYNAMODB_BLOOM_FILTER_DEBUG_MODE")
		env.Int("CAIRN_MAX_BODY_BYTES")
	}
	if write {
		wcfg := writer.Config{
			MaxBatchRecords: env.Int("CAIRN_WRITER_MAX_BATCH_RECORDS"),
			MaxBackoff:      env.Duration("CAIRN_WRITER_MAX_BACKOFF"),
		}
		wcfg.EnsureDefaults()
		errs = append(errs, wcfg.Validate())
	}
	env.Duration("CAIRN_BLOOM_LEASE")
	env.Duration("CAIRN_SHUTDOWN_TIMEOUT")
	if _, err := gcHeapFloor(env); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, env.Err())
	return joinDistinct(errs...)
}

// joinDistinct joins errs, flattening joined errors and dropping repeats
// (knob errors are reported both by the Env and by the configs read from it).
func joinDistinct(errs ...error) error {
	var out []error
	seen := map[string]bool{}
	var add func(err error)
	add = func(err error) {
		if err == nil {
			return
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				add(e)
			}
			return
		}
		if !seen[err.Error()] {
			seen[err.Error()] = true
			out = append(out, err)
		}
	}
	for _, err := range errs {
		add(err)
	}
	return errors.Join(out...)
}

// gcHeapFloor reads CAIRN_GC_HEAP_FLOOR_MIB, in bytes (see package gcfloor).
func gcHeapFloor(env *config.Env) (uint64, error) {
	mib := env.Int("CAIRN_GC_HEAP_FLOOR_MIB")
	if mib < 0 || mib > 1<<20 {
		return 0, fmt.Errorf("CAIRN_GC_HEAP_FLOOR_MIB=%d: want 0 (off) to 1048576", mib)
	}
	return uint64(mib) << 20, nil
}
