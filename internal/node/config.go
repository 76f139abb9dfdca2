package node

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/cairnfs/cairn/internal/api"
	"github.com/cairnfs/cairn/internal/auth"
	"github.com/cairnfs/cairn/internal/bloom"
	"github.com/cairnfs/cairn/internal/cache"
	"github.com/cairnfs/cairn/internal/config"
	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/health"
	"github.com/cairnfs/cairn/internal/metrics"
	"github.com/cairnfs/cairn/internal/queue"
	"github.com/cairnfs/cairn/internal/store/dynamo"
	"github.com/cairnfs/cairn/internal/store/redis"
	"github.com/cairnfs/cairn/internal/tlscert"
	"github.com/cairnfs/cairn/internal/ui"
	"github.com/cairnfs/cairn/internal/writer"
)

// Role is what a process is.
type Role int

const (
	// Dev is `cairn dev`: query server and writer in one process, with an
	// embedded broker and (unless a store is named) an embedded store.
	Dev Role = iota
	// Serve is `cairn serve`, a query server.
	Serve
	// Write is `cairn write`, a persistence writer.
	Write
	// BenchServer is `cairn bench-server`: a query server started by
	// `cairn bench`, without Kafka unless given brokers (--metrics).
	BenchServer
	// Topics is `cairn topics create`.
	Topics
	// Check is `cairn config`: every knob of every role and store is read
	// and validated, nothing is opened.
	Check
)

// String returns the role's command name.
func (r Role) String() string {
	switch r {
	case Dev:
		return "dev"
	case Serve:
		return "serve"
	case Write:
		return "write"
	case BenchServer:
		return "bench-server"
	case Topics:
		return "topics"
	case Check:
		return "config"
	}
	return fmt.Sprintf("Role(%d)", int(r))
}

// serves reports whether the role runs a query server; writes, whether it
// runs a persistence writer; kafka, whether it talks to Kafka.
func (r Role) serves() bool { return r == Dev || r == Serve || r == BenchServer || r == Check }
func (r Role) writes() bool { return r == Dev || r == Write || r == Check }
func (r Role) kafka() bool  { return r != BenchServer }

// Flags are the command-line values a command passes on; an empty field
// falls back to its knob (the commands give each flag its knob's value as
// default, so a flag given wins).
type Flags struct {
	Features string // --features (CAIRN_FEATURES)
	Store    string // --store (CAIRN_ONLINE_STORE)
	Brokers  string // --brokers (CAIRN_KAFKA_BROKERS)
	Addr     string // --addr (CAIRN_ADDR)
	DataDir  string // --data-dir, dev only (CAIRN_DATA_DIR)
	// NoMetrics is --metrics=false of `cairn write`: no metrics consumer.
	NoMetrics bool

	// Registry replaces the feature file (bench-server declares its own).
	Registry *feature.Registry
	// Topics are the topic settings of `cairn topics create` (its flags).
	Topics queue.TopicSpec
}

// Config is everything a process needs, read from the environment and the
// flags and validated once, by [Load].
type Config struct {
	Role Role
	// Features is the path of the feature registry, and Registry its
	// contents.
	Features string
	Registry *feature.Registry
	// Getenv reads the environment variables the feature file names as
	// ${NAME} (resolvers' URLs, headers and DSNs).
	Getenv func(string) string
	// StoreURI names the online store; Store holds its typed settings.
	StoreURI string
	Store    StoreConfig
	// Addr is the HTTP listen address (query server API; the writer's
	// health and metrics).
	Addr string
	// DataDir holds the embedded broker and store of `cairn dev`.
	DataDir string
	// EmbeddedBroker is set for `cairn dev` without brokers: it starts a
	// Kafka-protocol broker of its own under DataDir.
	EmbeddedBroker bool

	// TLS names the HTTP listener's certificate (CAIRN_TLS_CERT_FILE,
	// CAIRN_TLS_KEY_FILE); empty serves plain HTTP.
	TLS tlscert.Config

	// Kafka is whether the process talks to Kafka: every role but
	// bench-server, and bench-server given brokers (`cairn bench
	// --metrics`), whose query metrics then run as `cairn serve`'s.
	Kafka bool
	Queue queue.Config
	// Failover names the secondary Kafka cluster and the active one
	// (CAIRN_KAFKA_SECONDARY_*, CAIRN_KAFKA_ACTIVE, ...); its Primary is
	// Queue.
	Failover queue.FailoverConfig
	Topics   queue.TopicSpec
	Health   health.Config
	Writer   writer.Config
	API      api.Config
	Read     ReadConfig
	// UI samples this process's metrics for the /ui page of a query
	// server (not of bench-server).
	UI ui.ProcessConfig
	// UISource is what /ui draws (CAIRN_UI_SOURCE): "auto", "fleet" or
	// "process". Default "auto".
	UISource string
	// Auth is how the query server authenticates requests. bench-server
	// reads it too, so that `cairn bench --security` can measure what
	// authentication costs; without a keys file it serves its parent
	// only, openly, on a loopback address.
	Auth auth.Config
	// Metrics is the query-metrics pipeline (package metrics).
	Metrics MetricsConfig

	// GCHeapFloor is the heap floor in bytes (CAIRN_GC_HEAP_FLOOR_MIB; see
	// package gcfloor). 0 is off.
	GCHeapFloor uint64
	// ShutdownTimeout bounds in-flight requests and the writer's last batch
	// at stop (CAIRN_SHUTDOWN_TIMEOUT). Default 30s.
	ShutdownTimeout time.Duration
}

