package writer

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/queue"
	"github.com/cairnfs/cairn/internal/store"
	"github.com/cairnfs/cairn/internal/store/embedded"
	"github.com/cairnfs/cairn/internal/testserver"
)

const registryYAML = `
namespaces:
  - name: user
    primary_key: id
    features: {id: string, age: int, name: string}
`

type env struct {
	t       *testing.T
	cluster *kfake.Cluster
	qcfg    queue.Config
	reg     *feature.Registry
	store   *embedded.Store
	client  *kgo.Client
}

func newEnv(t *testing.T) *env {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	qcfg := queue.Config{Brokers: c.ListenAddrs(), WriterGroup: "writers-" + t.Name()}
	qcfg.EnsureDefaults()
	ctx := context.Background()
	if _, err := queue.CreateTopics(ctx, qcfg, queue.TopicSpec{Partitions: 3, ReplicationFactor: 1, MinInsyncReplicas: 1}); err != nil {
		t.Fatal(err)
	}
	reg, err := feature.Parse("test.yaml", []byte(registryYAML))
	if err != nil {
		t.Fatal(err)
	}
	st, err := embedded.Open(t.TempDir(), embedded.Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cl, err := kgo.NewClient(qcfg.ClientOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return &env{t: t, cluster: c, qcfg: qcfg, reg: reg, store: st, client: cl}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// produce writes raw record values to the persistence topic.
func (e *env) produce(key string, values ...[]byte) {
	e.t.Helper()
	for _, v := range values {
		r := &kgo.Record{Topic: e.qcfg.PersistTopic, Key: []byte(key), Value: v}
		if err := e.client.ProduceSync(context.Background(), r).FirstErr(); err != nil {
			e.t.Fatal(err)
		}
	}
}

func upload(t *testing.T, key string, observedAt time.Time, fqnValues ...any) []byte {
	t.Helper()
	ent := queue.Entity{Namespace: "user", Key: key}
	for i := 0; i < len(fqnValues); i += 2 {
		ent.Values = append(ent.Values, queue.Value{FQN: fqnValues[i].(string), Value: fqnValues[i+1], ObservedAt: observedAt})
	}
	b, err := queue.AppendRecord(nil, &queue.Record{Kind: queue.KindUpload, Entities: []queue.Entity{ent}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// start runs a writer until the returned stop is called.
func (e *env) start(cfg Config) (stop func()) {
	e.t.Helper()
	cfg.MinBackoff = 10 * time.Millisecond
	cfg.MaxBackoff = 50 * time.Millisecond
	w, err := New(e.qcfg, cfg, e.reg, e.store, nil, quiet())
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			e.t.Errorf("writer.Run: %v", err)
		}
	}
}

// read returns the stored cells of user key's age and name.
func (e *env) read(key string) []store.Cell {
	ns, _ := e.reg.Namespace("user")
	age, _ := e.reg.Lookup("user.age")
	name, _ := e.reg.Lookup("user.name")
	rows, err := e.store.Read(context.Background(), ns, []string{key}, []*feature.Feature{age, name})
	if err != nil {
		e.t.Fatal(err)
	}
	return rows[0].Cells
}

// eventually polls cond for up to 10 seconds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// committed returns the group's committed offsets summed over partitions.
func (e *env) committed() int64 {
	adm := kadm.NewClient(e.client)
	offs, err := adm.FetchOffsets(context.Background(), e.qcfg.WriterGroup)
	if err != nil {
		return -1
	}
	var n int64
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Topic == e.qcfg.PersistTopic {
			n += o.At
		}
	})
	return n
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func TestWritesNewestPerFeatureAndCommits(t *testing.T) {
	e := newEnv(t)
	// Out of order on purpose: the t0+2s value must win whatever the order.
	e.produce("user\x00u1",
		upload(t, "u1", t0.Add(2*time.Second), "user.age", int64(42)),
		upload(t, "u1", t0, "user.age", int64(7), "user.name", "old"),
		upload(t, "u1", t0.Add(time.Second), "user.name", "ada"),
	)
	stop := e.start(Config{})
	defer stop()
	eventually(t, "3 offsets committed", func() bool { return e.committed() == 3 })
	cells := e.read("u1")
	if cells[0].Value != int64(42) || !cells[0].ObservedAt.Equal(t0.Add(2*time.Second)) {
		t.Errorf("age = %+v, want 42 observed at t0+2s", cells[0])
	}
	if cells[1].Value != "ada" {
		t.Errorf("name = %+v, want ada", cells[1])
	}
}

func TestPoisonRecordsGoToDeadLetterAndPartitionMovesOn(t *testing.T) {
	e := newEnv(t)
	poison := [][]byte{
		[]byte("not a record"),
		upload(t, "u3", t0, "user.age", "forty"), // wrong type
	}
	// Same key, so same partition: the good record sits behind the poison.
	e.produce("same", poison...)
	e.produce("same", upload(t, "u4", t0, "user.age", int64(4)))
	total := int64(len(poison) + 1)
	stop := e.start(Config{})
	defer stop()
	eventually(t, "the good record behind the poison written", func() bool { return e.read("u4")[0].Value == int64(4) })
	eventually(t, "every offset committed", func() bool { return e.committed() == total })

	// Every poison record is on the dead-letter topic with its reason.
	cl, err := kgo.NewClient(append(e.qcfg.ClientOpts(), kgo.ConsumeTopics(e.qcfg.DeadLetterTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var dead []*kgo.Record
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for len(dead) < len(poison) && ctx.Err() == nil {
		dead = append(dead, cl.PollFetches(ctx).Records()...)
	}
	if len(dead) != len(poison) {
		t.Fatalf("dead-letter topic has %d records, want %d", len(dead), len(poison))
	}
	wantReasons := []string{"bad record", `feature "user.age": want int, got string`}
	for i, r := range dead {
		h := map[string]string{}
		for _, kv := range r.Headers {
			h[kv.Key] = string(kv.Value)
		}
		if string(r.Value) != string(poison[i]) {
			t.Errorf("dead letter %d: value differs from the original", i)
		}
		if !strings.Contains(h["cairn-error"], wantReasons[i]) {
			t.Errorf("dead letter %d: cairn-error %q lacks %q", i, h["cairn-error"], wantReasons[i])
		}
		if h["cairn-source-topic"] != e.qcfg.PersistTopic || h["cairn-source-offset"] == "" || h["cairn-source-partition"] == "" {
			t.Errorf("dead letter %d: source headers %v", i, h)
		}
	}
}

// A writer that dies after writing the store but before committing leaves
// its records uncommitted; the next writer rewrites them and the store ends
// in the same state.
func TestCrashBetweenWriteAndCommit(t *testing.T) {
	e := newEnv(t)
	refusal := testserver.RefuseCommits(e.cluster, kerr.GroupAuthorizationFailed)

	e.produce("user\x00u1", upload(t, "u1", t0.Add(time.Second), "user.age", int64(30)))
	e.produce("user\x00u1", upload(t, "u1", t0, "user.age", int64(29), "user.name", "bo"))
	stop := e.start(Config{})
	eventually(t, "first writer wrote the store", func() bool { return e.read("u1")[1].Value == "bo" })
	eventually(t, "first writer tried to commit", func() bool { return refusal.Refused() > 0 })
	stop() // the crash: written, not committed
	if got := e.committed(); got > 0 {
		t.Fatalf("offsets committed despite the refused commit: %d", got)
	}
	before := e.read("u1")

	refusal.Allow()
	stop = e.start(Config{})
	defer stop()
	eventually(t, "second writer committed both records", func() bool { return e.committed() == 2 })
	after := e.read("u1")
	for i := range before {
		if before[i].Value != after[i].Value || !before[i].ObservedAt.Equal(after[i].ObservedAt) {
			t.Errorf("cell %d changed on redelivery: %+v -> %+v", i, before[i], after[i])
		}
	}
	if after[0].Value != int64(30) || after[1].Value != "bo" {
		t.Errorf("final state %+v, want age 30 (newer) and name bo", after)
	}
}

func TestBackoff(t *testing.T) {
	lo, hi := 100*time.Millisecond, 2*time.Second
	for attempt := range 40 {
		envelope := hi
		if attempt < 5 {
			envelope = lo << attempt // 100ms, 200ms, ... 1.6s
		}
		var top time.Duration
		for range 200 {
			d := Backoff(attempt, lo, hi)
			if d < lo/2 || d > envelope {
				t.Fatalf("Backoff(%d) = %v, want in [%v, %v]", attempt, d, lo/2, envelope)
			}
			top = max(top, d)
		}
		if top < envelope*3/4 {
			t.Errorf("Backoff(%d) never came near its envelope %v (max seen %v): no jitter spread", attempt, envelope, top)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	c := Config{MaxBatchRecords: -1, MinBackoff: time.Second, MaxBackoff: time.Millisecond, DrainTimeout: -1,
		SessionTimeout: time.Second, HealthWindow: -1, LagInterval: -1}
	err := c.Validate()
	for _, want := range []string{"max batch records", "backoff", "drain timeout", "session timeout", "health window", "lag interval"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want mention of %s", err, want)
		}
	}
}
