package metrics

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/cairnfs/cairn/internal/queue"
	"github.com/cairnfs/cairn/internal/store/embedded"
)

// Range returns each minute's fleet row, then its namespaces by name,
// minutes in order, within [from, to) and the retention.
func TestReaderRange(t *testing.T) {
	t.Parallel()
	st, err := embedded.Open(t.TempDir(), embedded.Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	qcfg := queue.Config{Brokers: []string{"127.0.0.1:1"}} // never dialled: process is called directly
	qcfg.EnsureDefaults()
	cfg := ConsumerConfig{Partitions: 3, Retention: time.Hour}
	c, err := NewConsumer(qcfg, cfg, st, nil, quiet())
	if err != nil {
		t.Fatal(err)
	}
	m0 := time.Now().UTC().Truncate(time.Minute).Add(-10 * time.Minute)
	rec := func(start time.Time, partition int32, ns ...string) *kgo.Record {
		r := &Record{Source: "s", Start: start, Interval: 30 * time.Second, Fleet: Fleet{StoreRequests: 1}}
		for _, n := range ns {
			r.Namespaces = append(r.Namespaces, Namespace{Name: n, Queries: 1})
		}
		return &kgo.Record{Partition: partition, Value: r.Append(nil)}
	}
	err = c.process(context.Background(), []*kgo.Record{
		rec(m0, 0, "user"),
		rec(m0.Add(30*time.Second), 2, "merchant", "user"),
		rec(m0.Add(time.Minute), 1, "user"),
		rec(m0.Add(-2*time.Hour), 0, "user"), // past the retention
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := testutil.ToFloat64(c.records.WithLabelValues("too_old")); n != 1 {
		t.Errorf("%v records skipped as too old, want 1", n)
	}
	rd, err := NewReader(st, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	got, err := rd.Range(ctx, m0.Add(-3*time.Hour), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		minute  time.Time
		ns      string
		queries uint64
		fleet   uint64
	}
	want := []row{{m0, "", 0, 2}, {m0, "merchant", 1, 0}, {m0, "user", 2, 0}, {m0.Add(time.Minute), "", 0, 1}, {m0.Add(time.Minute), "user", 1, 0}}
	if len(got) != len(want) {
		t.Fatalf("%d rollups %+v, want %d", len(got), got, len(want))
	}
	for i, w := range want {
		g := got[i]
		if !g.Minute.Equal(w.minute) || g.Namespace != w.ns || g.Queries != w.queries || g.Fleet.StoreRequests != w.fleet {
			t.Errorf("row %d: %v %q %d queries %d requests, want %+v", i, g.Minute, g.Namespace, g.Queries, g.Fleet.StoreRequests, w)
		}
	}
	if got, err := rd.Range(ctx, m0.Add(time.Minute), m0.Add(2*time.Minute)); err != nil || len(got) != 2 {
		t.Errorf("second minute alone: %d rows, %v; want 2", len(got), err)
	}
	if got, err := rd.Range(ctx, m0, m0); err != nil || got != nil {
		t.Errorf("empty range: %v, %v", got, err)
	}
}
