package kreplicator

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

func mustClient(t *testing.T, brokers []string) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func cluster(t *testing.T) []string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

// Records reach the target no earlier than the lag after their timestamp,
// on the same partition at the same offset, under the prefixed name; the
// group's committed offsets follow.
func TestReplicator(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	from, to := cluster(t), cluster(t)
	// A topic the target has already: the replicator copies into it.
	if _, err := kadm.NewClient(mustClient(t, to)).CreateTopic(ctx, 2, 1, nil, "a.events"); err != nil {
		t.Fatal(err)
	}
	src, err := kgo.NewClient(kgo.SeedBrokers(from...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	adm := kadm.NewClient(src)
	if _, err := adm.CreateTopic(ctx, 2, 1, nil, "events"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := range 50 {
		r := &kgo.Record{Topic: "events", Partition: int32(i % 2), Key: []byte(fmt.Sprint(i)), Value: []byte(fmt.Sprint("v", i))}
		if err := src.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	var offsets kadm.Offsets
	offsets.Add(kadm.Offset{Topic: "events", Partition: 0, At: 20, LeaderEpoch: -1})
	offsets.Add(kadm.Offset{Topic: "events", Partition: 1, At: 7, LeaderEpoch: -1})
	if err := adm.CommitAllOffsets(ctx, "writers", offsets); err != nil {
		t.Fatal(err)
	}

	const lag = 700 * time.Millisecond
	rep := New(from, to, Options{Lag: lag, TopicPrefix: "a.", SyncEvery: 100 * time.Millisecond})
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- rep.Run(rctx) }()
	defer func() { stop(); <-done }()

	time.Sleep(time.Until(start.Add(lag / 2)))
	if n := rep.Copied()["events"][0] + rep.Copied()["events"][1]; n != 0 {
		t.Fatalf("%d records copied before half the lag", n)
	}
	for rep.Copied()["events"][0]+rep.Copied()["events"][1] < 50 {
		if ctx.Err() != nil {
			t.Fatalf("copied %v, want 50 records", rep.Copied())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if took := time.Since(start); took < lag {
		t.Errorf("every record copied %v after the first was produced, want no earlier than the lag %v", took, lag)
	}

	dst, err := kgo.NewClient(kgo.SeedBrokers(to...), kgo.ConsumeTopics("a.events"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	got := 0
	for got < 50 {
		fs := dst.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d records from the target, want 50", got)
		}
		fs.EachRecord(func(r *kgo.Record) {
			got++
			var i int
			fmt.Sscan(string(r.Key), &i)
			if r.Partition != int32(i%2) || r.Offset != int64(i/2) || string(r.Value) != fmt.Sprint("v", i) {
				t.Errorf("record %d on the target: partition %d offset %d value %q", i, r.Partition, r.Offset, r.Value)
			}
		})
	}

	dadm := kadm.NewClient(dst)
	for {
		o, err := dadm.FetchOffsets(ctx, "writers")
		if err == nil {
			p0, ok0 := o.Lookup("a.events", 0)
			p1, ok1 := o.Lookup("a.events", 1)
			if ok0 && ok1 && p0.At == 20 && p1.At == 7 {
				break
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("the group's offsets did not reach the target: %v %v", o, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
