package bloom

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/lograte"
	"github.com/cairnfs/cairn/internal/queue"
)

// Scanner lists the entity keys a store holds.
type Scanner interface {
	// ScanKeys calls fn with every key of ns stored when the scan starts
	// (entities written during the scan may or may not be seen).
	ScanKeys(ctx context.Context, ns *feature.Namespace, fn func(key string) error) error
}

// TrackerConfig configures a Tracker.
type TrackerConfig struct {
	// Specs lists the namespaces to filter; zero fields of a Spec take
	// their documented defaults. Required.
	Specs []Spec
	// Lease bounds how long a tracker can hold writes back, and how long
	// it answers "absent" without proof that it is keeping up.
	//
	// The tracker renews its lease (records its position with a new
	// heartbeat) only while it keeps up with the topic: its position must
	// have reached the end offsets it read at most Lease/4 earlier. It
	// answers "absent" only within Lease/2 of sending its last renewal.
	// Writers ignore a tracker whose heartbeat has not changed for a
	// Lease, or that has not read past the batch they hold for a Lease.
	// Writers and trackers must use the same value. Default 10s.
	Lease time.Duration
	// CommitInterval is how often an advanced position is recorded; it
	// bounds the delay a tracker adds to writes. Default 20ms.
	CommitInterval time.Duration
	// GroupPrefix prefixes the consumer groups trackers record their
	// positions in. Default "cairn-bloom.".
	GroupPrefix string
	// ID names this tracker; its group is GroupPrefix+ID. Default random.
	ID string
	// MaxExpectedKeys caps the sizing of a filter rebuilt after it
	// saturated: a rebuild doubles Spec.ExpectedKeys up to this, and a
	// filter saturated at the cap is kept (its false-positive rate climbs;
	// cairn_bloom_saturated and cairn_bloom_rebuilds_capped_total report
	// it). At most, and by default, [MaxExpectedKeys].
	MaxExpectedKeys uint
}

// DefaultLease is the default TrackerConfig.Lease.
const DefaultLease = 10 * time.Second

// MaxExpectedKeys is the largest sizing of a filter, in keys: about 80 GiB
// of memory at a 1% false-positive rate.
const MaxExpectedKeys = 1 << 36

// EnsureDefaults fills zero fields with their defaults.
func (c *TrackerConfig) EnsureDefaults() {
	if c.Lease == 0 {
		c.Lease = DefaultLease
	}
	if c.CommitInterval == 0 {
		c.CommitInterval = 20 * time.Millisecond
	}
	if c.GroupPrefix == "" {
		c.GroupPrefix = DefaultGroupPrefix
	}
	if c.ID == "" {
		c.ID = rand.Text()
	}
	if c.MaxExpectedKeys == 0 {
		c.MaxExpectedKeys = MaxExpectedKeys
	}
	c.Specs = slices.Clone(c.Specs) // the caller's slice is left alone
	for i := range c.Specs {
		c.Specs[i].ensureDefaults()
	}
}

// DefaultGroupPrefix is the default TrackerConfig.GroupPrefix.
const DefaultGroupPrefix = "cairn-bloom."

// Validate reports every problem with c.
func (c *TrackerConfig) Validate(reg *feature.Registry) error {
	var errs []error
	if len(c.Specs) == 0 {
		errs = append(errs, errors.New("bloom: no namespaces to filter"))
	}
	for _, s := range c.Specs {
		if _, ok := reg.Namespace(s.Namespace); !ok {
			errs = append(errs, fmt.Errorf("bloom: namespace %q is not in the registry", s.Namespace))
		}
		for _, err := range s.problems(c.MaxExpectedKeys) {
			errs = append(errs, fmt.Errorf("bloom: namespace %q: %w", s.Namespace, err))
		}
	}
	if c.Lease < time.Second {
		errs = append(errs, fmt.Errorf("bloom: lease %v: want at least 1s", c.Lease))
	}
	if c.CommitInterval <= 0 || c.CommitInterval > c.Lease/8 {
		errs = append(errs, fmt.Errorf("bloom: commit interval %v: want above 0 and at most lease/8", c.CommitInterval))
	}
	if c.MaxExpectedKeys > MaxExpectedKeys {
		errs = append(errs, fmt.Errorf("bloom: max expected keys %d: want at most %d", c.MaxExpectedKeys, uint(MaxExpectedKeys)))
	}
	return errors.Join(errs...)
}

