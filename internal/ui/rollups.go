package ui

import (
	"context"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/DataDog/sketches-go/ddsketch"

	"github.com/cairnfs/cairn/internal/lograte"
	"github.com/cairnfs/cairn/internal/metrics"
)

// RollupReader reads the metrics rollups the writers' metrics consumers
// keep in the online store (package metrics' Reader).
type RollupReader interface {
	Range(ctx context.Context, from, to time.Time) ([]metrics.Rollup, error)
}

// LagFunc returns the writers' current lag in records per partition of
// the persistence topic.
type LagFunc func(ctx context.Context) (map[int32]int64, error)

// RollupSource draws the fleet: one point per complete minute of the
// metrics rollups, every query server's figures summed. Its latency is the
// queries' (every namespace's sketch merged), not the store requests', since
// the rollups keep query latency. The writer lag, which no rollup holds, is
// asked of Kafka at most once per lagEvery and kept for the window, each
// minute's point carrying the last lag sampled in it.
type RollupSource struct {
	rd  RollupReader
	lag LagFunc
	log *slog.Logger
	// now is time.Now, or a test's clock.
	now func() time.Time

	lagLog lograte.Limiter

	mu struct {
		sync.Mutex
		lagAt   time.Time
		samples []lagSample
	}
}

type lagSample struct {
	at  time.Time
	lag map[int32]int64
}

// Window is how far back the page draws.
const Window = time.Hour

// lagEvery bounds how often a RollupSource asks Kafka for the lag,
// whatever the number of pages polling.
const lagEvery = 15 * time.Second

// NewRollupSource returns a source of the rollups rd reads; lag, if not
// nil, gives the writers' lag. log may be nil.
func NewRollupSource(rd RollupReader, lag LagFunc, log *slog.Logger) *RollupSource {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &RollupSource{rd: rd, lag: lag, log: log, now: time.Now, lagLog: lograte.Limiter{Interval: time.Minute}}
}

// Name implements Source.
func (s *RollupSource) Name() string { return "fleet, from rollups" }

// Points implements Source: a point per complete minute ending after
// since, within the last Window.
func (s *RollupSource) Points(ctx context.Context, since time.Time) ([]Point, error) {
	now := s.now()
	// Sampled on every poll, points or not: the lag of a minute is
	// sampled during it.
	lags := s.lags(ctx, now)
	to := now.Truncate(time.Minute)
	from := now.Add(-Window)
	if since.After(from) {
		from = since
	}
	from = from.Truncate(time.Minute)
	if !from.Before(to) {
		return nil, nil
	}
	rs, err := s.rd.Range(ctx, from, to)
	if err != nil {
		return nil, err
	}
	if len(rs) == 0 {
		return nil, nil
	}
	var pts []Point
	var sketch *ddsketch.DDSketch
	finish := func() {
		if len(pts) == 0 {
			return
		}
		p := &pts[len(pts)-1]
		if sketch != nil && !sketch.IsEmpty() {
			p.LatencyOf = "queries, all namespaces"
			p.LatencyP50, p.LatencyP95, p.LatencyP99 = quantile(sketch, 0.5), quantile(sketch, 0.95), quantile(sketch, 0.99)
		}
		for _, l := range lags {
			if !l.at.Before(p.At.Add(-time.Minute)) && l.at.Before(p.At) {
				p.WriterLag = l.lag
			}
		}
		sketch = nil
	}
	for i := range rs {
		r := &rs[i]
		if len(pts) == 0 || !pts[len(pts)-1].At.Equal(r.Minute.Add(time.Minute)) {
			finish()
			pts = append(pts, Point{At: r.Minute.Add(time.Minute), Span: time.Minute,
				LatencyP50: math.NaN(), LatencyP95: math.NaN(), LatencyP99: math.NaN(),
				Namespaces: map[string]NamespacePoint{}})
		}
		p := &pts[len(pts)-1]
		const perSec = 1.0 / 60
		if r.Namespace == "" {
			f := r.Fleet
			p.StoreRequestsPerSec += float64(f.StoreRequests) * perSec
			p.StoreErrorsPerSec += float64(f.StoreErrors) * perSec
			p.StoreThrottlesPerSec += float64(f.StoreThrottles) * perSec
			p.RacesPerSec += float64(f.StoreRaces) * perSec
			p.KafkaDropsPerSec += float64(f.KafkaMetricsDropped+f.KafkaUploadsDropped) * perSec
			continue
		}
		p.Namespaces[r.Namespace] = NamespacePoint{
			QueriesPerSec:          float64(r.Queries) * perSec,
			CacheHitRatio:          ratio(float64(r.CacheHits), float64(r.CacheHits+r.CacheMisses)),
			BloomShortCircuitRatio: ratio(float64(r.BloomSkipped), float64(r.BloomLookups)),
		}
		if r.Latency != nil && !r.Latency.IsEmpty() {
			if sketch == nil {
				sketch = r.Latency.Copy()
			} else if err := sketch.MergeWith(r.Latency); err != nil {
				s.log.Warn("ui: merging a rollup's latency sketch", "minute", r.Minute, "namespace", r.Namespace, "err", err)
			}
		}
	}
	finish()
	return pts, nil
}

// lags samples the writers' lag if the last sample is older than
// lagEvery, drops samples older than Window, and returns them.
func (s *RollupSource) lags(ctx context.Context, now time.Time) []lagSample {
	if s.lag == nil {
		return nil
	}
	s.mu.Lock()
	due := now.Sub(s.mu.lagAt) >= lagEvery
	if due {
		s.mu.lagAt = now // one caller asks; the others use what there is
	}
	s.mu.Unlock()
	if due {
		lag, err := s.lag(ctx)
		if err != nil {
			if ok, suppressed := s.lagLog.Allow(now); ok {
				s.log.Warn("ui: the writers' lag could not be read from Kafka", "err", err, "suppressed", suppressed)
			}
		} else {
			s.mu.Lock()
			s.mu.samples = append(s.mu.samples, lagSample{at: now, lag: lag})
			s.mu.Unlock()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	keep := s.mu.samples[:0]
	for _, l := range s.mu.samples {
		if now.Sub(l.at) <= Window {
			keep = append(keep, l)
		}
	}
	s.mu.samples = keep
	return append([]lagSample(nil), keep...)
}

// quantile returns the sketch's quantile q in seconds, or NaN.
func quantile(s *ddsketch.DDSketch, q float64) float64 {
	v, err := s.GetValueAtQuantile(q)
	if err != nil {
		return math.NaN()
	}
	return v
}
