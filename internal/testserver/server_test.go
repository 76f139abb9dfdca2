package testserver

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// A broker killed with SIGKILL and restarted keeps its address, its
// topics, every record it acknowledged and the groups' committed offsets;
// it never creates a topic on its own.
func TestKafkaKeepsAcknowledgedRecordsAcrossKill(t *testing.T) {
	t.Parallel()
	k := StartKafka(t, KafkaOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	addr := k.Addr()

	cl := newKafkaClient(t, addr, kgo.AllowAutoTopicCreation(), kgo.RecordDeliveryTimeout(2*time.Second))
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "never-created", Value: []byte("x")}).FirstErr(); err == nil {
		t.Error("produce to a topic nobody created succeeded: the broker auto-creates topics")
	}
	adm := kadm.NewClient(cl)
	if _, err := adm.CreateTopic(ctx, -1, 1, nil, "t"); err != nil {
		t.Fatalf("create topic: %v", err)
	}
	const n = 50
	for i := range n {
		r := &kgo.Record{Topic: "t", Value: []byte(fmt.Sprint(i))}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatalf("produce %d: %v", i, err)
		}
	}
	offsets := kadm.Offsets{}
	offsets.Add(kadm.Offset{Topic: "t", Partition: 0, At: 7, LeaderEpoch: -1})
	if _, err := adm.CommitOffsets(ctx, "g", offsets); err != nil {
		t.Fatalf("commit: %v", err)
	}
	cl.Close()

	oldPID := k.PID()
	k.Kill()
	k.Restart()
	if k.Addr() != addr || k.PID() == oldPID {
		t.Fatalf("restart: addr %s pid %d, was %s pid %d; want the same address, a new process", k.Addr(), k.PID(), addr, oldPID)
	}

	cl = newKafkaClient(t, addr, kgo.ConsumeTopics("t"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	adm = kadm.NewClient(cl)
	topics, err := adm.ListTopics(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	if got := len(topics["t"].Partitions); got != 4 {
		t.Errorf("topic t has %d partitions after restart, want the default 4", got)
	}
	seen := map[string]bool{}
	for len(seen) < n && ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachRecord(func(r *kgo.Record) { seen[string(r.Value)] = true })
	}
	if len(seen) != n {
		t.Errorf("read back %d of %d acknowledged records after SIGKILL", len(seen), n)
	}
	fetched, err := adm.FetchOffsets(ctx, "g")
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := fetched.Lookup("t", 0); !ok || o.At != 7 {
		t.Errorf("committed offset of g after SIGKILL = %+v (found %v), want 7", o, ok)
	}
}

// A paused broker hangs its clients; resumed, it answers again; SIGTERM
// ends it with status 0.
func TestKafkaPauseResumeTerm(t *testing.T) {
	t.Parallel()
	k := StartKafka(t, KafkaOptions{Partitions: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := newKafkaClient(t, k.Addr())
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, -1, 1, nil, "t"); err != nil {
		t.Fatal(err)
	}
	k.Pause()
	short, cancelShort := context.WithTimeout(ctx, time.Second)
	err := cl.ProduceSync(short, &kgo.Record{Topic: "t", Value: []byte("during")}).FirstErr()
	cancelShort()
	if err == nil {
		t.Error("a paused broker acknowledged a record")
	}
	k.Resume()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "t", Value: []byte("after")}).FirstErr(); err != nil {
		t.Errorf("produce after Resume: %v", err)
	}
	if code := k.Term(10 * time.Second); code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0", code)
	}
}

func newKafkaClient(t *testing.T, addr string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// A redis-server of the test's own keeps what it acknowledged across
// SIGKILL and a restart on the same port, and hangs while paused.
func TestRedisProcessKeepsAcknowledgedWritesAcrossKill(t *testing.T) {
	t.Parallel()
	r := StartRedisProcess(t)
	if !strings.HasPrefix(r.URI(3), "redis://127.0.0.1:") || !strings.HasSuffix(r.URI(3), "/3") {
		t.Errorf("URI(3) = %q", r.URI(3))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := redis.NewClient(&redis.Options{Addr: r.Addr(), ReadTimeout: 500 * time.Millisecond, WriteTimeout: 500 * time.Millisecond, MaxRetries: -1})
	defer c.Close()
	if err := c.Set(ctx, "k", "v1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	r.Kill()
	r.Restart()
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v1" {
		t.Errorf("after SIGKILL and restart: GET k = %q, %v; want v1", got, err)
	}
	r.Pause()
	if err := c.Ping(ctx).Err(); err == nil {
		t.Error("a paused redis-server answered PING")
	}
	r.Resume()
	deadline := time.Now().Add(5 * time.Second)
	for c.Ping(ctx).Err() != nil {
		if time.Now().After(deadline) {
			t.Fatal("redis-server does not answer after Resume")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A moto_server of the test's own hangs while paused and answers again
// once resumed, behind its transaction gate.
func TestMotoProcessPauseResume(t *testing.T) {
	t.Parallel()
	m := StartMotoProcess(t)
	c := &http.Client{Timeout: time.Second}
	get := func() error {
		resp, err := c.Get(m.Endpoint() + "/")
		if err != nil {
			return err
		}
		return resp.Body.Close()
	}
	if err := get(); err != nil {
		t.Fatal(err)
	}
	m.Pause()
	if err := get(); err == nil {
		t.Error("a paused moto_server answered")
	}
	m.Resume()
	if err := get(); err != nil {
		t.Errorf("after Resume: %v", err)
	}
}

// The cairn binary builds; a role started from it is ready on its address,
// comes back on the same address after a restart, and exits 0 on SIGTERM.
func TestBuildCairnAndStartRole(t *testing.T) {
	t.Parallel()
	bin := BuildCairn(t)
	if again := BuildCairn(t); again != bin {
		t.Errorf("second BuildCairn gave %s, want the cached %s", again, bin)
	}
	help := StartProcess(t, Command{Path: bin, Args: []string{"help"}})
	if code, err := help.Wait(30 * time.Second); err != nil || code != 0 {
		t.Fatalf("cairn help: status %d, %v", code, err)
	}
	if !strings.Contains(help.Output(), "cairn serve") {
		t.Errorf("cairn help does not name cairn serve:\n%s", help.Output())
	}

	dir := t.TempDir()
	features := filepath.Join(dir, "features.yaml")
	if err := os.WriteFile(features, []byte("namespaces:\n  - name: user\n    primary_key: id\n    features:\n      id: string\n      age: int\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := StartRole(t, bin, "dev", []string{"--data-dir", filepath.Join(dir, "data"), "--features", features}, nil)
	addr := r.Addr()
	if err := readyz(addr); err != nil {
		t.Fatal(err)
	}
	r.Restart()
	if r.Addr() != addr {
		t.Errorf("restarted on %s, want %s", r.Addr(), addr)
	}
	if err := readyz(strings.TrimPrefix(r.URL(), "http://")); err != nil {
		t.Errorf("after restart: %v", err)
	}
	if code := r.Term(20 * time.Second); code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0", code)
	}
}
