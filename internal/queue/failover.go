package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Cluster names: the primary Kafka cluster (CAIRN_KAFKA_BROKERS) and the
// secondary one MSK Replicator copies it to (CAIRN_KAFKA_SECONDARY_BROKERS).
const (
	Primary   = "primary"
	Secondary = "secondary"
)

// FailoverConfig names the two clusters of a two-region deployment and
// which one is active.
type FailoverConfig struct {
	// Primary is the primary cluster's configuration. Required.
	Primary Config
	// Secondary is the secondary cluster's configuration, topic names
	// already prefixed (see [SecondaryConfig]); no brokers means no
	// secondary. Default none.
	Secondary Config
	// Active is the cluster in use at start: Primary or Secondary.
	// Default Primary (CAIRN_KAFKA_ACTIVE).
	Active string
	// Rewind is how far before the failover time a writer starts a
	// partition whose replicated committed offset is missing or older.
	// Default 5m (CAIRN_KAFKA_FAILOVER_REWIND).
	Rewind time.Duration
	// AutoAfter switches to the other cluster once the active one has been
	// unreachable this long; 0 is off. Default 0
	// (CAIRN_KAFKA_AUTO_FAILOVER_AFTER).
	AutoAfter time.Duration
}

// EnsureDefaults fills zero fields with their defaults.
func (c *FailoverConfig) EnsureDefaults() {
	if c.Active == "" {
		c.Active = Primary
	}
	if c.Rewind == 0 {
		c.Rewind = 5 * time.Minute
	}
}

// HasSecondary reports whether a secondary cluster is configured.
func (c FailoverConfig) HasSecondary() bool { return len(c.Secondary.Brokers) > 0 }

// Validate reports every problem with the failover settings (each cluster's
// own settings are validated by its Config).
func (c *FailoverConfig) Validate() error {
	var errs []error
	switch c.Active {
	case Primary:
	case Secondary:
		if !c.HasSecondary() {
			errs = append(errs, errors.New("queue: CAIRN_KAFKA_ACTIVE=secondary needs CAIRN_KAFKA_SECONDARY_BROKERS"))
		}
	default:
		errs = append(errs, fmt.Errorf("queue: CAIRN_KAFKA_ACTIVE=%q: want primary or secondary", c.Active))
	}
	if c.Rewind < time.Second {
		errs = append(errs, fmt.Errorf("queue: CAIRN_KAFKA_FAILOVER_REWIND=%v: want at least 1s", c.Rewind))
	}
	if c.AutoAfter < 0 || c.AutoAfter > 0 && c.AutoAfter < time.Second {
		errs = append(errs, fmt.Errorf("queue: CAIRN_KAFKA_AUTO_FAILOVER_AFTER=%v: want 0 (off) or at least 1s", c.AutoAfter))
	}
	if c.AutoAfter > 0 && !c.HasSecondary() {
		errs = append(errs, errors.New("queue: CAIRN_KAFKA_AUTO_FAILOVER_AFTER needs CAIRN_KAFKA_SECONDARY_BROKERS"))
	}
	if c.HasSecondary() && slices.Equal(c.Primary.Brokers, c.Secondary.Brokers) {
		errs = append(errs, errors.New("queue: CAIRN_KAFKA_SECONDARY_BROKERS names the primary's brokers: want the other cluster's"))
	}
	return errors.Join(errs...)
}

// Security is the connection settings of one cluster, as the
// CAIRN_KAFKA_SECONDARY_* knobs give them: a nil field is unset and
// inherits the primary's value.
type Security struct {
	TLS                     *bool
	TLSCAFile               *string
	TLSCertFile, TLSKeyFile *string
	SASLMechanism           *string
	SASLUser                *string
	SASLPassword            *string
	SASLPasswordFile        *string
	SASLPlainWithoutTLS     *bool
}

