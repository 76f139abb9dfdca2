package bloom

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/store"
)

// Reader is a store's read side.
type Reader interface {
	Read(ctx context.Context, ns *feature.Namespace, keys []string, feats []*feature.Feature) ([]store.Row, error)
}

// Guard reads through a tracker: keys the filter says are absent are
// answered as not found without a store read. In debug mode every key is
// read anyway and the filter's answers are checked against the store.
type Guard struct {
	next    Reader
	tracker *Tracker
	debug   bool
	log     *slog.Logger

	skipped       *prometheus.CounterVec
	falsePositive *prometheus.CounterVec
	disagree      *prometheus.CounterVec
}

// NewGuard returns a Reader that consults t before reading next.
func NewGuard(next Reader, t *Tracker, debug bool, promReg prometheus.Registerer, log *slog.Logger) *Guard {
	g := &Guard{next: next, tracker: t, debug: debug, log: log,
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_bloom_reads_skipped_total",
			Help: "Entity reads not sent to the store because the filter said absent, by namespace (none in debug mode).",
		}, []string{"namespace"}),
		falsePositive: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_bloom_false_positives_total",
			Help: "Entities the filter said may be present that the store did not have, by namespace. The measured false-positive rate is this over (this + cairn_bloom_lookups_total{answer=\"absent\"}).",
		}, []string{"namespace"}),
		disagree: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_bloom_debug_false_negatives_total",
			Help: "Debug mode: entities the filter said absent that the store had. Always a bug.",
		}, []string{"namespace"}),
	}
	if promReg != nil {
		promReg.MustRegister(g.skipped, g.falsePositive, g.disagree)
	}
	return g
}

// Read reads the keys the filter cannot rule out and answers the rest as
// not found.
func (g *Guard) Read(ctx context.Context, ns *feature.Namespace, keys []string, feats []*feature.Feature) ([]store.Row, error) {
	if g.debug {
		return g.readDebug(ctx, ns, keys, feats)
	}
	var ask []string
	var askIdx []int
	maybe := make([]bool, len(keys)) // the filter could not rule the key out
	for i, k := range keys {
		present, usable := g.tracker.MayContain(ns.Name, k)
		if usable && !present {
			continue
		}
		maybe[i] = usable
		ask = append(ask, k)
		askIdx = append(askIdx, i)
	}
	rows := make([]store.Row, len(keys))
	if len(ask) > 0 {
		got, err := g.next.Read(ctx, ns, ask, feats)
		if err != nil {
			return nil, err
		}
		for j, i := range askIdx {
			rows[i] = got[j]
		}
	}
	fp := 0
	for i := range rows {
		if maybe[i] && !rows[i].Found {
			fp++
		}
		if rows[i].Cells == nil {
			rows[i].Cells = make([]store.Cell, len(feats))
		}
	}
	if n := len(keys) - len(ask); n > 0 {
		g.skipped.WithLabelValues(ns.Name).Add(float64(n))
	}
	if fp > 0 {
		g.falsePositive.WithLabelValues(ns.Name).Add(float64(fp))
	}
	return rows, nil
}

// readDebug reads every key, then asks the filter. In that order a
// disagreement is a real false negative: a key the store had before the
// filter was asked must be in the filter (keys reach filters before the
// store, and filters only grow). Asked the other way round, a key written
// between the two would look like one.
func (g *Guard) readDebug(ctx context.Context, ns *feature.Namespace, keys []string, feats []*feature.Feature) ([]store.Row, error) {
	rows, err := g.next.Read(ctx, ns, keys, feats)
	if err != nil {
		return nil, err
	}
	fp := 0
	for i, k := range keys {
		present, usable := g.tracker.MayContain(ns.Name, k)
		switch {
		case !usable:
		case !present && rows[i].Found:
			g.disagree.WithLabelValues(ns.Name).Inc()
			g.log.Error("bloom: FALSE NEGATIVE: the filter said absent but the store has the entity; this is a bug",
				"namespace", ns.Name, "key", k)
		case present && !rows[i].Found:
			fp++
		}
	}
	if fp > 0 {
		g.falsePositive.WithLabelValues(ns.Name).Add(float64(fp))
	}
	return rows, nil
}
