package bloom_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/cairnfs/cairn/internal/bloom"
	"github.com/cairnfs/cairn/internal/queue"
)

// fetchBlock holds every Fetch request the cluster receives until released,
// as a broker does for a consumer behind a network partition or an ACL
// that denies reading the topic, while every other request (commits, offset
// listings) goes through.
type fetchBlock struct {
	release chan struct{}
	held    atomic.Int64
}

func blockFetches(c *kfake.Cluster) *fetchBlock {
	fb := &fetchBlock{release: make(chan struct{})}
	c.ControlKey(int16(kmsg.Fetch), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		select {
		case <-fb.release:
			return nil, nil, false
		default:
		}
		fb.held.Add(1)
		c.SleepControl(func() { <-fb.release })
		return nil, nil, false
	})
	return fb
}

func (fb *fetchBlock) Release() {
	select {
	case <-fb.release:
	default:
		close(fb.release)
	}
}

// produce appends one upload of user key to the persistence topic and
// returns the barrier's ends for it.
func produce(t *testing.T, cl *kgo.Client, qcfg queue.Config, key string) map[int32]int64 {
	t.Helper()
	rec := &queue.Record{Kind: queue.KindUpload, Entities: []queue.Entity{{Namespace: "user", Key: key,
		Values: []queue.Value{{FQN: "user.age", Value: int64(1), ObservedAt: time.Now()}}}}}
	v, err := queue.AppendRecord(nil, rec)
	if err != nil {
		t.Fatal(err)
	}
	r, err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: qcfg.PersistTopic, Key: queue.EntityKey("user", key), Value: v}).First()
	if err != nil {
		t.Fatal(err)
	}
	return map[int32]int64{r.Partition: r.Offset + 1}
}

