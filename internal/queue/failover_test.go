package queue

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func twoClusters(t *testing.T) FailoverConfig {
	t.Helper()
	a, b := cluster(t, 1), cluster(t, 1)
	a.ProduceTimeout, b.ProduceTimeout = testTimeout, testTimeout
	createTopics(t, a)
	createTopics(t, b)
	return FailoverConfig{Primary: a, Secondary: b}
}

// Switch runs every participant not on the target, reports those that
// failed, retries only them, and counts and shows the switch in metrics.
func TestFailoverSwitch(t *testing.T) {
	t.Parallel()
	cfg := FailoverConfig{Primary: Config{Brokers: []string{"a:1"}}, Secondary: Config{Brokers: []string{"b:1"}, PersistTopic: "x.cairn.persist"}}
	reg := prometheus.NewRegistry()
	f, err := NewFailover(cfg, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	var okCalls, badCalls atomic.Int32
	var gotTopic atomic.Value
	f.Register("ok", func(_ context.Context, c Config, at time.Time) error {
		okCalls.Add(1)
		gotTopic.Store(c.PersistTopic)
		if time.Since(at) > time.Minute {
			t.Errorf("failover time %v", at)
		}
		return nil
	})
	fail := atomic.Bool{}
	fail.Store(true)
	f.Register("flaky", func(context.Context, Config, time.Time) error {
		badCalls.Add(1)
		if fail.Load() {
			return errors.New("cluster gone")
		}
		return nil
	})
	if f.Active() != Primary {
		t.Fatalf("active %q at start", f.Active())
	}
	err = f.Switch(context.Background(), Secondary)
	var serr *SwitchError
	if !errors.As(err, &serr) || len(serr.Failed) != 1 || serr.Failed["flaky"] == nil {
		t.Fatalf("got %v, want a SwitchError naming flaky", err)
	}
	if f.Active() != Secondary || gotTopic.Load() != "x.cairn.persist" {
		t.Errorf("active %q, topic given %v", f.Active(), gotTopic.Load())
	}
	if got := f.Clusters(); got["ok"] != Secondary || got["flaky"] != Primary {
		t.Errorf("clusters %v", got)
	}
	fail.Store(false)
	if err := f.Switch(context.Background(), Secondary); err != nil {
		t.Fatal(err)
	}
	if okCalls.Load() != 1 || badCalls.Load() != 2 {
		t.Errorf("calls ok=%d flaky=%d: want 1 and 2 (a retry runs only those that failed)", okCalls.Load(), badCalls.Load())
	}
	if err := f.Switch(context.Background(), Secondary); err != nil || okCalls.Load() != 1 || badCalls.Load() != 2 {
		t.Errorf("a switch to the cluster in use ran participants: %v", err)
	}
	if err := f.Switch(context.Background(), "tertiary"); !errors.Is(err, ErrUnknownCluster) {
		t.Errorf("unknown cluster: %v", err)
	}
	if v := testutil.ToFloat64(f.active.WithLabelValues(Secondary)); v != 1 {
		t.Errorf("cairn_kafka_active_cluster{cluster=secondary} = %v", v)
	}
	if v := testutil.ToFloat64(f.active.WithLabelValues(Primary)); v != 0 {
		t.Errorf("cairn_kafka_active_cluster{cluster=primary} = %v", v)
	}
	if e, o := testutil.ToFloat64(f.failovers.WithLabelValues(Secondary, "error")), testutil.ToFloat64(f.failovers.WithLabelValues(Secondary, "ok")); e != 1 || o != 1 {
		t.Errorf("cairn_kafka_failovers_total error=%v ok=%v: want 1 and 1", e, o)
	}
	// Without a secondary there is nothing to switch to.
	one, err := NewFailover(FailoverConfig{Primary: cfg.Primary}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := one.Switch(context.Background(), Secondary); !errors.Is(err, ErrUnknownCluster) {
		t.Errorf("switch without a secondary: %v", err)
	}
}

// keysIn reads every record of topic in the cluster cfg names and returns
// their keys.
func keysIn(t *testing.T, cfg Config, topic string) map[string]bool {
	t.Helper()
	cl, err := kgo.NewClient(append(cfg.ClientOpts(), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	want := int64(0)
	ends.Each(func(o kadm.ListedOffset) { want += o.Offset })
	keys := map[string]bool{}
	for n := int64(0); n < want; {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records of %s", n, want, topic)
		}
		fs.EachRecord(func(r *kgo.Record) { keys[string(r.Key)] = true; n++ })
	}
	return keys
}

// Uploads run while the producer switches cluster, the old one either
// healthy (a planned switch) or hung (a failover): every upload answered
// as accepted is in one of the two clusters, uploads after the switch go
// to the new one, and failures happen only between the outage (or the
// switch's start) and the switch's end.
func TestProducerSwitchDuringUploads(t *testing.T) {
	t.Parallel()
	for _, hang := range []bool{false, true} {
		t.Run(fmt.Sprintf("hung=%v", hang), func(t *testing.T) {
			t.Parallel()
			fc := twoClusters(t)
			var px *tcpProxy
			if hang {
				fc.Primary, _, px = proxiedCluster(t)
				fc.Primary.ProduceTimeout = testTimeout
				createTopics(t, fc.Primary)
			}
			f, err := NewFailover(fc, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			p := newProducer(t, f.ActiveConfig(), nil, nil)
			f.Register("producer", p.SwitchTo)

			type result struct {
				key        string
				start, end time.Time
				err        error
			}
			var (
				mu      sync.Mutex
				results []result
				n       atomic.Int64
				stop    = make(chan struct{})
				wg      sync.WaitGroup
			)
			for range 8 {
				wg.Go(func() {
					for {
						select {
						case <-stop:
							return
						default:
						}
						i := n.Add(1)
						key := fmt.Sprintf("k%d", i)
						start := time.Now()
						err := p.Persist(context.Background(), []byte(key), upload(int(i)))
						mu.Lock()
						results = append(results, result{key, start, time.Now(), err})
						mu.Unlock()
					}
				})
			}
			time.Sleep(300 * time.Millisecond)
			outage := time.Now()
			if hang {
				px.Hang()
				time.Sleep(200 * time.Millisecond)
			}
			switchStart := time.Now()
			if err := f.Switch(context.Background(), Secondary); err != nil {
				t.Fatal(err)
			}
			switchEnd := time.Now()
			// The grace, and the slack of a loaded machine.
			if took := switchEnd.Sub(switchStart); took > SwitchGrace+2*time.Second {
				t.Errorf("switch took %v: want at most the grace %v and about 1s", took, SwitchGrace)
			}
			time.Sleep(300 * time.Millisecond)
			close(stop)
			wg.Wait()
			if px != nil {
				px.Resume()
			}

			inA := keysIn(t, fc.Primary, fc.Primary.PersistTopic)
			inB := keysIn(t, fc.Secondary, fc.Secondary.PersistTopic)
			var ok, failed, afterOK, afterInB int
			for _, r := range results {
				if r.err != nil {
					failed++
					// Answers of the old clients' records may be read a
					// moment after Switch returns.
					if r.end.Before(outage) || r.start.After(switchEnd) || r.end.After(switchEnd.Add(500*time.Millisecond)) {
						t.Errorf("upload %s failed outside the switch (%v..%v, answered at %v): %v", r.key, switchStart, switchEnd, r.end, r.err)
					}
					continue
				}
				ok++
				if !inA[r.key] && !inB[r.key] {
					t.Errorf("upload %s was acknowledged but is in neither cluster", r.key)
				}
				if r.start.After(switchEnd) {
					afterOK++
					if inB[r.key] {
						afterInB++
					}
				}
			}
			t.Logf("%d accepted, %d failed; %d in the primary, %d in the secondary; switch took %v", ok, failed, len(inA), len(inB), switchEnd.Sub(switchStart))
			if afterOK == 0 || afterInB != afterOK {
				t.Errorf("%d uploads accepted after the switch, %d of them in the secondary: want all, and some", afterOK, afterInB)
			}
			if hang && failed == 0 {
				t.Error("no upload failed although the primary hung: the test did not test the grace")
			}
		})
	}
}

// With CAIRN_KAFKA_AUTO_FAILOVER_AFTER, a process whose active cluster
// stops answering switches to the other after that long, and not while it
// answers.
func TestFailoverAuto(t *testing.T) {
	t.Parallel()
	fc := twoClusters(t)
	var px *tcpProxy
	fc.Primary, _, px = proxiedCluster(t)
	fc.AutoAfter = 2 * time.Second
	f, err := NewFailover(fc, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	switched := make(chan time.Time, 1)
	f.Register("probe", func(_ context.Context, c Config, at time.Time) error {
		if c.Brokers[0] != fc.Secondary.Brokers[0] {
			t.Errorf("switched to %v", c.Brokers)
		}
		switched <- at
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.RunAuto(ctx) }()
	defer func() { cancel(); <-done }()
	select {
	case <-switched:
		t.Fatal("switched while the primary answered")
	case <-time.After(3 * time.Second):
	}
	px.Cut()
	cut := time.Now()
	select {
	case at := <-switched:
		if d := at.Sub(cut); d < fc.AutoAfter {
			t.Errorf("switched %v after the primary went away: want at least %v", d, fc.AutoAfter)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no automatic switch 15s after the primary went away")
	}
	if f.Active() != Secondary {
		t.Errorf("active %q", f.Active())
	}
}

// The lag reader reads the cluster it was switched to.
func TestLagReaderSwitch(t *testing.T) {
	t.Parallel()
	fc := twoClusters(t)
	p := newProducer(t, fc.Secondary, nil, nil)
	for i := range 3 {
		if err := p.Persist(context.Background(), []byte(fmt.Sprint(i)), upload(i)); err != nil {
			t.Fatal(err)
		}
	}
	lr, err := NewLagReader(fc.Primary)
	if err != nil {
		t.Fatal(err)
	}
	defer lr.Close()
	total := func() int64 {
		lag, err := lr.Lag(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for _, v := range lag {
			n += v
		}
		return n
	}
	if n := total(); n != 0 {
		t.Errorf("primary's lag %d: want 0", n)
	}
	if err := lr.SwitchTo(context.Background(), fc.Secondary, time.Now()); err != nil {
		t.Fatal(err)
	}
	if n := total(); n != 3 {
		t.Errorf("secondary's lag %d: want its 3 records", n)
	}
}