// nsState is one namespace's filters.
type nsState struct {
	ns   *feature.Namespace
	spec Spec // current sizing; doubled by each rebuild
	// cur answers queries once built; nil before.
	cur atomic.Pointer[Filter]
	// next is a filter being built (at start, or a larger one when cur
	// saturates); every key read from the topic goes to it as well.
	next       atomic.Pointer[Filter]
	rebuilding atomic.Bool
	// capped is set once the filter saturated at the sizing cap; only
	// maintain uses it.
	capped bool
}

// logInterval is the least time between two lines of one warning that a
// failing dependency could otherwise emit on every poll or fetch.
const logInterval = 10 * time.Second

// Tracker keeps a query server's filters complete. Run it for as long as
// the server answers queries.
type Tracker struct {
	cfg     TrackerConfig
	qcfg    queue.Config
	scanner Scanner
	log     *slog.Logger
	group   string
	nss     map[string]*nsState

	start time.Time
	// validUntil is the monotonic time (since start) until which "absent"
	// answers may be given; 0 means not yet.
	validUntil atomic.Int64

	// mu orders adding keys against reading positions: a position is
	// advanced only after the keys before it are in the filters.
	mu       sync.Mutex
	position map[int32]int64

	// rebuilds tracks the background rebuilds, which Run waits for.
	rebuilds sync.WaitGroup
	// fetchWarn and commitWarn rate-limit warnings a failing broker would
	// otherwise emit on every fetch or commit attempt.
	fetchWarn, commitWarn, offsetsWarn, behindWarn lograte.Limiter

	m trackerMetrics
}

type trackerMetrics struct {
	lookups   *prometheus.CounterVec
	fill      *prometheus.GaugeVec
	keys      *prometheus.GaugeVec
	rebuilds  *prometheus.CounterVec
	capped    *prometheus.CounterVec
	saturated *prometheus.GaugeVec
	valid     prometheus.Gauge
	behind    prometheus.Gauge
	commitErr prometheus.Counter
}

// NewTracker returns a tracker for the namespaces of cfg, reading the
// persistence topic of qcfg and scanning sc.
func NewTracker(cfg TrackerConfig, qcfg queue.Config, reg *feature.Registry, sc Scanner, promReg prometheus.Registerer, log *slog.Logger) (*Tracker, error) {
	cfg.EnsureDefaults()
	qcfg.EnsureDefaults()
	if err := errors.Join(cfg.Validate(reg), qcfg.Validate()); err != nil {
		return nil, err
	}
	t := &Tracker{cfg: cfg, qcfg: qcfg, scanner: sc, log: log, group: cfg.GroupPrefix + cfg.ID,
		nss: map[string]*nsState{}, start: time.Now(), position: map[int32]int64{},
		fetchWarn: lograte.Limiter{Interval: logInterval}, commitWarn: lograte.Limiter{Interval: logInterval},
		offsetsWarn: lograte.Limiter{Interval: logInterval}, behindWarn: lograte.Limiter{Interval: logInterval}}
	for _, s := range cfg.Specs {
		ns, _ := reg.Namespace(s.Namespace)
		t.nss[s.Namespace] = &nsState{ns: ns, spec: s}
	}
	t.m = trackerMetrics{
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_bloom_lookups_total",
			Help: "Filter lookups by namespace and answer (absent, maybe_present, unusable: filter not built or lease lapsed).",
		}, []string{"namespace", "answer"}),
		fill: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cairn_bloom_fill_ratio",
			Help: "Fraction of the filter's bits set, by namespace.",
		}, []string{"namespace"}),
		keys: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cairn_bloom_keys",
			Help: "Distinct keys added to the filter (estimated), by namespace.",
		}, []string{"namespace"}),
		rebuilds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_bloom_rebuilds_total",
			Help: "Filters rebuilt larger (twice, up to the sizing cap) after saturating, by namespace.",
		}, []string{"namespace"}),
		capped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_bloom_rebuilds_capped_total",
			Help: "Filters that saturated at the sizing cap and were kept instead of rebuilt larger, by namespace.",
		}, []string{"namespace"}),
		saturated: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cairn_bloom_saturated",
			Help: "1 while the filter holds more keys than it is sized for (its false-positive rate is above the target), by namespace.",
		}, []string{"namespace"}),
		valid: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cairn_bloom_lease_valid",
			Help: "1 while the tracker's lease is valid and it may answer absent, else 0.",
		}),
		behind: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cairn_bloom_behind",
			Help: "1 while the tracker has not reached, within a quarter of the lease, the topic's end offsets it read; it then does not renew its lease.",
		}),
		commitErr: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_bloom_position_commit_errors_total",
			Help: "Failed attempts to record the tracker's position.",
		}),
	}
	if promReg != nil {
		promReg.MustRegister(t.m.lookups, t.m.fill, t.m.keys, t.m.rebuilds, t.m.capped, t.m.saturated, t.m.valid, t.m.behind, t.m.commitErr)
	}
	return t, nil
}

