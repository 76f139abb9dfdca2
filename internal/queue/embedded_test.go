package queue

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// The embedded broker of `cairn dev` closes promptly with clients still
// connected (a consumer waiting in a fetch, a producer), and what it
// acknowledged is there after a restart on the same directory.
func TestBrokerCloseAndRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	b, err := StartBroker(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Brokers: b.Addrs(), ProduceTimeout: testTimeout}
	cfg.EnsureDefaults()
	createTopics(t, cfg)
	p := newProducer(t, cfg, nil, nil)
	if _, err := persistTimed(p, 7); err != nil {
		t.Fatal(err)
	}
	// A consumer long-polling an empty topic keeps a fetch open.
	cl, err := kgo.NewClient(append(cfg.ClientOpts(), kgo.ConsumeTopics(cfg.DeadLetterTopic))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	go cl.PollFetches(context.Background())
	time.Sleep(200 * time.Millisecond)

	start := time.Now()
	b.Close()
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("embedded broker took %v to close with clients connected", took)
	}

	b, err = StartBroker(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	cfg.Brokers = b.Addrs()
	rd, err := kgo.NewClient(append(cfg.ClientOpts(), kgo.ConsumeTopics(cfg.PersistTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	recs := rd.PollFetches(ctx).Records()
	if len(recs) != 1 {
		t.Fatalf("after a restart the persistence topic holds %d records; want the 1 acknowledged", len(recs))
	}
	got, err := DecodeRecord(recs[0].Value)
	if err != nil || got.Entities[0].Values[0].Value != int64(7) {
		t.Fatalf("after a restart: %+v, %v", got, err)
	}
}
