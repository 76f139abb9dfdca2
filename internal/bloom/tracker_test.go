package bloom_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/cairnfs/cairn/internal/bloom"
	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/queue"
	"github.com/cairnfs/cairn/internal/store/embedded"
	"github.com/cairnfs/cairn/internal/writer"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// sum adds up every sample of the named metric in reg whose labels include
// the given label value (or all, with an empty value).
func sum(t testing.TB, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			ok := label == ""
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					ok = true
				}
			}
			if ok {
				total += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	return total
}

type server struct {
	guard  *bloom.Guard
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
}

// The concurrency test of the design: writers write new keys while queries
// for freshly acknowledged keys run continuously, in debug mode, across a
// query server restart; no read may ever be answered absent by the filter
// while the store has the entity.
func TestNoFalseNegativesUnderConcurrentWrites(t *testing.T) {
	const (
		nKeys  = 2000
		target = 0.05
		lease  = 2 * time.Second
	)
	ctx := context.Background()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	qcfg := queue.Config{Brokers: c.ListenAddrs()}
	qcfg.EnsureDefaults()
	if _, err := queue.CreateTopics(ctx, qcfg, queue.TopicSpec{Partitions: 4, ReplicationFactor: 1, MinInsyncReplicas: 1}); err != nil {
		t.Fatal(err)
	}
	reg, err := feature.Parse("t.yaml", []byte("namespaces:\n  - {name: user, primary_key: id, features: {id: string, age: int}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	ns, _ := reg.Namespace("user")
	age, _ := reg.Lookup("user.age")
	st, err := embedded.Open(t.TempDir(), embedded.Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	// Some keys exist before any query server starts: the scan finds them.
	prod, err := queue.NewProducer(qcfg, nil, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	var acked []string
	var ackedMu sync.Mutex
	upload := func(key string) {
		rec := &queue.Record{Kind: queue.KindUpload, Entities: []queue.Entity{{Namespace: "user", Key: key,
			Values: []queue.Value{{FQN: "user.age", Value: int64(len(key)), ObservedAt: time.Now()}}}}}
		if err := prod.Persist(ctx, queue.EntityKey("user", key), rec); err != nil {
			t.Error(err)
			return
		}
		ackedMu.Lock()
		acked = append(acked, key)
		ackedMu.Unlock()
	}
	for i := range 200 {
		upload(fmt.Sprintf("k-%d", i))
	}

	// Two persistence writers.
	wcfg := writer.Config{FilterLease: lease, MinBackoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}
	var writersWG sync.WaitGroup
	wctx, stopWriters := context.WithCancel(ctx)
	defer func() { stopWriters(); writersWG.Wait() }()
	for range 2 {
		w, err := writer.New(qcfg, wcfg, reg, st, nil, quiet())
		if err != nil {
			t.Fatal(err)
		}
		writersWG.Go(func() { w.Run(wctx) })
	}

	spec := bloom.Spec{Namespace: "user", ExpectedKeys: nKeys, FalsePositiveRate: target}
	startServer := func() *server {
		preg := prometheus.NewRegistry()
		tr, err := bloom.NewTracker(bloom.TrackerConfig{Specs: []bloom.Spec{spec}, Lease: lease, CommitInterval: 10 * time.Millisecond}, qcfg, reg, st, preg, quiet())
		if err != nil {
			t.Fatal(err)
		}
		sctx, cancel := context.WithCancel(ctx)
		s := &server{guard: bloom.NewGuard(st, tr, true, preg, quiet()), reg: preg, cancel: cancel, done: make(chan error, 1)}
		go func() { s.done <- tr.Run(sctx) }()
		return s
	}
	stopServer := func(s *server) {
		s.cancel()
		if err := <-s.done; err != nil {
			t.Errorf("tracker: %v", err)
		}
	}
	var servers [2]atomic.Pointer[server]
	servers[0].Store(startServer())
	servers[1].Store(startServer())

	// Queries: fresh acknowledged keys (the race a filter can lose) and
	// keys never written, on both servers, until told to stop.
	var stopQueries atomic.Bool
	var queriesWG sync.WaitGroup
	var queries atomic.Int64
	for q := range 4 {
		queriesWG.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(q), 1))
			for !stopQueries.Load() {
				ackedMu.Lock()
				n := len(acked)
				keys := []string{acked[n-1-rng.IntN(min(n, 20))], acked[rng.IntN(n)], fmt.Sprintf("never-%d", rng.Int())}
				ackedMu.Unlock()
				s := servers[rng.IntN(2)].Load()
				if _, err := s.guard.Read(ctx, ns, keys, []*feature.Feature{age}); err != nil {
					t.Error(err)
					return
				}
				queries.Add(1)
			}
		})
	}

	// Uploads from several producers, with a query server restart halfway.
	var uploadsWG sync.WaitGroup
	var next atomic.Int64
	next.Store(200)
	for range 3 {
		uploadsWG.Go(func() {
			for i := next.Add(1) - 1; i < nKeys; i = next.Add(1) - 1 {
				upload(fmt.Sprintf("k-%d", i))
				if i == nKeys/2 {
					old := servers[0].Load()
					servers[0].Store(startServer())
					stopServer(old)
				}
			}
		})
	}
	uploadsWG.Wait()
	time.Sleep(200 * time.Millisecond)
	stopQueries.Store(true)
	queriesWG.Wait()

	for i := range servers {
		reg := servers[i].Load().reg
		if fn := sum(t, reg, "cairn_bloom_debug_false_negatives_total", "", ""); fn != 0 {
			t.Errorf("server %d: %v false negatives", i, fn)
		}
		absent := sum(t, reg, "cairn_bloom_lookups_total", "answer", "absent")
		maybe := sum(t, reg, "cairn_bloom_lookups_total", "answer", "maybe_present")
		if absent == 0 || maybe == 0 {
			t.Errorf("server %d: the filter was hardly used (absent %v, maybe present %v); the test proves nothing", i, absent, maybe)
		}
	}
	t.Logf("%d queries", queries.Load())

	// Every key written: now the measured false-positive rate over absent
	// keys is the target's, within 25%.
	s := servers[1].Load()
	deadline := time.Now().Add(20 * time.Second)
	for {
		rows, err := st.Read(ctx, ns, []string{fmt.Sprintf("k-%d", nKeys-1), fmt.Sprintf("k-%d", nKeys/3)}, []*feature.Feature{age})
		if err == nil && rows[0].Found && rows[1].Found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("writers did not catch up")
		}
		time.Sleep(20 * time.Millisecond)
	}
	before := sum(t, s.reg, "cairn_bloom_false_positives_total", "", "")
	beforeAbsent := sum(t, s.reg, "cairn_bloom_lookups_total", "answer", "absent")
	keys := make([]string, 0, 100)
	for i := range 20_000 {
		keys = append(keys, fmt.Sprintf("absent-%d", i))
		if len(keys) == cap(keys) {
			if _, err := s.guard.Read(ctx, ns, keys, []*feature.Feature{age}); err != nil {
				t.Fatal(err)
			}
			keys = keys[:0]
		}
	}
	fp := sum(t, s.reg, "cairn_bloom_false_positives_total", "", "") - before
	tn := sum(t, s.reg, "cairn_bloom_lookups_total", "answer", "absent") - beforeAbsent
	rate := fp / (fp + tn)
	t.Logf("measured false-positive rate %.4f (target %g) over %v absent keys", rate, target, fp+tn)
	if rate < target*0.75 || rate > target*1.25 {
		t.Errorf("measured false-positive rate %.4f, not within 25%% of %g", rate, target)
	}
	stopServer(servers[0].Load())
	stopServer(servers[1].Load())
}
