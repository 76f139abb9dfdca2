package store

import (
	"testing"
	"time"
)

func TestBucketRange(t *testing.T) {
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, tc := range []struct {
		from, to string
		lo, hi   string
		ok       bool
	}{
		{"2024-05-06T00:00:00Z", "2024-05-06T01:00:00Z", "2024-05-06T00:00:00Z", "2024-05-06T01:00:00Z", true},
		{"2024-05-06T00:00:00.5Z", "2024-05-06T00:00:01.5Z", "2024-05-06T00:00:01Z", "2024-05-06T00:00:01Z", true},
		{"2024-05-06T00:00:00.5Z", "2024-05-06T00:00:00.9Z", "2024-05-06T00:00:01Z", "2024-05-06T00:00:00Z", false},
		{"2024-05-06T02:00:00+02:00", "2024-05-06T00:00:00Z", "2024-05-06T00:00:00Z", "2024-05-06T00:00:00Z", true},
		{"1900-01-01T00:00:00Z", "1969-12-31T23:59:59.5Z", "1970-01-01T00:00:00Z", "1969-12-31T23:59:59Z", false},
		{"1900-01-01T00:00:00Z", "1970-01-01T00:00:00Z", "1970-01-01T00:00:00Z", "1970-01-01T00:00:00Z", true},
		{"9999-12-31T23:59:59Z", "9999-12-31T23:59:59.999Z", "9999-12-31T23:59:59Z", "9999-12-31T23:59:59Z", true},
		{"2024-05-06T01:00:00Z", "2024-05-06T00:00:00Z", "2024-05-06T01:00:00Z", "2024-05-06T00:00:00Z", false},
	} {
		from, to := at(tc.from), at(tc.to)
		lo, hi, ok := BucketRange(from, to)
		if ok != tc.ok || !lo.Equal(at(tc.lo)) || !hi.Equal(at(tc.hi)) || lo.Location() != time.UTC || hi.Location() != time.UTC {
			t.Errorf("BucketRange(%s, %s) = %s, %s, %v; want %s, %s, %v", tc.from, tc.to, lo, hi, ok, tc.lo, tc.hi, tc.ok)
		}
	}
}