// Defect 3 of issue 9: a query server whose tracker could still record its
// position but no longer read the topic renewed its lease forever, so every
// writer waited for it without limit and kept trusting its "absent".
func TestStuckTrackerReleasesWritersAndStopsAnswering(t *testing.T) {
	c, qcfg, reg, st := setup(t)
	const lease = 2 * time.Second
	ctx := context.Background()
	tr, err := bloom.NewTracker(bloom.TrackerConfig{Specs: []bloom.Spec{{Namespace: "user", ExpectedKeys: 100, FalsePositiveRate: 0.01}}, Lease: lease,
		CommitInterval: 10 * time.Millisecond}, qcfg, reg, st, nil, quiet())
	if err != nil {
		t.Fatal(err)
	}
	if tr.Ready() {
		t.Fatal("ready before it ran")
	}
	tctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- tr.Run(tctx) }()
	var fb *fetchBlock
	defer func() {
		if fb != nil {
			fb.Release()
		}
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	cl, err := kgo.NewClient(qcfg.ClientOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	preg := prometheus.NewRegistry()
	b := bloom.NewBarrier(kadm.NewClient(cl), qcfg.PersistTopic, "", lease, preg, quiet())

	usable := func() bool { _, ok := tr.MayContain("user", "nobody"); return ok }
	waitFor(t, "the filter to answer", usable)
	if !tr.Ready() {
		t.Fatal("answering but not ready")
	}
	// A live tracker holds a batch only until it has read it.
	wctx, wcancel := context.WithTimeout(ctx, lease/2)
	if err := b.Wait(wctx, produce(t, cl, qcfg, "before")); err != nil {
		t.Fatalf("a healthy tracker held the batch: %v", err)
	}
	wcancel()

	// The tracker's fetches hang from now on; one record lets the fetch
	// already waiting at the broker return, so the next one is held.
	fb = blockFetches(c)
	produce(t, cl, qcfg, "flush")
	waitFor(t, "a fetch to be held", func() bool { return fb.held.Load() > 0 })

	ends := produce(t, cl, qcfg, "stuck")
	start := time.Now()
	wctx, wcancel = context.WithTimeout(ctx, 4*lease)
	defer wcancel()
	if err := b.Wait(wctx, ends); err != nil {
		t.Fatalf("the writer still waits for a tracker that cannot read the topic after %v: %v", time.Since(start), err)
	}
	if took := time.Since(start); took > lease+lease/2 {
		t.Errorf("the writer waited %v for a stuck tracker; want about one lease (%v)", took, lease)
	}
	// The writer may now write "stuck" to the store, which the stuck
	// filter never saw: it must not be answering "absent" any more.
	if present, ok := tr.MayContain("user", "stuck"); ok && !present {
		t.Fatal("the stuck tracker answers absent for a key a writer stopped waiting for it to read")
	}
	if usable() {
		t.Error("the stuck tracker still answers from its filter")
	}
	if n := sum(t, preg, "cairn_bloom_barrier_trackers_ignored_total", "", ""); n != 1 {
		t.Errorf("ignored trackers counted %v times; want 1", n)
	}
	// Later batches do not wait for it again while it stays stuck.
	start = time.Now()
	if err := b.Wait(wctx, produce(t, cl, qcfg, "later")); err != nil || time.Since(start) > lease/2 {
		t.Errorf("the next batch waited %v for the ignored tracker (%v)", time.Since(start), err)
	}
	if n := sum(t, preg, "cairn_bloom_barrier_trackers_ignored_total", "", ""); n != 1 {
		t.Errorf("ignored trackers counted %v times after a second batch; want 1", n)
	}

	// Once it can read again it catches up, answers again with every key,
	// and writers wait for it again.
	fb.Release()
	waitFor(t, "the filter to answer again", usable)
	for _, k := range []string{"before", "flush", "stuck", "later"} {
		if present, ok := tr.MayContain("user", k); !ok || !present {
			t.Errorf("after catching up, %q: present %v, usable %v", k, present, ok)
		}
	}
	wctx, wcancel = context.WithTimeout(ctx, lease/2)
	defer wcancel()
	if err := b.Wait(wctx, produce(t, cl, qcfg, "after")); err != nil {
		t.Fatal(err)
	}
	if present, ok := tr.MayContain("user", "after"); !ok || !present {
		t.Errorf("a batch passed the barrier before the recovered tracker read it: present %v, usable %v", present, ok)
	}
}

// Defect 5 of issue 9: cairn_bloom_barrier_trackers_ignored_total counted
// every poll that skipped a dead tracker, not the tracker.
func TestBarrierCountsEachIgnoredTrackerOnce(t *testing.T) {
	_, qcfg, _, _ := setup(t)
	ctx := context.Background()
	cl, err := kgo.NewClient(qcfg.ClientOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	for _, g := range []string{"ghost-1", "ghost-2"} {
		var os kadm.Offsets
		os.Add(kadm.Offset{Topic: qcfg.PersistTopic, Partition: 0, At: 0, LeaderEpoch: -1, Metadata: "7"})
		if err := adm.CommitAllOffsets(ctx, bloom.DefaultGroupPrefix+g, os); err != nil {
			t.Fatal(err)
		}
	}
	reg := prometheus.NewRegistry()
	b := bloom.NewBarrier(adm, qcfg.PersistTopic, "", time.Second, reg, quiet())
	for i := range 3 {
		if err := b.Wait(ctx, map[int32]int64{0: int64(5 + i)}); err != nil {
			t.Fatal(err)
		}
	}
	if n := sum(t, reg, "cairn_bloom_barrier_trackers_ignored_total", "", ""); n != 2 {
		t.Errorf("two dead trackers over three batches counted %v times; want 2", n)
	}
}

// A tracker stops promptly when told to, even with the broker hung: it
// gives up deleting its group after half a lease (writers ignore the group
// after a lease anyway).
func TestTrackerStopsPromptlyWithTheBrokerHung(t *testing.T) {
	c, qcfg, reg, st := setup(t)
	const lease = 2 * time.Second
	tr, err := bloom.NewTracker(bloom.TrackerConfig{Specs: []bloom.Spec{{Namespace: "user", ExpectedKeys: 100, FalsePositiveRate: 0.01}}, Lease: lease,
		CommitInterval: 10 * time.Millisecond}, qcfg, reg, st, nil, quiet())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx) }()
	waitFor(t, "the filter to answer", func() bool { _, ok := tr.MayContain("user", "nobody"); return ok })

	release := make(chan struct{})
	defer close(release)
	c.Control(func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		select {
		case <-release:
			return nil, nil, false
		default:
		}
		c.SleepControl(func() { <-release })
		return nil, nil, false
	})
	time.Sleep(100 * time.Millisecond) // let the hang catch requests in flight
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Error(err)
		}
	case <-time.After(lease/2 + 2*time.Second):
		t.Fatalf("Run still running %v after its context was cancelled", time.Since(start))
	}
	t.Logf("stopped in %v", time.Since(start))
	if _, ok := tr.MayContain("user", "nobody"); ok {
		t.Error("a stopped tracker still answers from its filter")
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A Spec written in code, without a false-positive rate, built a filter of
// no usable size: the first key added panicked the tracker. Zero fields
// now take the documented defaults, as in CAIRN_BLOOM_NAMESPACES.
func TestTrackerConfigFillsSpecDefaults(t *testing.T) {
	_, qcfg, reg, st := setup(t)
	specs := []bloom.Spec{{Namespace: "user"}}
	tr, err := bloom.NewTracker(bloom.TrackerConfig{Specs: specs, Lease: time.Second}, qcfg, reg, st, nil, quiet())
	if err != nil {
		t.Fatal(err)
	}
	if specs[0].FalsePositiveRate != 0 {
		t.Error("the caller's specs were modified")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx) }()
	defer func() { cancel(); <-done }()
	cl, err := kgo.NewClient(qcfg.ClientOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	waitFor(t, "the filter to answer", func() bool { _, ok := tr.MayContain("user", "nobody"); return ok })
	produce(t, cl, qcfg, "k1")
	waitFor(t, "the key to be in the filter", func() bool { p, ok := tr.MayContain("user", "k1"); return ok && p })
	if _, err := bloom.NewTracker(bloom.TrackerConfig{Specs: []bloom.Spec{{Namespace: "user", FalsePositiveRate: 2}}}, qcfg, reg, st, nil, quiet()); err == nil {
		t.Error("a false-positive rate of 2 was accepted")
	}
}
