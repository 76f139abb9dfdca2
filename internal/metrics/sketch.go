package metrics

import (
	"github.com/DataDog/sketches-go/ddsketch"
	"github.com/DataDog/sketches-go/ddsketch/store"
)

// Sketch returns the DDSketch of buckets (latencies in seconds), with
// relative accuracy RelativeAccuracy.
func Sketch(buckets []Bucket) *ddsketch.DDSketch {
	s := ddsketch.NewDDSketch(logMapping, store.NewDenseStore(), store.NewDenseStore())
	for _, b := range buckets {
		// Value is within the bucket, so the sketch puts it back there.
		_ = s.AddWithCount(logMapping.Value(int(b.Index)), float64(b.Count))
	}
	return s
}

// mergeBuckets returns the sum of two sorted bucket lists.
func mergeBuckets(a, b []Bucket) []Bucket {
	out := make([]Bucket, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || (i < len(a) && a[i].Index < b[j].Index):
			out = append(out, a[i])
			i++
		case i == len(a) || b[j].Index < a[i].Index:
			out = append(out, b[j])
			j++
		default:
			out = append(out, Bucket{Index: a[i].Index, Count: a[i].Count + b[j].Count})
			i++
			j++
		}
	}
	return out
}
