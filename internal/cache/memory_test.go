package cache_test

import (
	"context"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairnfs/cairn/internal/cache"
	"github.com/cairnfs/cairn/internal/store/embedded"
	"github.com/cairnfs/cairn/internal/store/storetest"
)

// Defect 7 of issue 9: a cached namespace had no memory bound by default
// and kept every absent key for the whole TTL, so a client asking for
// random ids grew the heap until the process died. With the default
// configuration, a million distinct absent keys now hold no more than the
// eighth of Config.MaxBytes given to absent keys, plus slack for the
// estimate's error.
func TestAbsentKeysStayWithinTheDefaultBound(t *testing.T) {
	n, maxBytes := 1_000_000, int64(cache.DefaultMaxBytes)
	if raceEnabled {
		// The race detector makes each read about ten times slower:
		// a tenth of the keys through a tenth of the bound keep the
		// ratio of keys to room (about 30 keys per key kept).
		n, maxBytes = n/10, maxBytes/10
	}
	st, err := embedded.Open(t.TempDir(), embedded.Options{Logger: quiet, CacheBytes: 1 << 20, MemTableBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	user, _ := storetest.Registry().Namespace("user")
	feats := featsOf(t, user, "age", "name")
	reg := prometheus.NewRegistry()
	cfg := cache.DefaultConfig()
	cfg.Namespaces = []cache.NamespaceConfig{{Namespace: "user", TTL: time.Hour}}
	cfg.MaxBytes = maxBytes
	c, err := cache.New(st, cfg, reg, quiet)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	keys := make([]string, 1000)
	read := func(from int) {
		for i := range keys {
			keys[i] = "random-id-" + strconv.Itoa(from+i)
		}
		rows, err := c.Read(ctx, user, keys, feats)
		if err != nil {
			t.Fatal(err)
		}
		if rows[0].Found {
			t.Fatalf("%s found", keys[0])
		}
	}
	read(-len(keys)) // warm the store and the cache's structures up
	before := heap()
	start := time.Now()
	for i := 0; i < n; i += len(keys) {
		read(i)
	}
	took := time.Since(start)
	after := heap()
	runtime.KeepAlive(c)

	bound := maxBytes / 8
	grew := int64(after) - int64(before)
	estimated := metricValue(t, reg, "cairn_cache_bytes")
	absent := metricValue(t, reg, "cairn_cache_absent_entries")
	t.Logf("%d absent keys in %v: heap grew %.1f MiB; cache estimates %.1f MiB in %v entries; bound for absent keys %.1f MiB",
		n, took.Round(time.Millisecond), mib(grew), estimated/(1<<20), absent, mib(bound))
	if estimated > float64(bound) {
		t.Errorf("the cache estimates it holds %.1f MiB of absent keys, over their bound of %.1f MiB", estimated/(1<<20), mib(bound))
	}
	if absent < float64(n)/100 {
		t.Errorf("only %v absent keys cached: the test proves nothing", absent)
	}
	// Slack: the estimate's error (it counts the LRU's and the map's
	// overhead per entry approximately) and the allocator's.
	if slack := bound/2 + 4<<20; grew > bound+slack {
		t.Errorf("heap grew %.1f MiB through %d absent keys; want at most the bound %.1f MiB plus %.1f MiB",
			mib(grew), n, mib(bound), mib(slack))
	}
}

func heap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
