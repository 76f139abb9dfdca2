package bench

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func openNothing(context.Context, string, prometheus.Registerer) (Store, error) { return nil, nil }

func startNothing(context.Context, ServerSpec) (string, func() error, error) { return "", nil, nil }

func TestOptionsValidate(t *testing.T) {
	valid := func() Options {
		o := DefaultOptions()
		o.Store = "embedded:///tmp/x"
		o.OpenStore = openNothing
		return o
	}
	for _, tc := range []struct {
		name  string
		edit  func(*Options)
		wants []string // each in the error; none: valid
	}{
		{"defaults", func(*Options) {}, nil},
		{"search", func(o *Options) { o.FindMaxP99 = time.Millisecond }, nil},
		{"every problem at once", func(o *Options) {
			o.Store, o.Entities, o.Pool, o.Rate, o.Slice, o.Duration, o.Ask = "", 0, 2_000_000, -1, 2*time.Second, time.Second, 51
		}, []string{"--store is required", "--entities 0", "--pool 2000000", "--rate -1", "--duration 1s", "--ask 51"}},
		{"search bounds", func(o *Options) { o.FindMaxP99, o.SearchStep, o.MaxRate = time.Millisecond, 0, 10 },
			[]string{"--search-step 0s", "--max-rate 10"}},
		{"in process without a server", func(o *Options) { o.InProcess = true }, []string{"without StartServer"}},
		{"formats", func(o *Options) { o.Formats = true }, nil},
		{"formats with the other servers", func(o *Options) { o.Formats, o.Security, o.Resolvers, o.PGDSN = true, true, true, "postgres://u@h/db" },
			[]string{"--formats with --security", "--formats with --resolvers"}},
		{"metrics, pinned", func(o *Options) { o.Metrics, o.Pin, o.ServerProcs = true, pinSupported, 1 }, nil},
		{"metrics, pin and server procs in process", func(o *Options) {
			o.Metrics, o.Pin, o.ServerProcs, o.InProcess, o.StartServer = true, true, 2, true, startNothing
		}, []string{"--metrics with --in-process", "--pin with --in-process", "--server-procs with --in-process"}},
		{"negative server procs", func(o *Options) { o.ServerProcs = -1 }, []string{"--server-procs -1"}},
		{"redis without its configuration", func(o *Options) { o.Store = "redis://127.0.0.1:6379/0" }, []string{"without RedisConfig"}},
		{"no store opener", func(o *Options) { o.OpenStore = nil }, []string{"no OpenStore"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := valid()
			tc.edit(&o)
			err := o.Validate()
			if len(tc.wants) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate: nil, want %q", tc.wants)
			}
			for _, w := range tc.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate: %v\nwant it to mention %q", err, w)
				}
			}
		})
	}
}

// A Redis URI without a prefix gets one of the measurement's own; one
// with a prefix, and other stores, are kept as given.
func TestStoreURI(t *testing.T) {
	got, own, err := storeURI("redis://127.0.0.1:6379/0")
	if err != nil || !own || !strings.Contains(got, "prefix=cairn-bench-") {
		t.Errorf("storeURI(no prefix) = %q, %v, %v", got, own, err)
	}
	for _, uri := range []string{"redis://127.0.0.1:6379/0?prefix=mine%3A", "embedded:///tmp/x", "dynamodb:///t?region=us-east-1"} {
		if got, own, err := storeURI(uri); got != uri || own || err != nil {
			t.Errorf("storeURI(%q) = %q, %v, %v; want it kept", uri, got, own, err)
		}
	}
}

// Each request set asks for n distinct entities of the pool.
func TestRequestsDistinct(t *testing.T) {
	reg, err := Registry(12)
	if err != nil {
		t.Fatal(err)
	}
	ns, _ := reg.Namespace(Namespace)
	keys := []string{"a", "b", "c", "d", "e"}
	sets := requests(keys, 5, ns.Features[1:])
	if len(sets) != requestSets {
		t.Fatalf("%d sets, want %d", len(sets), requestSets)
	}
	for _, s := range sets[:50] {
		seen := map[string]bool{}
		for _, k := range s.keys {
			if seen[k] {
				t.Fatalf("set %q asks %q twice", s.keys, k)
			}
			seen[k] = true
		}
		if !strings.Contains(string(s.body), `"bench.f011"`) {
			t.Fatalf("body %s lacks the last feature", s.body)
		}
	}
}
