package writer

import (
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
// double the write units and race replication (docs/multi-region.md,
// DynamoDB Global Tables). A standby writer is not a member of its
// consumer group: it consumes nothing, commits nothing and holds no
// partition, so the active region's writers of the same group own every
// partition, and the consumer-group offsets MSK Replicator copies from the
// active region stay as they are. Switched to active it joins the group
// and takes over from the committed offsets. With Redis every region keeps
// its own store warm, so writers there are always active.
type StoreWrites string

// The values of StoreWrites (CAIRN_WRITER_STORE_WRITES).
const (
	// StoreWritesActive writes the store: the default.
	StoreWritesActive StoreWrites = "active"
	// StoreWritesStandby writes nothing, consumes nothing and stays out of
	// the consumer group until switched to active.
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

// gate is a writer's switch between active and standby. The writer's Run
// loop follows it: in standby it is no member of its group.
type gate struct {
	mu      sync.Mutex
	standby bool
	// changed is closed, and replaced, at each switch.
	changed chan struct{}
	// active is cairn_writer_store_writes_active; nil until set.
	active prometheus.Gauge
}

// errDemoted is returned by the store writes of a batch in hand when the
// writer turned standby: the batch is left uncommitted for whoever owns
// its partitions next.
var errDemoted = errors.New("writer: turned standby; the batch in hand is left uncommitted")

// set switches the gate; it reports whether the state changed.
func (g *gate) set(active bool) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.changed == nil {
		g.changed = make(chan struct{})
	}
	if active != g.standby {
		return false
	}
	g.standby = !active
	close(g.changed)
	g.changed = make(chan struct{})
	if g.active != nil {
		g.active.Set(boolFloat(active))
	}
	return true
}

// state reports whether store writes are on, and a channel closed at the
// next switch.
func (g *gate) state() (active bool, changed <-chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.changed == nil {
		g.changed = make(chan struct{})
	}
	return !g.standby, g.changed
}

// isActive reports whether store writes are on.
func (g *gate) isActive() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return !g.standby
}

// check returns errDemoted once the writer is in standby, nil while it is
// active.
func (g *gate) check() error {
	if g.isActive() {
		return nil
	}
	return errDemoted
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// SetStoreWrites switches the writer between active (a member of its
// consumer group that consumes and writes the store) and standby (no
// member: it consumes, writes and commits nothing), at run time, as at a
// regional failover. Run follows at once:
//
//   - Turned active, it seeds the group's committed offsets where they are
//     missing (see [Writer.SetRewind] for the rule) and joins the group;
//     its partitions start at the committed offsets.
//   - Turned standby, it commits what it has written, leaves the batch in
//     hand unwritten and uncommitted (a demoted region writes nothing
//     more; the partitions' next owner writes it), and leaves the group,
//     a static member too, so that the other writers take its partitions
//     at once instead of after the session timeout.
//
// It is safe to call concurrently with Run.
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
