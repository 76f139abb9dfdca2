package node

import (
	"errors"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairnfs/cairn/internal/bloom"
	"github.com/cairnfs/cairn/internal/cache"
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

// buildReadPath assembles the accelerators rc asks for in front of st.
func buildReadPath(rc ReadConfig, reg *feature.Registry, st Store, qcfg queue.Config, prom prometheus.Registerer, log *slog.Logger) (readPath, error) {
	rp := readPath{reader: st}
	if len(rc.Bloom) > 0 {
		sc, ok := st.(bloom.Scanner)
		if !ok {
			return rp, errors.New("CAIRN_BLOOM_NAMESPACES: this online store cannot list its keys, so it cannot have a Bloom filter in front of it")
		}
		tr, err := bloom.NewTracker(bloom.TrackerConfig{Specs: rc.Bloom, Lease: rc.BloomLease}, qcfg, reg, sc, prom, log)
		if err != nil {
			return rp, err
		}
		rp.tracker = tr
		rp.reader = bloom.NewGuard(rp.reader, tr, rc.BloomDebug, prom, log)
	}
	if len(rc.Cache.Namespaces) > 0 {
		c, err := cache.New(rp.reader, rc.Cache, prom, log)
		if err != nil {
			return rp, err
		}
		rp.reader = c
	}
	return rp, nil
}
