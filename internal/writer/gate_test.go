package writer

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// A standby writer (the passive region of a DynamoDB global table) must
// neither write the store nor commit, so that the offsets replicated from
// the active region stay untouched; switched to active it takes over from
// them, and switched back it stops again.
func TestStandbyWriterWritesNothingUntilActive(t *testing.T) {
	e := newEnv(t)
	e.produce("user\x00u1", upload(t, "u1", t0, "user.age", int64(1)))
	reg := prometheus.NewRegistry()
	w, err := New(e.qcfg, Config{StoreWrites: StoreWritesStandby, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond},
		e.reg, e.store, reg, quiet())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	gauge := func() float64 { return testutil.ToFloat64(w.m.storeWrites) }
	if w.StoreWritesActive() || !errors.Is(w.StoreWritesReady(), ErrStandby) || gauge() != 0 {
		t.Fatalf("standby writer: active=%v ready=%v gauge=%v; want false, ErrStandby, 0", w.StoreWritesActive(), w.StoreWritesReady(), gauge())
	}
	time.Sleep(500 * time.Millisecond)
	if c := e.read("u1"); c[0].Value != nil || e.committed() > 0 {
		t.Fatalf("standby writer wrote %+v / committed %d; want nothing", c[0], e.committed())
	}

	w.SetStoreWrites(true)
	if w.StoreWritesReady() != nil || gauge() != 1 {
		t.Fatalf("after SetStoreWrites(true): ready=%v gauge=%v", w.StoreWritesReady(), gauge())
	}
	eventually(t, "the record written and committed", func() bool { return e.committed() == 1 })
	if c := e.read("u1"); c[0].Value != int64(1) {
		t.Fatalf("age = %+v, want 1", c[0])
	}

	w.SetStoreWrites(false)
	e.produce("user\x00u1", upload(t, "u1", t0.Add(time.Second), "user.age", int64(2)))
	time.Sleep(500 * time.Millisecond)
	if c := e.read("u1"); c[0].Value != int64(1) || e.committed() != 1 {
		t.Fatalf("writer switched to standby wrote %+v / committed %d; want age 1, 1 commit", c[0], e.committed())
	}
	w.SetStoreWrites(true)
	eventually(t, "the second record written", func() bool { return e.committed() == 2 })
	if c := e.read("u1"); c[0].Value != int64(2) {
		t.Fatalf("age = %+v, want 2", c[0])
	}
}

func TestParseStoreWrites(t *testing.T) {
	for in, want := range map[string]StoreWrites{"": StoreWritesActive, "active": StoreWritesActive, " standby ": StoreWritesStandby} {
		if got, err := ParseStoreWrites(in); err != nil || got != want {
			t.Errorf("ParseStoreWrites(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"passive", "Active", "on"} {
		if _, err := ParseStoreWrites(in); err == nil {
			t.Errorf("ParseStoreWrites(%q) accepted", in)
		}
	}
	c := Config{StoreWrites: "passive"}
	c.EnsureDefaults()
	if err := c.Validate(); err == nil {
		t.Error("Config.Validate accepted store writes \"passive\"")
	}
}
