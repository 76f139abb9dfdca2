package gcfloor

import (
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func TestPercent(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		base               int
		floor, live, roots uint64
		want               int
	}{
		{100, 256 * mib, 16 * mib, 0, 1500},       // the heap may grow to 256 MiB
		{100, 256 * mib, 16 * mib, 8 * mib, 1000}, // roots count in the goal
		{100, 256 * mib, 1 * mib, 0, 6400},        // the runtime's 4 MiB minimum × 64 = 256 MiB
		{100, 256 * mib, 128 * mib, 0, 100},       // GOGC's own goal reaches the floor
		{100, 256 * mib, 100 * mib, 0, 156},       // floor(156/100 × 100)
		{100, 256 * mib, 512 * mib, 0, 100},       // above the floor: GOGC alone
		{300, 256 * mib, 100 * mib, 0, 300},       // a larger GOGC wins
		{100, 256 * mib, 0, 10 * mib, 100},        // nothing measured live
		{100, 1 << 60, 1, 0, maxPercent},          // capped
		{50, 256 * mib, 256 * mib, 0, 50},         // at the floor
		{100, 256 * mib, 256*mib - 1, 0, 100},     // just under it, GOGC's goal is above
	} {
		if got := Percent(c.base, c.floor, c.live, c.roots); got != c.want {
			t.Errorf("Percent(%d, %d, %d, %d) = %d, want %d", c.base, c.floor, c.live, c.roots, got, c.want)
		}
	}
}

// sink keeps allocations from being optimized away.
var sink []byte

// collections allocates 256 MiB in 1 KiB pieces, keeping none, and returns
// how many collections that took.
func collections() uint32 {
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 256 << 10 {
		sink = make([]byte, 1<<10)
	}
	runtime.ReadMemStats(&after)
	return after.NumGC - before.NumGC
}

func TestFloorSpacesCollections(t *testing.T) {
	if debug.SetGCPercent(100) < 0 {
		debug.SetGCPercent(-1)
		t.Skip("GOGC=off")
	}
	without := collections()

	f := Start(1<<30, nil)
	if f == nil {
		t.Fatal("Start returned nil with GOGC=100 and a floor")
	}
	defer f.Stop()
	with := collections()
	t.Logf("collections while allocating 256 MiB: %d without a floor, %d with a 1 GiB floor", without, with)
	if without < 4 {
		t.Fatalf("only %d collections without a floor: the test allocates too little to tell", without)
	}
	if with > 1 {
		t.Errorf("%d collections with a 1 GiB floor, want at most 1", with)
	}
	// The runtime.GC in collections ran the sentinel's finalizer, which
	// set the percent again; it is the floor's.
	deadline := time.Now().Add(5 * time.Second)
	for gaugeValue(t, f.percent) < 1000 && time.Now().Before(deadline) {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	if p := gaugeValue(t, f.percent); p < 1000 {
		t.Errorf("cairn_gc_percent = %v after collections, want the floor's (over 1000 for a small heap)", p)
	}

	f.Stop()
	if p := debug.SetGCPercent(100); p != 100 {
		t.Errorf("GC percent after Stop = %d, want GOGC's 100", p)
	}
	if again := collections(); again < 4 {
		t.Errorf("%d collections after Stop, want as many as without a floor (%d)", again, without)
	}
}

// The runtime's own heap goal lands at the floor.
func TestGoalAtFloor(t *testing.T) {
	if debug.SetGCPercent(100) < 0 {
		debug.SetGCPercent(-1)
		t.Skip("GOGC=off")
	}
	const floor = 512 << 20
	f := Start(floor, nil)
	defer f.Stop()
	for range 3 {
		runtime.GC() // each collection's sentinel sets the percent again
		time.Sleep(10 * time.Millisecond)
	}
	goal := []metrics.Sample{{Name: "/gc/heap/goal:bytes"}}
	metrics.Read(goal)
	if g := goal[0].Value.Uint64(); g < floor*9/10 || g > floor*11/10 {
		t.Errorf("heap goal %d MiB with a floor of %d MiB, want within 10%% of it", g>>20, floor>>20)
	}
	f.Stop()
	runtime.GC()
	metrics.Read(goal)
	if g := goal[0].Value.Uint64(); g > 64<<20 {
		t.Errorf("heap goal %d MiB after Stop, want GOGC's own (a small heap)", g>>20)
	}
}

func TestStartOff(t *testing.T) {
	if f := Start(0, nil); f != nil {
		f.Stop()
		t.Error("Start with a floor of 0 returned a Floor")
	}
	old := debug.SetGCPercent(-1)
	defer debug.SetGCPercent(old)
	if f := Start(1<<30, nil); f != nil {
		f.Stop()
		t.Error("Start with GOGC=off returned a Floor")
	}
}

// gaugeValue returns a gauge's current value.
func gaugeValue(t testing.TB, g prometheus.Gauge) float64 {
	t.Helper()
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetGauge().GetValue()
}

// A process that has not collected yet: Start collects once, so that the
// goal comes from a measured live heap rather than from the runtime's
// nominal one, which the percent would multiply.
func TestStartBeforeFirstCollection(t *testing.T) {
	if os.Getenv("GCFLOOR_FRESH") == "1" {
		checkFresh(t)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestStartBeforeFirstCollection$", "-test.v")
	cmd.Env = append(os.Environ(), "GCFLOOR_FRESH=1", "GOGC=100")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(string(out), "fresh process checked") {
		t.Fatalf("the child did not run the check:\n%s", out)
	}
}

func checkFresh(t *testing.T) {
	s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}, {Name: "/gc/heap/goal:bytes"}}
	metrics.Read(s)
	if n := s[0].Value.Uint64(); n != 0 {
		t.Skipf("%d collections before the test ran", n)
	}
	const floor = 64 << 20
	f := Start(floor, nil)
	defer f.Stop()
	metrics.Read(s)
	if s[0].Value.Uint64() == 0 {
		t.Error("Start did not collect in a process that had not")
	}
	if g := s[1].Value.Uint64(); g < floor*9/10 || g > floor*11/10 {
		t.Errorf("heap goal %d MiB with a floor of %d MiB, want within 10%% of it", g>>20, floor>>20)
	}
	t.Log("fresh process checked")
}

// A second floor while one runs does nothing: it would take the first's
// raised percent for GOGC's and leave it behind.
func TestOneAtATime(t *testing.T) {
	if debug.SetGCPercent(100) < 0 {
		debug.SetGCPercent(-1)
		t.Skip("GOGC=off")
	}
	a := Start(64<<20, nil)
	if a == nil {
		t.Fatal("first Start returned nil")
	}
	if b := Start(64<<20, nil); b != nil {
		b.Stop()
		a.Stop()
		t.Fatal("a second Start while one runs returned a Floor")
	}
	a.Stop()
	if p := debug.SetGCPercent(100); p != 100 {
		t.Errorf("GC percent after Stop = %d, want GOGC's 100", p)
	}
	c := Start(64<<20, nil)
	if c == nil {
		t.Fatal("Start after Stop returned nil")
	}
	c.Stop()
}