// Group returns the consumer group the tracker records its position in.
func (t *Tracker) Group() string { return t.group }

func (t *Tracker) mono() int64 { return int64(time.Since(t.start)) }

// Ready reports whether every namespace's filter has been built, which
// happens once after Run starts (a rebuild keeps the old filter answering).
// Until then every lookup is answered "unusable" and reads go to the
// store. A built filter still answers "absent" only while the lease is
// valid (see [Tracker.LeaseValid]).
func (t *Tracker) Ready() bool {
	for _, st := range t.nss {
		if st.cur.Load() == nil {
			return false
		}
	}
	return true
}

// LeaseValid reports whether the tracker's lease is valid now, so that its
// built filters may answer "absent". It is false before the tracker has
// caught up with the topic, while it is behind it, while it cannot record
// its position, and after Run returns.
func (t *Tracker) LeaseValid() bool { return t.mono() < t.validUntil.Load() }

// MayContain answers for key of namespace ns. usable is false when the
// filter cannot be trusted right now (namespace not filtered, filter still
// being built, lease lapsed): the caller must read the store. Otherwise
// present false means the key is certainly not in the store.
func (t *Tracker) MayContain(ns, key string) (present, usable bool) {
	st := t.nss[ns]
	if st == nil {
		return true, false
	}
	f := st.cur.Load()
	if f == nil || t.mono() >= t.validUntil.Load() {
		t.m.lookups.WithLabelValues(ns, "unusable").Inc()
		return true, false
	}
	present = f.MayContain(key)
	if present {
		t.m.lookups.WithLabelValues(ns, "maybe_present").Inc()
	} else {
		t.m.lookups.WithLabelValues(ns, "absent").Inc()
	}
	return present, true
}

