package bloom_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairnfs/cairn/internal/bloom"
	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/store"
	"github.com/cairnfs/cairn/internal/store/dynamo"
	"github.com/cairnfs/cairn/internal/store/dynamo/dynamotest"
	"github.com/cairnfs/cairn/internal/testserver"
)

// BenchmarkAbsentKeys measures what the filter saves on DynamoDB: queries of
// 100 users of which 90 were never written, with default knobs, read
// directly and through the filter. It reports BatchGetItem requests and
// keys read per query (a key read is half a read unit, eventually
// consistent).
//
//	go test -run XXX -bench AbsentKeys -benchtime 200x ./internal/bloom/
func BenchmarkAbsentKeys(b *testing.B) {
	ctx := context.Background()
	_, qcfg, reg, _ := setup(b)
	ns, _ := reg.Namespace("user")
	age, _ := reg.Lookup("user.age")
	dreg := prometheus.NewRegistry()
	st := dynamotest.Open(b, testserver.Moto(b), dynamo.DefaultMaxRetries, dreg)
	const present = 1000
	var ws []store.EntityWrite
	for i := range present {
		ws = append(ws, store.EntityWrite{Namespace: ns, Key: fmt.Sprintf("p-%d", i),
			Values: []store.Value{{Feature: age, Value: int64(i), ObservedAt: time.Unix(1, 0)}}})
		if len(ws) == 100 || i == present-1 {
			if err := st.Write(ctx, ws); err != nil {
				b.Fatal(err)
			}
			ws = ws[:0]
		}
	}
	treg := prometheus.NewRegistry()
	tr, err := bloom.NewTracker(bloom.TrackerConfig{Specs: []bloom.Spec{{Namespace: "user", ExpectedKeys: 10_000, FalsePositiveRate: 0.01}}},
		qcfg, reg, st, treg, quiet())
	if err != nil {
		b.Fatal(err)
	}
	tctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- tr.Run(tctx) }()
	defer func() { cancel(); <-done }()
	for deadline := time.Now().Add(30 * time.Second); ; {
		if _, ok := tr.MayContain("user", "x"); ok {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("filter not ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
	guard := bloom.NewGuard(st, tr, false, treg, quiet())

	rng := rand.New(rand.NewPCG(1, 2))
	keys := func() []string {
		k := make([]string, 0, 100)
		for range 10 {
			k = append(k, fmt.Sprintf("p-%d", rng.IntN(present)))
		}
		for range 90 {
			k = append(k, fmt.Sprintf("a-%d", rng.Int()))
		}
		return k
	}
	for _, mode := range []struct {
		name   string
		reader bloom.Reader
	}{{"direct", st}, {"filtered", guard}} {
		b.Run(mode.name, func(b *testing.B) {
			reqs0 := sum(b, dreg, "cairn_dynamo_requests_total", "operation", "BatchGetItem")
			units0 := sum(b, dreg, "cairn_dynamo_read_units_total", "", "")
			found := 0
			for b.Loop() {
				rows, err := mode.reader.Read(ctx, ns, keys(), []*feature.Feature{age})
				if err != nil {
					b.Fatal(err)
				}
				for _, r := range rows {
					if r.Found {
						found++
					}
				}
			}
			if found != 10*b.N {
				b.Fatalf("found %d entities, want %d", found, 10*b.N)
			}
			b.ReportMetric((sum(b, dreg, "cairn_dynamo_requests_total", "operation", "BatchGetItem")-reqs0)/float64(b.N), "requests/query")
			b.ReportMetric((sum(b, dreg, "cairn_dynamo_read_units_total", "", "")-units0)/float64(b.N), "RCU/query")
		})
	}
}
