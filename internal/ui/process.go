package ui

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/cairnfs/cairn/internal/lograte"
)

// ProcessConfig tunes a [ProcessSource].
type ProcessConfig struct {
	// Interval is the time between two samples of the process's
	// metrics, and so the span of each point. Default 5s
	// (CAIRN_UI_SAMPLE_INTERVAL).
	Interval time.Duration
	// Window is how far back points are kept. Default 1h.
	Window time.Duration
}

// EnsureDefaults fills zero fields with their defaults.
func (c *ProcessConfig) EnsureDefaults() {
	if c.Interval == 0 {
		c.Interval = 5 * time.Second
	}
	if c.Window == 0 {
		c.Window = time.Hour
	}
}

// Validate reports every problem with c.
func (c *ProcessConfig) Validate() error {
	var errs []error
	if c.Interval < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("ui: sample interval %v (CAIRN_UI_SAMPLE_INTERVAL): want at least 100ms", c.Interval))
	}
	if c.Window < c.Interval {
		errs = append(errs, fmt.Errorf("ui: window %v: want at least the sample interval %v", c.Window, c.Interval))
	}
	if c.Interval > 0 && c.Window/c.Interval > 100_000 {
		errs = append(errs, fmt.Errorf("ui: window %v over sample interval %v: want at most 100,000 points", c.Window, c.Interval))
	}
	return errors.Join(errs...)
}

// ProcessSource is a [Source] of this process's own counters: it gathers
// the process's metrics every Interval and keeps, for the last Window, the
// rates, ratios and latency quantiles of each interval, computed from the
// differences between two samples (quantiles from the differences of
// histogram buckets, as Prometheus's histogram_quantile does).
//
// The figures come from these metric families, each summed over its labels:
//
//   - store requests: cairn_dynamo_requests_total, cairn_redis_requests_total;
//   - store errors: those with outcome throttled or error (conditional
//     check failures and cancelled transactions are newest-wins at work,
//     not errors);
//   - store throttles: cairn_dynamo_throttles_total;
//   - latency: cairn_dynamo_request_duration_seconds, else
//     cairn_redis_request_duration_seconds, else (the embedded store, which
//     has no request metrics) cairn_query_namespace_read_seconds: the first
//     with observations in the interval;
//   - per namespace: cairn_query_namespace_reads_total (queries),
//     cairn_cache_hits_total over hits plus cairn_cache_misses_total,
//     cairn_bloom_lookups_total{answer="absent"} over all lookups;
//   - races: cairn_hedge_started_total; Kafka drops:
//     cairn_queue_produced_records_total{outcome="dropped"};
//   - writer lag: cairn_writer_lag_records, by partition, as last sampled.
type ProcessSource struct {
	cfg      ProcessConfig
	gatherer prometheus.Gatherer
	log      *slog.Logger
	errLog   lograte.Limiter

	mu struct {
		sync.Mutex
		prev   *snapshot
		points []Point // a ring of cap(points) once full
		next   int     // where the next point goes once full
	}
}

// NewProcessSource returns a source sampling g; Run samples.
func NewProcessSource(cfg ProcessConfig, g prometheus.Gatherer, log *slog.Logger) (*ProcessSource, error) {
	cfg.EnsureDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if g == nil {
		return nil, errors.New("ui: process source: want a metrics gatherer, got nil")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &ProcessSource{cfg: cfg, gatherer: g, log: log, errLog: lograte.Limiter{Interval: time.Minute}}
	s.mu.points = make([]Point, 0, int(cfg.Window/cfg.Interval))
	return s, nil
}

// Name returns "this process".
func (s *ProcessSource) Name() string { return "this process" }

// Run samples the metrics every Interval until ctx ends; it returns nil
// then. A failed gathering is logged and the sample skipped.
func (s *ProcessSource) Run(ctx context.Context) error {
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	s.sample(time.Now())
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			s.sample(now)
		}
	}
}

// Points returns the kept points ending after since, oldest first. The
// points share their maps with the source: callers must not modify them.
func (s *ProcessSource) Points(_ context.Context, since time.Time) ([]Point, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps := s.mu.points
	var out []Point
	for i := range ps {
		p := ps[(s.mu.next+i)%len(ps)]
		if p.At.After(since) {
			out = append(out, p)
		}
	}
	return out, nil
}

