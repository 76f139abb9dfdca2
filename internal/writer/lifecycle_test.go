package writer

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/store/dynamo/dynamotest"
	"github.com/cairnfs/cairn/internal/testserver/faultproxy"
)

// gauge returns the value of a gauge.
func gauge(t *testing.T, g prometheus.Gauge) float64 {
	t.Helper()
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetGauge().GetValue()
}

// running is a writer started by run.
type running struct {
	t    *testing.T
	w    *Writer
	cfg  Config
	stop context.CancelFunc
	// exited is closed when Run has returned, with err.
	exited chan struct{}
	err    error
}

// run starts a writer on st (the env's store when nil) with fast backoffs.
func (e *env) run(cfg Config, st Store) *running {
	e.t.Helper()
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff, cfg.MaxBackoff = 10*time.Millisecond, 50*time.Millisecond
	}
	if st == nil {
		st = e.store
	}
	w, err := New(e.qcfg, cfg, e.reg, st, nil, quiet())
	if err != nil {
		e.t.Fatal(err)
	}
	w.cfg.EnsureDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{t: e.t, w: w, cfg: w.cfg, stop: cancel, exited: make(chan struct{})}
	go func() {
		defer close(r.exited)
		r.err = w.Run(ctx)
	}()
	e.t.Cleanup(func() {
		cancel()
		select {
		case <-r.exited:
		case <-time.After(time.Minute):
		}
	})
	return r
}

// stopInTime cancels the writer's context and fails the test unless Run
// returns within DrainTimeout plus the group leave's bound and a second.
func (r *running) stopInTime() {
	r.t.Helper()
	limit := r.cfg.DrainTimeout + leaveTimeout + time.Second
	start := time.Now()
	r.stop()
	select {
	case <-r.exited:
		if r.err != nil {
			r.t.Errorf("writer.Run: %v", r.err)
		}
		r.t.Logf("Run returned %v after its context ended", time.Since(start).Round(time.Millisecond))
	case <-time.After(limit):
		r.t.Fatalf("Run still running %v after its context ended", limit)
	}
}

