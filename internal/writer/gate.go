package writer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// StoreWrites says whether a writer writes the online store.
//
// In a two-region deployment on DynamoDB Global Tables only the active
// region's writers write the table: the standby region's writers would
// double the write units and race replication (docs/multi-region.md, DynamoDB Global
// Tables). A standby writer consumes nothing and commits nothing, so the
// consumer-group offsets MSK Replicator copies from the active region stay
// as they are, and it takes over from them when switched to active. With
// Redis every region keeps its own store warm, so writers there are always
// active.
type StoreWrites string

// The values of StoreWrites (CAIRN_WRITER_STORE_WRITES).
const (
	// StoreWritesActive writes the store: the default.
	StoreWritesActive StoreWrites = "active"
	// StoreWritesStandby writes nothing and consumes nothing until
	// switched to active.
	StoreWritesStandby StoreWrites = "standby"
)

// ParseStoreWrites parses a CAIRN_WRITER_STORE_WRITES value; empty means
// active.
func ParseStoreWrites(s string) (StoreWrites, error) {
	switch v := StoreWrites(strings.TrimSpace(s)); v {
	case "":
		return StoreWritesActive, nil
	case StoreWritesActive, StoreWritesStandby:
		return v, nil
	}
	return "", fmt.Errorf("writer: store writes %q (CAIRN_WRITER_STORE_WRITES): want %q or %q", s, StoreWritesActive, StoreWritesStandby)
}

// ErrStandby is what [Writer.StoreWritesReady] reports while the writer is
// in standby.
var ErrStandby = errors.New("writer: standby: this region's writers do not write the online store " +
	"(CAIRN_WRITER_STORE_WRITES=standby); switch them to active at failover")

// gate holds a writer's store writes while it is in standby. The zero
// value is active.
type gate struct {
	mu      sync.Mutex
	standby bool
	// opened is closed when the gate turns active; nil while active.
	opened chan struct{}
	// active is cairn_writer_store_writes_active; nil until set.
	active prometheus.Gauge
	// stopping is closed when Run's context ends: a batch held in standby
	// is then abandoned at once rather than after the drain timeout.
	stopping     chan struct{}
	stoppingOnce sync.Once
}

// errStandbyStop is returned by gate.wait when the writer stops while it
// holds a batch in standby.
var errStandbyStop = errors.New("writer: stopping in standby; the batch in hand is left uncommitted")

// stop releases waits for the gate to open: the writer is stopping.
func (g *gate) stop() { g.stoppingOnce.Do(func() { close(g.stopping) }) }

// set switches the gate; it reports whether the state changed.
func (g *gate) set(active bool) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if active != g.standby {
		return false
	}
	g.standby = !active
	if active {
		close(g.opened)
		g.opened = nil
	} else {
		g.opened = make(chan struct{})
	}
	if g.active != nil {
		g.active.Set(boolFloat(active))
	}
	return true
}

// isActive reports whether store writes are on.
func (g *gate) isActive() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return !g.standby
}

// wait returns nil once the gate is active, or ctx's error, or
// errStandbyStop once stop is called.
func (g *gate) wait(ctx context.Context) error {
	g.mu.Lock()
	opened := g.opened
	g.mu.Unlock()
	if opened == nil {
		return nil
	}
	select {
	case <-opened:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-g.stopping:
		return errStandbyStop
	}
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// SetStoreWrites switches the writer between active (it consumes and
// writes the store) and standby (it consumes nothing and writes nothing),
// at run time, as at a regional failover. A batch in hand when the writer
// turns standby is held, uncommitted, until it turns active again, so it is
// never written by a demoted region; whoever owns its partitions next
// writes it. It is safe to call concurrently with Run.
func (w *Writer) SetStoreWrites(active bool) {
	if w.gate.set(active) {
		state := StoreWritesActive
		if !active {
			state = StoreWritesStandby
		}
		w.log.Info("writer: store writes switched", "state", string(state))
	}
}

// StoreWritesActive reports whether the writer writes the store.
func (w *Writer) StoreWritesActive() bool { return w.gate.isActive() }

// StoreWritesReady returns [ErrStandby] while the writer is in standby, nil
// while it is active; the process's /readyz of `cairn write` reports it.
func (w *Writer) StoreWritesReady() error {
	if w.gate.isActive() {
		return nil
	}
	return ErrStandby
}
