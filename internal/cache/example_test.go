package cache_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairnfs/cairn/internal/cache"
	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/store"
	"github.com/cairnfs/cairn/internal/store/embedded"
)

// A cache in front of an embedded store caches namespace user for one
// minute, at most 10,000 entities. The second read of an entity is
// answered from memory, and a read asking for one more feature fetches
// only that feature.
func Example() {
	reg, err := feature.Parse("features.yaml", []byte(`
namespaces:
  - name: user
    primary_key: id
    features: {id: string, age: int, name: string}
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	user, _ := reg.Namespace("user")
	age, _ := user.Feature("age")
	name, _ := user.Feature("name")

	dir, err := os.MkdirTemp("", "cache-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	st, err := embedded.Open(dir, embedded.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer st.Close()
	ctx := context.Background()
	now := time.Now()
	err = st.Write(ctx, []store.EntityWrite{{Namespace: user, Key: "u1", Values: []store.Value{
		{Feature: age, Value: int64(31), ObservedAt: now},
		{Feature: name, Value: "Ann", ObservedAt: now},
	}}})
	if err != nil {
		fmt.Println(err)
		return
	}

	// Typically parsed from DYNAMODB_CACHED_NAMESPACES.
	namespaces, err := cache.ParseNamespaces(`[{"namespace": "user", "ttl_seconds": 60, "max_lru_size": 10000}]`)
	if err != nil {
		fmt.Println(err)
		return
	}
	cfg := cache.DefaultConfig()
	cfg.Namespaces = namespaces
	c, err := cache.New(st, cfg, prometheus.NewRegistry(), slog.Default())
	if err != nil {
		fmt.Println(err)
		return
	}

	for _, feats := range [][]*feature.Feature{{age}, {age}, {age, name}} {
		rows, err := c.Read(ctx, user, []string{"u1", "u2"}, feats)
		if err != nil {
			fmt.Println(err)
			return
		}
		var line []string
		for i, row := range rows {
			for j, cell := range row.Cells {
				line = append(line, fmt.Sprintf("u%d %s=%v cache_hit=%v", i+1, feats[j].Name, cell.Value, cell.CacheHit))
			}
		}
		fmt.Println(strings.Join(line, "  "))
	}
	// Output:
	// u1 age=31 cache_hit=false  u2 age=<nil> cache_hit=false
	// u1 age=31 cache_hit=true  u2 age=<nil> cache_hit=true
	// u1 age=31 cache_hit=true  u1 name=Ann cache_hit=false  u2 age=<nil> cache_hit=true  u2 name=<nil> cache_hit=true
}
