package gtreplicator_test

import (
	"context"
	"time"

	"github.com/cairnfs/cairn/internal/testserver/gtreplicator"
)

// The drill's use: the table is created with its stream in both regions
// before cairn starts, the replicator runs for the whole test, and the
// test waits for quiescence before comparing the regions.
func ExampleReplicator() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rep := gtreplicator.New(
		gtreplicator.Region{Name: "us-east-1", Endpoint: "http://127.0.0.1:41001"},
		gtreplicator.Region{Name: "us-west-2", Endpoint: "http://127.0.0.1:41002"},
		gtreplicator.Options{Table: "cairn", Lag: 2 * time.Second})
	if err := rep.Prepare(ctx); err != nil {
		return
	}
	go func() { _ = rep.Run(ctx) }()

	// ... start cairn in both regions, AWS_REGION as above, upload ...

	for rep.Lagging() > 0 {
		time.Sleep(50 * time.Millisecond)
	}
	_ = rep.Applied("us-east-1") // copied from us-east-1 to us-west-2
}
