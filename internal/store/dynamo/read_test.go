package dynamo

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// The sub-batch formula of docs/dynamodb.md.
func TestSubBatches(t *testing.T) {
	rep := func(size, times int) []int { return slices.Repeat([]int{size}, times) }
	tests := []struct {
		n, b, c int // keys, min batch size, concurrency
		want    []int
	}{
		{0, 10, 4, nil},
		{1, 10, 4, []int{1}},
		{9, 10, 4, []int{9}},
		{10, 10, 4, []int{10}},
		{19, 10, 4, []int{19}},
		{20, 10, 4, []int{10, 10}},
		{25, 10, 4, []int{13, 12}},
		{40, 10, 4, rep(10, 4)},
		{41, 10, 4, []int{11, 10, 10, 10}},
		{100, 10, 4, rep(25, 4)},
		{100, 10, 16, rep(10, 10)},
		{100, 10, 1, []int{100}},
		{101, 10, 1, []int{51, 50}},
		{250, 10, 2, []int{84, 83, 83}},
		{250, 10, 4, []int{63, 63, 62, 62}},
		{1000, 10, 4, rep(100, 10)},
		{1001, 10, 4, rep(91, 11)},
		{100, 100, 8, []int{100}},
		{5, 1, 8, rep(1, 5)},
		{37, 1, 4, []int{10, 9, 9, 9}},
		// The 100-key limit wins over a minimum above 50.
		{150, 90, 4, []int{75, 75}},
	}
	for _, tc := range tests {
		if got := subBatches(tc.n, tc.b, tc.c); !slices.Equal(got, tc.want) {
			t.Errorf("subBatches(n=%d, b=%d, c=%d) = %v, want %v", tc.n, tc.b, tc.c, got, tc.want)
		}
	}
}

// Whatever the knobs, sub-batches cover the keys once, none over 100 keys,
// none under the minimum (unless the read is smaller, or the minimum is
// over 50), as many as may run at once unless more are needed, and even.
func TestSubBatchesProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		n, b, c := rng.IntN(3000)+1, rng.IntN(100)+1, rng.IntN(64)+1
		sizes := subBatches(n, b, c)
		label := fmt.Sprintf("subBatches(%d, %d, %d) = %v", n, b, c, sizes)
		sum := 0
		for _, s := range sizes {
			sum += s
			if s > batchGetMaxKeys || s < 1 {
				t.Fatalf("%s: a sub-batch of %d keys", label, s)
			}
			if b <= 50 && s < min(b, n) {
				t.Fatalf("%s: a sub-batch under the minimum", label)
			}
		}
		if sum != n {
			t.Fatalf("%s: %d keys in all", label, sum)
		}
		if need := (n + 99) / 100; len(sizes) > max(need, c) || len(sizes) < need {
			t.Fatalf("%s: %d sub-batches", label, len(sizes))
		}
		if len(sizes) < min(c, n/b) {
			t.Fatalf("%s: fewer sub-batches than may run at once", label)
		}
		if slices.Max(sizes)-slices.Min(sizes) > 1 {
			t.Fatalf("%s: uneven", label)
		}
	}
}
