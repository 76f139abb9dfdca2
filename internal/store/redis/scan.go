package redis

import (
	"context"
	"fmt"
	"strings"
	"sync"

	goredis "github.com/redis/go-redis/v9"

	"github.com/cairnfs/cairn/internal/feature"
)

// scanCount is the COUNT hint of each SCAN call: keys examined per call.
const scanCount = 1000

// ScanKeys calls fn with the key of every entity of ns stored when the scan
// starts, walking the keyspace with SCAN (on every primary of a cluster,
// one after the other), and stops at the first error fn returns. As with
// SCAN, a key may be listed twice when the server resizes its keyspace
// during the scan, and entities of an older mapping generation (read as
// absent) are listed too: both only make a filter of present keys less
// tight, never wrong.
func (s *Store) ScanKeys(ctx context.Context, ns *feature.Namespace, fn func(key string) error) error {
	if s.closed.Load() {
		return errClosed
	}
	head := s.cfg.KeyPrefix + "{" + ns.Name + ":"
	match := globEscape(head) + "*"
	scan := func(ctx context.Context, c *goredis.Client) error {
		var cursor uint64
		for {
			keys, next, err := c.Scan(ctx, cursor, match, scanCount).Result()
			if err != nil {
				return fmt.Errorf("redis: scan %s keys on %s: %w", ns.Name, c.Options().Addr, err)
			}
			for _, k := range keys {
				if key, ok := strings.CutPrefix(k, head); ok && strings.HasSuffix(key, "}") {
					if err := fn(key[:len(key)-1]); err != nil {
						return err
					}
				}
			}
			if next == 0 {
				return nil
			}
			cursor = next
		}
	}
	switch c := s.client.(type) {
	case *goredis.Client:
		return scan(ctx, c)
	case *goredis.ClusterClient:
		// ForEachMaster visits the primaries concurrently: collect them, then
		// scan one after the other so that fn is never called concurrently.
		var mu sync.Mutex
		var nodes []*goredis.Client
		err := c.ForEachMaster(ctx, func(_ context.Context, node *goredis.Client) error {
			mu.Lock()
			defer mu.Unlock()
			nodes = append(nodes, node)
			return nil
		})
		if err != nil {
			return fmt.Errorf("redis: scan %s keys: list primaries: %w", ns.Name, err)
		}
		for _, node := range nodes {
			if err := scan(ctx, node); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("redis: scan %s keys: unexpected client %T", ns.Name, s.client)
}

// globEscape escapes the characters special to Redis's glob patterns.
func globEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
