package queue

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// testTimeout is the produce timeout of these tests: short, to keep them
// fast, and long enough for a loaded machine to acknowledge a record.
const testTimeout = 2 * time.Second

// slack is how much later than the produce timeout Persist may answer.
const slack = time.Second

func createTopics(t *testing.T, cfg Config) {
	t.Helper()
	if _, err := CreateTopics(context.Background(), cfg, TopicSpec{Partitions: 2, ReplicationFactor: 1, MinInsyncReplicas: 1}); err != nil {
		t.Fatal(err)
	}
}

func newProducer(t *testing.T, cfg Config, reg prometheus.Registerer, log *slog.Logger) *Producer {
	t.Helper()
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	p, err := NewProducer(cfg, reg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func upload(i int) *Record {
	return &Record{Kind: KindUpload, Entities: []Entity{{Namespace: "user", Key: "u1",
		Values: []Value{{FQN: "user.age", Value: int64(i), ObservedAt: time.Unix(int64(i), 0)}}}}}
}

// persistTimed runs Persist and says how long it took.
func persistTimed(p *Producer, i int) (time.Duration, error) {
	start := time.Now()
	err := p.Persist(context.Background(), EntityKey("user", "u1"), upload(i))
	return time.Since(start), err
}

// persistEventually retries Persist until it succeeds, failing t after
// within.
func persistEventually(t *testing.T, p *Producer, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for i := 0; ; i++ {
		_, err := persistTimed(p, i)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Persist still failing %v after the broker came back: %v", within, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Regression: persistence records and query metrics shared one client and
// its 10,000-record buffer, so a metrics topic that stopped acknowledging
// filled the buffer with metrics, and every upload then waited for room in
// it and was answered 503. Uploads must stay fast and succeed while only
// metrics are dropped.
func TestMetricsOutageDoesNotDelayUploads(t *testing.T) {
	t.Parallel()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cfg := Config{Brokers: c.ListenAddrs(), ProduceTimeout: testTimeout}
	cfg.EnsureDefaults()
	createTopics(t, cfg)
	// The metrics topic's leader keeps answering a retriable error, as
	// when its replicas are down: kgo retries its records until they
	// time out.
	c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: cfg.MetricsTopic, Err: kerr.NotEnoughReplicas, Count: -1})
	reg := prometheus.NewRegistry()
	p := newProducer(t, cfg, reg, nil)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		metric := []byte(`{"query_id":"q","duration_s":0.001}`)
		for {
			select {
			case <-stop:
				return
			default:
			}
			for range 1_000 {
				p.Metric(metric)
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	defer func() { close(stop); wg.Wait() }()

	end := time.Now().Add(2 * testTimeout)
	n := 0
	for ; time.Now().Before(end); n++ {
		took, err := persistTimed(p, n)
		if err != nil || took > cfg.ProduceTimeout/2 {
			t.Fatalf("upload %d during the metrics outage: %v after %v; want success in well under the produce timeout", n, err, took)
		}
	}
	if got := produced(t, p, "persist", "ok"); got != float64(n) {
		t.Errorf("cairn_queue_produced_records_total{role=persist,outcome=ok} = %v; want %d", got, n)
	}
	if got := produced(t, p, "metrics", "dropped"); got == 0 {
		t.Error("no metric counted as dropped while the metrics topic failed")
	}
	if got := produced(t, p, "metrics", "ok"); got != 0 {
		t.Errorf("%v metrics counted as acknowledged by a failing topic", got)
	}
}

// Regression: with the broker hung (stopped with SIGSTOP, or behind a
// network partition) an upload was answered only when the broker resumed,
// 30 s to over 120 s later: a record in flight is not failed when the
// context of ProduceSync ends. Persist must answer within the produce
// timeout plus well under a second, report the failure through Health, log
// it once rather than per upload, and work again once the broker resumes,
// with the same producer.
func TestPersistHungBroker(t *testing.T) {
	t.Parallel()
	cfg, _, px := proxiedCluster(t)
	cfg.ProduceTimeout = testTimeout
	createTopics(t, cfg)
	var logs syncBuffer
	p := newProducer(t, cfg, nil, slog.New(slog.NewTextHandler(&logs, nil)))
	if _, err := persistTimed(p, 0); err != nil {
		t.Fatal(err)
	}
	if err := p.Health(); err != nil {
		t.Fatalf("Health() = %v after an acknowledged record", err)
	}

	px.Hang()
	defer px.Resume()
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			took, err := persistTimed(p, 1+i)
			if err == nil || took > cfg.ProduceTimeout+slack {
				t.Errorf("upload to a hung broker: %v after %v; want an error within %v", err, took, cfg.ProduceTimeout+slack)
			}
			if !errors.Is(err, ErrTimeout) {
				t.Errorf("upload to a hung broker: %v; want ErrTimeout", err)
			}
		})
	}
	answered := make(chan struct{})
	go func() { wg.Wait(); close(answered) }()
	select {
	case <-answered:
	case <-time.After(cfg.ProduceTimeout + 3*slack):
		t.Error("uploads to a hung broker unanswered until the broker resumed")
		px.Resume()
		<-answered
	}
	if err := p.Health(); !errors.Is(err, ErrTimeout) {
		t.Errorf("Health() = %v while the broker hangs; want the timeout", err)
	}
	var he *HealthError
	if err := p.Health(); !errors.As(err, &he) || he.Failed != 4 {
		t.Errorf("Health() = %#v; want a *HealthError counting 4 failed records", err)
	}
	if n := strings.Count(logs.String(), `msg="queue: persistence record not acknowledged"`); n != 1 {
		t.Errorf("%d log lines for 4 failed uploads; want 1:\n%s", n, logs.String())
	}

	px.Resume()
	persistEventually(t, p, 10*time.Second)
	if err := p.Health(); err != nil {
		t.Errorf("Health() = %v after the broker resumed and acknowledged", err)
	}
}

// Regression: with the broker killed, an upload was answered 503 only
// after 13 to 20 s. With every connection refused, Persist must fail within
// the produce timeout plus well under a second, and work again once the
// broker is back.
func TestPersistUnreachableBroker(t *testing.T) {
	t.Parallel()
	cfg, _, px := proxiedCluster(t)
	cfg.ProduceTimeout = testTimeout
	createTopics(t, cfg)
	p := newProducer(t, cfg, nil, nil)
	if _, err := persistTimed(p, 0); err != nil {
		t.Fatal(err)
	}
	px.Cut()
	for i := 1; i <= 3; i++ {
		answer := make(chan error, 1)
		start := time.Now()
		go func() { _, err := persistTimed(p, i); answer <- err }()
		var err error
		select {
		case err = <-answer:
		case <-time.After(cfg.ProduceTimeout + 3*slack):
			t.Fatalf("upload %d to an unreachable broker unanswered after %v", i, time.Since(start))
		}
		if took := time.Since(start); err == nil || took > cfg.ProduceTimeout+slack {
			t.Fatalf("upload %d to an unreachable broker: %v after %v; want an error within %v", i, err, took, cfg.ProduceTimeout+slack)
		}
	}
	if p.Health() == nil {
		t.Error("Health() = nil while the broker is unreachable")
	}
	px.Restore()
	persistEventually(t, p, 10*time.Second)
}

// Close must not hang on a hung broker: it flushes for at most the produce
// timeout, then closes.
func TestCloseHungBroker(t *testing.T) {
	t.Parallel()
	cfg, _, px := proxiedCluster(t)
	cfg.ProduceTimeout = testTimeout
	createTopics(t, cfg)
	p, err := NewProducer(cfg, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := persistTimed(p, 0); err != nil {
		t.Fatal(err)
	}
	px.Hang()
	defer px.Resume()
	go func() { _, _ = persistTimed(p, 1) }()
	for range 100 {
		p.Metric([]byte("{}"))
	}
	time.Sleep(100 * time.Millisecond) // the records are in flight
	start := time.Now()
	p.Close()
	// The produce timeout, and the slack of a loaded machine.
	if bound := cfg.ProduceTimeout + time.Second + slack; time.Since(start) > bound {
		t.Errorf("Close took %v with the broker hung; want at most %v", time.Since(start), bound)
	}
}

// A full persistence buffer (Kafka slow for a while) fails an upload at
// once instead of blocking it, and the record is counted as dropped; an
// upload whose caller gives up returns at once without marking Kafka as
// failing.
func TestPersistFullBufferAndCanceled(t *testing.T) {
	t.Parallel()
	cfg, _, px := proxiedCluster(t)
	cfg.ProduceTimeout = testTimeout
	cfg.PersistBufferRecords = 1
	createTopics(t, cfg)
	p := newProducer(t, cfg, nil, nil)
	if _, err := persistTimed(p, 0); err != nil {
		t.Fatal(err)
	}
	px.Hang()
	defer px.Resume()

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := p.Persist(ctx, nil, upload(1)); !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > time.Second {
		t.Errorf("upload whose caller gave up after 200ms: %v after %v", err, time.Since(start))
	}
	if err := p.Health(); err != nil {
		t.Errorf("Health() = %v after an upload its caller gave up on; want nil", err)
	}
	// That record still fills the one-record buffer.
	took, err := persistTimed(p, 2)
	if !errors.Is(err, kgo.ErrMaxBuffered) || took > 500*time.Millisecond {
		t.Errorf("upload with the buffer full: %v after %v; want ErrMaxBuffered at once", err, took)
	}
	if got := produced(t, p, "persist", "dropped"); got != 1 {
		t.Errorf("cairn_queue_produced_records_total{role=persist,outcome=dropped} = %v; want 1", got)
	}
}

// Health clears after a minute without failures, when no upload comes to
// show that Kafka acknowledges again.
func TestHealthWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := &Producer{log: slog.New(slog.DiscardHandler)}
		cause := errors.New("broker down")
		p.fail(cause)
		time.Sleep(HealthWindow / 2)
		p.fail(cause)
		var he *HealthError
		if err := p.Health(); !errors.As(err, &he) || he.Failed != 2 || !errors.Is(err, cause) {
			t.Fatalf("Health() = %v; want 2 failures caused by %v", err, cause)
		}
		time.Sleep(HealthWindow)
		if err := p.Health(); err != nil {
			t.Fatalf("Health() = %v a window after the last failure; want nil", err)
		}
		p.fail(cause)
		if err := p.Health(); !errors.As(err, &he) || he.Failed != 1 {
			t.Fatalf("Health() = %v after a new failure; want a count started afresh", err)
		}
	})
}

// produced reads cairn_queue_produced_records_total{role,outcome}.
func produced(t *testing.T, p *Producer, role, outcome string) float64 {
	t.Helper()
	var m dto.Metric
	if err := p.produced.WithLabelValues(role, outcome).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// syncBuffer is a bytes.Buffer safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