// Run registers the tracker, builds the filters and follows the topic until
// ctx ends; then it stops answering "absent" and deletes its group so that
// writers stop waiting for it. Once ctx is cancelled it returns within
// Lease/2 (the bound on deleting the group; writers ignore a group left
// behind after a lease) plus about a second (closing the consumer's fetch
// session) even with the broker hung, and the time the store's scan takes
// to notice.
// Run may be called once.
func (t *Tracker) Run(ctx context.Context) error {
	// The clients below consume partitions directly, in no group, so
	// Close has no group to leave and cannot block on a rebalance.
	admCl, err := kgo.NewClient(t.qcfg.ClientOpts()...)
	if err != nil {
		return fmt.Errorf("bloom: connect: %w", err)
	}
	defer admCl.Close()
	adm := kadm.NewClient(admCl)
	registering := false
	defer func() {
		if !registering {
			return // no group was ever committed
		}
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), t.cfg.Lease/2)
		defer cancel()
		if _, err := adm.DeleteGroups(dctx, t.group); err != nil {
			t.log.Warn("bloom: delete tracker group; writers ignore it after the lease", "group", t.group, "err", err)
		}
	}()
	// Stop answering before the group goes: once it is deleted, writers
	// no longer wait for this tracker.
	defer t.validUntil.Store(0)

	// 1. Where the writers are: everything before these offsets is in
	// the store, so the scans below see it.
	from, err := retry(ctx, t.log, "read writer offsets", func() (map[int32]int64, error) { return writerOffsets(ctx, adm, t.qcfg) })
	if err != nil {
		return err
	}
	// 2. Register: from now on writers wait for this tracker.
	t.mu.Lock()
	t.position = from
	t.mu.Unlock()
	for _, st := range t.nss {
		st.next.Store(NewFilter(st.spec))
	}
	registering = true
	var hb int64
	if _, err := retry(ctx, t.log, "register", func() (struct{}, error) { hb++; return struct{}{}, t.commit(ctx, adm, hb) }); err != nil {
		return err
	}
	t.log.Info("bloom: tracker registered", "group", t.group, "namespaces", len(t.nss))

	// 3. Follow the topic from there, into the filters being built.
	offsets := map[int32]kgo.Offset{}
	for p, o := range from {
		offsets[p] = kgo.NewOffset().At(o)
	}
	cl, err := kgo.NewClient(append(t.qcfg.ClientOpts(),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{t.qcfg.PersistTopic: offsets}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))...)
	if err != nil {
		return fmt.Errorf("bloom: consumer: %w", err)
	}
	// Close ends the fetch session with one request, bounded by kgo at
	// about a second when the broker does not answer.
	defer cl.Close()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2+len(t.nss))
	go func() { errc <- t.consume(ctx, cl) }()
	go func() { errc <- t.maintain(ctx, adm, cl, hb) }()
	// 4. Scan the store into the filters being built.
	for _, st := range t.nss {
		st.rebuilding.Store(true)
		go func() { errc <- t.build(ctx, adm, st, nil) }()
	}
	// Every goroutine is waited for, so that none outlives Run or uses a
	// closed client; the first error stops the others.
	var first error
	for range 2 + len(t.nss) {
		if err := <-errc; err != nil && ctx.Err() == nil {
			first = err
			cancel()
		}
	}
	t.rebuilds.Wait()
	return first
}

// consume reads the persistence topic, adding every key to the filters,
// then advancing the position.
func (t *Tracker) consume(ctx context.Context, cl *kgo.Client) error {
	for {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			return nil
		}
		fetches.EachError(func(topic string, p int32, err error) {
			if ok, n := t.fetchWarn.Allow(time.Now()); ok {
				t.log.Warn("bloom: fetch failed; the filter stops answering absent if it falls behind", "topic", topic, "partition", p, "err", err, "suppressed", n)
			}
		})
		t.mu.Lock()
		fetches.EachRecord(func(r *kgo.Record) {
			if rec, err := queue.DecodeRecord(r.Value); err == nil { // a record that does not decode is never written
				for _, e := range rec.Entities {
					if st := t.nss[e.Namespace]; st != nil {
						if f := st.cur.Load(); f != nil {
							f.Add(e.Key)
						}
						if f := st.next.Load(); f != nil {
							f.Add(e.Key)
						}
					}
				}
			}
			t.position[r.Partition] = r.Offset + 1
		})
		t.mu.Unlock()
	}
}

// positions copies the current position.
func (t *Tracker) positions() map[int32]int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[int32]int64, len(t.position))
	for p, o := range t.position {
		out[p] = o
	}
	return out
}

// commit records the current position with heartbeat hb.
func (t *Tracker) commit(ctx context.Context, adm *kadm.Client, hb int64) error {
	return t.commitPositions(ctx, adm, t.positions(), hb)
}

// commitPositions records pos with heartbeat hb.
func (t *Tracker) commitPositions(ctx context.Context, adm *kadm.Client, pos map[int32]int64, hb int64) error {
	var os kadm.Offsets
	meta := strconv.FormatInt(hb, 10)
	for p, o := range pos {
		os.Add(kadm.Offset{Topic: t.qcfg.PersistTopic, Partition: p, At: o, LeaderEpoch: -1, Metadata: meta})
	}
	cctx, cancel := context.WithTimeout(ctx, t.cfg.Lease/4)
	defer cancel()
	return adm.CommitAllOffsets(cctx, t.group, os)
}

// endSample is the topic's end offsets as read by a request sent at at
// (ticks of mono): every record in the log at at is before them.
type endSample struct {
	at   int64
	ends map[int32]int64
}

