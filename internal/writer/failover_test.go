package writer

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/cairnfs/cairn/internal/queue"
)

// secondary starts the second cluster of e: its topics carry prefix, as
// with MSK Replicator's PREFIXED_WITH_SOURCE_CLUSTER_ALIAS naming, and
// the writers' group keeps its name.
func (e *env) secondary(prefix string) queue.Config {
	e.t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(c.Close)
	cfg := queue.SecondaryConfig(e.qcfg, c.ListenAddrs(), queue.Security{}, prefix)
	if err := cfg.ReadFiles(); err != nil {
		e.t.Fatal(err)
	}
	if _, err := queue.CreateTopics(context.Background(), cfg, queue.TopicSpec{Partitions: 3, ReplicationFactor: 1, MinInsyncReplicas: 1}); err != nil {
		e.t.Fatal(err)
	}
	return cfg
}

// replicate writes what a replicator would have copied to one partition:
// records with their original timestamps.
func replicate(t *testing.T, cfg queue.Config, partition int32, ts time.Time, values ...[]byte) {
	t.Helper()
	cl, err := kgo.NewClient(append(cfg.ClientOpts(), kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, v := range values {
		r := &kgo.Record{Topic: cfg.PersistTopic, Partition: partition, Value: v, Timestamp: ts}
		if err := cl.ProduceSync(context.Background(), r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
}

// commitOffsets commits the group's offsets on the cluster cfg names, as
// the replicator's offset translation would.
func commitOffsets(t *testing.T, cfg queue.Config, offsets map[int32]int64) {
	t.Helper()
	cl, err := kgo.NewClient(cfg.ClientOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	set := kadm.Offsets{}
	for p, o := range offsets {
		set.AddOffset(cfg.PersistTopic, p, o, -1)
	}
	resp, err := kadm.NewClient(cl).CommitOffsets(context.Background(), cfg.WriterGroup, set)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
}

// A writer switched to the secondary resumes each partition from the
// replicated committed offset when it is recent, and from the first record
// after the failover time minus the rewind when the offset is missing or
// older; records written again change nothing (newest-wins).
func TestSwitchToSecondaryResumesFromReplicatedOffsets(t *testing.T) {
	e := newEnv(t)
	sec := e.secondary("primary-alias.")
	now := time.Now()
	old, recent := now.Add(-10*time.Minute), now.Add(-time.Minute)

	// On the primary: u1's newest age, written by the writer before the
	// failover.
	e.produceTo(0, upload(t, "u1", t0.Add(2*time.Second), "user.age", int64(42)))
	reg := prometheus.NewRegistry()
	w, err := New(e.qcfg, Config{MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}, e.reg, e.store, reg, quiet())
	if err != nil {
		t.Fatal(err)
	}
	w.SetRewind(5 * time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := w.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	defer func() { cancel(); wg.Wait() }()
	eventually(t, "the primary's record written", func() bool { return e.read("u1")[0].Value == int64(42) })
	written := func() float64 { return testutil.ToFloat64(w.m.records.WithLabelValues("written")) }
	eventually(t, "its count", func() bool { return written() == 1 })

	// On the secondary, as replicated:
	// p0: 5 recent records, the group's offset 3 replicated: 2 to write.
	// p1: 2 old and 3 recent records, no offset: the 3 recent ones.
	// p2: 2 old and 3 recent records, offset 1 (older than the rewind):
	//     the 3 recent ones.
	// The recent records of p1 replay u1's age: older (7) and the same
	// (42) value.
	for range 5 {
		replicate(t, sec, 0, recent, upload(t, "p0", t0, "user.name", "p0"))
	}
	replicate(t, sec, 1, old, upload(t, "p1-old", t0, "user.name", "old"), upload(t, "p1-old", t0, "user.name", "old"))
	replicate(t, sec, 1, recent,
		upload(t, "u1", t0, "user.age", int64(7)),
		upload(t, "u1", t0.Add(2*time.Second), "user.age", int64(42)),
		upload(t, "p1", t0, "user.name", "p1"))
	replicate(t, sec, 2, old, upload(t, "p2-old", t0, "user.name", "old"), upload(t, "p2-old", t0, "user.name", "old"))
	for range 3 {
		replicate(t, sec, 2, recent, upload(t, "p2", t0, "user.name", "p2"))
	}
	commitOffsets(t, sec, map[int32]int64{0: 3, 2: 1})

	sctx, scancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer scancel()
	if err := w.SwitchTo(sctx, sec, now); err != nil {
		t.Fatal(err)
	}
	eventually(t, "8 records of the secondary written", func() bool { return written() == 1+8 })
	for _, key := range []string{"p1-old", "p2-old"} {
		if v := e.read(key)[1].Value; v != nil {
			t.Errorf("%s = %v: a record older than the rewind was written", key, v)
		}
	}
	if c := e.read("u1")[0]; c.Value != int64(42) || !c.ObservedAt.Equal(t0.Add(2*time.Second)) {
		t.Errorf("u1.age = %+v after the replay: want 42 observed at t0+2s, unchanged", c)
	}
	// The group on the secondary commits what the writer wrote there.
	sc := &env{t: t, qcfg: sec}
	var err2 error
	if sc.client, err2 = kgo.NewClient(sec.ClientOpts()...); err2 != nil {
		t.Fatal(err2)
	}
	defer sc.client.Close()
	eventually(t, "the secondary's offsets committed", func() bool {
		return sc.committedAt(0) == 5 && sc.committedAt(1) == 5 && sc.committedAt(2) == 5
	})
	// New records on the secondary are written; the primary is left.
	replicate(t, sec, 1, time.Now(), upload(t, "after", t0, "user.name", "after"))
	eventually(t, "a record produced after the switch written", func() bool { return e.read("after")[1].Value == "after" })
	e.produceTo(0, upload(t, "primary-after", t0, "user.name", "x"))
	time.Sleep(300 * time.Millisecond)
	if v := e.read("primary-after")[1].Value; v != nil {
		t.Errorf("the writer still consumes the primary: %v", v)
	}
}

// A switch to a cluster that does not answer fails within its context and
// leaves the writer consuming the cluster it was on.
func TestSwitchToUnreachableKeepsConsuming(t *testing.T) {
	e := newEnv(t)
	dead := queue.SecondaryConfig(e.qcfg, []string{"127.0.0.1:1"}, queue.Security{}, "")
	w, err := New(e.qcfg, Config{}, e.reg, e.store, nil, quiet())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := w.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	defer func() { cancel(); wg.Wait() }()
	sctx, scancel := context.WithTimeout(context.Background(), time.Second)
	defer scancel()
	start := time.Now()
	if err := w.SwitchTo(sctx, dead, time.Now()); err == nil {
		t.Fatal("switch to an unreachable cluster succeeded")
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("failed switch took %v: want about its 1s context", took)
	}
	e.produceTo(1, upload(t, "still", t0, "user.name", "here"))
	eventually(t, "the primary still consumed", func() bool { return e.read("still")[1].Value == "here" })
}

// Regression: a secondary on which the writers' group never existed (the
// replicator had copied no offsets) failed the switch with
// GROUP_ID_NOT_FOUND instead of starting at the rewind.
func TestSeedOffsetsWithoutGroup(t *testing.T) {
	e := newEnv(t)
	sec := e.secondary("")
	now := time.Now()
	replicate(t, sec, 0, now.Add(-time.Hour), upload(t, "a", t0, "user.name", "a"))
	replicate(t, sec, 0, now, upload(t, "b", t0, "user.name", "b"))
	parts, err := SeedOffsets(context.Background(), sec, now.Add(-5*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) != 3 {
		t.Errorf("seeded partitions %v: want all 3", parts)
	}
	sc := &env{t: t, qcfg: sec}
	var err2 error
	if sc.client, err2 = kgo.NewClient(sec.ClientOpts()...); err2 != nil {
		t.Fatal(err2)
	}
	defer sc.client.Close()
	if got := sc.committedAt(0); got != 1 {
		t.Errorf("partition 0 seeded at %d: want 1, the first record after the rewind", got)
	}
}
