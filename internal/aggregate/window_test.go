package aggregate

import (
	"testing"
	"time"

	"github.com/cairnfs/cairn/internal/feature"
)

// epoch is an arbitrary bucket-aligned instant for the tests.
var epoch = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)

func timeMicro(i int) time.Duration { return time.Duration(i) * time.Microsecond }

func TestBucketStart(t *testing.T) {
	t.Parallel()
	paris := time.FixedZone("UTC+1", 3600)
	for _, c := range []struct {
		t      time.Time
		bucket time.Duration
		want   time.Time
	}{
		{epoch.Add(7*time.Minute + 3*time.Second), 5 * time.Minute, epoch.Add(5 * time.Minute)},
		{epoch.Add(5 * time.Minute), 5 * time.Minute, epoch.Add(5 * time.Minute)},
		{epoch.Add(5*time.Minute - time.Nanosecond), 5 * time.Minute, epoch},
		// Aligned to the Unix epoch, not to the local day.
		{time.Date(2026, 3, 2, 0, 30, 0, 0, paris), 24 * time.Hour, time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)},
		// 1970-01-01 was a Thursday: week buckets start on Thursdays.
		{time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC), 7 * 24 * time.Hour, time.Date(2026, 2, 26, 0, 0, 0, 0, time.UTC)},
		{time.Unix(-1, 0), time.Hour, time.Unix(-3600, 0)},
		{time.Unix(-3600, 0), time.Hour, time.Unix(-3600, 0)},
	} {
		got := BucketStart(c.t, c.bucket)
		if !got.Equal(c.want) || got.Location() != time.UTC {
			t.Errorf("BucketStart(%v, %v) = %v, want %v in UTC", c.t, c.bucket, got, c.want.UTC())
		}
	}
}

// TestWindowSlides folds an event per minute into 5-minute buckets, then
// reads a 1-hour window with the clock stepped second by second across
// bucket boundaries: the window read always holds the events of
// [from, now], which is at most an hour and at least 55 minutes long, and
// the oldest bucket drops out whole as now crosses a boundary.
func TestWindowSlides(t *testing.T) {
	t.Parallel()
	const bucket, window = 5 * time.Minute, time.Hour
	w := windowed(feature.AggCount, feature.KindInt)
	var events []time.Time
	for m := range 240 {
		events = append(events, epoch.Add(time.Duration(m)*time.Minute))
	}
	// read folds the events that happened by now into their buckets, as
	// a writer would have, and reads the window at now.
	read := func(now time.Time) int64 {
		buckets := map[time.Time]*State{}
		for _, at := range events {
			if at.After(now) {
				break
			}
			k := BucketStart(at, bucket)
			if buckets[k] == nil {
				buckets[k] = New(w)
			}
			mustAdd(t, buckets[k], 1.0)
		}
		from, to := Window(now, window, bucket)
		if n := len(Starts(from, to, bucket)); n != int(window/bucket) {
			t.Fatalf("now %v: %d buckets read, want %d", now, n, window/bucket)
		}
		sum := New(w)
		for _, k := range Starts(from, to, bucket) {
			if s := buckets[k]; s != nil {
				if err := sum.Merge(s); err != nil {
					t.Fatal(err)
				}
			}
		}
		return sum.Value().(int64)
	}
	// events in (now-d, now]
	within := func(now time.Time, d time.Duration) int64 {
		var n int64
		for _, e := range events {
			if e.After(now.Add(-d)) && !e.After(now) {
				n++
			}
		}
		return n
	}
	for now := epoch.Add(118 * time.Minute); now.Before(epoch.Add(132 * time.Minute)); now = now.Add(time.Second) {
		got := read(now)
		if hi, lo := within(now, window), within(now, window-bucket); got > hi || got < lo {
			t.Fatalf("now %v: %d events, want between %d (the last %v) and %d (the last %v)", now.Sub(epoch), got, lo, window-bucket, hi, window)
		}
	}
	for _, c := range []struct {
		now  time.Duration
		want int64
	}{
		{120*time.Minute + 30*time.Second, 56},  // minutes 65..120
		{124*time.Minute + 59*time.Second, 60},  // minutes 65..124: the full hour
		{125 * time.Minute, 56},                 // bucket [65m, 70m) dropped: 70..125
		{125*time.Minute + time.Nanosecond, 56}, // still 70..125
		{300 * time.Minute, 0},                  // every event older than the window
		{-time.Minute, 0},                       // before the first event
		{4*time.Minute + 59*time.Second, 5},     // 0..4, the window reaching before the first event
		{239*time.Minute + 59*time.Second, 60},  // 180..239
		{240 * time.Minute, 55},                 // 185..239
		{240*time.Minute + 4*time.Minute, 55},   // 185..239
		{240*time.Minute + 5*time.Minute, 50},   // 190..239
		{240*time.Minute + 54*time.Minute, 5},   // 235..239
		{240*time.Minute + 55*time.Minute, 0},   // [240m, 295m]: none
		{240*time.Minute + 60*time.Minute, 0},   // all expired
		{180*time.Minute + 2*time.Second, 56},   // 125..180
	} {
		if got := read(epoch.Add(c.now)); got != c.want {
			t.Errorf("now +%v: %d events, want %d", c.now, got, c.want)
		}
	}
}

// TestExpires: a bucket expires exactly when the longest window stops
// reading it.
func TestExpires(t *testing.T) {
	t.Parallel()
	const bucket, longest = time.Hour, 7 * 24 * time.Hour
	start := epoch.Add(3 * time.Hour)
	exp := Expires(start, longest)
	reads := func(now time.Time) bool {
		from, to := Window(now, longest, bucket)
		return !start.Before(from) && !start.After(to)
	}
	if !reads(exp.Add(-time.Nanosecond)) || reads(exp) {
		t.Fatalf("bucket %v expires %v, but the window reads it until %v", start, exp, exp)
	}
}
