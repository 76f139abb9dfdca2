package queue

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// LagReader: before the writers' group exists every record counts; once
// it has committed, the records past its commit.
func TestLagReader(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cfg := Config{Brokers: c.ListenAddrs()}
	cfg.EnsureDefaults()
	if _, err := CreateTopics(ctx, cfg, TopicSpec{Partitions: 2, ReplicationFactor: 1, MinInsyncReplicas: 1}); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.Brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for i := range 7 {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: cfg.PersistTopic, Partition: int32(i % 2), Value: []byte("x")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	lr, err := NewLagReader(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer lr.Close()
	if lag, err := lr.Lag(ctx); err != nil || lag[0] != 4 || lag[1] != 3 {
		t.Errorf("Lag() without a group = %v, %v; want 0: 4, 1: 3", lag, err)
	}
	var offsets kadm.Offsets
	offsets.Add(kadm.Offset{Topic: cfg.PersistTopic, Partition: 0, At: 3, LeaderEpoch: -1})
	offsets.Add(kadm.Offset{Topic: cfg.PersistTopic, Partition: 1, At: 3, LeaderEpoch: -1})
	if err := kadm.NewClient(cl).CommitAllOffsets(ctx, cfg.WriterGroup, offsets); err != nil {
		t.Fatal(err)
	}
	if lag, err := lr.Lag(ctx); err != nil || lag[0] != 1 || lag[1] != 0 {
		t.Errorf("Lag() after commits at 3 = %v, %v; want 0: 1, 1: 0", lag, err)
	}
}
