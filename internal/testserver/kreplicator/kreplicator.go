// Package kreplicator copies a Kafka cluster's topics and consumer-group
// offsets to another cluster, after a lag, as MSK Replicator does between
// the primary and secondary clusters of a two-region deployment. It is a
// test fixture: the failover drill runs it between two brokers of its own
// and computes, from the lag it configured, how many acknowledged records
// a failover may lose.
//
// What it copies, and how:
//
//   - Every topic of the source whose name does not start with "__",
//     created on the target with the source's partition count under the
//     same name, or Options.TopicPrefix followed by it (MSK Replicator's
//     IDENTICAL and PREFIXED_WITH_SOURCE_CLUSTER_ALIAS naming).
//   - Every record, to the same partition, with its key, value, headers
//     and timestamp, no earlier than Options.Lag after its timestamp, in
//     order. Topics are copied from their first record, so a record keeps
//     its offset on the target.
//   - Every consumer group's committed offsets, every Options.SyncEvery,
//     clamped to what has been copied (a group is never ahead of the
//     records on the target), and only while the group has no members on
//     the target: a group active there owns its offsets.
package kreplicator

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Options configure a Replicator.
type Options struct {
	// Lag is how long after its timestamp a record is copied. Default 0.
	Lag time.Duration
	// TopicPrefix is put before every topic name on the target. Default
	// none: identical names.
	TopicPrefix string
	// SyncEvery is the time between two copies of the groups' offsets.
	// Default 500ms.
	SyncEvery time.Duration
	// Log, if set, receives the target's refusals.
	Log func(format string, args ...any)
}

// Replicator copies one cluster to another.
type Replicator struct {
	opts     Options
	from, to []string

	mu struct {
		sync.Mutex
		// copied is, per source topic and partition, the next offset to
		// copy: every record before it is on the target.
		copied map[string]map[int32]int64
		// groups counts the offset copies made, by group.
		groups map[string]int
	}
}

// New returns a replicator from the brokers from to the brokers to.
func New(from, to []string, opts Options) *Replicator {
	if opts.SyncEvery == 0 {
		opts.SyncEvery = 500 * time.Millisecond
	}
	r := &Replicator{opts: opts, from: from, to: to}
	r.mu.copied = map[string]map[int32]int64{}
	r.mu.groups = map[string]int{}
	return r
}

// Copied returns, per source topic and partition, the number of records
// copied so far (the next offset to copy).
func (r *Replicator) Copied() map[string]map[int32]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]map[int32]int64{}
	for t, ps := range r.mu.copied {
		out[t] = map[int32]int64{}
		for p, o := range ps {
			out[t][p] = o
		}
	}
	return out
}

// GroupSyncs returns how many times each group's offsets were copied.
func (r *Replicator) GroupSyncs() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for g, n := range r.mu.groups {
		out[g] = n
	}
	return out
}