// MetricsConfig is a process's part of the query-metrics pipeline.
type MetricsConfig struct {
	// Aggregator is the query server's per-interval aggregation
	// (CAIRN_METRICS_INTERVAL).
	Aggregator metrics.AggregatorConfig
	// Consume runs the metrics consumer in `cairn write` and `cairn dev`
	// (--metrics=false of `cairn write` turns it off). Default true.
	Consume bool
	// Consumer configures the consumer and the rollup reader
	// (CAIRN_METRICS_GROUP, CAIRN_METRICS_RETENTION, CAIRN_TOPIC_PARTITIONS).
	Consumer metrics.ConsumerConfig
}

// StoreConfig holds the settings of the store the URI names; only the
// field of its scheme is used.
type StoreConfig struct {
	Scheme string
	// Dir is the embedded store's directory.
	Dir    string
	Dynamo dynamo.Config
	Redis  redis.Config
	// CreateDynamoTable is set by `cairn dev` when
	// DYNAMODB_CREATE_TABLES_IF_NOT_EXISTS is unset, so that the demo
	// runs against an empty local endpoint.
	CreateDynamoTable bool
}

// ReadConfig is the query server's read path in front of the store.
type ReadConfig struct {
	// Cache configures the namespace LRU cache (DYNAMODB_CACHED_NAMESPACES).
	Cache cache.Config
	// Bloom lists the namespaces with a Bloom filter (CAIRN_BLOOM_NAMESPACES).
	Bloom []bloom.Spec
	// BloomDebug reads the store even when the filter answers
	// (DYNAMODB_BLOOM_FILTER_DEBUG_MODE).
	BloomDebug bool
	// BloomLease is the trackers' lease (CAIRN_BLOOM_LEASE).
	BloomLease time.Duration
}