// SecondaryConfig returns the secondary cluster's configuration: the
// primary's, with brokers, the security settings s sets, and every topic
// name prefixed by topicPrefix (MSK Replicator's
// PREFIXED_WITH_SOURCE_CLUSTER_ALIAS naming; empty for IDENTICAL). Consumer
// group names are kept: the replicator does not rename groups. A SASL user
// set in s does not inherit the primary's password. Call ReadFiles on the
// result.
func SecondaryConfig(primary Config, brokers []string, s Security, topicPrefix string) Config {
	c := primary
	c.files = nil
	c.Brokers = brokers
	set := func(dst *string, v *string) {
		if v != nil {
			*dst = *v
		}
	}
	if s.TLS != nil {
		c.TLS = *s.TLS
	}
	if s.SASLPlainWithoutTLS != nil {
		c.SASLPlainWithoutTLS = *s.SASLPlainWithoutTLS
	}
	set(&c.TLSCAFile, s.TLSCAFile)
	set(&c.TLSCertFile, s.TLSCertFile)
	set(&c.TLSKeyFile, s.TLSKeyFile)
	set(&c.SASLMechanism, s.SASLMechanism)
	if s.SASLUser != nil {
		c.SASLUser, c.SASLPassword, c.SASLPasswordFile = *s.SASLUser, "", ""
	}
	if s.SASLPassword != nil || s.SASLPasswordFile != nil {
		c.SASLPassword, c.SASLPasswordFile = "", ""
	}
	set(&c.SASLPassword, s.SASLPassword)
	set(&c.SASLPasswordFile, s.SASLPasswordFile)
	c.PersistTopic = topicPrefix + c.PersistTopic
	c.MetricsTopic = topicPrefix + c.MetricsTopic
	c.DeadLetterTopic = topicPrefix + c.DeadLetterTopic
	return c
}

// Participant is one Kafka client's part in a switch: it moves its client
// to the cluster cfg describes (full configuration, topics included) and
// returns once it has, or why it could not. at is the failover time, from
// which writers rewind. It must return when ctx ends.
type Participant func(ctx context.Context, cfg Config, at time.Time) error

// SwitchError is what [Failover.Switch] returns when some participants did
// not switch: they stay on their cluster, and the next Switch to the same
// cluster tries them again.
type SwitchError struct {
	// To is the cluster asked for.
	To string
	// Failed maps the name of each participant that did not switch to why.
	Failed map[string]error
}

// Error implements error.
func (e *SwitchError) Error() string {
	names := make([]string, 0, len(e.Failed))
	for n := range e.Failed {
		names = append(names, n)
	}
	slices.Sort(names)
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s: %v", n, e.Failed[n])
	}
	return fmt.Sprintf("queue: switch to %s: %s", e.To, strings.Join(parts, "; "))
}

// ErrUnknownCluster is returned by Switch for a cluster that is neither
// Primary nor a configured Secondary.
var ErrUnknownCluster = errors.New("queue: unknown Kafka cluster")

// Failover is the switch between the primary and the secondary Kafka
// cluster of a process: every Kafka client registers a [Participant], and
// Switch moves them all. Its methods are safe for concurrent use; switches
// are serialized.
type Failover struct {
	cfg FailoverConfig
	log *slog.Logger

	active    *prometheus.GaugeVec
	failovers *prometheus.CounterVec

	// switching serializes Switch.
	switching sync.Mutex
	mu        struct {
		sync.Mutex
		// active is the cluster of the latest Switch (or the start).
		active string
		parts  []*participant
	}
}

type participant struct {
	name string
	fn   Participant
	on   string // the cluster it uses; guarded by Failover.mu
}

// NewFailover returns the failover switch of cfg, starting on cfg.Active.
// Its metrics are cairn_kafka_active_cluster (1 for the active cluster, 0
// for the other) and cairn_kafka_failovers_total.
func NewFailover(cfg FailoverConfig, reg prometheus.Registerer, log *slog.Logger) (*Failover, error) {
	cfg.EnsureDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &Failover{cfg: cfg, log: log,
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cairn_kafka_active_cluster",
			Help: "1 for the Kafka cluster this process uses (primary or secondary), 0 for the other.",
		}, []string{"cluster"}),
		failovers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_kafka_failovers_total",
			Help: "Switches of the active Kafka cluster, by cluster switched to and outcome (ok: every client switched; error: some did not, and stay where they were).",
		}, []string{"to", "outcome"}),
	}
	for _, c := range []string{Primary, Secondary} {
		for _, o := range []string{"ok", "error"} {
			f.failovers.WithLabelValues(c, o)
		}
	}
	f.mu.active = cfg.Active
	f.setGauge(cfg.Active)
	if reg != nil {
		if err := errors.Join(reg.Register(f.active), reg.Register(f.failovers)); err != nil {
			return nil, fmt.Errorf("queue: register failover metrics: %w", err)
		}
	}
	return f, nil
}

func (f *Failover) setGauge(active string) {
	for _, c := range []string{Primary, Secondary} {
		v := 0.0
		if c == active {
			v = 1
		}
		f.active.WithLabelValues(c).Set(v)
	}
}

// Active returns the active cluster: Primary or Secondary.
func (f *Failover) Active() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mu.active
}

