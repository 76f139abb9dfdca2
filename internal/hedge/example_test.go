package hedge_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/cairnfs/cairn/internal/hedge"
)

func ExampleDo() {
	h, err := hedge.New("example", hedge.Config{Wait: 10 * time.Millisecond, MaxInFlight: 1}, nil)
	if err != nil {
		panic(err)
	}
	var calls atomic.Int32
	answer, err := hedge.Do(context.Background(), h, func(ctx context.Context) (string, error) {
		if calls.Add(1) == 1 {
			<-ctx.Done() // the first call straggles until the race is won
			return "", ctx.Err()
		}
		return "the second call's answer", nil
	})
	fmt.Println(answer, err)
	// Output: the second call's answer <nil>
}