// Load reads and validates the configuration of role: every knob the role
// uses (for [Check], every knob of every role and store), the flags, and
// the feature registry. It opens nothing. Every problem is reported in the
// one error returned, once: a knob that does not parse is reported by the
// environment reader, and its default is what the checks of values see.
func Load(role Role, env *config.Env, f Flags) (*Config, error) {
	c := &Config{Role: role, Features: f.Features, StoreURI: f.Store, Addr: f.Addr, DataDir: f.DataDir, Topics: f.Topics,
		Getenv: env.Raw}
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	c.ShutdownTimeout = env.Duration("CAIRN_SHUTDOWN_TIMEOUT")
	mib := env.Int("CAIRN_GC_HEAP_FLOOR_MIB")
	if mib < 0 || mib > 1<<20 {
		add(fmt.Errorf("CAIRN_GC_HEAP_FLOOR_MIB=%d: want 0 (off) to 1048576", mib))
	} else {
		c.GCHeapFloor = uint64(mib) << 20
	}
	if c.ShutdownTimeout <= 0 {
		add(fmt.Errorf("CAIRN_SHUTDOWN_TIMEOUT=%v: want a positive duration", c.ShutdownTimeout))
	}

	// The feature registry.
	switch {
	case f.Registry != nil:
		c.Registry = f.Registry
	case role == Check || role == Topics:
	default:
		reg, err := feature.Load(c.Features)
		add(err)
		c.Registry = reg
	}

	// The online store.
	if role != Topics {
		if role == Dev && c.StoreURI == "" {
			c.StoreURI = "embedded://" + filepath.ToSlash(absPath(filepath.Join(c.DataDir, "store")))
		}
		st, err := loadStore(env, c.StoreURI, role == Check)
		add(err)
		c.Store = st
		if _, set := env.Value("DYNAMODB_CREATE_TABLES_IF_NOT_EXISTS"); !set && role == Dev {
			c.Store.CreateDynamoTable = true
		}
		// Every feature the process may read or write needs its id in the
		// lock file: a missing one is a start-up error naming it.
		if lock := c.Store.Dynamo.FeatureIDs; lock != nil && c.Registry != nil && c.Store.Scheme == dynamo.URIScheme {
			add(lock.Check(LockedFQNs(c.Registry)))
		}
	}

	// Kafka.
	c.Kafka = role.kafka() || role == BenchServer && f.Brokers != ""
	if c.Kafka {
		c.Queue = queue.Config{
			Brokers:         splitList(f.Brokers),
			TLS:             env.Bool("CAIRN_KAFKA_TLS"),
			SASLMechanism:   strings.ToUpper(env.String("CAIRN_KAFKA_SASL_MECHANISM")),
			SASLUser:        env.String("CAIRN_KAFKA_SASL_USERNAME"),
			SASLPassword:    env.String("CAIRN_KAFKA_SASL_PASSWORD"),
			PersistTopic:    env.String("CAIRN_KAFKA_PERSIST_TOPIC"),
			MetricsTopic:    env.String("CAIRN_KAFKA_METRICS_TOPIC"),
			DeadLetterTopic: env.String("CAIRN_KAFKA_DEAD_LETTER_TOPIC"),
			WriterGroup:     env.String("CAIRN_KAFKA_WRITER_GROUP"),
			ProduceTimeout:  env.Duration("CAIRN_KAFKA_PRODUCE_TIMEOUT"),
			MaxRecordBytes:  env.Int("CAIRN_KAFKA_MAX_RECORD_BYTES"),

			PersistBufferRecords:   env.Int("CAIRN_KAFKA_PERSIST_BUFFER_RECORDS"),
			PersistBufferBytes:     env.Int("CAIRN_KAFKA_PERSIST_BUFFER_BYTES"),
			MetricsBufferRecords:   env.Int("CAIRN_KAFKA_METRICS_BUFFER_RECORDS"),
			ResultsBufferRecords:   env.Int("CAIRN_KAFKA_RESULTS_BUFFER_RECORDS"),
			MetricsDeliveryTimeout: env.Duration("CAIRN_KAFKA_METRICS_DELIVERY_TIMEOUT"),

			TLSCAFile:           env.String("CAIRN_KAFKA_TLS_CA_FILE"),
			TLSCertFile:         env.String("CAIRN_KAFKA_TLS_CERT_FILE"),
			TLSKeyFile:          env.String("CAIRN_KAFKA_TLS_KEY_FILE"),
			SASLPasswordFile:    env.String("CAIRN_KAFKA_SASL_PASSWORD_FILE"),
			SASLPlainWithoutTLS: env.Bool("CAIRN_KAFKA_SASL_PLAIN_WITHOUT_TLS"),
		}
		c.Queue.EnsureDefaults()
		add(c.Queue.ReadFiles()) // a bad file is a start-up error
		c.EmbeddedBroker = role == Dev && len(c.Queue.Brokers) == 0
		check := c.Queue
		if c.EmbeddedBroker || role == Check && len(check.Brokers) == 0 {
			check.Brokers = []string{"embedded"} // known once the embedded broker listens
		}
		add(check.Validate())
		add(c.loadFailover(env))
	}
	if role == Topics || role == Check || role == Dev {
		if role != Topics {
			c.Topics = queue.TopicSpec{
				Partitions:        int32(env.Int("CAIRN_TOPIC_PARTITIONS")),
				ReplicationFactor: int16(env.Int("CAIRN_TOPIC_REPLICATION_FACTOR")),
				MinInsyncReplicas: env.Int("CAIRN_TOPIC_MIN_INSYNC_REPLICAS"),
				Retention:         env.Duration("CAIRN_TOPIC_RETENTION"),
			}
		}
		c.Topics.Timeout = env.Duration("CAIRN_TOPIC_CREATE_TIMEOUT")
		if role == Dev {
			// One broker: replication factor 1.
			c.Topics.ReplicationFactor, c.Topics.MinInsyncReplicas = 1, 1
		}
		c.Topics.EnsureDefaults()
		add(c.Topics.Validate())
	}

	// The query metrics: aggregated by query servers, rolled up by writers.
	if role == Dev || role == Serve || role == Write || role == Check || role == BenchServer && c.Kafka {
		c.Metrics.Aggregator = metrics.AggregatorConfig{Interval: env.Duration("CAIRN_METRICS_INTERVAL")}
		c.Metrics.Aggregator.EnsureDefaults()
		add(c.Metrics.Aggregator.Validate())
		c.Metrics.Consumer = metrics.ConsumerConfig{Group: env.String("CAIRN_METRICS_GROUP"),
			Retention: env.Duration("CAIRN_METRICS_RETENTION"), Partitions: env.Int("CAIRN_TOPIC_PARTITIONS")}
		c.Metrics.Consumer.EnsureDefaults()
		add(c.Metrics.Consumer.Validate())
		c.Metrics.Consume = role.writes() && !f.NoMetrics
		if c.Registry != nil {
			if _, ok := c.Registry.Namespace(metrics.StoreNamespace); ok {
				add(fmt.Errorf("%s: namespace %q is reserved for the metrics rollups: rename it", c.Features, metrics.StoreNamespace))
			}
		}
	}

	// Health probes, of every process that runs something.
	if role != Topics {
		c.Health = health.Config{
			ProbeInterval:    env.Duration("CAIRN_HEALTH_PROBE_INTERVAL"),
			FailureThreshold: env.Int("CAIRN_HEALTH_FAILURE_THRESHOLD"),
		}
		// The timeout's default follows a shorter interval.
		if _, set := env.Value("CAIRN_HEALTH_PROBE_TIMEOUT"); set {
			c.Health.ProbeTimeout = env.Duration("CAIRN_HEALTH_PROBE_TIMEOUT")
		}
		c.Health.EnsureDefaults()
		add(c.Health.Validate())
	}

	// The query server.
	if role.serves() {
		c.API = api.Config{
			MaxBodyBytes:      int64(env.Int("CAIRN_MAX_BODY_BYTES")),
			QueryTimeout:      env.Duration("CAIRN_QUERY_TIMEOUT"),
			ReadHeaderTimeout: env.Duration("CAIRN_HTTP_READ_HEADER_TIMEOUT"),
			ReadTimeout:       env.Duration("CAIRN_HTTP_READ_TIMEOUT"),
			WriteTimeout:      env.Duration("CAIRN_HTTP_WRITE_TIMEOUT"),
			IdleTimeout:       env.Duration("CAIRN_HTTP_IDLE_TIMEOUT"),
			ShutdownTimeout:   c.ShutdownTimeout,
		}
		c.API.EnsureDefaults()
		add(c.API.Validate())
		if role != BenchServer {
			add(c.loadReadPath(env))
			c.UI = ui.ProcessConfig{Interval: env.Duration("CAIRN_UI_SAMPLE_INTERVAL")}
			c.UI.EnsureDefaults()
			add(c.UI.Validate())
			switch c.UISource = env.String("CAIRN_UI_SOURCE"); c.UISource {
			case "auto", "fleet", "process":
			default:
				add(fmt.Errorf("CAIRN_UI_SOURCE=%q: want auto, fleet or process", c.UISource))
			}
		}
		add(c.loadAuth(env))
	}

	// The writer.
	if role.writes() {
		c.Writer = writer.Config{
			MaxBatchRecords: env.Int("CAIRN_WRITER_MAX_BATCH_RECORDS"),
			MaxBackoff:      env.Duration("CAIRN_WRITER_MAX_BACKOFF"),
			DrainTimeout:    c.ShutdownTimeout,
			InstanceID:      env.String("CAIRN_WRITER_INSTANCE_ID"),
			SessionTimeout:  env.Duration("CAIRN_WRITER_SESSION_TIMEOUT"),
			HealthWindow:    env.Duration("CAIRN_WRITER_HEALTH_WINDOW"),
			StoreWrites:     writer.StoreWrites(env.String("CAIRN_WRITER_STORE_WRITES")),
			// The seed's name, for every store: the writers' cache of
			// windowed features' buckets.
			UpdateCacheSize: env.Int("DYNAMODB_AGGREGATE_UPDATE_CACHE_SIZE"),
		}
		// Redis and the embedded store are per region: their writers are
		// always active (docs/multi-region.md, DynamoDB Global Tables).
		if c.Writer.StoreWrites == writer.StoreWritesStandby && (c.Store.Scheme != dynamo.URIScheme || len(c.Store.Dynamo.GlobalTableRegions) == 0) {
			add(errors.New("CAIRN_WRITER_STORE_WRITES=standby: only the writers of a DynamoDB global table's passive region stand by " +
				"(set DYNAMODB_GLOBAL_TABLE_REGIONS); with any other store each region's writers keep their own store warm"))
		}
	}
	if role.writes() || role.serves() {
		// Writers wait for the trackers of query servers: both read it.
		c.Read.BloomLease = env.Duration("CAIRN_BLOOM_LEASE")
		c.Writer.FilterLease = c.Read.BloomLease
	}
	if role.writes() {
		c.Writer.EnsureDefaults()
		add(c.Writer.Validate())
	}
	if role == Write {
		// The writer's HTTP address serves the Kafka failover endpoint
		// with the query servers' keys (admin scope).
		add(c.loadAuth(env))
	}

	if role == Dev || role == Serve || role == Write {
		if c.Addr == "" {
			add(errors.New("no HTTP listen address (--addr or CAIRN_ADDR)"))
		}
	}
	if role == Dev || role == Serve || role == Write || role == Check || role == BenchServer {
		c.TLS = tlscert.Config{CertFile: env.String("CAIRN_TLS_CERT_FILE"), KeyFile: env.String("CAIRN_TLS_KEY_FILE")}
		if err := c.TLS.Validate(); err != nil {
			add(err)
		} else if c.TLS.Enabled() {
			// The pair is read again when the listener starts; reading
			// it here lets `cairn config` and a start report a bad one.
			_, err := tlscert.Load(c.TLS, slog.New(slog.DiscardHandler))
			add(err)
		}
	}
	if role == Check {
		// `cairn status` reads its timeout itself; `cairn config` checks it.
		if d := env.Duration("CAIRN_STATUS_TIMEOUT"); d < 100*time.Millisecond {
			add(fmt.Errorf("CAIRN_STATUS_TIMEOUT=%v: want at least 100ms", d))
		}
	}
	if role == Dev && c.DataDir == "" {
		add(errors.New("no data directory (--data-dir or CAIRN_DATA_DIR)"))
	}

	// Knob syntax first: the checks above saw defaults in place of values
	// that did not parse, so nothing is reported twice.
	return c, errors.Join(append([]error{env.Err()}, errs...)...)
}