// sample gathers the metrics at now and adds the point since the previous
// sample.
func (s *ProcessSource) sample(now time.Time) {
	mfs, err := s.gatherer.Gather()
	if err != nil {
		// A collector failing fails every sample: logged once a minute.
		if ok, suppressed := s.errLog.Allow(now); ok {
			s.log.Warn("ui: gather metrics", "err", err, "suppressed", suppressed)
		}
		// Gather returns what it could gather along with its error.
		if len(mfs) == 0 {
			return
		}
	}
	cur := takeSnapshot(mfs, now)
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := s.mu.prev
	s.mu.prev = cur
	if prev == nil || !cur.at.After(prev.at) {
		return
	}
	p := cur.since(prev)
	if len(s.mu.points) < cap(s.mu.points) {
		s.mu.points = append(s.mu.points, p)
		return
	}
	s.mu.points[s.mu.next] = p
	s.mu.next = (s.mu.next + 1) % len(s.mu.points)
}

// latencyFamilies are the histograms latency is read from, in preference
// order, with what each measures.
var latencyFamilies = []struct{ name, of string }{
	{"cairn_dynamo_request_duration_seconds", "DynamoDB requests"},
	{"cairn_redis_request_duration_seconds", "Redis requests"},
	{"cairn_query_namespace_read_seconds", "namespace reads (embedded store)"},
}

// snapshot is the cumulative values of one sample.
type snapshot struct {
	at                                        time.Time
	requests, errors, throttles, races, drops float64
	latency                                   map[string]histogram // by family
	nsReads, cacheHits, cacheMisses           map[string]float64   // by namespace
	bloomAbsent, bloomLookups                 map[string]float64   // by namespace
	lag                                       map[int32]int64
}

// histogram is a cumulative histogram: counts[i] observations at most
// bounds[i], and total in all (the +Inf bucket).
type histogram struct {
	bounds []float64
	counts []float64
	total  float64
}

func takeSnapshot(mfs []*dto.MetricFamily, at time.Time) *snapshot {
	s := &snapshot{at: at, latency: map[string]histogram{},
		nsReads: map[string]float64{}, cacheHits: map[string]float64{}, cacheMisses: map[string]float64{},
		bloomAbsent: map[string]float64{}, bloomLookups: map[string]float64{}, lag: map[int32]int64{}}
	for _, mf := range mfs {
		name := mf.GetName()
		for _, m := range mf.GetMetric() {
			v := m.GetCounter().GetValue()
			switch name {
			case "cairn_dynamo_requests_total", "cairn_redis_requests_total":
				s.requests += v
				if o := label(m, "outcome"); o == "error" || o == "throttled" {
					s.errors += v
				}
			case "cairn_dynamo_throttles_total":
				s.throttles += v
			case "cairn_hedge_started_total":
				s.races += v
			case "cairn_queue_produced_records_total":
				if label(m, "outcome") == "dropped" {
					s.drops += v
				}
			case "cairn_query_namespace_reads_total":
				s.nsReads[label(m, "namespace")] += v
			case "cairn_cache_hits_total":
				s.cacheHits[label(m, "namespace")] += v
			case "cairn_cache_misses_total":
				s.cacheMisses[label(m, "namespace")] += v
			case "cairn_bloom_lookups_total":
				ns := label(m, "namespace")
				s.bloomLookups[ns] += v
				if label(m, "answer") == "absent" {
					s.bloomAbsent[ns] += v
				}
			case "cairn_writer_lag_records":
				if p, err := strconv.ParseInt(label(m, "partition"), 10, 32); err == nil {
					s.lag[int32(p)] = int64(m.GetGauge().GetValue())
				}
			}
		}
		for _, lf := range latencyFamilies {
			if name == lf.name {
				s.latency[name] = sumHistograms(mf.GetMetric())
			}
		}
	}
	return s
}

