package bloom

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/cairnfs/cairn/internal/lograte"
)

// Barrier holds a writer's batch until every live tracker has read past it,
// so that a key reaches every live filter before it reaches the store.
//
// A tracker stops being waited for (it is ignored) when either
//
//   - its heartbeat has not changed for a lease: the query server died or
//     can no longer record its position; or
//   - it has not covered the batch being held for a lease: it is stuck or
//     too far behind the topic's end. Such a tracker also stops renewing
//     its own lease (see [TrackerConfig.Lease]), so it has stopped
//     answering "absent" by then.
//
// An ignored tracker is waited for again once its heartbeat changes: a
// tracker renews its heartbeat only while it keeps up with the topic.
// docs/bloom.md has the argument that neither rule lets a filter answer
// "absent" for a key in the store.
//
// A Barrier is used by one writer loop: Wait must not be called
// concurrently.
type Barrier struct {
	adm    *kadm.Client
	topic  string
	prefix string
	lease  time.Duration
	log    *slog.Logger
	now    func() time.Time

	// trackers remembers, per tracker group, its last heartbeat and when
	// this writer first saw it, and whether it is ignored.
	trackers map[string]*trackerView
	// warn rate-limits the warning of a failing position read, which
	// Wait would otherwise log on every poll.
	warn lograte.Limiter

	waits   prometheus.Histogram
	ignored prometheus.Counter
}

// SwitchTo makes the barrier read the trackers' positions of topic through
// adm from now on: the writer switched Kafka cluster. What it knew of the
// old cluster's trackers is forgotten; its metrics go on counting. Like
// Wait, it must not be called concurrently.
func (b *Barrier) SwitchTo(adm *kadm.Client, topic string) {
	b.adm, b.topic = adm, topic
	b.trackers = map[string]*trackerView{}
}

// trackerView is what a writer knows of one tracker.
type trackerView struct {
	heartbeat string
	since     time.Time // when this writer first saw heartbeat
	// ignored is set when the tracker went from live to ignored; it is
	// cleared when its heartbeat changes.
	ignored bool
}

// NewBarrier returns a barrier for batches of topic, using adm to read the
// trackers' positions. lease and prefix must match the trackers'
// (TrackerConfig.Lease and GroupPrefix; zero values take their defaults).
func NewBarrier(adm *kadm.Client, topic, prefix string, lease time.Duration, promReg prometheus.Registerer, log *slog.Logger) *Barrier {
	if prefix == "" {
		prefix = DefaultGroupPrefix
	}
	if lease == 0 {
		lease = DefaultLease
	}
	b := &Barrier{adm: adm, topic: topic, prefix: prefix, lease: lease, log: log, now: time.Now,
		trackers: map[string]*trackerView{},
		warn:     lograte.Limiter{Interval: logInterval},
		waits: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "cairn_bloom_barrier_wait_seconds",
			Help:    "Time a writer batch waited for every live query server's filter to cover it.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		ignored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_bloom_barrier_trackers_ignored_total",
			Help: "Times a writer stopped waiting for a query server's filter (once per query server each time it goes from waited-for to ignored): its heartbeat stopped for a lease, or it did not cover a batch within a lease.",
		}),
	}
	if promReg != nil {
		promReg.MustRegister(b.waits, b.ignored)
	}
	return b
}

// Wait returns once every live tracker's position is at or past ends (per
// partition, the offset after the batch's last record), or with ctx's
// error. A tracker that has not covered ends a lease after Wait first
// found it behind is ignored from then on. With no trackers it costs one
// group listing.
func (b *Barrier) Wait(ctx context.Context, ends map[int32]int64) error {
	start := b.now()
	defer func() { b.waits.Observe(b.now().Sub(start).Seconds()) }()
	behindSince := map[string]time.Time{}
	delay := time.Millisecond
	for {
		pending, err := b.pending(ctx, ends, behindSince)
		if err == nil && pending == "" {
			return nil
		}
		if err != nil {
			if ok, n := b.warn.Allow(b.now()); ok {
				b.log.Warn("bloom: reading query servers' filter positions failed; holding the batch", "err", err, "suppressed", n)
			}
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
// behindSince records, for this batch, when each tracker was first seen
// behind it.
func (b *Barrier) pending(ctx context.Context, ends map[int32]int64, behindSince map[string]time.Time) (string, error) {
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
	for g := range b.trackers {
		if _, ok := listed[g]; !ok {
			delete(b.trackers, g)
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
		v := b.trackers[g]
		if v == nil || v.heartbeat != hb {
			// A new heartbeat is a renewed lease: the tracker kept up
			// with the topic, so it is waited for again.
			v = &trackerView{heartbeat: hb, since: now}
			b.trackers[g] = v
			delete(behindSince, g)
		}
		if v.ignored {
			continue
		}
		if now.Sub(v.since) > b.lease {
			b.ignore(g, v, "its heartbeat has not changed for a lease")
			continue
		}
		covered := true
		for p, end := range ends {
			if o, ok := parts[p]; !ok || o.At < end {
				covered = false
				break
			}
		}
		if covered {
			continue
		}
		since, ok := behindSince[g]
		if !ok {
			behindSince[g] = now
		} else if now.Sub(since) > b.lease {
			b.ignore(g, v, "it has not read past the batch for a lease")
			continue
		}
		if pending == "" {
			pending = g
		}
	}
	return pending, nil
}

// ignore stops waiting for the tracker of group g until its heartbeat
// changes. It runs once per transition, so it logs and counts once.
func (b *Barrier) ignore(g string, v *trackerView, why string) {
	v.ignored = true
	b.ignored.Inc()
	b.log.Warn("bloom: no longer waiting for a query server's filter; it stopped answering from its filter before this", "group", g, "reason", why, "lease", b.lease)
}