// loadFailover reads the secondary Kafka cluster's knobs: unset security
// knobs inherit the primary's values.
func (c *Config) loadFailover(env *config.Env) error {
	c.Failover = queue.FailoverConfig{
		Primary:   c.Queue,
		Active:    env.String("CAIRN_KAFKA_ACTIVE"),
		Rewind:    env.Duration("CAIRN_KAFKA_FAILOVER_REWIND"),
		AutoAfter: env.Duration("CAIRN_KAFKA_AUTO_FAILOVER_AFTER"),
	}
	var errs []error
	if brokers := env.List("CAIRN_KAFKA_SECONDARY_BROKERS"); len(brokers) > 0 {
		str := func(name string) *string {
			if v, ok := env.Value(name); ok && v != "" {
				return &v
			}
			return nil
		}
		boolean := func(name string) *bool {
			if v, ok := env.Value(name); ok && v != "" {
				b := env.Bool(name)
				return &b
			}
			return nil
		}
		sec := queue.Security{
			TLS:                 boolean("CAIRN_KAFKA_SECONDARY_TLS"),
			TLSCAFile:           str("CAIRN_KAFKA_SECONDARY_TLS_CA_FILE"),
			TLSCertFile:         str("CAIRN_KAFKA_SECONDARY_TLS_CERT_FILE"),
			TLSKeyFile:          str("CAIRN_KAFKA_SECONDARY_TLS_KEY_FILE"),
			SASLMechanism:       str("CAIRN_KAFKA_SECONDARY_SASL_MECHANISM"),
			SASLUser:            str("CAIRN_KAFKA_SECONDARY_SASL_USERNAME"),
			SASLPassword:        str("CAIRN_KAFKA_SECONDARY_SASL_PASSWORD"),
			SASLPasswordFile:    str("CAIRN_KAFKA_SECONDARY_SASL_PASSWORD_FILE"),
			SASLPlainWithoutTLS: boolean("CAIRN_KAFKA_SECONDARY_SASL_PLAIN_WITHOUT_TLS"),
		}
		if sec.SASLMechanism != nil {
			m := strings.ToUpper(*sec.SASLMechanism)
			sec.SASLMechanism = &m
		}
		s := queue.SecondaryConfig(c.Queue, brokers, sec, env.String("CAIRN_KAFKA_SECONDARY_TOPIC_PREFIX"))
		// The secondary's problems name the primary's knobs: say whose.
		const whose = "secondary Kafka cluster (CAIRN_KAFKA_SECONDARY_* knobs; those unset take the primary's value)"
		if err := s.ReadFiles(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", whose, err))
		}
		if err := s.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", whose, err))
		}
		c.Failover.Secondary = s
	}
	c.Failover.EnsureDefaults()
	errs = append(errs, c.Failover.Validate())
	return errors.Join(errs...)
}