// Run copies until ctx ends, and returns nil then; it returns an error
// only when it cannot start. A source or target that stops answering is
// retried: that is the outage the drill makes.
func (r *Replicator) Run(ctx context.Context) error {
	src, err := kgo.NewClient(kgo.SeedBrokers(r.from...),
		kgo.ConsumeRegex(), kgo.ConsumeTopics("^[^_].*"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.MetadataMinAge(250*time.Millisecond), kgo.MetadataMaxAge(time.Second),
		// A fetch that the broker holds open is answered within this
		// even if the broker misses the records' arrival: a copy is
		// never later than its due time by a fetch's whole max wait.
		kgo.FetchMaxWait(250*time.Millisecond))
	if err != nil {
		return fmt.Errorf("kreplicator: source client: %w", err)
	}
	defer src.Close()
	dst, err := kgo.NewClient(kgo.SeedBrokers(r.to...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		return fmt.Errorf("kreplicator: target client: %w", err)
	}
	defer dst.Close()
	srcAdm, dstAdm := kadm.NewClient(src), kadm.NewClient(dst)

	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { r.syncGroups(ctx, srcAdm, dstAdm) })

	// The poll loop hands records over to the copier, which holds each
	// until it is due: polling never waits for a lag, so a record is
	// fetched as soon as it is written and copied at its due time.
	queue := make(chan *kgo.Record, 1<<16)
	wg.Go(func() { r.copy(ctx, dst, queue) })
	defer close(queue)

	created := map[string]bool{}
	for ctx.Err() == nil {
		fetches := src.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		for _, rec := range fetches.Records() {
			if !created[rec.Topic] {
				if err := r.createTopic(ctx, srcAdm, dstAdm, rec.Topic); err != nil {
					return nil // ctx ended
				}
				created[rec.Topic] = true
			}
			select {
			case queue <- rec:
			case <-ctx.Done():
				return nil
			}
		}
	}
	return nil
}

// copy produces the records of queue to the target, in order, each no
// earlier than its due time and without waiting for the one before (the
// target acknowledges in order per partition). A record the target
// refuses is produced again, alone, until it takes it.
func (r *Replicator) copy(ctx context.Context, dst *kgo.Client, queue <-chan *kgo.Record) {
	type refused struct {
		out    *kgo.Record
		topic  string
		offset int64
	}
	retry := make(chan refused, 1<<16)
	for {
		var rec *kgo.Record
		select {
		case c := <-retry:
			if r.opts.Log != nil {
				r.opts.Log("kreplicator: %s/%d refused by the target, produced again", c.topic, c.out.Partition)
			}
			for dst.ProduceSync(ctx, c.out).FirstErr() != nil {
				select {
				case <-ctx.Done():
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
			r.copied(c.topic, c.out.Partition, c.offset)
			continue
		case rec = <-queue:
		case <-ctx.Done():
			return
		}
		if rec == nil {
			return
		}
		if d := time.Until(rec.Timestamp.Add(r.opts.Lag)); d > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(d):
			}
		}
		out := &kgo.Record{Topic: r.opts.TopicPrefix + rec.Topic, Partition: rec.Partition, Key: rec.Key, Value: rec.Value,
			Headers: rec.Headers, Timestamp: rec.Timestamp}
		topic, offset := rec.Topic, rec.Offset
		dst.Produce(ctx, out, func(out *kgo.Record, err error) {
			if err != nil {
				if ctx.Err() == nil {
					retry <- refused{out, topic, offset}
				}
				return
			}
			r.copied(topic, out.Partition, offset)
		})
	}
}

// copied records that the record at offset of topic's partition is on
// the target.
func (r *Replicator) copied(topic string, partition int32, offset int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mu.copied[topic] == nil {
		r.mu.copied[topic] = map[int32]int64{}
	}
	r.mu.copied[topic][partition] = max(r.mu.copied[topic][partition], offset+1)
}

// createTopic creates topic's copy on the target with the source's
// partition count, retrying until it exists or ctx ends.
func (r *Replicator) createTopic(ctx context.Context, srcAdm, dstAdm *kadm.Client, topic string) error {
	for {
		details, err := srcAdm.ListTopics(ctx, topic)
		if err == nil && details.Has(topic) && details[topic].Err == nil {
			n := int32(len(details[topic].Partitions))
			// CreateTopic returns the topic's own error too.
			if _, err := dstAdm.CreateTopic(ctx, n, 1, nil, r.opts.TopicPrefix+topic); err == nil || errors.Is(err, kerr.TopicAlreadyExists) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// syncGroups copies the groups' committed offsets every SyncEvery.
func (r *Replicator) syncGroups(ctx context.Context, srcAdm, dstAdm *kadm.Client) {
	t := time.NewTicker(r.opts.SyncEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		groups, err := srcAdm.ListGroups(ctx)
		if err != nil {
			continue
		}
		for _, g := range groups.Groups() {
			r.syncGroup(ctx, srcAdm, dstAdm, g)
		}
	}
}

func (r *Replicator) syncGroup(ctx context.Context, srcAdm, dstAdm *kadm.Client, group string) {
	// A group with members on the target owns its offsets there.
	if d, err := dstAdm.DescribeGroups(ctx, group); err == nil {
		if dg, ok := d[group]; ok && len(dg.Members) > 0 {
			return
		}
	}
	committed, err := srcAdm.FetchOffsets(ctx, group)
	if err != nil || committed.Error() != nil {
		return
	}
	r.mu.Lock()
	var out kadm.Offsets
	committed.Each(func(o kadm.OffsetResponse) {
		if strings.HasPrefix(o.Topic, "__") || o.Err != nil {
			return
		}
		at := min(o.At, r.mu.copied[o.Topic][o.Partition])
		out.Add(kadm.Offset{Topic: r.opts.TopicPrefix + o.Topic, Partition: o.Partition, At: at, LeaderEpoch: -1, Metadata: o.Metadata})
	})
	r.mu.Unlock()
	if len(out) == 0 {
		return
	}
	if resp, err := dstAdm.CommitOffsets(ctx, group, out); err == nil && resp.Error() == nil {
		r.mu.Lock()
		r.mu.groups[group]++
		r.mu.Unlock()
	}
}
