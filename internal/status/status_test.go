package status

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/health"
	"github.com/cairnfs/cairn/internal/queue"
	"github.com/cairnfs/cairn/internal/store/embedded"
	"github.com/cairnfs/cairn/internal/store/redis"
	"github.com/cairnfs/cairn/internal/writer"
)

const registryYAML = `
namespaces:
  - name: user
    primary_key: id
    features: {id: string, age: int}
`

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// deployment is a broker with cairn's topics, an embedded store and a
// feature registry: what a writer needs.
type deployment struct {
	t      *testing.T
	qcfg   queue.Config
	reg    *feature.Registry
	store  *embedded.Store
	client *kgo.Client
}

// created are the settings the topics are created with.
var created = queue.TopicSpec{Partitions: 4, ReplicationFactor: 1, MinInsyncReplicas: 1, Retention: 168 * time.Hour}

func newDeployment(t *testing.T) *deployment {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	qcfg := queue.Config{Brokers: c.ListenAddrs()}
	qcfg.EnsureDefaults()
	if _, err := queue.CreateTopics(context.Background(), qcfg, created); err != nil {
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
	return &deployment{t: t, qcfg: qcfg, reg: reg, store: st, client: cl}
}

// produce writes n records to topic: uploads for the persistence topic,
// anything for the others.
func (d *deployment) produce(topic string, n int) {
	d.t.Helper()
	for i := range n {
		key := "u" + string(rune('a'+i))
		v, err := queue.AppendRecord(nil, &queue.Record{Kind: queue.KindUpload, Entities: []queue.Entity{{
			Namespace: "user", Key: key, Values: []queue.Value{{FQN: "user.age", Value: int64(i), ObservedAt: time.Now()}}}}})
		if err != nil {
			d.t.Fatal(err)
		}
		r := &kgo.Record{Topic: topic, Key: queue.EntityKey("user", key), Value: v}
		if err := d.client.ProduceSync(context.Background(), r).FirstErr(); err != nil {
			d.t.Fatal(err)
		}
	}
}

// startWriter runs a persistence writer, a static member named id, until
// the returned stop is called.
func (d *deployment) startWriter(id string) (stop func()) {
	d.t.Helper()
	w, err := writer.New(d.qcfg, writer.Config{InstanceID: id}, d.reg, d.store, nil, quiet())
	if err != nil {
		d.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			d.t.Errorf("writer.Run: %v", err)
		}
	}
}

// config is the status configuration of d, expecting 24 hours of
// retention where the topics have 168.
func (d *deployment) config() Config {
	probe, err := health.StoreProbe(d.store, d.reg)
	if err != nil {
		d.t.Fatal(err)
	}
	return Config{
		Queue:      d.qcfg,
		Expected:   queue.TopicSpec{Partitions: 4, ReplicationFactor: 1, MinInsyncReplicas: 1, Retention: 24 * time.Hour},
		Store:      "embedded:///test",
		StoreProbe: probe,
		Timeout:    5 * time.Second,
	}
}