// loadAuth reads the API's authentication knobs (for `cairn write`, those
// of its failover endpoint). `cairn serve` without a
// keys file must say CAIRN_API_AUTH=none, so that an API open to anyone
// who reaches it is a decision and not an omission; `cairn dev` without
// one runs open (and says so).
func (c *Config) loadAuth(env *config.Env) error {
	c.Auth = auth.Config{
		KeysFile:           env.String("CAIRN_API_KEYS_FILE"),
		Mode:               env.String("CAIRN_API_AUTH"),
		MetricsRequireAuth: env.Bool("CAIRN_METRICS_REQUIRE_AUTH"),
	}
	c.Auth.EnsureDefaults()
	err := c.Auth.Validate()
	if c.Role == Serve && c.Auth.Mode == auth.ModeKeys && c.Auth.KeysFile == "" {
		err = errors.Join(err, errors.New("no API keys: set CAIRN_API_KEYS_FILE (see `cairn keys new`), or CAIRN_API_AUTH=none to serve the API without authentication"))
	}
	// A writer without a secondary cluster may run without keys: its
	// failover endpoint is then not served.
	if c.Role == Write && c.Failover.HasSecondary() && c.Auth.Mode == auth.ModeKeys && c.Auth.KeysFile == "" {
		err = errors.Join(err, errors.New("no API keys for the writer's Kafka failover endpoint (CAIRN_KAFKA_SECONDARY_BROKERS is set): set CAIRN_API_KEYS_FILE (admin scope), or CAIRN_API_AUTH=none to serve it without authentication"))
	}
	return err
}

