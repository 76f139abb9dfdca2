package writer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/cairnfs/cairn/internal/feature"
)

// UnknownFeatureError reports a record naming a namespace, or a feature,
// that the writer's registry does not have.
type UnknownFeatureError struct {
	// Namespace is the record's namespace.
	Namespace string
	// Feature is the unknown feature's FQN; empty when the namespace
	// itself is unknown.
	Feature string
}

func (e *UnknownFeatureError) Error() string {
	if e.Feature == "" {
		return fmt.Sprintf("unknown namespace %q", e.Namespace)
	}
	return fmt.Sprintf("unknown feature %q in namespace %q", e.Feature, e.Namespace)
}

// knownBy reports whether reg has what e names.
func (e *UnknownFeatureError) knownBy(reg *feature.Registry) bool {
	if _, ok := reg.Namespace(e.Namespace); !ok {
		return false
	}
	if e.Feature == "" {
		return true
	}
	_, ok := reg.Lookup(e.Feature)
	return ok
}

// PausedError reports a partition the writer paused at a record naming
// something its registry does not know.
type PausedError struct {
	Topic     string
	Partition int32
	// Offset is the record's: nothing at or after it is written or
	// committed until the partition resumes.
	Offset int64
	// Since is when the partition was paused.
	Since time.Time
	// Unknown is what the record names.
	Unknown *UnknownFeatureError
}

func (e *PausedError) Error() string {
	return fmt.Sprintf("writer: partition %d of %s paused at offset %d since %s: %v; reload the feature file",
		e.Partition, e.Topic, e.Offset, e.Since.UTC().Format(time.RFC3339), e.Unknown)
}

// Unwrap returns e.Unknown.
func (e *PausedError) Unwrap() error { return e.Unknown }

// pausedAt is a partition paused at one record.
type pausedAt struct {
	offset  int64
	since   time.Time
	ts      time.Time // the record's timestamp, for cairn_writer_lag_seconds
	unknown *UnknownFeatureError
}

// Ready returns nil while every partition of this writer makes progress, or
// the *PausedError of each partition paused at an unknown namespace or
// feature, joined. The process's /readyz of `cairn write` reports it. It is
// cheap and safe to call concurrently with Run.
func (w *Writer) Ready() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	parts := make([]int32, 0, len(w.mu.paused))
	for p := range w.mu.paused {
		parts = append(parts, p)
	}
	slices.Sort(parts)
	errs := make([]error, 0, len(parts))
	for _, p := range parts {
		pa := w.mu.paused[p]
		errs = append(errs, &PausedError{Topic: w.qcfg.PersistTopic, Partition: p, Offset: pa.offset, Since: pa.since, Unknown: pa.unknown})
	}
	return errors.Join(errs...)
}

// SetRegistry replaces the registry records are checked against, as on a
// reload of the feature file, and resumes every partition paused at a record
// whose names the new registry knows: that record is the first one written.
// It is safe to call concurrently with Run.
func (w *Writer) SetRegistry(reg *feature.Registry) {
	w.mu.Lock()
	w.mu.reg = reg
	var resumed []int32
	for p, pa := range w.mu.paused {
		if pa.unknown.knownBy(reg) {
			resumed = append(resumed, p)
			delete(w.mu.paused, p)
		}
	}
	if len(resumed) > 0 && w.cl != nil {
		// Under the lock, so that a pause decided against the old
		// registry cannot land after this resume (see pause).
		w.cl.ResumeFetchPartitions(map[string][]int32{w.qcfg.PersistTopic: resumed})
	}
	w.m.paused.Set(float64(len(w.mu.paused)))
	topic := w.qcfg.PersistTopic // under the lock: a switch of cluster changes it
	w.mu.Unlock()
	if len(resumed) > 0 {
		slices.Sort(resumed)
		w.log.Info("writer: registry reloaded; resuming partitions", "topic", topic, "partitions", resumed)
	}
}

// snapshot returns the registry and the set of paused partitions.
func (w *Writer) snapshot() (*feature.Registry, map[int32]bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	paused := make(map[int32]bool, len(w.mu.paused))
	for p := range w.mu.paused {
		paused[p] = true
	}
	return w.mu.reg, paused
}

// pause stops r's partition at r, which names what the registry does not
// know. It runs between a poll and its AllowRebalance, so no rebalance can
// revoke the partition meanwhile, as SetOffsets requires.
func (w *Writer) pause(r *kgo.Record, unknown *UnknownFeatureError) {
	// Rewind to r: the fetch position is past it (the records after it
	// were polled too). Fetches for a paused partition are dropped without
	// moving the position, so a resume fetches from r again.
	w.cl.SetOffsets(map[string]map[int32]kgo.EpochOffset{
		r.Topic: {r.Partition: {Epoch: r.LeaderEpoch, Offset: r.Offset}},
	})
	w.mu.Lock()
	defer w.mu.Unlock()
	if unknown.knownBy(w.mu.reg) {
		// The registry was reloaded since this batch was decoded: the
		// rewound partition fetches r again right away.
		return
	}
	w.cl.PauseFetchPartitions(map[string][]int32{r.Topic: {r.Partition}})
	w.mu.paused[r.Partition] = pausedAt{offset: r.Offset, since: time.Now(), ts: r.Timestamp, unknown: unknown}
	w.m.paused.Set(float64(len(w.mu.paused)))
	// Once per pause: the partition stays paused until a reload.
	w.log.Warn("writer: partition paused at a record naming what this writer's feature file lacks; reload it (SIGHUP) or restart with the query servers' feature file",
		"topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "namespace", unknown.Namespace, "feature", unknown.Feature)
}

// assigned records partitions given to this writer.
func (w *Writer) assigned(_ context.Context, _ *kgo.Client, parts map[string][]int32) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range parts[w.qcfg.PersistTopic] {
		w.mu.owned[p] = true
	}
}

// revoked forgets partitions taken from this writer (revoked or lost). A
// paused one is resumed in the client, whose pause outlives assignments:
// should it come back, it is fetched from its committed offset (the
// record it was paused at) and paused again if still unknown. Its lag
// series is deleted.
func (w *Writer) revoked(_ context.Context, cl *kgo.Client, parts map[string][]int32) {
	ps := parts[w.qcfg.PersistTopic]
	if len(ps) == 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var resume []int32
	for _, p := range ps {
		delete(w.mu.owned, p)
		w.m.lagRecords.DeleteLabelValues(partitionLabel(p))
		if _, ok := w.mu.paused[p]; ok {
			delete(w.mu.paused, p)
			resume = append(resume, p)
		}
	}
	if len(resume) > 0 {
		cl.ResumeFetchPartitions(map[string][]int32{w.qcfg.PersistTopic: resume})
	}
	w.m.paused.Set(float64(len(w.mu.paused)))
}
