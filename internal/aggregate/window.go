package aggregate

import "time"

// BucketStart returns the start of the bucket of duration bucket holding
// t: buckets are aligned to the Unix epoch, so every writer and server
// agrees on them whatever its time zone. The result is in UTC. bucket
// must be positive; times before 1970 round down as well.
func BucketStart(t time.Time, bucket time.Duration) time.Time {
	ns := t.UnixNano()
	b := int64(bucket)
	start := ns - ns%b
	if ns%b < 0 {
		start -= b
	}
	return time.Unix(0, start).UTC()
}

// Window returns the starts of the first and the last bucket a query at
// now reads for a window of length window (a whole multiple of bucket):
// exactly window/bucket buckets, the last one the bucket holding now.
//
// The bucket holding now is partial, so the window read covers
// [from, now]: at most window long (just before a bucket boundary) and at
// least window − bucket (just after one, when the oldest bucket has just
// dropped out whole). The bucket holding now − window is never read,
// so an event is never counted once older than window. docs/aggregations.md
// draws it.
func Window(now time.Time, window, bucket time.Duration) (from, to time.Time) {
	to = BucketStart(now, bucket)
	n := window / bucket
	if n < 1 {
		n = 1
	}
	return to.Add(-(n - 1) * bucket), to
}

// Starts returns the starts of the buckets from and to (inclusive) span,
// in ascending order: the buckets a query merges.
func Starts(from, to time.Time, bucket time.Duration) []time.Time {
	if to.Before(from) || bucket <= 0 {
		return nil
	}
	out := make([]time.Time, 0, to.Sub(from)/bucket+1)
	for t := from; !t.After(to); t = t.Add(bucket) {
		out = append(out, t)
	}
	return out
}

// Expires returns when the bucket starting at start is read by no window
// any more, the longest window being longest: from then on a store may
// drop it (its TTL).
func Expires(start time.Time, longest time.Duration) time.Time {
	return start.Add(longest)
}