// loadReadPath reads the cache and Bloom filter knobs.
func (c *Config) loadReadPath(env *config.Env) error {
	var errs []error
	specs, err := bloom.ParseSpecs(env.String("CAIRN_BLOOM_NAMESPACES"))
	if err != nil {
		errs = append(errs, fmt.Errorf("CAIRN_BLOOM_NAMESPACES: %w", err))
	}
	c.Read.Bloom = specs
	c.Read.BloomDebug = env.Bool("DYNAMODB_BLOOM_FILTER_DEBUG_MODE")
	cached, err := cache.ParseNamespaces(env.String("DYNAMODB_CACHED_NAMESPACES"))
	if err != nil {
		errs = append(errs, fmt.Errorf("DYNAMODB_CACHED_NAMESPACES: %w", err))
	}
	c.Read.Cache = cache.DefaultConfig()
	c.Read.Cache.Namespaces = cached
	c.Read.Cache.CacheMisses = env.Bool("DYNAMODB_LRU_CACHE_CACHE_MISSES")
	c.Read.Cache.MaxBytes = int64(env.Int("CAIRN_CACHE_MAX_BYTES"))
	if len(cached) > 0 {
		errs = append(errs, c.Read.Cache.Validate())
	}
	if c.Registry != nil {
		for _, n := range cached {
			if _, ok := c.Registry.Namespace(n.Namespace); !ok {
				errs = append(errs, fmt.Errorf("DYNAMODB_CACHED_NAMESPACES: namespace %q is not in the registry", n.Namespace))
			}
		}
		for _, s := range specs {
			if _, ok := c.Registry.Namespace(s.Namespace); !ok {
				errs = append(errs, fmt.Errorf("CAIRN_BLOOM_NAMESPACES: namespace %q is not in the registry", s.Namespace))
			}
		}
	}
	if len(specs) > 0 && c.Store.Scheme != "" && !scans(c.Store.Scheme) {
		errs = append(errs, fmt.Errorf("CAIRN_BLOOM_NAMESPACES: the %s store cannot list its keys, so it cannot have a Bloom filter in front of it", c.Store.Scheme))
	}
	return errors.Join(errs...)
}

