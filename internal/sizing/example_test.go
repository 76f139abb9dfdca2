package sizing_test

import (
	"fmt"
	"os"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/sizing"
)

// A plan for 200 queries/s (600 at peak) reading 4 entities each, over a
// registry of one namespace. The item: pk "user#" and a 16-byte key (2 +
// 21), sk (2 + 1), age (1 + 5), country (1 + 16), score (1 + 10) and three
// observed-at attributes (3 × 9): 87 bytes. Kafka holds only metrics here:
// each of 3 query servers sends one record per 10 s interval, of its 667
// queries spread over 116 latency buckets, which is far below a GiB a week.
func ExampleCompute() {
	reg, err := feature.Parse("features.yaml", []byte(`
namespaces:
  - name: user
    primary_key: id
    features:
      id: string
      age: int
      country: string
      score: float
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	o := sizing.DefaultOptions()
	o.Features = "features.yaml"
	o.QPS, o.PeakQPS, o.EntitiesPerQuery = 200, 600, 4
	plan, err := sizing.Compute(o, reg)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("item %d bytes, %v read units each\n", plan.Item.Bytes, plan.ReadUnitsPerItem)
	fmt.Printf("read units %d steady, %d peak: %s\n", plan.ReadUnits.Steady, plan.ReadUnits.Peak, plan.CapacityMode)
	m := plan.Kafka.Metrics
	fmt.Printf("metrics record %d bytes, %d queries, %d buckets: %v B/s\n", m.RecordBytes, m.QueriesPerInterval, m.LatencyBuckets, m.BytesPerSecond)
	plan.WriteTFVars(os.Stdout)
	// Output:
	// item 87 bytes, 0.5 read units each
	// read units 400 steady, 1200 peak: autoscaled
	// metrics record 375 bytes, 667 queries, 116 buckets: 133.5 B/s
	// capacity_mode              = "autoscaled"
	// read_capacity              = 572
	// write_capacity             = 1
	// autoscaling_read_min       = 572
	// autoscaling_read_max       = 1715
	// autoscaling_write_min      = 1
	// autoscaling_write_max      = 1
	// broker_volume_size         = 1
	// log_retention_hours        = 168
	// broker_count               = 3
	// default_replication_factor = 3
}
