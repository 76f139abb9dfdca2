package bloom_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/cairnfs/cairn/internal/bloom"
	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/queue"
	"github.com/cairnfs/cairn/internal/store/embedded"
	"github.com/cairnfs/cairn/internal/testserver"
)

func setup(t testing.TB) (*kfake.Cluster, queue.Config, *feature.Registry, *embedded.Store) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	qcfg := queue.Config{Brokers: c.ListenAddrs()}
	qcfg.EnsureDefaults()
	if _, err := queue.CreateTopics(context.Background(), qcfg, queue.TopicSpec{Partitions: 2, ReplicationFactor: 1, MinInsyncReplicas: 1}); err != nil {
		t.Fatal(err)
	}
	reg, err := feature.Parse("t.yaml", []byte("namespaces:\n  - {name: user, primary_key: id, features: {id: string, age: int}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := embedded.Open(t.TempDir(), embedded.Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return c, qcfg, reg, st
}

// A query server that died without deleting its group holds writes back
// for at most one lease.
func TestBarrierIgnoresDeadTrackerAfterLease(t *testing.T) {
	_, qcfg, _, _ := setup(t)
	ctx := context.Background()
	cl, _ := kgo.NewClient(qcfg.ClientOpts()...)
	defer cl.Close()
	adm := kadm.NewClient(cl)
	var os kadm.Offsets
	os.Add(kadm.Offset{Topic: qcfg.PersistTopic, Partition: 0, At: 0, LeaderEpoch: -1, Metadata: "7"})
	if err := adm.CommitAllOffsets(ctx, bloom.DefaultGroupPrefix+"ghost", os); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	const lease = time.Second
	b := bloom.NewBarrier(adm, qcfg.PersistTopic, "", lease, reg, quiet())
	start := time.Now()
	if err := b.Wait(ctx, map[int32]int64{0: 5}); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < lease || took > 3*lease {
		t.Errorf("waited %v for a dead tracker; want about one lease (%v)", took, lease)
	}
	if n := sum(t, reg, "cairn_bloom_barrier_trackers_ignored_total", "", ""); n == 0 {
		t.Error("ignoring the dead tracker was not counted")
	}
	// Batches the ghost already covers pass at once.
	start = time.Now()
	if err := b.Wait(ctx, map[int32]int64{1: 0}); err != nil || time.Since(start) > lease/2 {
		t.Errorf("covered batch waited %v (%v)", time.Since(start), err)
	}
}

// A tracker that cannot record its position stops answering "absent" once
// half a lease has passed: writers may have stopped waiting for it.
func TestTrackerStopsAnsweringWhenItCannotRecordItsPosition(t *testing.T) {
	c, qcfg, reg, st := setup(t)
	const lease = 2 * time.Second
	tr, err := bloom.NewTracker(bloom.TrackerConfig{Specs: []bloom.Spec{{Namespace: "user", ExpectedKeys: 100}}, Lease: lease,
		CommitInterval: 10 * time.Millisecond}, qcfg, reg, st, nil, quiet())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx) }()
	defer func() { cancel(); <-done }()

	usable := func() bool { _, ok := tr.MayContain("user", "nobody"); return ok }
	deadline := time.Now().Add(10 * time.Second)
	for !usable() {
		if time.Now().After(deadline) {
			t.Fatal("filter never became usable")
		}
		time.Sleep(10 * time.Millisecond)
	}
	refusal := testserver.RefuseCommits(c, kerr.CoordinatorNotAvailable)
	refusedAt := time.Now()
	for usable() {
		if time.Since(refusedAt) > lease {
			t.Fatalf("still answering %v after it could no longer record its position", time.Since(refusedAt))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if lost := time.Since(refusedAt); lost > lease/2+lease/4 {
		t.Errorf("stopped answering after %v; want within lease/2 (%v) plus a commit interval", lost, lease/2)
	}
	refusal.Allow()
	deadline = time.Now().Add(10 * time.Second)
	for !usable() {
		if time.Now().After(deadline) {
			t.Fatal("filter never became usable again after commits recovered")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// After a switch of Kafka cluster the barrier reads the trackers of the
// new cluster, forgets the old ones, and its metrics go on counting (a
// second barrier made at the switch counted nowhere).
func TestBarrierSwitchTo(t *testing.T) {
	_, oldCfg, _, _ := setup(t)
	_, newCfg, _, _ := setup(t)
	ctx := context.Background()
	client := func(cfg queue.Config) *kadm.Client {
		cl, err := kgo.NewClient(cfg.ClientOpts()...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		return kadm.NewClient(cl)
	}
	oldAdm, newAdm := client(oldCfg), client(newCfg)
	// A live-looking tracker on the old cluster, behind the batch.
	var os kadm.Offsets
	os.Add(kadm.Offset{Topic: oldCfg.PersistTopic, Partition: 0, At: 0, LeaderEpoch: -1, Metadata: "1"})
	if err := oldAdm.CommitAllOffsets(ctx, bloom.DefaultGroupPrefix+"old", os); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	const lease = 10 * time.Second
	b := bloom.NewBarrier(oldAdm, oldCfg.PersistTopic, "", lease, reg, quiet())
	b.SwitchTo(newAdm, newCfg.PersistTopic)
	// The new cluster has no tracker: the batch passes at once, where the
	// old cluster's tracker would have held it for a lease.
	start := time.Now()
	if err := b.Wait(ctx, map[int32]int64{0: 5}); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > lease/4 {
		t.Errorf("waited %v after the switch: the old cluster's tracker still counts", took)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var waits uint64
	for _, mf := range mfs {
		if mf.GetName() == "cairn_bloom_barrier_wait_seconds" {
			for _, m := range mf.GetMetric() {
				waits += m.GetHistogram().GetSampleCount()
			}
		}
	}
	if waits != 1 {
		t.Errorf("%d waits counted in the barrier's metrics, want the one after the switch", waits)
	}
}
