package node

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairnfs/cairn/internal/bloom"
	"github.com/cairnfs/cairn/internal/cache"
	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/query"
	"github.com/cairnfs/cairn/internal/queue"
	"github.com/cairnfs/cairn/internal/store"
)

// readPath is what a query server reads through: the namespace LRU cache,
// then the Bloom filter, then the store. tracker is nil without filters.
type readPath struct {
	reader  query.Store
	tracker *bloom.Tracker
	// unfiltered, with a tracker, sends every read past the filters from
	// its Switch on (see filterSwitch).
	unfiltered *filterSwitch
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
		rp.unfiltered = &filterSwitch{filtered: bloom.NewGuard(rp.reader, tr, rc.BloomDebug, prom, log), direct: st, log: log}
		rp.reader = rp.unfiltered
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

// filterSwitch reads through the Bloom filters until the process switches
// Kafka cluster, and from the store directly after: the trackers fill
// their filters from the cluster they started on, while the writers write
// the store from the new one, so a filter could answer "absent" for a key
// the store has (a false negative). Reading the store is always correct,
// only slower; the filters come back at the next start. (Rebuilding them
// from the new cluster at run time is left to package bloom.)
type filterSwitch struct {
	filtered, direct query.Store
	log              *slog.Logger
	off              atomic.Bool
}

// Switch is the read path's [queue.Participant]: it turns the filters off.
func (f *filterSwitch) Switch(_ context.Context, cfg queue.Config, _ time.Time) error {
	if !f.off.Swap(true) {
		f.log.Warn("bloom: Kafka cluster switched: reads go to the store, past the Bloom filters, until the next start", "brokers", cfg.Brokers)
	}
	return nil
}

func (f *filterSwitch) target() query.Store {
	if f.off.Load() {
		return f.direct
	}
	return f.filtered
}

// Read implements query.Store.
func (f *filterSwitch) Read(ctx context.Context, ns *feature.Namespace, keys []string, feats []*feature.Feature) ([]store.Row, error) {
	return f.target().Read(ctx, ns, keys, feats)
}

// ReadInto implements query.RowsStore when the store it reads does.
func (f *filterSwitch) ReadInto(ctx context.Context, ns *feature.Namespace, keys []string, feats []*feature.Feature, rows []store.Row) ([]store.Row, error) {
	t := f.target()
	if rs, ok := t.(query.RowsStore); ok {
		return rs.ReadInto(ctx, ns, keys, feats, rows)
	}
	return t.Read(ctx, ns, keys, feats)
}
