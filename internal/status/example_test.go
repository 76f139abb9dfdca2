package status_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/cairnfs/cairn/internal/status"
)

// A rollup reader that keeps its own type is adapted with RollupsFunc; with
// no brokers and no store configured, every other section says why in one
// line, and the report is still printed.
func ExampleCollect() {
	type minute struct {
		ns      string
		queries int64
	}
	stored := []minute{{"user", 1200}, {"merchant", 80}}
	cfg := status.Config{
		Timeout: time.Second,
		Now:     func() time.Time { return time.Date(2026, 12, 1, 18, 59, 30, 0, time.UTC) },
		Rollups: status.RollupsFunc(func(_ context.Context, from, _ time.Time) ([]status.Rollup, error) {
			var out []status.Rollup
			for _, m := range stored {
				out = append(out, status.Rollup{Namespace: m.ns, Minute: from, Queries: m.queries})
			}
			return out, nil
		}),
	}
	r, err := status.Collect(context.Background(), cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	r.WriteText(os.Stdout)
	// Output:
	// cairn status at 2026-12-01 18:59:30 UTC, brokers none configured
	//
	// Writer group cairn-writer: FAILED: configuration: queue: no Kafka brokers configured (CAIRN_KAFKA_BROKERS or --brokers)
	//
	// Dead letters in cairn.persist.dlq: FAILED: configuration: queue: no Kafka brokers configured (CAIRN_KAFKA_BROKERS or --brokers)
	//
	// Topics: FAILED: configuration: queue: no Kafka brokers configured (CAIRN_KAFKA_BROKERS or --brokers)
	//
	// Store: FAILED: no online store configured (--store or CAIRN_ONLINE_STORE)
	//
	// Metrics rollup 18:58-18:59 UTC: 2 namespaces
	//   namespace  queries  errors  cache hits  bloom short-circuits  p50  p99
	//   user       1200     0       0           0                     0s   0s
	//   merchant   80       0       0           0                     0s   0s
}
