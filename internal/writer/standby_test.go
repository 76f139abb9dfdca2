package writer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// members describes the writers' group: each member's instance id (its
// member id when dynamic) and the persistence partitions assigned to it.
func (e *env) members() map[string][]int32 {
	e.t.Helper()
	d, err := kadm.NewClient(e.client).DescribeGroups(context.Background(), e.qcfg.WriterGroup)
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string][]int32{}
	for _, g := range d {
		for _, m := range g.Members {
			id := m.MemberID
			if m.InstanceID != nil {
				id = *m.InstanceID
			}
			var parts []int32
			if a, ok := m.Assigned.AsConsumer(); ok {
				for _, t := range a.Topics {
					if t.Topic == e.qcfg.PersistTopic {
						parts = append(parts, t.Partitions...)
					}
				}
			}
			slices.Sort(parts)
			out[id] = parts
		}
	}
	return out
}

// uploadAll produces n records to each of the 3 partitions, keys named
// prefix-partition-i, and returns the keys.
func (e *env) uploadAll(prefix string, n int) []string {
	e.t.Helper()
	var keys []string
	for p := range int32(3) {
		for i := range n {
			k := fmt.Sprintf("%s-%d-%d", prefix, p, i)
			e.produceTo(p, upload(e.t, k, t0, "user.name", k))
			keys = append(keys, k)
		}
	}
	return keys
}

func (e *env) allStored(keys []string) bool {
	for _, k := range keys {
		if e.read(k)[1].Value != k {
			return false
		}
	}
	return true
}

func written(w *Writer) float64 { return testutil.ToFloat64(w.m.records.WithLabelValues("written")) }

// What broke: a standby writer joined its consumer group at start and
// never polled, so the partitions the group gave it were consumed by no
// one: with one active and one standby writer in one group, partition 2
// stayed uncommitted. A standby writer is no member; switched active it
// joins, starts at the committed offsets, and takes its share.
func TestStandbyWriterHoldsNoPartitionThenTakesItsShare(t *testing.T) {
	e := newEnv(t)
	active := e.run(Config{InstanceID: "a"}, nil)
	standby := e.run(Config{InstanceID: "b", StoreWrites: StoreWritesStandby}, nil)

	keys := e.uploadAll("before", 4)
	eventually(t, "every partition committed by the active writer", func() bool {
		return e.committedAt(0) == 4 && e.committedAt(1) == 4 && e.committedAt(2) == 4
	})
	if m := e.members(); len(m) != 1 || !slices.Equal(m["a"], []int32{0, 1, 2}) {
		t.Fatalf("group members %v: want only the active writer, with partitions 0-2", m)
	}
	if !e.allStored(keys) {
		t.Fatal("records of the active writer missing from the store")
	}
	if !errors.Is(standby.w.StoreWritesReady(), ErrStandby) || gauge(t, standby.w.m.storeWrites) != 0 {
		t.Errorf("standby writer: ready %v, gauge %v; want ErrStandby, 0", standby.w.StoreWritesReady(), gauge(t, standby.w.m.storeWrites))
	}
	if n := testutil.CollectAndCount(standby.w.m.lagRecords); n != 0 || written(standby.w) != 0 {
		t.Errorf("standby writer: %d lag series, %v written; want none", n, written(standby.w))
	}

	standby.w.SetStoreWrites(true)
	eventually(t, "both writers members with a share each", func() bool {
		m := e.members()
		return len(m) == 2 && len(m["a"]) > 0 && len(m["b"]) > 0
	})
	keys = append(keys, e.uploadAll("after", 4)...)
	eventually(t, "every partition committed", func() bool {
		return e.committedAt(0) == 8 && e.committedAt(1) == 8 && e.committedAt(2) == 8
	})
	// Each record written once: none skipped, none written twice.
	eventually(t, "the written counts", func() bool { return written(active.w)+written(standby.w) == 24 })
	if written(standby.w) == 0 {
		t.Error("the activated writer wrote nothing")
	}
	if !e.allStored(keys) {
		t.Error("records missing from the store")
	}
	if err := standby.w.StoreWritesReady(); err != nil || gauge(t, standby.w.m.storeWrites) != 1 {
		t.Errorf("activated writer: ready %v, gauge %v", err, gauge(t, standby.w.m.storeWrites))
	}
}

