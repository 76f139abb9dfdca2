package writer

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// DependencyError reports a dependency failing for longer than the health
// window.
type DependencyError struct {
	// Dependency is "store" or "kafka".
	Dependency string
	// Since is the first failure of the run with no success since.
	Since time.Time
}

func (e *DependencyError) Error() string {
	return fmt.Sprintf("writer: %s failing since %s (%s)", e.Dependency, e.Since.UTC().Format(time.RFC3339), time.Since(e.Since).Round(time.Second))
}

// Health returns a *DependencyError when store writes ("store"), or Kafka
// fetches, commits, dead-letter produces and offset listings ("kafka"),
// have failed with no success in between for longer than HealthWindow;
// nil otherwise. Dead-letter produces are tracked apart from the rest, so
// that a topic refusing them fails Health even while Kafka answers the
// other requests. Kafka is probed every LagInterval even when no record
// flows; the store only when there is something to write. It is cheap and
// safe to call concurrently with Run.
func (w *Writer) Health() error {
	now := time.Now()
	if since, bad := w.storeHealth.longer(now, w.cfg.HealthWindow); bad {
		return &DependencyError{Dependency: "store", Since: since}
	}
	for _, f := range []*failing{&w.kafkaHealth, &w.deadLetterHealth} {
		if since, bad := f.longer(now, w.cfg.HealthWindow); bad {
			return &DependencyError{Dependency: "kafka", Since: since}
		}
	}
	return nil
}

// failing tracks a run of failures of one dependency.
type failing struct {
	since atomic.Int64 // unix ns of the run's first failure; 0 after a success
}

func (f *failing) fail(now time.Time) { f.since.CompareAndSwap(0, now.UnixNano()) }
func (f *failing) ok()                { f.since.Store(0) }

// longer returns the run's start and whether it is older than window.
func (f *failing) longer(now time.Time, window time.Duration) (time.Time, bool) {
	ns := f.since.Load()
	if ns == 0 {
		return time.Time{}, false
	}
	since := time.Unix(0, ns)
	return since, now.Sub(since) > window
}

// logEvery is how often a failing dependency's log line is repeated.
const logEvery = 10 * time.Second

func (w *Writer) setInflight(t time.Time) {
	w.mu.Lock()
	w.mu.inflight = t
	w.mu.Unlock()
}

// lagSeconds is cairn_writer_lag_seconds: the age of the oldest record
// polled and not yet written.
func (w *Writer) lagSeconds() float64 {
	w.mu.Lock()
	oldest := w.mu.inflight
	for _, pa := range w.mu.paused {
		if oldest.IsZero() || pa.ts.Before(oldest) {
			oldest = pa.ts
		}
	}
	w.mu.Unlock()
	if oldest.IsZero() {
		return 0
	}
	return max(0, time.Since(oldest).Seconds())
}

func partitionLabel(p int32) string { return strconv.Itoa(int(p)) }

// refreshLag sets cairn_writer_lag_records every LagInterval until ctx ends.
func (w *Writer) refreshLag(ctx context.Context) {
	t := time.NewTicker(w.cfg.LagInterval)
	defer t.Stop()
	for {
		w.refreshLagOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// refreshLagOnce reads the persistence topic's start and end offsets,
// bounded by LagInterval, and sets the lag of each
// partition this writer owns. It doubles as the Kafka probe of Health.
func (w *Writer) refreshLagOnce(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, w.cfg.LagInterval)
	defer cancel()
	// A switch of cluster replaces the client, the admin and the topic.
	w.mu.Lock()
	cl, adm, topic := w.cl, w.adm, w.qcfg.PersistTopic
	w.mu.Unlock()
	err := func() error {
		ends, err := adm.ListEndOffsets(rctx, topic)
		if err == nil {
			err = ends.Error()
		}
		if err != nil {
			return fmt.Errorf("list end offsets: %w", err)
		}
		starts, err := adm.ListStartOffsets(rctx, topic)
		if err == nil {
			err = starts.Error()
		}
		if err != nil {
			return fmt.Errorf("list start offsets: %w", err)
		}
		// The group's committed offsets as this member knows them: from
		// joining the group and from its own commits, which are the only
		// ones made to its partitions while it owns them.
		var commits map[int32]kgo.EpochOffset
		if cl != nil { // a member
			commits = cl.CommittedOffsets()[topic]
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		// Under the lock: a partition revoked meanwhile keeps no series.
		for p := range w.mu.owned {
			end, ok := ends.Lookup(topic, p)
			if !ok {
				continue
			}
			at := int64(-1)
			if c, ok := commits[p]; ok {
				at = c.Offset
			}
			if at < 0 {
				// Nothing committed yet: the writer starts at the
				// log's start.
				if s, ok := starts.Lookup(topic, p); ok {
					at = s.Offset
				}
			}
			w.m.lagRecords.WithLabelValues(partitionLabel(p)).Set(float64(max(0, end.Offset-at)))
		}
		return nil
	}()
	if ctx.Err() != nil {
		return // stopping
	}
	if err != nil {
		w.kafkaHealth.fail(time.Now())
		if ok, n := w.kafkaLog.Allow(time.Now()); ok {
			w.log.Warn("writer: reading partition lag failed", "err", err, "suppressed", n)
		}
		return
	}
	w.kafkaHealth.ok()
}
