package ui

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cairnfs/cairn/internal/lograte"
)

//go:embed assets/index.html
var page []byte

// Handler serves the page and its data from sources in preference order.
type Handler struct {
	sources []Source
	log     *slog.Logger
	errLog  lograte.Limiter
}

// NewHandler returns a handler showing the points of the first of sources
// that has any.
func NewHandler(log *slog.Logger, sources ...Source) (*Handler, error) {
	if len(sources) == 0 {
		return nil, errors.New("ui: want at least one source of points")
	}
	for i, s := range sources {
		if s == nil {
			return nil, fmt.Errorf("ui: source %d is nil", i)
		}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handler{sources: sources, log: log, errLog: lograte.Limiter{Interval: time.Minute}}, nil
}

// Page serves the page: GET /ui.
func (h *Handler) Page() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		// The page fetches only its own origin; nothing else may run.
		w.Header().Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(page) // the client is gone if this fails
	})
}

// Data serves the points: GET /ui/data?since=<unix ms>&source=<name>,
// answered as JSON {"source": name, "points": [...]}. since (default 0)
// asks for the points ending after it; source names the source the
// caller has been showing. The points are the first source's, in the
// handler's order, that has points since then, or is the caller's; when
// that is not the caller's source, all its points are answered, since
// the caller's are of another source. Each point's figures are those of
// [Point], in snake case, rates per second, latencies in seconds, "at" in
// Unix milliseconds, "span" in seconds; a figure not measured is null.
func (h *Handler) Data() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		since, err := parseSince(q.Get("since"))
		if err != nil {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
			return
		}
		name, points := h.points(r.Context(), since, q.Get("source"))
		out := wireData{Source: name, Points: make([]wirePoint, len(points))}
		for i, p := range points {
			out.Points[i] = toWire(p)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(out)
	})
}

// parseSince reads the since parameter: Unix milliseconds, at least 0;
// empty is 0.
func parseSince(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	ms, err := strconv.ParseInt(s, 10, 64)
	if err != nil || ms < 0 || ms > math.MaxInt64/int64(time.Millisecond) {
		return time.Time{}, fmt.Errorf("since %q: want Unix milliseconds, a whole number from 0", s)
	}
	if ms == 0 {
		return time.Time{}, nil
	}
	return time.UnixMilli(ms), nil
}

// afterMilli keeps the points whose "at", in Unix milliseconds as the
// wire carries it, is after since's. A point taken within the millisecond
// that since names is the caller's last one: a source comparing at full
// precision would answer it again, and the page would count it twice.
func afterMilli(ps []Point, since time.Time) []Point {
	ms := since.UnixMilli()
	out := ps[:0:0]
	for _, p := range ps {
		if p.At.UnixMilli() > ms {
			out = append(out, p)
		}
	}
	return out
}

func (h *Handler) points(ctx context.Context, since time.Time, shown string) (string, []Point) {
	for _, s := range h.sources {
		name := s.Name()
		// The caller holds points of its own source only: of another,
		// it needs them all.
		from := since
		if name != shown {
			from = time.Time{}
		}
		ps, err := s.Points(ctx, from)
		if err != nil {
			if ok, suppressed := h.errLog.Allow(time.Now()); ok {
				h.log.Warn("ui: source failed; trying the next", "source", name, "err", err, "suppressed", suppressed)
			}
			continue
		}
		if !from.IsZero() {
			ps = afterMilli(ps, from)
		}
		if len(ps) > 0 || name == shown {
			return name, ps
		}
	}
	return "", nil
}

type wireData struct {
	Source string      `json:"source"`
	Points []wirePoint `json:"points"`
}

type wirePoint struct {
	At             int64                    `json:"at"`
	Span           float64                  `json:"span"`
	StoreRequests  float64                  `json:"store_requests"`
	StoreErrors    float64                  `json:"store_errors"`
	StoreThrottles float64                  `json:"store_throttles"`
	Races          float64                  `json:"races"`
	KafkaDrops     float64                  `json:"kafka_drops"`
	LatencyP50     *float64                 `json:"latency_p50"`
	LatencyP95     *float64                 `json:"latency_p95"`
	LatencyP99     *float64                 `json:"latency_p99"`
	LatencyOf      string                   `json:"latency_of"`
	Namespaces     map[string]wireNamespace `json:"namespaces"`
	WriterLag      map[string]int64         `json:"writer_lag"`
}

type wireNamespace struct {
	Queries                *float64 `json:"queries"`
	CacheHitRatio          *float64 `json:"cache_hit_ratio"`
	BloomShortCircuitRatio *float64 `json:"bloom_short_circuit_ratio"`
}

// finite returns v, nil for NaN or an infinity (JSON has neither).
func finite(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

// orZero is v, 0 for NaN or an infinity.
func orZero(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return v
}

func toWire(p Point) wirePoint {
	w := wirePoint{
		At: p.At.UnixMilli(), Span: p.Span.Seconds(),
		StoreRequests: orZero(p.StoreRequestsPerSec), StoreErrors: orZero(p.StoreErrorsPerSec),
		StoreThrottles: orZero(p.StoreThrottlesPerSec), Races: orZero(p.RacesPerSec), KafkaDrops: orZero(p.KafkaDropsPerSec),
		LatencyP50: finite(p.LatencyP50), LatencyP95: finite(p.LatencyP95), LatencyP99: finite(p.LatencyP99),
		LatencyOf:  strings.TrimSpace(p.LatencyOf),
		Namespaces: make(map[string]wireNamespace, len(p.Namespaces)),
		WriterLag:  make(map[string]int64, len(p.WriterLag)),
	}
	for ns, n := range p.Namespaces {
		w.Namespaces[ns] = wireNamespace{Queries: finite(n.QueriesPerSec), CacheHitRatio: finite(n.CacheHitRatio),
			BloomShortCircuitRatio: finite(n.BloomShortCircuitRatio)}
	}
	for part, lag := range p.WriterLag {
		w.WriterLag[strconv.Itoa(int(part))] = lag
	}
	return w
}