// maintain records the position and renews the lease, picks up new
// partitions, and starts rebuilds of saturated filters.
//
// The lease is renewed only while the tracker keeps up with the topic:
// every Lease/16 it reads the topic's end offsets, and a renewal sent at
// time T needs a position at or past end offsets read at or after
// T - Lease/4. A tracker that cannot read the topic (or is too slow to)
// thus stops renewing within Lease/4 and stops answering "absent" Lease/2
// later, before any writer stops waiting for it (docs/bloom.md).
func (t *Tracker) maintain(ctx context.Context, adm *kadm.Client, cl *kgo.Client, hb int64) error {
	tick := time.NewTicker(t.cfg.CommitInterval)
	defer tick.Stop()
	maxLag := int64(t.cfg.Lease / 4)
	var (
		last       map[int32]int64
		lastCommit time.Time
		lastCheck  time.Time
		lastSample time.Time
		samples    []endSample     // oldest first, none older than maxLag
		resync     map[int32]int64 // end offsets to reach before answering again
		lost       = true          // no valid lease yet
		behind     = false
	)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		now := time.Now()
		if now.Sub(lastCheck) >= t.cfg.Lease/4 {
			lastCheck = now
			t.checkPartitions(ctx, adm, cl)
			t.maybeRebuild(ctx, adm)
			t.observe()
		}
		if now.Sub(lastSample) >= t.cfg.Lease/16 {
			lastSample = now
			at := t.mono()
			ends, err := endOffsets(ctx, adm, t.qcfg.PersistTopic)
			switch {
			case ctx.Err() != nil:
				return nil
			case err != nil:
				if ok, n := t.offsetsWarn.Allow(now); ok {
					t.log.Warn("bloom: read end offsets failed; the lease is not renewed without them", "err", err, "suppressed", n)
				}
			default:
				samples = append(samples, endSample{at: at, ends: ends})
			}
		}
		pos := t.positions()
		sent := t.mono()
		// Keep only the samples a renewal sent now could rely on, and
		// find the newest the position has reached.
		for len(samples) > 0 && sent-samples[0].at > maxLag {
			samples = samples[1:]
		}
		caughtUp := false
		for i := len(samples) - 1; i >= 0 && !caughtUp; i-- {
			caughtUp = reached(pos, samples[i].ends)
		}
		if !caughtUp {
			if !behind {
				behind = true
				t.m.behind.Set(1)
				// A tracker on the edge of the bound may flap: one line
				// per interval at most.
				if ok, n := t.behindWarn.Allow(now); ok {
					t.log.Warn("bloom: the filter is behind the topic's end; not renewing its lease, so it stops answering absent until it catches up",
						"lease", t.cfg.Lease, "suppressed", n)
				}
			}
			continue
		}
		if behind {
			behind = false
			t.m.behind.Set(0)
		}
		if equalPositions(pos, last) && now.Sub(lastCommit) < t.cfg.Lease/4 && resync == nil {
			continue
		}
		hb++
		if err := t.commitPositions(ctx, adm, pos, hb); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			t.m.commitErr.Inc()
			if ok, n := t.commitWarn.Allow(now); ok {
				t.log.Warn("bloom: recording position failed; the filter stops answering absent once the lease lapses", "err", err, "suppressed", n)
			}
			continue
		}
		last, lastCommit = pos, now
		if t.mono() >= t.validUntil.Load() {
			lost = true // a writer may have stopped waiting for this tracker
		}
		if lost && resync == nil {
			// Writers that gave up on this tracker wrote only records
			// already in the log; read up to its end before answering.
			ends, err := endOffsets(ctx, adm, t.qcfg.PersistTopic)
			if err != nil {
				if ok, n := t.offsetsWarn.Allow(now); ok {
					t.log.Warn("bloom: read end offsets failed", "err", err, "suppressed", n)
				}
				continue
			}
			resync = ends
		}
		if resync != nil {
			if !reached(t.positions(), resync) {
				continue
			}
			resync, lost = nil, false
		}
		t.validUntil.Store(sent + int64(t.cfg.Lease/2))
	}
}

