package dynamo

import "testing"

// The cases are the worked examples of DynamoDB's documentation on read and
// write capacity consumption, plus the edges of each rule.
func TestReadUnits(t *testing.T) {
	const kb = 1024
	tests := []struct {
		name  string
		sizes []int // one BatchGetItem's items
		c     consistency
		want  float64
	}{
		{"3,500-byte item reads as 4 KB, strongly", []int{3500}, strong, 1},
		{"3,500-byte item, eventually consistent", []int{3500}, eventual, 0.5},
		{"8 KB item, strongly consistent", []int{8 * kb}, strong, 2},
		{"8 KB item, eventually consistent", []int{8 * kb}, eventual, 1},
		{"8 KB item, transactional", []int{8 * kb}, transactional, 4},
		{"10 KB item rounds up to 12 KB", []int{10 * kb}, strong, 3},
		{"3.5 KB item rounds up to 4 KB", []int{3*kb + kb/2}, strong, 1},
		// BatchGetItem rounds each item, then adds: 1.5 KB + 6.5 KB
		// is 4 KB + 8 KB = 12 KB, not 8 KB.
		{"batch of 1.5 KB and 6.5 KB items", []int{kb + kb/2, 6*kb + kb/2}, strong, 3},
		{"absent item costs the minimum", []int{0}, eventual, 0.5},
		{"exactly 4 KB", []int{4 * kb}, strong, 1},
		{"one byte over 4 KB", []int{4*kb + 1}, strong, 2},
	}
	for _, tc := range tests {
		got := 0.0
		for _, size := range tc.sizes {
			got += readUnits(size, tc.c)
		}
		if got != tc.want {
			t.Errorf("%s: %v read units, want %v", tc.name, got, tc.want)
		}
	}
}

func TestWriteUnits(t *testing.T) {
	const kb = 1024
	tests := []struct {
		name          string
		size          int
		inTransaction bool
		want          int
	}{
		{"500-byte item", 500, false, 1},
		{"exactly 1 KB", kb, false, 1},
		{"1.5 KB item rounds up to 2 KB", kb + kb/2, false, 2},
		{"one byte over 1 KB", kb + 1, false, 2},
		{"500-byte item in a transaction", 500, true, 2},
		{"1.5 KB item in a transaction", kb + kb/2, true, 4},
		{"400 KB item", 400 * kb, false, 400},
		{"empty update still costs one", 0, false, 1},
	}
	for _, tc := range tests {
		if got := writeUnits(tc.size, tc.inTransaction); got != tc.want {
			t.Errorf("%s: %d write units, want %d", tc.name, got, tc.want)
		}
	}
}
