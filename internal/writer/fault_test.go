package writer

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/store"
	"github.com/cairnfs/cairn/internal/store/dynamo/dynamotest"
	"github.com/cairnfs/cairn/internal/testserver"
	"github.com/cairnfs/cairn/internal/testserver/faultproxy"
)

func TestMain(m *testing.M) { os.Exit(testserver.Run(m)) }

// counter returns the value of a counter.
func counter(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// With DynamoDB throttling every request past the store's retry budget, the
// writer pauses: it retries the batch, commits nothing, and loses nothing.
// Once DynamoDB recovers it catches up, and every record is in the store,
// newest value per feature.
func TestDynamoThrottledWriterPausesThenCatchesUp(t *testing.T) {
	e := newEnv(t)
	st, proxy := dynamotest.OpenProxied(t, 1)
	ns, _ := e.reg.Namespace("user")
	age, _ := e.reg.Lookup("user.age")
	name, _ := e.reg.Lookup("user.name")
	// Give the features their ids first, so that the throttling below
	// meets the entity writes.
	err := st.Write(context.Background(), []store.EntityWrite{{Namespace: ns, Key: "warmup", Values: []store.Value{
		{Feature: age, Value: int64(0), ObservedAt: t0}, {Feature: name, Value: "", ObservedAt: t0}}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := proxy.Add(faultproxy.Rule{Fault: faultproxy.Throttle}); err != nil {
		t.Fatal(err)
	}

	// Ten entities, each with two records in the wrong order: the older
	// one, produced last, must not win.
	const entities = 10
	for i := range entities {
		key := fmt.Sprintf("u%d", i)
		e.produce("user\x00"+key,
			upload(t, key, t0.Add(time.Minute), "user.age", int64(100+i)),
			upload(t, key, t0, "user.age", int64(i), "user.name", "old"),
		)
	}
	const records = 2 * entities

	w, err := New(e.qcfg, Config{MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}, e.reg, st, nil, quiet())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("writer.Run: %v", err)
		}
	}()

	eventually(t, "the writer to retry a throttled batch twice", func() bool { return counter(t, w.m.storeErrors) >= 2 })
	if n := e.committed(); n != 0 {
		t.Fatalf("%d offsets committed while every store write failed", n)
	}
	if n := counter(t, w.m.records.WithLabelValues("dead_lettered")); n != 0 {
		t.Fatalf("%v records dead-lettered for throttling", n)
	}
	seen := proxy.Counts()
	t.Logf("while throttled: %+v; writer retries %v", seen, counter(t, w.m.storeErrors))
	if seen["BatchGetItem"].Requests+seen["Query"].Requests > 2 {
		t.Errorf("reads while throttled (%+v): the ids were not all assigned by the warm-up", seen)
	}

	proxy.Clear()
	eventually(t, "every offset committed after DynamoDB recovered", func() bool { return e.committed() == records })

	keys := make([]string, entities)
	for i := range keys {
		keys[i] = fmt.Sprintf("u%d", i)
	}
	rows, err := st.Read(context.Background(), ns, keys, []*feature.Feature{age, name})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range rows {
		c := r.Cells
		if c[0].Value != int64(100+i) || !c[0].ObservedAt.Equal(t0.Add(time.Minute)) || c[1].Value != "old" || !c[1].ObservedAt.Equal(t0) {
			t.Errorf("%s: age %+v, name %+v; want %d at t0+1m and old at t0", keys[i], c[0], c[1], 100+i)
		}
	}
	if n := counter(t, w.m.records.WithLabelValues("written")); n != records {
		t.Errorf("%v records written, want %d", n, records)
	}
}