// sumHistograms adds up the histograms of one family; a series whose
// buckets differ from the first's is left out.
func sumHistograms(ms []*dto.Metric) histogram {
	var h histogram
	for _, m := range ms {
		mh := m.GetHistogram()
		if mh == nil {
			continue
		}
		bs := mh.GetBucket()
		if h.bounds == nil {
			h.bounds = make([]float64, len(bs))
			h.counts = make([]float64, len(bs))
			for i, b := range bs {
				h.bounds[i] = b.GetUpperBound()
			}
		}
		if len(bs) != len(h.bounds) {
			continue
		}
		same := true
		for i, b := range bs {
			if b.GetUpperBound() != h.bounds[i] {
				same = false
				break
			}
		}
		if !same {
			continue
		}
		for i, b := range bs {
			h.counts[i] += float64(b.GetCumulativeCount())
		}
		h.total += float64(mh.GetSampleCount())
	}
	return h
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// since returns the point from prev to s.
func (s *snapshot) since(prev *snapshot) Point {
	span := s.at.Sub(prev.at)
	sec := span.Seconds()
	rate := func(cur, old float64) float64 { return max(cur-old, 0) / sec }
	p := Point{
		At: s.at, Span: span,
		StoreRequestsPerSec:  rate(s.requests, prev.requests),
		StoreErrorsPerSec:    rate(s.errors, prev.errors),
		StoreThrottlesPerSec: rate(s.throttles, prev.throttles),
		RacesPerSec:          rate(s.races, prev.races),
		KafkaDropsPerSec:     rate(s.drops, prev.drops),
		LatencyP50:           math.NaN(), LatencyP95: math.NaN(), LatencyP99: math.NaN(),
		Namespaces: map[string]NamespacePoint{},
		WriterLag:  s.lag,
	}
	for _, lf := range latencyFamilies {
		cur, ok := s.latency[lf.name]
		if !ok {
			continue
		}
		if p.LatencyOf == "" {
			p.LatencyOf = lf.of
		}
		d, ok := cur.minus(prev.latency[lf.name])
		if !ok || d.total == 0 {
			continue
		}
		p.LatencyOf = lf.of
		p.LatencyP50, p.LatencyP95, p.LatencyP99 = d.quantile(0.5), d.quantile(0.95), d.quantile(0.99)
		break
	}
	names := map[string]bool{}
	for _, m := range []map[string]float64{s.nsReads, s.cacheHits, s.cacheMisses, s.bloomLookups} {
		for ns := range m {
			names[ns] = true
		}
	}
	for ns := range names {
		hits := max(s.cacheHits[ns]-prev.cacheHits[ns], 0)
		misses := max(s.cacheMisses[ns]-prev.cacheMisses[ns], 0)
		absent := max(s.bloomAbsent[ns]-prev.bloomAbsent[ns], 0)
		lookups := max(s.bloomLookups[ns]-prev.bloomLookups[ns], 0)
		p.Namespaces[ns] = NamespacePoint{
			QueriesPerSec:          rate(s.nsReads[ns], prev.nsReads[ns]),
			CacheHitRatio:          ratio(hits, hits+misses),
			BloomShortCircuitRatio: ratio(absent, lookups),
		}
	}
	return p
}

func ratio(part, whole float64) float64 {
	if whole == 0 {
		return math.NaN()
	}
	return part / whole
}

// minus returns h less old, bucket by bucket; false when their buckets
// differ. A family absent from old counts from zero.
func (h histogram) minus(old histogram) (histogram, bool) {
	if old.bounds == nil {
		return h, true
	}
	if len(old.bounds) != len(h.bounds) {
		return histogram{}, false
	}
	d := histogram{bounds: h.bounds, counts: make([]float64, len(h.counts)), total: max(h.total-old.total, 0)}
	for i := range h.counts {
		if h.bounds[i] != old.bounds[i] {
			return histogram{}, false
		}
		d.counts[i] = max(h.counts[i]-old.counts[i], 0)
	}
	return d, true
}

// quantile returns the q-quantile (0 ≤ q ≤ 1) of h's observations,
// interpolating linearly inside the bucket it falls in, as Prometheus's
// histogram_quantile does: a quantile past the last finite bound is that
// bound, one in the first bucket is interpolated from 0 (or is the bound,
// when it is not positive). NaN for an empty histogram.
func (h histogram) quantile(q float64) float64 {
	if h.total <= 0 || math.IsNaN(q) {
		return math.NaN()
	}
	q = min(max(q, 0), 1)
	rank := q * h.total
	prevCount, lower := 0.0, 0.0
	for i, upper := range h.bounds {
		c := h.counts[i]
		if c >= rank && c > prevCount {
			if i == 0 && upper <= 0 {
				return upper
			}
			return lower + (upper-lower)*(rank-prevCount)/(c-prevCount)
		}
		prevCount, lower = c, upper
	}
	if len(h.bounds) == 0 {
		return math.NaN()
	}
	return h.bounds[len(h.bounds)-1]
}
