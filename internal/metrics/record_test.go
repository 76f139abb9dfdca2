package metrics

import (
	"errors"
	"reflect"
	"testing"
	"time"
)

func sampleRecord() *Record {
	return &Record{Source: "host-a/1764615180000000/0badcafe", Start: time.Unix(1764615180, 0).UTC(), Interval: 10 * time.Second,
		Fleet: Fleet{StoreRequests: 1000, StoreErrors: 3, StoreThrottles: 2, StoreRaces: 5, KafkaMetricsDropped: 1, KafkaUploadsDropped: 4},
		Namespaces: []Namespace{
			{Name: "merchant", Queries: 3, Latency: []Bucket{{Index: -300, Count: 3}}},
			{Name: "user", Queries: 10, CacheHits: 40, CacheMisses: 9, BloomSkipped: 2, BloomLookups: 5,
				Errors:  []CodeCount{{"DEADLINE_EXCEEDED", 1}, {"UPSTREAM_FAILED", 2}},
				Latency: []Bucket{{Index: -500, Count: 1}, {Index: -420, Count: 6}, {Index: 10, Count: 3}}},
		}}
}

func TestRecordRoundTrip(t *testing.T) {
	t.Parallel()
	r := sampleRecord()
	got, err := Decode(r.Append(nil))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, r) {
		t.Errorf("decoded %+v\nwant %+v", got, r)
	}
}

func TestDecodeRejects(t *testing.T) {
	t.Parallel()
	good := sampleRecord().Append(nil)
	for name, b := range map[string][]byte{
		"empty":     nil,
		"version":   append([]byte{2}, good[1:]...),
		"truncated": good[:len(good)-1],
		"trailing":  append(append([]byte{}, good...), 0),
		"json":      []byte(`{"query_id":"x","duration_s":0.1}`),
	} {
		if _, err := Decode(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: err %v, want ErrCorrupt", name, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(sampleRecord().Append(nil))
	f.Add([]byte{Version})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Decode(b)
		if err != nil {
			return
		}
		again, err := Decode(r.Append(nil))
		if err != nil {
			t.Fatalf("re-encoding of a decoded record does not decode: %v", err)
		}
		if !reflect.DeepEqual(again, r) {
			t.Fatalf("round trip changed %+v into %+v", r, again)
		}
	})
}

// A stored rollup item is outside input too: whatever it holds decodes or
// fails, and what decodes encodes back to the same.
func FuzzDecodeItem(f *testing.F) {
	it := &item{}
	it.merge(sampleRecord())
	f.Add(it.append(nil))
	f.Add([]byte{Version, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		it, err := decodeItem(b)
		if err != nil {
			return
		}
		again, err := decodeItem(it.append(nil))
		if err != nil || !reflect.DeepEqual(again, it) {
			t.Fatalf("round trip of %+v: %+v, %v", it, again, err)
		}
	})
}
