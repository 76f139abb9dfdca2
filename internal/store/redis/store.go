package redis

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	goredis "github.com/redis/go-redis/v9"
)

// errClosed is returned by calls on a closed Store.
var errClosed = errors.New("redis: store is closed")

// Store is a client of a Valkey or Redis server (or cluster) holding
// cairn's online store. It is safe for concurrent use.
type Store struct {
	cfg    Config
	client goredis.UniversalClient
	// reads are the read connections of a single server; nil for a
	// cluster, which is read through client (readconn.go).
	reads   *readPool
	scripts scripts
	ids     *mapping
	m       *metrics
	log     *slog.Logger
	closed  atomic.Bool
}

// Open connects to the server cfg names, checks that it answers (PING),
// loads the feature-id mapping and the scripts. Metrics are registered with
// reg unless it is nil; log may be nil.
func Open(ctx context.Context, cfg Config, reg prometheus.Registerer, log *slog.Logger) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	setClientLogger(log.With("component", "redis"))
	s := &Store{
		cfg:     cfg,
		client:  NewClient(cfg),
		scripts: newScripts(),
		ids:     newMapping(MappingKey(cfg.KeyPrefix)),
		m:       m,
		log:     log.With("component", "redis", "addr", cfg.address(), "prefix", cfg.KeyPrefix),
	}
	if !cfg.Clustered {
		s.reads = newReadPool(cfg, tlsConfig(cfg))
		s.reads.onDial = func(err error) { m.readDials.WithLabelValues(outcome(err)).Inc() }
		s.reads.onRetry = m.readRetries.Inc
	}
	fail := func(err error) (*Store, error) {
		s.closeReads()
		_ = s.client.Close()
		m.unregister(reg)
		return nil, err
	}
	if err := s.ping(ctx); err != nil {
		return fail(err)
	}
	if err := s.loadIDs(ctx); err != nil {
		return fail(err)
	}
	if err := s.loadScripts(ctx); err != nil {
		return fail(err)
	}
	ids := s.ids.snapshot()
	s.log.Info("redis store open", "clustered", cfg.Clustered, "tls", cfg.TLS,
		"mapped_features", len(ids.byFQN), "generation", ids.gen)
	return s, nil
}

// Bounds of the jittered exponential backoff between retries.
const (
	minRetryBackoff = 8 * time.Millisecond
	maxRetryBackoff = 512 * time.Millisecond
)

// NewClient returns a go-redis client for cfg, configured exactly as the
// store configures its own, so that a tool measuring the server's bare
// round trips (cairn bench) pays what the store pays. It connects lazily.
func NewClient(cfg Config) goredis.UniversalClient {
	maxRetries := cfg.MaxRetries
	if maxRetries == 0 {
		maxRetries = -1 // go-redis reads 0 as "its default"
	}
	// A cluster client when Clustered, else a client of one server.
	return goredis.NewUniversalClient(&goredis.UniversalOptions{
		Addrs:           []string{cfg.Addr},
		IsClusterMode:   cfg.Clustered,
		Username:        cfg.Username,
		Password:        cfg.Password,
		DB:              cfg.DB,
		TLSConfig:       tlsConfig(cfg),
		MaxRetries:      maxRetries,
		MinRetryBackoff: minRetryBackoff,
		MaxRetryBackoff: maxRetryBackoff,
		DialTimeout:     cfg.DialTimeout,
		ReadTimeout:     cfg.ReadTimeout,
		WriteTimeout:    cfg.WriteTimeout,
		PoolSize:        cfg.PoolSize,
		// One dial attempt per connection: retries are MaxRetries'
		// business, so that an outage fails fast.
		DialerRetries:         1,
		ContextTimeoutEnabled: true,
		// Pipelines share the one pool that PoolSize sizes.
		PipelinePoolSize: -1,
	})
}

// tlsConfig returns the TLS configuration of connections to cfg's server,
// nil without TLS.
func tlsConfig(cfg Config) *tls.Config {
	if !cfg.TLS {
		return nil
	}
	host, _, _ := net.SplitHostPort(cfg.Addr)
	return &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
}

// closeReads closes the read connections, if any.
func (s *Store) closeReads() {
	if s.reads != nil {
		s.reads.close()
	}
}

// ping checks that the server answers.
func (s *Store) ping(ctx context.Context) error {
	start := time.Now()
	err := s.client.Ping(ctx).Err()
	s.m.observe(opPing, start, err)
	if err != nil {
		return fmt.Errorf("redis: ping %s: %w", s.cfg.address(), err)
	}
	return nil
}

// Close releases the Store's connections. Data written stays in the
// server. Calls after Close fail.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.closeReads()
	if err := s.client.Close(); err != nil {
		return fmt.Errorf("redis: close client of %s: %w", s.cfg.address(), err)
	}
	return nil
}

// EntityKey returns the key of the hash holding the entity key of
// namespace ns in a store whose keys start with prefix (Config.KeyPrefix):
// the prefix, then the namespace and the key, separated by a colon
// (namespace names have none) and wrapped in braces, Redis Cluster's hash
// tag, so that whatever is ever stored for the entity lives in one slot.
// It is the store's own layout, exported for tools that read the server
// directly (cairn bench's floor client).
func EntityKey(prefix, ns, key string) string {
	return prefix + "{" + ns + ":" + key + "}"
}

// MappingKey returns the key of the feature-id mapping hash in a store whose
// keys start with prefix: a hash from each FQN to its short id, the name of
// that feature's field in every entity hash.
func MappingKey(prefix string) string { return prefix + "ids" }

// MarkerField is the field every entity hash has, whatever features it
// holds (the generation it was written under); an entity exists when it
// does.
const MarkerField = markerField

// entityKey returns the key of the hash of entity key in namespace ns.
func (s *Store) entityKey(ns, key string) string {
	return EntityKey(s.cfg.KeyPrefix, ns, key)
}
