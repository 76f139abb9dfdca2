package node

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/store"
	"github.com/cairnfs/cairn/internal/store/dynamo"
	"github.com/cairnfs/cairn/internal/store/embedded"
	"github.com/cairnfs/cairn/internal/store/redis"
)

// Store is what a process needs of an online store: the query engine reads
// it, the writer writes it, and the process closes it.
type Store interface {
	Read(ctx context.Context, ns *feature.Namespace, keys []string, feats []*feature.Feature) ([]store.Row, error)
	Write(ctx context.Context, writes []store.EntityWrite) error
	Close() error
}

// OpenStore opens the store sc describes.
func OpenStore(ctx context.Context, sc StoreConfig, reg prometheus.Registerer, log *slog.Logger) (Store, error) {
	switch {
	case sc.Scheme == "embedded":
		return embedded.Open(sc.Dir, embedded.Options{Logger: log})
	case sc.Scheme == dynamo.URIScheme:
		cfg := sc.Dynamo
		if sc.CreateDynamoTable {
			cfg.CreateTableIfNotExists = true
		}
		return dynamo.Open(ctx, cfg, reg, log)
	case isRedis(sc.Scheme):
		return redis.Open(ctx, sc.Redis, reg, log)
	}
	return nil, fmt.Errorf("no online store of scheme %q", sc.Scheme)
}