// Config returns the configuration of cluster, and whether it is
// configured.
func (f *Failover) Config(cluster string) (Config, bool) {
	switch {
	case cluster == Primary:
		return f.cfg.Primary, true
	case cluster == Secondary && f.cfg.HasSecondary():
		return f.cfg.Secondary, true
	}
	return Config{}, false
}

// ActiveConfig returns the active cluster's configuration: what a client
// created now connects to.
func (f *Failover) ActiveConfig() Config {
	c, _ := f.Config(f.Active())
	return c
}

// Settings returns the failover settings.
func (f *Failover) Settings() FailoverConfig { return f.cfg }

// Register adds a participant, which uses the cluster active now (create
// its client from ActiveConfig before registering, and not during a
// Switch).
func (f *Failover) Register(name string, p Participant) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mu.parts = append(f.mu.parts, &participant{name: name, fn: p, on: f.mu.active})
}

// Clusters returns the cluster each participant uses, by name.
func (f *Failover) Clusters() map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := make(map[string]string, len(f.mu.parts))
	for _, p := range f.mu.parts {
		m[p.name] = p.on
	}
	return m
}

// Switch makes to the active cluster: every participant not yet on it is
// given to's configuration and the failover time (now), concurrently, and
// Switch returns once each has switched or failed. From its start, Active
// is to. Participants that failed stay where they were and are named in a
// *SwitchError; calling Switch again with the same cluster retries them. A
// Switch to the cluster every participant already uses does nothing.
func (f *Failover) Switch(ctx context.Context, to string) error {
	cfg, ok := f.Config(to)
	if !ok {
		if to == Secondary {
			return fmt.Errorf("%w: %q (CAIRN_KAFKA_SECONDARY_BROKERS is not set)", ErrUnknownCluster, to)
		}
		return fmt.Errorf("%w: %q: want primary or secondary", ErrUnknownCluster, to)
	}
	f.switching.Lock()
	defer f.switching.Unlock()
	f.mu.Lock()
	from := f.mu.active
	f.mu.active = to
	var todo []*participant
	for _, p := range f.mu.parts {
		if p.on != to {
			todo = append(todo, p)
		}
	}
	f.mu.Unlock()
	f.setGauge(to)
	if len(todo) == 0 {
		return nil
	}
	at := time.Now()
	f.log.Warn("kafka: switching the active cluster", "from", from, "to", to, "brokers", cfg.Brokers, "clients", len(todo))
	errs := make([]error, len(todo))
	var wg sync.WaitGroup
	for i, p := range todo {
		wg.Go(func() { errs[i] = p.fn(ctx, cfg, at) })
	}
	wg.Wait()
	serr := &SwitchError{To: to, Failed: map[string]error{}}
	f.mu.Lock()
	for i, p := range todo {
		if errs[i] != nil {
			serr.Failed[p.name] = errs[i]
			continue
		}
		p.on = to
	}
	f.mu.Unlock()
	if len(serr.Failed) > 0 {
		f.failovers.WithLabelValues(to, "error").Inc()
		f.log.Error("kafka: some clients did not switch cluster", "to", to, "err", serr)
		return serr
	}
	f.failovers.WithLabelValues(to, "ok").Inc()
	f.log.Warn("kafka: active cluster switched", "from", from, "to", to, "took", time.Since(at).Round(time.Millisecond))
	return nil
}

// RunAuto switches to the other cluster once the active one has failed
// every probe ([Probe]) for AutoAfter, probing every AutoAfter/5 (1s to
// 10s); it returns when ctx ends. With AutoAfter 0 or no secondary it only
// waits for ctx. A failed switch is retried at the next probe that finds
// the active cluster still failing. See docs/multi-region.md for why this
// is off by default.
func (f *Failover) RunAuto(ctx context.Context) error {
	after := f.cfg.AutoAfter
	if after <= 0 || !f.cfg.HasSecondary() {
		<-ctx.Done()
		return nil
	}
	every := min(max(after/5, time.Second), 10*time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	var since time.Time // first failed probe of the current run; zero when healthy
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		active := f.Active()
		pctx, cancel := context.WithTimeout(ctx, every)
		err := Probe(pctx, f.ActiveConfig())
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			since = time.Time{}
			continue
		}
		now := time.Now()
		if since.IsZero() {
			since = now
		}
		if now.Sub(since) < after {
			continue
		}
		to := Primary
		if active == Primary {
			to = Secondary
		}
		f.log.Error("kafka: active cluster unreachable; switching automatically (CAIRN_KAFKA_AUTO_FAILOVER_AFTER)",
			"from", active, "to", to, "failing_since", since, "err", err)
		if err := f.Switch(ctx, to); err == nil {
			since = time.Time{}
		}
	}
}
