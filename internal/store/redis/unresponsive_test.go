//go:build unix

package redis

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/store"
	"github.com/cairnfs/cairn/internal/store/storetest"
)

// A server that stops answering (frozen: connections open, no replies)
// gives reads an error within the retries of the read timeout, or the
// caller's deadline if shorter, and service resumes when it thaws.
func TestUnresponsive(t *testing.T) {
	srv := startOwnServer(t, freePort(t), "--appendonly", "no")
	ctx := context.Background()
	cfg := DefaultConfig()
	cfg.Addr = srv.addr()
	cfg.PoolSize = 4
	cfg.ReadTimeout = 200 * time.Millisecond
	cfg.WriteTimeout = 200 * time.Millisecond
	cfg.MaxRetries = 1
	s, err := Open(ctx, cfg, nil, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	reg := storetest.Registry()
	ns, _ := reg.Namespace("user")
	age := feat(t, reg, "user.age")
	write(t, s, entity(ns, "k", time.Now(), age, int64(1)))

	if err := srv.signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	thawed := false
	defer func() {
		if !thawed {
			_ = srv.signal(syscall.SIGCONT)
		}
	}()
	start := time.Now()
	if _, err := s.Read(ctx, ns, []string{"k"}, []*feature.Feature{age}); err == nil {
		t.Fatal("read from a frozen server: no error")
	}
	// Two attempts of 200ms, and a backoff of at most 512ms between them.
	if d := time.Since(start); d > time.Second {
		t.Errorf("read from a frozen server took %v to fail", d)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	start = time.Now()
	if _, err := s.Read(short, ns, []string{"k"}, []*feature.Feature{age}); err == nil {
		t.Fatal("read from a frozen server: no error")
	}
	if d := time.Since(start); d > 150*time.Millisecond {
		t.Errorf("read with a 50ms deadline from a frozen server took %v to fail", d)
	}
	if err := s.Write(ctx, []store.EntityWrite{entity(ns, "k", time.Now(), age, int64(2))}); err == nil {
		t.Fatal("write to a frozen server: no error")
	}

	if err := srv.signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	thawed = true
	write(t, s, entity(ns, "k", time.Now(), age, int64(3)))
	if r := read(t, s, ns, []string{"k"}, age)[0]; r.Cells[0].Value != int64(3) {
		t.Fatalf("after the thaw: %+v", r)
	}
}
