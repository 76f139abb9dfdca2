// Package gcfloor keeps Go's garbage collector from running far more often
// than a server's memory warrants.
//
// With the default GOGC=100, the runtime collects whenever the heap has
// doubled since the last collection. A query server without a cache keeps
// a few megabytes live, so at a few thousand queries a second it collects
// every 100 to 200 ms, and each collection takes one of the CPUs for a
// millisecond or more and slows the requests it overlaps: on a small
// machine that is the 99th percentile. A floor lets the heap grow to at
// least Floor bytes before the next collection, however small the live
// heap: after every collection the GC percent is set to the larger of
// GOGC's and the one that puts the next collection at the floor. Once the
// live heap is large enough (a full cache), GOGC's percent applies alone.
//
// GOMEMLIMIT, when set, still caps the heap: the runtime collects as the
// limit nears, whatever the percent. GOGC=off turns the floor off too.
package gcfloor

import (
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Floor adjusts the GC percent after every collection. Stop it with Stop.
type Floor struct {
	floor uint64
	base  int
	// tune serializes tunings (the runtime's finalizer goroutine runs
	// them, one at a time, but Stop may race with one).
	tune    sync.Mutex
	stopped atomic.Bool
	percent prometheus.Gauge
	samples []metrics.Sample
}

// maxPercent bounds the percent set, for a live heap of almost nothing.
const maxPercent = 1_000_000

// Start sets a floor of floor bytes under the heap goal, and keeps it after
// every collection until Stop. It returns nil, and does nothing, when floor
// is 0, the collector is off (GOGC=off) or another Floor is running. The
// GC percent in effect is exported as cairn_gc_percent when reg is not nil.
func Start(floor uint64, reg prometheus.Registerer) *Floor {
	// One floor at a time: a second would take the first's raised
	// percent for GOGC's, and leave it behind when stopped.
	active.Lock()
	defer active.Unlock()
	if active.f != nil {
		return nil
	}
	samples := []metrics.Sample{{Name: "/gc/gogc:percent"}, {Name: "/gc/heap/live:bytes"},
		{Name: "/gc/scan/globals:bytes"}, {Name: "/gc/scan/stack:bytes"}, {Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(samples)
	if floor == 0 || samples[0].Value.Kind() != metrics.KindUint64 {
		return nil
	}
	base := int(samples[0].Value.Uint64())
	if base <= 0 {
		return nil
	}
	if samples[4].Value.Uint64() == 0 {
		// Until a first collection has measured the live heap, the
		// runtime sets the goal from a nominal 4 MiB, which a large
		// percent would multiply into gigabytes: collect once now, while
		// the heap is small.
		runtime.GC()
	}
	samples = samples[:4]
	f := &Floor{floor: floor, base: base, samples: samples,
		percent: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cairn_gc_percent",
			Help: "GC percent in effect: GOGC's, or higher while the live heap is small, so that the heap may grow to CAIRN_GC_HEAP_FLOOR_MIB before a collection.",
		})}
	if reg != nil {
		if err := reg.Register(f.percent); err != nil {
			f.percent = prometheus.NewGauge(prometheus.GaugeOpts{Name: "cairn_gc_percent"})
		}
	}
	f.adjust()
	f.arm()
	active.f = f
	return f
}

// active is the running Floor, if any.
var active struct {
	sync.Mutex
	f *Floor
}

// Stop puts GOGC's percent back and stops adjusting it.
func (f *Floor) Stop() {
	if f == nil {
		return
	}
	active.Lock()
	defer active.Unlock()
	f.tune.Lock()
	defer f.tune.Unlock()
	if f.stopped.Swap(true) {
		return
	}
	debug.SetGCPercent(f.base)
	active.f = nil
}

// sentinel is garbage as soon as it is made: its finalizer runs after the
// next collection, adjusts the percent and makes the next sentinel.
type sentinel struct{ f *Floor }

func (f *Floor) arm() {
	s := &sentinel{f: f}
	runtime.SetFinalizer(s, func(s *sentinel) {
		if s.f.stopped.Load() {
			return
		}
		s.f.adjust()
		s.f.arm()
	})
}

// adjust sets the percent for the live heap the last collection left.
func (f *Floor) adjust() {
	f.tune.Lock()
	defer f.tune.Unlock()
	if f.stopped.Load() {
		return
	}
	metrics.Read(f.samples)
	roots := f.samples[2].Value.Uint64() + f.samples[3].Value.Uint64()
	p := Percent(f.base, f.floor, f.samples[1].Value.Uint64(), roots)
	debug.SetGCPercent(p)
	f.percent.Set(float64(p))
}

// heapMinimum is the runtime's least heap goal at GOGC=100, which it
// scales by GOGC/100 like the rest of the goal (the GC guide: "a minimum
// total heap size of 4 MiB").
const heapMinimum = 4 << 20

// Percent is the GC percent that lets a heap of live bytes grow to the
// floor, and never less than base. The runtime sets the next goal to the
// larger of live + (live + roots) × percent / 100, roots being the
// scannable bytes of globals and goroutine stacks, and heapMinimum ×
// percent / 100: the percent is the larger that keeps both within floor.
// With nothing measured live, it is base.
func Percent(base int, floor, live, roots uint64) int {
	if live >= floor || live == 0 {
		return base
	}
	p := min(float64(floor-live)/float64(live+roots), float64(floor)/heapMinimum) * 100
	if p <= float64(base) {
		return base
	}
	return int(math.Min(math.Floor(p), maxPercent))
}