// A writer activated where its group has no committed offset starts at
// the first record at or after the activation minus the rewind; an offset
// the group has is kept however old (records no writer wrote are not
// skipped).
func TestActivationSeedsFromRewindWhereNoOffset(t *testing.T) {
	e := newEnv(t)
	now := time.Now()
	old, recent := now.Add(-time.Hour), now.Add(-time.Minute)
	replicate(t, e.qcfg, 0, old, upload(t, "p0-old", t0, "user.name", "old"))
	replicate(t, e.qcfg, 0, recent, upload(t, "p0-new", t0, "user.name", "new"))
	replicate(t, e.qcfg, 1, old, upload(t, "p1-old", t0, "user.name", "old"), upload(t, "p1-old2", t0, "user.name", "old"))
	commitOffsets(t, e.qcfg, map[int32]int64{1: 1})

	r := e.run(Config{StoreWrites: StoreWritesStandby}, nil)
	r.w.SetRewind(5 * time.Minute)
	r.w.SetStoreWrites(true)
	eventually(t, "two records written", func() bool { return written(r.w) == 2 })
	eventually(t, "partitions 0 and 1 committed to their ends", func() bool { return e.committedAt(0) == 2 && e.committedAt(1) == 2 })
	for key, want := range map[string]any{"p0-old": nil, "p0-new": "new", "p1-old": nil, "p1-old2": "old"} {
		if got := e.read(key)[1].Value; got != want {
			t.Errorf("%s = %v, want %v", key, got, want)
		}
	}
}

// A writer demoted to standby leaves its group at once, a static member
// too (franz-go sends no LeaveGroup for one): the other writer takes every
// partition well before the session timeout, and nothing produced is
// lost.
func TestDemotedWriterLeavesGroup(t *testing.T) {
	e := newEnv(t)
	cfg := func(id string) Config { return Config{InstanceID: id, SessionTimeout: time.Minute} }
	a, b := e.run(cfg("a"), nil), e.run(cfg("b"), nil)
	keys := e.uploadAll("before", 3)
	eventually(t, "both writers members with a share each", func() bool {
		m := e.members()
		return len(m) == 2 && len(m["a"]) > 0 && len(m["b"]) > 0
	})

	// Uploads go on while a is demoted.
	produced := make(chan []string, 1)
	go func() {
		var ks []string
		for i := range 20 {
			k := fmt.Sprintf("during-%d", i)
			e.produce(k, upload(t, k, t0, "user.name", k))
			ks = append(ks, k)
			time.Sleep(5 * time.Millisecond)
		}
		produced <- ks
	}()
	start := time.Now()
	a.w.SetStoreWrites(false)
	eventually(t, "b alone in the group with every partition", func() bool {
		m := e.members()
		return len(m) == 1 && slices.Equal(m["b"], []int32{0, 1, 2})
	})
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("the demoted writer's partitions moved after %v: want far less than the 1m session timeout", took)
	}
	keys = append(keys, <-produced...)
	eventually(t, "every record stored", func() bool { return e.allStored(keys) })
	eventually(t, "every record committed", func() bool { return e.committed() == int64(len(keys)) })
	if n := testutil.CollectAndCount(a.w.m.lagRecords); n != 0 {
		t.Errorf("the demoted writer keeps %d lag series", n)
	}
	// a writes nothing more, and b has written at least what a did not.
	before := written(a.w)
	e.uploadAll("later", 2)
	eventually(t, "later records committed", func() bool { return e.committed() == int64(len(keys))+6 })
	if written(a.w) != before {
		t.Errorf("the demoted writer wrote %v records after its demotion", written(a.w)-before)
	}
	if written(a.w)+written(b.w) < float64(len(keys)+6) {
		t.Errorf("written %v+%v < %d records", written(a.w), written(b.w), len(keys)+6)
	}
}

// A switch of cluster in standby only changes the cluster the writer joins
// when activated; the activation then seeds as the switch would have: an
// offset older than the switch time minus the rewind moves to it.
func TestSwitchInStandbyJoinsThereWhenActivated(t *testing.T) {
	e := newEnv(t)
	sec := e.secondary("")
	now := time.Now()
	replicate(t, sec, 0, now.Add(-time.Hour), upload(t, "old", t0, "user.name", "old"))
	replicate(t, sec, 0, now.Add(-time.Minute), upload(t, "recent", t0, "user.name", "recent"))
	commitOffsets(t, sec, map[int32]int64{0: 0})

	r := e.run(Config{StoreWrites: StoreWritesStandby}, nil)
	r.w.SetRewind(5 * time.Minute)
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.w.SwitchTo(sctx, sec, now); err != nil {
		t.Fatal(err)
	}
	sc := &env{t: t, qcfg: sec}
	var err error
	if sc.client, err = kgo.NewClient(sec.ClientOpts()...); err != nil {
		t.Fatal(err)
	}
	defer sc.client.Close()
	time.Sleep(300 * time.Millisecond)
	if m := sc.members(); len(m) != 0 || sc.committedAt(0) != 0 {
		t.Fatalf("standby writer after a switch: members %v, offset %d; want none, 0", m, sc.committedAt(0))
	}
	r.w.SetStoreWrites(true)
	eventually(t, "the recent record written", func() bool { return e.read("recent")[1].Value == "recent" })
	eventually(t, "partition 0 committed", func() bool { return sc.committedAt(0) == 2 })
	if v := e.read("old")[1].Value; v != nil || written(r.w) != 1 {
		t.Errorf("old = %v, %v written: the record before the rewind was written", v, written(r.w))
	}
	if m := sc.members(); len(m) != 1 {
		t.Errorf("members on the switched-to cluster: %v, want the writer", m)
	}
}