func (t *Tracker) observe() {
	valid := 0.0
	if t.mono() < t.validUntil.Load() {
		valid = 1
	}
	t.m.valid.Set(valid)
	for name, st := range t.nss {
		if f := st.cur.Load(); f != nil {
			t.m.fill.WithLabelValues(name).Set(f.FillRatio())
			t.m.keys.WithLabelValues(name).Set(float64(f.Added()))
			saturated := 0.0
			if f.Saturated() {
				saturated = 1
			}
			t.m.saturated.WithLabelValues(name).Set(saturated)
		}
	}
}

// checkPartitions starts consuming partitions added to the topic since,
// from their first offset.
func (t *Tracker) checkPartitions(ctx context.Context, adm *kadm.Client, cl *kgo.Client) {
	starts, err := adm.ListStartOffsets(ctx, t.qcfg.PersistTopic)
	if err != nil {
		return
	}
	add := map[int32]kgo.Offset{}
	t.mu.Lock()
	starts.Each(func(o kadm.ListedOffset) {
		if _, ok := t.position[o.Partition]; !ok && o.Err == nil {
			t.position[o.Partition] = o.Offset
			add[o.Partition] = kgo.NewOffset().At(o.Offset)
		}
	})
	t.mu.Unlock()
	if len(add) > 0 {
		t.log.Info("bloom: following new partitions", "partitions", len(add))
		cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{t.qcfg.PersistTopic: add})
	}
}

// maybeRebuild starts a rebuild of every saturated filter, twice as large
// up to TrackerConfig.MaxExpectedKeys. A filter saturated at that cap is
// kept, and reported once.
func (t *Tracker) maybeRebuild(ctx context.Context, adm *kadm.Client) {
	for name, st := range t.nss {
		f := st.cur.Load()
		if f == nil || !f.Saturated() || st.rebuilding.Load() {
			continue
		}
		if st.spec.ExpectedKeys >= t.cfg.MaxExpectedKeys {
			if !st.capped {
				st.capped = true
				t.m.capped.WithLabelValues(name).Inc()
				t.log.Warn("bloom: filter saturated at its largest sizing; keeping it, its false-positive rate climbs above the target",
					"namespace", name, "keys", f.Added(), "expected_keys", st.spec.ExpectedKeys, "false_positive_rate", st.spec.FalsePositiveRate)
			}
			continue
		}
		if !st.rebuilding.CompareAndSwap(false, true) {
			continue
		}
		st.spec.ExpectedKeys = min(2*st.spec.ExpectedKeys, t.cfg.MaxExpectedKeys)
		t.log.Info("bloom: filter saturated; rebuilding it larger", "namespace", name, "keys", f.Added(), "expected_keys", st.spec.ExpectedKeys)
		t.m.rebuilds.WithLabelValues(name).Inc()
		// From here every key read from the topic also goes to next;
		// pos is where that started.
		t.mu.Lock()
		st.next.Store(NewFilter(st.spec))
		pos := make(map[int32]int64, len(t.position))
		for p, o := range t.position {
			pos[p] = o
		}
		t.mu.Unlock()
		t.rebuilds.Go(func() {
			if err := t.build(ctx, adm, st, pos); err != nil && ctx.Err() == nil {
				t.log.Error("bloom: rebuild failed; keeping the saturated filter", "namespace", name, "err", err)
				st.next.Store(nil)
				st.rebuilding.Store(false)
			}
		})
	}
}