// StoreFromEnv reads the settings of the store uri names, with every
// problem of the URI and of the store's knobs.
func StoreFromEnv(env *config.Env, uri string) (StoreConfig, error) {
	sc, err := loadStore(env, uri, false)
	return sc, errors.Join(env.Err(), err)
}

// loadStore reads the settings of the store uri names. With all, the knobs
// of every kind of store are read and checked, whatever uri names (for
// `cairn config`).
func loadStore(env *config.Env, uri string, all bool) (StoreConfig, error) {
	var sc StoreConfig
	var errs []error
	if uri == "" && !all {
		errs = append(errs, errors.New("no online store configured (--store or CAIRN_ONLINE_STORE): want embedded:///dir, dynamodb:///table?region=R or redis://host:port/db"))
	} else if uri != "" {
		u, err := url.Parse(uri)
		switch {
		case err != nil:
			// url.Error quotes the whole URI, and its cause may quote
			// part of a password (an invalid escape): neither is shown
			// of a URI with a password.
			var uerr *url.Error
			if errors.As(err, &uerr) {
				err = uerr.Err
			}
			if shown := config.RedactURI(uri); shown != uri {
				errs = append(errs, fmt.Errorf("store URI %q does not parse", shown))
			} else {
				errs = append(errs, fmt.Errorf("store URI %q: %w", uri, err))
			}
		case !knownScheme(u.Scheme):
			errs = append(errs, fmt.Errorf("store URI %q: unknown scheme %q (want embedded, dynamodb, redis, rediss, valkey or valkeys)", config.RedactURI(uri), u.Scheme))
		default:
			sc.Scheme = u.Scheme
		}
	}
	if sc.Scheme == "embedded" {
		dir, err := embeddedDir(uri)
		errs = append(errs, err)
		sc.Dir = dir
	}
	if sc.Scheme == dynamo.URIScheme || all {
		cfg, err := dynamoConfig(env, uri, sc.Scheme == dynamo.URIScheme)
		errs = append(errs, err)
		sc.Dynamo = cfg
	}
	if isRedis(sc.Scheme) || all {
		cfg, err := redisConfig(env, uri, isRedis(sc.Scheme))
		errs = append(errs, err)
		sc.Redis = cfg
	}
	return sc, errors.Join(errs...)
}

func knownScheme(s string) bool { return s == "embedded" || s == dynamo.URIScheme || isRedis(s) }

func isRedis(s string) bool { return s == "redis" || s == "rediss" || s == "valkey" || s == "valkeys" }

// scans reports whether a store of the scheme can list its keys (a Bloom
// filter needs it).
func scans(scheme string) bool { return knownScheme(scheme) }

// embeddedDir returns the directory an embedded:// URI names.
func embeddedDir(uri string) (string, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return "", err
	}
	dir := u.Path
	if u.Opaque != "" {
		dir = u.Opaque
	}
	if u.Host != "" && u.Host != "localhost" {
		dir = filepath.Join(u.Host, dir) // embedded://relative/dir
	}
	if dir == "" {
		return "", fmt.Errorf("store URI %q: no directory (want embedded:///path/to/dir)", uri)
	}
	return dir, nil
}

