package bloom_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/cairnfs/cairn/internal/bloom"
	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/queue"
	"github.com/cairnfs/cairn/internal/writer"
)

// A filter that outgrows its sizing is rebuilt larger in the background,
// keeps answering meanwhile, and the rebuilt one still holds every key.
func TestSaturatedFilterIsRebuilt(t *testing.T) {
	_, qcfg, reg, st := setup(t)
	ctx := context.Background()
	ns, _ := reg.Namespace("user")
	age, _ := reg.Lookup("user.age")
	const lease = 2 * time.Second

	w, err := writer.New(qcfg, writer.Config{FilterLease: lease}, reg, st, nil, quiet())
	if err != nil {
		t.Fatal(err)
	}
	wctx, stopWriter := context.WithCancel(ctx)
	wdone := make(chan error, 1)
	go func() { wdone <- w.Run(wctx) }()
	defer func() { stopWriter(); <-wdone }()

	preg := prometheus.NewRegistry()
	tr, err := bloom.NewTracker(bloom.TrackerConfig{Specs: []bloom.Spec{{Namespace: "user", ExpectedKeys: 50, FalsePositiveRate: 0.01}},
		Lease: lease, CommitInterval: 10 * time.Millisecond}, qcfg, reg, st, preg, quiet())
	if err != nil {
		t.Fatal(err)
	}
	tctx, stopTracker := context.WithCancel(ctx)
	tdone := make(chan error, 1)
	go func() { tdone <- tr.Run(tctx) }()
	defer func() { stopTracker(); <-tdone }()
	guard := bloom.NewGuard(st, tr, true, preg, quiet())

	prod, err := queue.NewProducer(qcfg, nil, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	const n = 400 // 8× the sizing: three rebuilds, to 400
	var keys []string
	for i := range n {
		k := fmt.Sprintf("k-%d", i)
		keys = append(keys, k)
		rec := &queue.Record{Kind: queue.KindUpload, Entities: []queue.Entity{{Namespace: "user", Key: k,
			Values: []queue.Value{{FQN: "user.age", Value: int64(i), ObservedAt: time.Now()}}}}}
		if err := prod.Persist(ctx, queue.EntityKey("user", k), rec); err != nil {
			t.Fatal(err)
		}
		if i%20 == 0 { // keep reading while the filter grows
			if _, err := guard.Read(ctx, ns, keys, []*feature.Feature{age}); err != nil {
				t.Fatal(err)
			}
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for sum(t, preg, "cairn_bloom_rebuilds_total", "", "") < 3 || !allPresent(t, tr, keys) || ruledOut(tr) < 950 {
		if time.Now().After(deadline) {
			t.Fatalf("rebuilds %v; filter holds every key: %v; absent keys ruled out: %d of 1000",
				sum(t, preg, "cairn_bloom_rebuilds_total", "", ""), allPresent(t, tr, keys), ruledOut(tr))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := guard.Read(ctx, ns, keys, []*feature.Feature{age}); err != nil {
		t.Fatal(err)
	}
	if fn := sum(t, preg, "cairn_bloom_debug_false_negatives_total", "", ""); fn != 0 {
		t.Errorf("%v false negatives across rebuilds", fn)
	}
}

// ruledOut counts how many of 1000 never-written keys the filter rules out:
// about 990 for a filter sized for the keys it holds.
func ruledOut(tr *bloom.Tracker) int {
	n := 0
	for i := range 1000 {
		if present, ok := tr.MayContain("user", fmt.Sprintf("never-%d", i)); ok && !present {
			n++
		}
	}
	return n
}

func allPresent(t *testing.T, tr *bloom.Tracker, keys []string) bool {
	for _, k := range keys {
		if present, ok := tr.MayContain("user", k); !ok || !present {
			return false
		}
	}
	return true
}

// Defect 7 of issue 9: a saturated filter was rebuilt twice as large
// however large it already was, past the validated maximum sizing. At the
// cap it is now kept, reported, and never grows.
func TestSaturatedFilterStopsGrowingAtTheCap(t *testing.T) {
	_, qcfg, reg, st := setup(t)
	const lease = time.Second
	preg := prometheus.NewRegistry()
	tr, err := bloom.NewTracker(bloom.TrackerConfig{Specs: []bloom.Spec{{Namespace: "user", ExpectedKeys: 50, FalsePositiveRate: 0.01}},
		Lease: lease, CommitInterval: 10 * time.Millisecond, MaxExpectedKeys: 100}, qcfg, reg, st, preg, quiet())
	if err != nil {
		t.Fatal(err)
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

	const n = 400 // 8× the sizing, 4× the cap
	var keys []string
	for i := range n {
		k := fmt.Sprintf("k-%d", i)
		keys = append(keys, k)
		produce(t, cl, qcfg, k)
	}
	waitFor(t, "the filter to saturate at the cap", func() bool {
		return sum(t, preg, "cairn_bloom_rebuilds_capped_total", "", "") == 1 && allPresent(t, tr, keys)
	})
	time.Sleep(lease) // four more chances to rebuild
	if got := sum(t, preg, "cairn_bloom_rebuilds_total", "", ""); got != 1 {
		t.Errorf("%v rebuilds; want 1 (50 to the cap of 100)", got)
	}
	if got := sum(t, preg, "cairn_bloom_rebuilds_capped_total", "", ""); got != 1 {
		t.Errorf("saturation at the cap counted %v times; want 1", got)
	}
	if got := sum(t, preg, "cairn_bloom_saturated", "", ""); got != 1 {
		t.Errorf("cairn_bloom_saturated %v; want 1", got)
	}
	if !allPresent(t, tr, keys) {
		t.Error("a key is missing from the capped filter")
	}
	if _, err := bloom.NewTracker(bloom.TrackerConfig{Specs: []bloom.Spec{{Namespace: "user", ExpectedKeys: 200}}, MaxExpectedKeys: 100},
		qcfg, reg, st, nil, quiet()); err == nil {
		t.Error("a sizing over the cap was accepted")
	}
}