// build completes st.next and makes it current. Keys read from the topic
// from pos on are added to next by consume; build adds the keys written
// before the writers' committed offsets (from a scan) and those between
// those offsets and pos (re-read from the topic). pos nil means the
// initial build, where consume started at the writers' offsets.
func (t *Tracker) build(ctx context.Context, adm *kadm.Client, st *nsState, pos map[int32]int64) error {
	next := st.next.Load()
	start := time.Now()
	if pos != nil {
		from, err := retry(ctx, t.log, "read writer offsets", func() (map[int32]int64, error) { return writerOffsets(ctx, adm, t.qcfg) })
		if err != nil {
			return err
		}
		if err := t.replay(ctx, st.ns.Name, next, from, pos); err != nil {
			return err
		}
	}
	n := 0
	if err := t.scanner.ScanKeys(ctx, st.ns, func(key string) error { n++; next.Add(key); return nil }); err != nil {
		return fmt.Errorf("bloom: scan %s: %w", st.ns.Name, err)
	}
	// Swap under mu, between two fetches of consume: a key consume is
	// adding must reach the filter that stays.
	t.mu.Lock()
	st.cur.Store(next)
	st.next.Store(nil)
	t.mu.Unlock()
	st.rebuilding.Store(false)
	t.log.Info("bloom: filter built", "namespace", st.ns.Name, "scanned_keys", n, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// replay adds the keys of ns in [from, to) of every partition to f.
func (t *Tracker) replay(ctx context.Context, ns string, f *Filter, from, to map[int32]int64) error {
	offsets := map[int32]kgo.Offset{}
	for p, end := range to {
		if start, ok := from[p]; ok && start < end {
			offsets[p] = kgo.NewOffset().At(start)
		}
	}
	if len(offsets) == 0 {
		return nil
	}
	cl, err := kgo.NewClient(append(t.qcfg.ClientOpts(),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{t.qcfg.PersistTopic: offsets}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))...)
	if err != nil {
		return fmt.Errorf("bloom: replay consumer: %w", err)
	}
	defer cl.Close()
	for len(offsets) > 0 {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return err
		}
		fetches.EachRecord(func(r *kgo.Record) {
			if _, wanted := offsets[r.Partition]; !wanted || r.Offset >= to[r.Partition] {
				return
			}
			if rec, err := queue.DecodeRecord(r.Value); err == nil {
				for _, e := range rec.Entities {
					if e.Namespace == ns {
						f.Add(e.Key)
					}
				}
			}
			if r.Offset+1 >= to[r.Partition] {
				delete(offsets, r.Partition)
				cl.PauseFetchPartitions(map[string][]int32{t.qcfg.PersistTopic: {r.Partition}})
			}
		})
	}
	return nil
}

// writerOffsets returns, per partition of the persistence topic, the
// writers' committed offset, or the partition's first offset when they have
// committed none.
func writerOffsets(ctx context.Context, adm *kadm.Client, qcfg queue.Config) (map[int32]int64, error) {
	starts, err := adm.ListStartOffsets(ctx, qcfg.PersistTopic)
	if err != nil {
		return nil, fmt.Errorf("list start offsets of %s: %w", qcfg.PersistTopic, err)
	}
	out := map[int32]int64{}
	var errs []error
	starts.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			errs = append(errs, o.Err)
		}
		out[o.Partition] = o.Offset
	})
	if len(out) == 0 {
		errs = append(errs, fmt.Errorf("topic %s has no partitions", qcfg.PersistTopic))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	committed, err := adm.FetchOffsetsForTopics(ctx, qcfg.WriterGroup, qcfg.PersistTopic)
	if errors.Is(err, kerr.GroupIDNotFound) {
		return out, nil // no writer has committed yet
	}
	if err != nil {
		return nil, fmt.Errorf("fetch offsets of group %s: %w", qcfg.WriterGroup, err)
	}
	committed.Each(func(o kadm.OffsetResponse) {
		if o.Err == nil && o.At >= 0 && o.At > out[o.Partition] {
			out[o.Partition] = o.At
		}
	})
	return out, nil
}

func endOffsets(ctx context.Context, adm *kadm.Client, topic string) (map[int32]int64, error) {
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	out := map[int32]int64{}
	var errs []error
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			errs = append(errs, o.Err)
		}
		out[o.Partition] = o.Offset
	})
	return out, errors.Join(errs...)
}

// reached reports whether pos is at or past every offset of target.
func reached(pos, target map[int32]int64) bool {
	for p, o := range target {
		if pos[p] < o {
			return false
		}
	}
	return true
}

func equalPositions(a, b map[int32]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for p, o := range a {
		if b[p] != o {
			return false
		}
	}
	return true
}

// retry calls fn until it succeeds or ctx ends, backing off up to 5s.
func retry[T any](ctx context.Context, log *slog.Logger, what string, fn func() (T, error)) (T, error) {
	d := 50 * time.Millisecond
	for {
		v, err := fn()
		if err == nil {
			return v, nil
		}
		log.Warn("bloom: "+what+" failed; retrying", "retry_in", d, "err", err)
		select {
		case <-ctx.Done():
			var zero T
			return zero, ctx.Err()
		case <-time.After(d):
		}
		d = min(2*d, 5*time.Second)
	}
}