// dynamoConfig returns the DynamoDB store's configuration: the table,
// region and endpoint from the store URI (when named), every DYNAMODB_*
// knob of the store from env. Problems of knob syntax are left to env.Err.
func dynamoConfig(env *config.Env, uri string, named bool) (dynamo.Config, error) {
	cfg := dynamo.DefaultConfig()
	var uriErr error
	if named {
		var parsed dynamo.Config
		if parsed, uriErr = dynamo.ParseURI(uri); uriErr == nil {
			cfg = parsed
		}
	}
	cfg.NumClientThreads = env.Int("DYNAMODB_NUM_CLIENT_THREADS")
	cfg.NumClientConnections = env.Int("DYNAMODB_NUM_CLIENT_CONNECTIONS")
	cfg.NumSerdeThreads = env.Int("DYNAMODB_NUM_SERDE_THREADS")
	cfg.GetItemMinBatchSize = env.Int("DYNAMODB_GETITEM_MIN_BATCH_SIZE")
	cfg.GetItemMinBatchConcurrency = env.Int("DYNAMODB_GETITEM_MIN_BATCH_CONCURRENCY")
	cfg.EnableRequestRacing = env.Bool("DYNAMODB_ENABLE_REQUEST_RACING")
	cfg.RequestRacingWaitTime, _ = env.Millis("DYNAMODB_REQUEST_RACING_WAIT_TIME")
	cfg.CheckTSForBulkWrites = env.Bool("DYNAMODB_CHECK_TS_FOR_BULK_WRITES")
	cfg.OnlyWriteNewerValues = env.Bool("DYNAMODB_ONLY_WRITE_NEWER_VALUES")
	if d, ok := env.Millis("DYNAMODB_TRANSACTION_WRITE_CONFLICT_MIN_RETRY_MILLIS"); ok {
		cfg.TransactionWriteConflictMinRetry = d
	}
	cfg.TransactionWriteConflictMaxRetries = env.Int("DYNAMODB_TRANSACTION_WRITE_CONFLICT_MAX_RETRIES")
	cfg.AggregateUpdateCacheSize = env.Int("DYNAMODB_AGGREGATE_UPDATE_CACHE_SIZE")
	cfg.MaxRetries = env.Int("DYNAMODB_MAX_RETRIES")
	cfg.RetryScaleFactor = env.Int("DYNAMODB_RETRY_SCALE_FACTOR")
	cfg.RequestTimeout, _ = env.Millis("DYNAMODB_REQUEST_TIMEOUT_MS")
	cfg.WarmupFQNMapping = env.Bool("DYNAMODB_WARMUP_FQN_MAPPING")
	cfg.CreateTableIfNotExists = env.Bool("DYNAMODB_CREATE_TABLES_IF_NOT_EXISTS")
	cfg.GlobalTableRegions = env.List("DYNAMODB_GLOBAL_TABLE_REGIONS")
	if path := env.String("CAIRN_FEATURES_LOCK"); path != "" {
		lock, err := dynamo.ReadLockFile(path)
		if err != nil {
			return cfg, errors.Join(uriErr, err)
		}
		cfg.FeatureIDs = lock
	}
	if uriErr != nil {
		return cfg, uriErr
	}
	check := cfg
	if !named {
		check.Table = "knobs-only" // only the knobs are checked: no table is named
	}
	return cfg, check.Validate()
}

// redisConfig maps the URI (when named) and the CAIRN_REDIS_* knobs onto
// redis.Config.
func redisConfig(env *config.Env, uri string, named bool) (redis.Config, error) {
	cfg := redis.DefaultConfig()
	var uriErr error
	if named {
		var parsed redis.Config
		if parsed, uriErr = redis.ParseURI(uri); uriErr == nil {
			cfg = parsed
		}
	}
	cfg.PoolSize = env.Int("CAIRN_REDIS_POOL_SIZE")
	cfg.DialTimeout = env.Duration("CAIRN_REDIS_DIAL_TIMEOUT")
	cfg.ReadTimeout = env.Duration("CAIRN_REDIS_READ_TIMEOUT")
	cfg.WriteTimeout = env.Duration("CAIRN_REDIS_WRITE_TIMEOUT")
	cfg.MaxRetries = env.Int("CAIRN_REDIS_MAX_RETRIES")
	if uriErr != nil {
		return cfg, uriErr
	}
	check := cfg
	if !named {
		check.Addr = "127.0.0.1:6379" // only the knobs are checked: no server is named
	}
	return cfg, check.Validate()
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func absPath(p string) string {
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return p
}

// LockedFQNs returns every feature name whose short id the feature lock
// file must hold: the registry's features and the metrics rollups'.
// `cairn features lock` adds these, and a process with a lock file refuses
// to start while one is missing.
func LockedFQNs(reg *feature.Registry) []string {
	// "rollup" is the rollups' one feature (package metrics).
	return append(reg.FQNs(), metrics.StoreNamespace+".rollup")
}

// featureIDsCheck returns, when the store takes its ids from a lock file,
// the check a reloaded feature file must pass: every feature has an id in
// it. A feature file refused keeps the features in use, so records naming a
// new feature pause their partition (reported on /readyz) until the
// process restarts with a lock file holding it, instead of failing every
// store write. nil without a lock file.
func (c *Config) featureIDsCheck() func(*feature.Registry) error {
	lock := c.Store.Dynamo.FeatureIDs
	if lock == nil || c.Store.Scheme != dynamo.URIScheme {
		return nil
	}
	return func(reg *feature.Registry) error { return lock.Check(LockedFQNs(reg)) }
}
