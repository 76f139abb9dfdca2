package bench

import (
	"context"
	"errors"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/store/redis"
	"github.com/cairnfs/cairn/internal/testserver"
)

func TestMain(m *testing.M) {
	if os.Getenv(ServerChildEnv) == "1" {
		// Started by startServerProcess in TestServerProcess: follow the
		// protocol, announcing the arguments and environment received
		// instead of an address.
		_ = Announce(os.Stdout, strings.Join(os.Args[1:], " ")+" env="+os.Getenv("CAIRN_BENCH_TEST_KNOB"))
		_ = WaitForParent(context.Background(), os.Stdin)
		os.Exit(0)
	}
	os.Exit(testserver.Run(m))
}

var (
	prefixSeq atomic.Int64
	runID     = strconv.FormatInt(time.Now().UnixNano(), 36)
)

// openRedis opens the Redis store under a key prefix of the test's own,
// closed when the test ends, and returns it with its configuration.
func openRedis(t *testing.T) (*redis.Store, redis.Config) {
	t.Helper()
	cfg := redis.DefaultConfig()
	cfg.Addr = testserver.Redis(t)
	cfg.KeyPrefix = "cairn-bench-test:" + runID + ":" + strconv.FormatInt(prefixSeq.Add(1), 10) + ":"
	cfg.PoolSize = 4
	st, err := redis.Open(context.Background(), cfg, nil, nil)
	if err != nil {
		t.Fatalf("open the redis store: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st, cfg
}

// keysUnder returns every key of the server under prefix, sorted.
func keysUnder(t *testing.T, c goredis.UniversalClient, prefix string) []string {
	t.Helper()
	var keys []string
	iter := c.Scan(context.Background(), 0, prefix+"*", 1000).Iterator()
	for iter.Next(context.Background()) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(keys)
	return keys
}

// The floor client reads the keys the Redis store writes, named through
// the store's own layout. It used to build entity keys from a copy of that
// layout with the namespace fixed to "bench": a floor of any other
// namespace read keys nobody writes, and so measured nothing. Entities are
// written here through the store, for a namespace other than "bench", and
// read back through the floor.
func TestFloorReadsTheKeysTheStoreWrites(t *testing.T) {
	ctx := context.Background()
	reg, err := feature.Parse("shop", []byte(`namespaces:
- name: shop
  primary_key: id
  features:
    id: string
    visits: int
    rating: float
    title: string
    open: bool
`))
	if err != nil {
		t.Fatal(err)
	}
	ns, _ := reg.Namespace("shop")
	feats := ns.Features[1:]
	st, cfg := openRedis(t)
	keys := []string{"s1", "s2", "key with spaces", "k\x00nul", "s5"}
	if err := seed(ctx, st, ns, feats, keys, func(string, ...any) {}); err != nil {
		t.Fatal(err)
	}
	sets := requests(keys, 3, feats)

	// Every feature asked: the store, and so the floor, reads whole
	// hashes; some: HMGET of the marker and their ids.
	for _, asked := range [][]*feature.Feature{feats, feats[1:3]} {
		fl, err := newRedisFloor(ctx, cfg, ns, asked)
		if err != nil {
			t.Fatal(err)
		}
		defer fl.close()
		fl.use(sets)
		for range 10 { // through several of the request sets
			if err := fl.call(ctx); err != nil {
				t.Fatalf("floor read of %d features: %v", len(asked), err)
			}
		}
		if want := len(asked) + 1; !fl.whole && len(fl.fields) != want {
			t.Errorf("HMGET of %d fields, want the marker and %d ids", len(fl.fields), len(asked))
		}
	}

	// The keys the floor names are exactly those under the store's prefix.
	fl, err := newRedisFloor(ctx, cfg, ns, feats)
	if err != nil {
		t.Fatal(err)
	}
	defer fl.close()
	want := []string{redis.MappingKey(cfg.KeyPrefix)}
	for _, k := range keys {
		want = append(want, fl.entityKey(k))
	}
	slices.Sort(want)
	if got := keysUnder(t, fl.client, cfg.KeyPrefix); !slices.Equal(got, want) {
		t.Errorf("keys the store wrote: %q\nkeys the floor names: %q", got, want)
	}

	// An entity the store never wrote is not found: the floor cannot
	// pass reading empty keys.
	fl.use([]requestSet{{keys: []string{"never-written"}}})
	if err := fl.call(ctx); !errors.Is(err, errNoEntity) {
		t.Errorf("floor read of an entity never written: %v, want errNoEntity", err)
	}

	// deleteAll leaves nothing under the prefix.
	if err := fl.deleteAll(ctx, keys); err != nil {
		t.Fatal(err)
	}
	if left := keysUnder(t, fl.client, cfg.KeyPrefix); len(left) > 0 {
		t.Errorf("keys left after deleteAll: %q", left)
	}
}