func collect(t *testing.T, cfg Config) (*Report, string) {
	t.Helper()
	r, err := Collect(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	return r, b.String()
}

// eventually collects until cond holds, for up to 15 seconds.
func eventually(t *testing.T, cfg Config, what string, cond func(*Report) bool) (*Report, string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		r, text := collect(t, cfg)
		if cond(r) {
			return r, text
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after 15s; last report:\n%s", what, text)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestStatusOfARunningDeployment(t *testing.T) {
	t.Parallel()
	d := newDeployment(t)
	cfg := d.config()
	stop := d.startWriter("writer-1")

	// The writer joins and is assigned every partition; the uploads it
	// consumes are committed, so the lag drains to zero.
	d.produce(d.qcfg.PersistTopic, 5)
	r, text := eventually(t, cfg, "writer joined and caught up", func(r *Report) bool {
		committed := int64(0)
		for _, l := range r.Group.Lag {
			committed += max(l.Committed, 0)
		}
		return len(r.Group.Members) == 1 && len(r.Group.Members[0].Partitions) == 4 && committed == 5 && r.Group.TotalLag == 0
	})
	m := r.Group.Members[0]
	if m.InstanceID != "writer-1" || m.ClientHost == "" || r.Group.State != "Stable" {
		t.Errorf("member %+v in state %q", m, r.Group.State)
	}
	for _, want := range []string{
		"Writer group cairn-writer: Stable, 1 members",
		"writer-1",
		"0-3",
		"Lag of cairn.persist: 0 records",
		"Store embedded:///test: reachable",
		"Metrics rollup",
		"no rollups",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q:\n%s", want, text)
		}
	}
	if r.Store.Error != "" || !r.Store.Reachable {
		t.Errorf("store: %+v", r.Store)
	}

	// Records in the dead-letter topic are counted.
	d.produce(d.qcfg.DeadLetterTopic, 3)

	// A stopped writer leaves its partitions' records behind as lag.
	stop()
	d.produce(d.qcfg.PersistTopic, 2)
	r, text = eventually(t, cfg, "lag of the stopped writer", func(r *Report) bool { return r.Group.TotalLag == 2 })
	if r.DeadLetter.Records != 3 || !strings.Contains(text, "Dead letters in cairn.persist.dlq: 3 records") {
		t.Errorf("dead letters %+v:\n%s", r.DeadLetter, text)
	}
	if !strings.Contains(text, "Lag of cairn.persist: 2 records") {
		t.Errorf("report:\n%s", text)
	}

	// The topics keep 168 hours where 24 are expected: marked on every
	// topic, and nothing else is.
	if r.Topics.Mismatches != 3 {
		t.Errorf("%d mismatches; want 3 (retention of each topic):\n%s", r.Topics.Mismatches, text)
	}
	for _, tp := range r.Topics.Topics {
		for _, s := range tp.Settings {
			if s.Mismatch != (s.Name == "retention.ms") {
				t.Errorf("%s %s: %+v", tp.Name, s.Name, s)
			}
		}
	}
	if !strings.Contains(text, "604800000 * [86400000]") {
		t.Errorf("the retention mismatch is not marked:\n%s", text)
	}
	if len(r.Failed()) != 0 {
		t.Errorf("failed sections %v", r.Failed())
	}

	// The same report for scripts.
	var b bytes.Buffer
	if err := r.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var decoded struct {
		Group struct {
			TotalLag int64 `json:"total_lag"`
		} `json:"writer_group"`
		DeadLetter struct {
			Records int64 `json:"records"`
		} `json:"dead_letter"`
		Topics struct {
			Mismatches int `json:"mismatches"`
		} `json:"topics"`
		Store struct {
			Reachable bool `json:"reachable"`
		} `json:"store"`
	}
	if err := json.Unmarshal(b.Bytes(), &decoded); err != nil {
		t.Fatal(err)
	}
	if decoded.Group.TotalLag != 2 || decoded.DeadLetter.Records != 3 || decoded.Topics.Mismatches != 3 || !decoded.Store.Reachable {
		t.Errorf("JSON: %+v\n%s", decoded, b.String())
	}
}

// closedPort returns an address where nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestStoreUnreachableStillReportsKafka(t *testing.T) {
	t.Parallel()
	d := newDeployment(t)
	cfg := d.config()
	rcfg := redis.DefaultConfig()
	rcfg.Addr = closedPort(t)
	cfg.Store = "redis://" + rcfg.Addr
	cfg.StoreProbe = func(ctx context.Context) error {
		st, err := redis.Open(ctx, rcfg, nil, quiet())
		if err != nil {
			return err
		}
		defer st.Close()
		probe, err := health.StoreProbe(st, d.reg)
		if err != nil {
			return err
		}
		return probe(ctx)
	}
	d.produce(d.qcfg.PersistTopic, 1)
	r, text := collect(t, cfg)
	if r.Store.Reachable || !strings.Contains(text, "Store redis://"+rcfg.Addr+": UNREACHABLE:") ||
		!strings.Contains(r.Store.Error, "connection refused") {
		t.Errorf("store section:\n%s", text)
	}
	// The Kafka sections are whole: no writer ever joined, so the one
	// record is lag.
	if r.Group.Error != "" || r.Group.TotalLag != 1 || r.Topics.Error != "" || len(r.Topics.Topics) != 3 || r.DeadLetter.Error != "" {
		t.Errorf("Kafka sections with the store down:\n%s", text)
	}
	if got := r.Failed(); len(got) != 1 || got[0] != "store" {
		t.Errorf("failed sections %v; want [store]", got)
	}
}

func TestKafkaDownStillReportsStore(t *testing.T) {
	t.Parallel()
	d := newDeployment(t)
	cfg := d.config()
	// A listener that accepts connections and never answers: brokers
	// that hang, the slowest way for Kafka to fail.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	for _, tc := range []struct {
		name, broker string
		cause        string
	}{
		{"refused", closedPort(t), "connection refused"},
		{"hung", ln.Addr().String(), "no answer within"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := cfg
			cfg.Queue.Brokers = []string{tc.broker}
			cfg.Timeout = 2 * time.Second
			start := time.Now()
			r, text := collect(t, cfg)
			if took := time.Since(start); took > cfg.Timeout+time.Second {
				t.Errorf("took %v; want within the %v timeout", took, cfg.Timeout)
			}
			if !r.Store.Reachable || !strings.Contains(text, "reachable") {
				t.Errorf("the store section did not survive Kafka down:\n%s", text)
			}
			for _, s := range []string{"Writer group cairn-writer: FAILED: ", "Dead letters in cairn.persist.dlq: FAILED: ", "Topics: FAILED: "} {
				if !strings.Contains(text, s+r.Group.Error) || !strings.Contains(r.Group.Error, tc.cause) {
					t.Errorf("report lacks %q with %q:\n%s", s, tc.cause, text)
				}
			}
		})
	}
}

func TestRollups(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 1, 18, 59, 30, 0, time.UTC)
	var asked [2]time.Time
	cfg := Config{
		QueueErr: errClosed,
		StoreErr: errClosed,
		Now:      func() time.Time { return now },
		Timeout:  time.Second,
		Rollups: RollupsFunc(func(_ context.Context, from, to time.Time) ([]Rollup, error) {
			asked = [2]time.Time{from, to}
			return []Rollup{{Namespace: "user", Minute: from, Queries: 1200, Errors: 3, CacheHits: 400, P50: 0.0021, P99: 0.0153}}, nil
		}),
	}
	_, text := collect(t, cfg)
	if asked != [2]time.Time{now.Add(-90 * time.Second), now.Add(-30 * time.Second)} {
		t.Errorf("asked for %v; want the last complete minute", asked)
	}
	if !strings.Contains(text, "Metrics rollup 18:58-18:59 UTC: 1 namespaces") || !strings.Contains(text, "1200") || !strings.Contains(text, "15.3ms") {
		t.Errorf("rollups:\n%s", text)
	}
	if !strings.Contains(text, "Store: FAILED: closed") || !strings.Contains(text, "Writer group cairn-writer: FAILED: closed") {
		t.Errorf("configuration errors are not reported per section:\n%s", text)
	}
}

var errClosed = errorString("closed")

type errorString string

func (e errorString) Error() string { return string(e) }
