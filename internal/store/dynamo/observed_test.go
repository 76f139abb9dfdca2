package dynamo

import (
	"bytes"
	"context"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/store"
)

// Byte order of stored observed-ats is time order, which the newest-wins
// condition relies on.
func TestObservedAtBytesSortLikeTimes(t *testing.T) {
	micros := []int64{minObservedAt, -1 << 40, -1_000_001, -1, 0, 1, 255, 256, 1 << 32, 1_714_566_600_123_456, maxObservedAt}
	for i := 1; i < len(micros); i++ {
		a, b := observedAtBytes(micros[i-1]), observedAtBytes(micros[i])
		if len(a) != observedAtLen || bytes.Compare(a, b) >= 0 {
			t.Errorf("%d encodes to %x, not below %d's %x", micros[i-1], a, micros[i], b)
		}
	}
	for _, m := range []int64{minObservedAt - 1, maxObservedAt + 1, math.MinInt64, math.MaxInt64} {
		if observedAtInRange(m) {
			t.Errorf("%d is out of range", m)
		}
	}
	for _, m := range micros {
		got, ok := observedAtMicros(observedAtValue(m))
		if !ok || got != m {
			t.Errorf("round trip of %d gave %d, %v", m, got, ok)
		}
	}
	if !slices.IsSorted(micros) {
		t.Fatal("test table out of order")
	}
}

// Across the sign change (before and after 1970) the server-side condition
// still keeps the newest value.
func TestNewestWinsAcrossEpoch(t *testing.T) {
	reg, err := feature.Parse("t.yaml", []byte("namespaces:\n  - {name: user, primary_key: id, features: {id: string, age: int}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	ns, _ := reg.Namespace("user")
	age, _ := reg.Lookup("user.age")
	s := open(t, testConfig(t, tableName("epoch")))
	ctx := context.Background()
	for _, w := range []struct {
		at  time.Time
		age int64
	}{{time.Date(1971, 1, 1, 0, 0, 0, 0, time.UTC), 71}, {time.Date(1969, 1, 1, 0, 0, 0, 0, time.UTC), 69}} {
		if err := s.Write(ctx, []store.EntityWrite{{Namespace: ns, Key: "u", Values: []store.Value{{Feature: age, Value: w.age, ObservedAt: w.at}}}}); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := s.Read(ctx, ns, []string{"u"}, []*feature.Feature{age})
	if err != nil || rows[0].Cells[0].Value != int64(71) {
		t.Fatalf("got %+v, %v; want the 1971 value", rows, err)
	}
}