// produceTo writes raw record values to one partition of the persistence
// topic, in order.
func (e *env) produceTo(partition int32, values ...[]byte) {
	e.t.Helper()
	cl, err := kgo.NewClient(append(e.qcfg.ClientOpts(), kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
	if err != nil {
		e.t.Fatal(err)
	}
	defer cl.Close()
	for _, v := range values {
		r := &kgo.Record{Topic: e.qcfg.PersistTopic, Partition: partition, Value: v}
		if err := cl.ProduceSync(context.Background(), r).FirstErr(); err != nil {
			e.t.Fatal(err)
		}
	}
}

// committedAt returns the group's committed offset of one partition, or -1.
func (e *env) committedAt(p int32) int64 {
	offs, err := kadm.NewClient(e.client).FetchOffsets(context.Background(), e.qcfg.WriterGroup)
	if err != nil {
		return -1
	}
	if o, ok := offs.Lookup(e.qcfg.PersistTopic, p); ok {
		return o.At
	}
	return -1
}

// deadLetters counts the records on the dead-letter topic.
func (e *env) deadLetters() int64 {
	e.t.Helper()
	ends, err := kadm.NewClient(e.client).ListEndOffsets(context.Background(), e.qcfg.DeadLetterTopic)
	if err != nil {
		e.t.Fatal(err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
	return n
}

// What broke: a writer stopped (SIGTERM) while the store was down never
// exited. The batch it gave up on at the end of DrainTimeout had been
// polled with rebalances blocked and never allowed again, so Close waited
// forever for the group leave.
func TestStopWhileStoreDownReturnsInTime(t *testing.T) {
	e := newEnv(t)
	st, proxy := dynamotest.OpenProxied(t, 1)
	if _, err := proxy.Add(faultproxy.Rule{Fault: faultproxy.InternalServerError}); err != nil {
		t.Fatal(err)
	}
	e.produce("user\x00u1", upload(t, "u1", t0, "user.age", int64(1)))
	r := e.run(Config{DrainTimeout: 500 * time.Millisecond, HealthWindow: 300 * time.Millisecond}, st)

	eventually(t, "the writer to retry the store twice", func() bool { return counter(t, r.w.m.storeErrors) >= 2 })
	eventually(t, "Health to name the store", func() bool {
		var de *DependencyError
		return errors.As(r.w.Health(), &de) && de.Dependency == "store"
	})
	r.stopInTime()
	if n := e.committed(); n != 0 {
		t.Errorf("%d offsets committed for records never written", n)
	}
}

// What broke: a writer stopped while its dead-letter produce kept failing
// never exited, for the same reason as with the store down.
func TestStopWhileDeadLetterRefusedReturnsInTime(t *testing.T) {
	e := newEnv(t)
	topics, err := kadm.NewClient(e.client).ListTopics(context.Background(), e.qcfg.DeadLetterTopic)
	if err != nil {
		t.Fatal(err)
	}
	dlqID := topics[e.qcfg.DeadLetterTopic].ID // newer Produce versions name topics by id
	var refused atomic.Int64
	e.cluster.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		e.cluster.KeepControl()
		r := req.(*kmsg.ProduceRequest)
		for _, rt := range r.Topics {
			if rt.Topic != e.qcfg.DeadLetterTopic && rt.TopicID != dlqID {
				return nil, nil, false
			}
		}
		refused.Add(1)
		resp := r.ResponseKind().(*kmsg.ProduceResponse)
		for _, rt := range r.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	// Poison first, then a good record behind it in the same partition.
	e.produceTo(0, []byte("not a record"), upload(t, "u1", t0, "user.age", int64(1)))
	r := e.run(Config{DrainTimeout: 500 * time.Millisecond, HealthWindow: 300 * time.Millisecond, LagInterval: time.Minute}, nil)

	eventually(t, "the dead-letter produce refused twice", func() bool { return refused.Load() >= 2 })
	eventually(t, "Health to name kafka", func() bool {
		var de *DependencyError
		return errors.As(r.w.Health(), &de) && de.Dependency == "kafka"
	})
	r.stopInTime()
	if n := e.committed(); n != 0 {
		t.Errorf("%d offsets committed though the poison record was never set aside", n)
	}
	if v := e.read("u1")[0].Value; v != nil {
		t.Errorf("record behind the poison written (%v) before the poison was set aside", v)
	}
}

// A batch held at the Bloom barrier by a query server that never reads
// past it does not hold the writer's stop either.
func TestStopWhileBarrierWaitsReturnsInTime(t *testing.T) {
	e := newEnv(t)
	// A live tracker (its heartbeat seen for less than a lease) stuck at
	// offset 0 of every partition.
	var offs kadm.Offsets
	for p := range int32(3) {
		offs.Add(kadm.Offset{Topic: e.qcfg.PersistTopic, Partition: p, At: 0, LeaderEpoch: -1, Metadata: "stuck"})
	}
	if _, err := kadm.NewClient(e.client).CommitOffsets(context.Background(), "cairn-bloom.stuck", offs); err != nil {
		t.Fatal(err)
	}
	e.produce("user\x00u1", upload(t, "u1", t0, "user.age", int64(1)))
	r := e.run(Config{DrainTimeout: 500 * time.Millisecond, FilterLease: time.Minute}, nil)
	eventually(t, "the batch polled", func() bool { return r.w.lagSeconds() > 0 })
	time.Sleep(200 * time.Millisecond)
	if v := e.read("u1")[0].Value; v != nil {
		t.Fatalf("written (%v) past a tracker that never read the record", v)
	}
	r.stopInTime()
	if n := e.committed(); n != 0 {
		t.Errorf("%d offsets committed for records never written", n)
	}
}

// A writer stopped while Kafka is gone (its commit, the group leave and
// the lag readings all failing) still returns in time.
func TestStopWhileKafkaDownReturnsInTime(t *testing.T) {
	e := newEnv(t)
	e.produce("user\x00u1", upload(t, "u1", t0, "user.age", int64(1)))
	r := e.run(Config{DrainTimeout: 500 * time.Millisecond, HealthWindow: 300 * time.Millisecond, LagInterval: 100 * time.Millisecond}, nil)
	eventually(t, "the record written", func() bool { return e.read("u1")[0].Value == int64(1) })
	e.cluster.Close()
	eventually(t, "Health to name kafka", func() bool {
		var de *DependencyError
		return errors.As(r.w.Health(), &de) && de.Dependency == "kafka"
	})
	r.stopInTime()
}

const registryV2YAML = `
namespaces:
  - name: user
    primary_key: id
    features: {id: string, age: int, name: string, height: int}
`

// What broke: uploads already answered 202 went to the dead-letter topic
// when the writers' feature file was older than the query servers'. Now the
// partition pauses at the record naming the unknown feature, the others go
// on, and a reloaded registry resumes it from that record.
func TestUnknownFeaturePausesPartitionUntilRegistryKnowsIt(t *testing.T) {
	e := newEnv(t)
	e.produceTo(0,
		upload(t, "a", t0, "user.age", int64(1)),
		upload(t, "b", t0, "user.height", int64(180)), // unknown to the writer
		upload(t, "c", t0, "user.age", int64(3)),
	)
	e.produceTo(1, upload(t, "d", t0, "user.age", int64(4)))
	r := e.run(Config{LagInterval: 50 * time.Millisecond}, nil)

	eventually(t, "the other partition written", func() bool { return e.read("d")[0].Value == int64(4) })
	eventually(t, "the record before the unknown one written and committed", func() bool {
		return e.read("a")[0].Value == int64(1) && e.committedAt(0) == 1
	})
	eventually(t, "the other partition committed", func() bool { return e.committedAt(1) == 1 })
	eventually(t, "partition 0's lag read", func() bool { return gauge(t, r.w.m.lagRecords.WithLabelValues("0")) == 2 })
	time.Sleep(200 * time.Millisecond) // time enough to wrongly go on
	if v := e.read("c")[0].Value; v != nil {
		t.Errorf("record behind the unknown one written (%v) while paused", v)
	}
	if got := e.committedAt(0); got != 1 {
		t.Errorf("partition 0 committed at %d while paused at offset 1", got)
	}
	if n := e.deadLetters(); n != 0 {
		t.Errorf("%d records dead-lettered", n)
	}
	err := r.w.Ready()
	var pe *PausedError
	if !errors.As(err, &pe) || pe.Partition != 0 || pe.Offset != 1 || pe.Unknown.Feature != "user.height" {
		t.Errorf("Ready() = %v, want partition 0 paused at offset 1 on user.height", err)
	}
	if err != nil && (!strings.Contains(err.Error(), "partition 0") || !strings.Contains(err.Error(), "user.height")) {
		t.Errorf("Ready() = %q: does not name the partition and the feature", err)
	}
	if g := gauge(t, r.w.m.paused); g != 1 {
		t.Errorf("cairn_writer_paused_partitions = %v, want 1", g)
	}
	if s := r.w.lagSeconds(); s <= 0 {
		t.Errorf("cairn_writer_lag_seconds = %v while a record waits", s)
	}

	reg2, err := feature.Parse("v2.yaml", []byte(registryV2YAML))
	if err != nil {
		t.Fatal(err)
	}
	r.w.SetRegistry(reg2)
	eventually(t, "partition 0 committed to its end", func() bool { return e.committedAt(0) == 3 })
	ns, _ := reg2.Namespace("user")
	height, _ := reg2.Lookup("user.height")
	rows, err := e.store.Read(context.Background(), ns, []string{"b"}, []*feature.Feature{height})
	if err != nil {
		t.Fatal(err)
	}
	if v := rows[0].Cells[0].Value; v != int64(180) {
		t.Errorf("b's height = %v after the reload, want 180", v)
	}
	if v := e.read("c")[0].Value; v != int64(3) {
		t.Errorf("c's age = %v after the reload, want 3", v)
	}
	if err := r.w.Ready(); err != nil {
		t.Errorf("Ready() = %v after the reload", err)
	}
	if g := gauge(t, r.w.m.paused); g != 0 {
		t.Errorf("cairn_writer_paused_partitions = %v after the reload", g)
	}
	eventually(t, "partition 0's lag back to 0", func() bool { return gauge(t, r.w.m.lagRecords.WithLabelValues("0")) == 0 })
	if s := r.w.lagSeconds(); s != 0 {
		t.Errorf("cairn_writer_lag_seconds = %v when caught up", s)
	}
	if n := e.deadLetters(); n != 0 {
		t.Errorf("%d records dead-lettered", n)
	}
	if err := r.w.Health(); err != nil {
		t.Errorf("Health() = %v with the store and Kafka up", err)
	}
}

// What broke: after a writer was killed and restarted, its partitions
// stayed idle until the group's session timeout. With a stable instance id
// the restarted writer takes them back at once.
func TestRestartedStaticMemberTakesPartitionsAtOnce(t *testing.T) {
	e := newEnv(t)
	// A killed writer sends no LeaveGroup: the broker drops them all, so
	// the first writer's member stays in the group as a killed one would.
	e.cluster.ControlKey(int16(kmsg.LeaveGroup), func(req kmsg.Request) (kmsg.Response, error, bool) {
		e.cluster.KeepControl()
		return req.ResponseKind(), nil, true
	})
	cfg := Config{InstanceID: "writer-a", SessionTimeout: time.Minute}
	first := e.run(cfg, nil)
	e.produce("user\x00u1", upload(t, "u1", t0, "user.age", int64(1)))
	eventually(t, "the first writer committed", func() bool { return e.committed() == 1 })
	first.stopInTime()

	start := time.Now()
	e.run(cfg, nil)
	e.produce("user\x00u1", upload(t, "u1", t0.Add(time.Second), "user.age", int64(2)))
	eventually(t, "the restarted writer wrote a fresh record", func() bool { return e.read("u1")[0].Value == int64(2) })
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("restarted writer took %v, want far less than the 1m session timeout", d)
	}
}

func TestFailingWindow(t *testing.T) {
	var f failing
	now := time.Now()
	if _, bad := f.longer(now, time.Second); bad {
		t.Fatal("unhealthy before any failure")
	}
	f.fail(now)
	f.fail(now.Add(time.Second)) // the run started at the first failure
	if _, bad := f.longer(now.Add(time.Second), time.Second); bad {
		t.Error("unhealthy at the window's end, want after it")
	}
	if since, bad := f.longer(now.Add(1500*time.Millisecond), time.Second); !bad || !since.Equal(time.Unix(0, now.UnixNano())) {
		t.Errorf("longer = %v, %v; want the first failure, true", since, bad)
	}
	f.ok()
	if _, bad := f.longer(now.Add(time.Hour), time.Second); bad {
		t.Error("unhealthy after a success")
	}
}
