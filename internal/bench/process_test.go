package bench

import (
	"bytes"
	"context"
	"io"
	"os"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// The parent side of the bench-server protocol: the child gets the
// arguments and knobs of the measurement, its announced address is read,
// and closing its standard input stops it.
func TestServerProcess(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	o := DefaultOptions()
	o.Features, o.CPUProfile, o.Executable = 12, "cpu.prof", exe
	o.ServerEnv = []string{"CAIRN_BENCH_TEST_KNOB=set"}
	o.Stderr = io.Discard
	p, err := startServerProcess(context.Background(), o, "redis://127.0.0.1:1/0", serverVariant{})
	if err != nil {
		t.Fatal(err)
	}
	want := "bench-server --store redis://127.0.0.1:1/0 --features 12 --log-level warn --cpuprofile cpu.prof env=set"
	if p.addr != want {
		t.Errorf("the child received %q\nwant %q", p.addr, want)
	}
	// A variant's arguments follow the common ones, and its knobs win
	// over the measurement's.
	q, err := startServerProcess(context.Background(), o, "redis://127.0.0.1:1/0",
		serverVariant{args: []string{"--resolver", SQLResolver}, env: []string{"CAIRN_BENCH_TEST_KNOB=variant"}})
	if err != nil {
		t.Fatal(err)
	}
	q.stop()
	if want := "bench-server --store redis://127.0.0.1:1/0 --features 12 --log-level warn --cpuprofile cpu.prof --resolver sql env=variant"; q.addr != want {
		t.Errorf("the variant's child received %q\nwant %q", q.addr, want)
	}
	start := time.Now()
	p.stop()
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("stop took %v: the child did not exit when its standard input closed", d)
	}
	if p.cmd.ProcessState == nil || !p.cmd.ProcessState.Success() {
		t.Errorf("child exit: %v", p.cmd.ProcessState)
	}
}

// A child that exits without announcing an address is reported, at once.
func TestServerProcessThatDoesNotServe(t *testing.T) {
	o := DefaultOptions()
	o.Executable, o.Stderr = "/bin/false", io.Discard
	if _, err := os.Stat(o.Executable); err != nil {
		t.Skip("no /bin/false")
	}
	start := time.Now()
	_, err := startServerProcess(context.Background(), o, "embedded:///nowhere", serverVariant{})
	if err == nil || !strings.Contains(err.Error(), "did not start listening") {
		t.Errorf("startServerProcess of a child that exits: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the failure took %v to be reported", d)
	}
}

func TestAnnounceAndWaitForParent(t *testing.T) {
	var out bytes.Buffer
	if err := Announce(&out, "127.0.0.1:8080"); err != nil || out.String() != "listening 127.0.0.1:8080\n" {
		t.Errorf("Announce wrote %q, %v", out.String(), err)
	}
	synctest.Test(t, func(t *testing.T) {
		r, w := io.Pipe()
		done := make(chan error, 1)
		go func() { done <- WaitForParent(context.Background(), r) }()
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("WaitForParent returned %v with its input open", err)
		default:
		}
		w.Close()
		if err := <-done; err != nil {
			t.Errorf("WaitForParent after the input closed: %v", err)
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r2, w2 := io.Pipe()
	defer w2.Close()
	if err := WaitForParent(ctx, r2); err != context.Canceled {
		t.Errorf("WaitForParent with its context ended: %v", err)
	}
}
