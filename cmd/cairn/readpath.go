package main

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairnfs/cairn/internal/bloom"
	"github.com/cairnfs/cairn/internal/cache"
	"github.com/cairnfs/cairn/internal/config"
	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/query"
	"github.com/cairnfs/cairn/internal/queue"
)

// readPath is what a query server reads through: the namespace LRU cache,
// then the Bloom filter, then the store. tracker is nil without filters.
type readPath struct {
	reader  query.Store
	tracker *bloom.Tracker
}

// buildReadPath assembles the accelerators the environment asks for.
func buildReadPath(env *config.Env, reg *feature.Registry, st onlineStore, qcfg queue.Config, prom prometheus.Registerer, log *slog.Logger) (readPath, error) {
	rp := readPath{reader: st}
	var errs []error

	specs, err := bloom.ParseSpecs(env.String("CAIRN_BLOOM_NAMESPACES"))
	if err != nil {
		errs = append(errs, fmt.Errorf("CAIRN_BLOOM_NAMESPACES: %w", err))
	}
	debug := env.Bool("DYNAMODB_BLOOM_FILTER_DEBUG_MODE")
	lease := env.Duration("CAIRN_BLOOM_LEASE")
	cached, err := cache.ParseNamespaces(env.String("DYNAMODB_CACHED_NAMESPACES"))
	if err != nil {
		errs = append(errs, fmt.Errorf("DYNAMODB_CACHED_NAMESPACES: %w", err))
	}
	ccfg := cache.DefaultConfig()
	ccfg.Namespaces = cached
	ccfg.CacheMisses = env.Bool("DYNAMODB_LRU_CACHE_CACHE_MISSES")
	for _, c := range cached {
		if _, ok := reg.Namespace(c.Namespace); !ok {
			errs = append(errs, fmt.Errorf("DYNAMODB_CACHED_NAMESPACES: namespace %q is not in the registry", c.Namespace))
		}
	}
	errs = append(errs, env.Err())
	if err := errors.Join(errs...); err != nil {
		return rp, err
	}

	if len(specs) > 0 {
		sc, ok := st.(bloom.Scanner)
		if !ok {
			return rp, errors.New("CAIRN_BLOOM_NAMESPACES: this online store cannot list its keys, so it cannot have a Bloom filter in front of it")
		}
		tr, err := bloom.NewTracker(bloom.TrackerConfig{Specs: specs, Lease: lease}, qcfg, reg, sc, prom, log)
		if err != nil {
			return rp, err
		}
		rp.tracker = tr
		rp.reader = bloom.NewGuard(rp.reader, tr, debug, prom, log)
	}
	if len(cached) > 0 {
		c, err := cache.New(rp.reader, ccfg, prom, log)
		if err != nil {
			return rp, err
		}
		rp.reader = c
	}
	return rp, nil
}
