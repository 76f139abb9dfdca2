package redis

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	goredis "github.com/redis/go-redis/v9"

	"github.com/cairnfs/cairn/internal/store/storetest"
)

// startCluster starts a Redis Cluster of three primaries, each owning a
// third of the slots, and returns the address of one of them.
func startCluster(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	const nodes = 3
	servers := make([]*ownServer, nodes)
	for i := range servers {
		port := clusterPort(t)
		servers[i] = startOwnServer(t, port, "--cluster-enabled", "yes", "--appendonly", "no",
			"--cluster-config-file", filepath.Join(dir, fmt.Sprintf("nodes-%d.conf", port)),
			"--cluster-node-timeout", "5000")
	}
	ctx := context.Background()
	clients := make([]*goredis.Client, nodes)
	for i, s := range servers {
		clients[i] = goredis.NewClient(&goredis.Options{Addr: s.addr()})
		defer clients[i].Close()
		first, last := i*16384/nodes, (i+1)*16384/nodes-1
		if err := clients[i].Do(ctx, "cluster", "addslotsrange", first, last).Err(); err != nil {
			t.Fatalf("node %d: assign slots: %v", i, err)
		}
	}
	for _, s := range servers[1:] {
		if err := clients[0].ClusterMeet(ctx, "127.0.0.1", fmt.Sprint(s.port)).Err(); err != nil {
			t.Fatalf("cluster meet: %v", err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, c := range clients {
		for {
			info, err := c.ClusterInfo(ctx).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") && strings.Contains(info, fmt.Sprintf("cluster_known_nodes:%d", nodes)) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("cluster did not form: %q, %v", info, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return servers[0].addr()
}

// clusterPort returns a free port whose cluster bus port (10000 more) is
// free too.
func clusterPort(t *testing.T) int {
	for range 20 {
		p := freePort(t)
		if p+10000 > 65535 {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+10000))
		if err != nil {
			continue
		}
		l.Close()
		return p
	}
	t.Fatal("no free pair of ports for a cluster node")
	return 0
}

func TestCluster(t *testing.T) {
	addr := startCluster(t)
	uri := "redis://" + addr + "?clustered=true"
	base := uniquePrefix(t)
	open := func(t *testing.T, prefix string) *Store {
		cfg, err := ParseURI(uri + "&prefix=" + prefix)
		if err != nil {
			t.Fatal(err)
		}
		cfg.PoolSize = 4
		s, err := Open(context.Background(), cfg, prometheus.NewRegistry(), quiet)
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		return s
	}
	t.Run("Conformance", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T, name string) storetest.Store { return open(t, base+name+":") })
	})

	// An entity's key hashes on its hash tag, the namespace and key.
	c := goredis.NewClient(&goredis.Options{Addr: addr})
	defer c.Close()
	s := open(t, base)
	defer s.Close()
	for _, key := range []string{"u1", "a\x00b", strings.Repeat("k", 1024)} {
		got, err := c.ClusterKeySlot(context.Background(), s.entityKey("user", key)).Result()
		if err != nil {
			t.Fatal(err)
		}
		want, _ := c.ClusterKeySlot(context.Background(), "user:"+key).Result()
		if got != want {
			t.Errorf("slot of %q: %d, want %d, the slot of its hash tag", s.entityKey("user", key), got, want)
		}
	}
}
