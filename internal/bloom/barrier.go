package bloom

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
)

// Barrier holds a writer's batch until every live tracker has read past it,
// so that a key reaches every live filter before it reaches the store.
type Barrier struct {
	adm    *kadm.Client
	topic  string
	prefix string
	lease  time.Duration
	log    *slog.Logger
	now    func() time.Time

	// seen remembers, per tracker group, its last heartbeat and when this
	// writer first saw it; a heartbeat unchanged for a lease means dead.
	seen map[string]heartbeat

	waits   prometheus.Histogram
	ignored prometheus.Counter
}

type heartbeat struct {
	value string
	since time.Time
}

// NewBarrier returns a barrier for batches of topic, using adm to read the
// trackers' positions. lease and prefix must match the trackers'
// (TrackerConfig.Lease and GroupPrefix; zero values take their defaults).
func NewBarrier(adm *kadm.Client, topic, prefix string, lease time.Duration, promReg prometheus.Registerer, log *slog.Logger) *Barrier {
	if prefix == "" {
		prefix = DefaultGroupPrefix
	}
	if lease == 0 {
		lease = 10 * time.Second
	}
	b := &Barrier{adm: adm, topic: topic, prefix: prefix, lease: lease, log: log, now: time.Now, seen: map[string]heartbeat{},
		waits: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "cairn_bloom_barrier_wait_seconds",
			Help:    "Time a writer batch waited for every live query server's filter to cover it.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		ignored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_bloom_barrier_trackers_ignored_total",
			Help: "Times a writer stopped waiting for a query server whose position went unrecorded for a lease.",
		}),
	}
	if promReg != nil {
		promReg.MustRegister(b.waits, b.ignored)
	}
	return b
}

// Wait returns once every live tracker's position is at or past ends (per
// partition, the offset after the batch's last record), or with ctx's
// error. With no trackers it costs one group listing.
func (b *Barrier) Wait(ctx context.Context, ends map[int32]int64) error {
	start := b.now()
	defer func() { b.waits.Observe(b.now().Sub(start).Seconds()) }()
	delay := time.Millisecond
	for {
		pending, err := b.pending(ctx, ends)
		if err == nil && pending == "" {
			return nil
		}
		if err != nil {
			b.log.Warn("bloom: reading query servers' filter positions failed; holding the batch", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, 50*time.Millisecond)
	}
}

// pending returns a tracker group that has not covered ends yet, or "".
func (b *Barrier) pending(ctx context.Context, ends map[int32]int64) (string, error) {
	listed, err := b.adm.ListGroups(ctx)
	if err != nil {
		return "", fmt.Errorf("list groups: %w", err)
	}
	var groups []string
	for g := range listed {
		if strings.HasPrefix(g, b.prefix) {
			groups = append(groups, g)
		}
	}
	for g := range b.seen {
		if _, ok := listed[g]; !ok {
			delete(b.seen, g)
		}
	}
	if len(groups) == 0 {
		return "", nil
	}
	now := b.now()
	// Every tracker's heartbeat is observed on every pass, even once one
	// is known to be behind: a heartbeat left unobserved could make a live
	// tracker look dead.
	pending := ""
	for g, r := range b.adm.FetchManyOffsets(ctx, groups...) {
		if r.Err != nil {
			return "", fmt.Errorf("fetch offsets of %s: %w", g, r.Err)
		}
		parts := r.Fetched[b.topic]
		if len(parts) == 0 {
			continue // deleted between listing and fetching
		}
		var hb string
		for _, o := range parts {
			hb = o.Metadata
			break
		}
		seen, ok := b.seen[g]
		if !ok || seen.value != hb {
			seen = heartbeat{value: hb, since: now}
			b.seen[g] = seen
		}
		if now.Sub(seen.since) > b.lease {
			b.ignored.Inc()
			continue
		}
		if pending != "" {
			continue
		}
		for p, end := range ends {
			if o, ok := parts[p]; !ok || o.At < end {
				pending = g
				break
			}
		}
	}
	return pending, nil
}
