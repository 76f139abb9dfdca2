package e2e

import (
	"context"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"
)

// A writer killed with SIGKILL and restarted, three times, during steady
// uploads. What broke: a restarted writer's partitions stayed idle until
// the group's session timeout, so values acknowledged before the kill took
// 60 to 146 s to become readable. With a stable instance id (static group
// membership) the restarted writer takes its partitions back at once, and
// everything acknowledged is readable within 30 s of the last restart.
func TestWriterKilledAndRestarted(t *testing.T) {
	forEachStore(t, writerKilledAndRestarted)
}

func writerKilledAndRestarted(t *testing.T, c *cluster) {
	l := newLedger()
	ld := startLoad(c, l, 4, 25, 20*time.Millisecond, 2*time.Minute)
	defer ld.stop()

	victim := c.writers[0]
	var lastRestart time.Time
	for i := range 3 {
		time.Sleep(1500 * time.Millisecond)
		pid := victim.PID()
		victim.Kill()
		t.Logf("kill %d: writer pid %d killed", i+1, pid)
		time.Sleep(time.Second)
		victim.Restart()
		lastRestart = time.Now()
		t.Logf("kill %d: writer restarted as pid %d", i+1, victim.PID())
	}
	time.Sleep(time.Second)
	results := ld.stop()
	accepted := 0
	for _, r := range results {
		if r.status == http.StatusAccepted {
			accepted++
		}
	}
	t.Logf("%d uploads, %d accepted, %d keys acknowledged", len(results), accepted, l.ackedCount())
	c.requireAllRunning()
	l.verify(t, c, lastRestart.Add(readableWithin))
}

// The broker killed (SIGKILL) for -broker-outage and restarted, with the
// cairn processes left running. What broke: with the broker gone an upload
// was answered only after 13 to 20 s, and with a hung broker only when it
// came back; queries must not notice Kafka at all.
func TestBrokerKilledAndRestarted(t *testing.T) {
	forEachStore(t, brokerKilledAndRestarted)
}

func brokerKilledAndRestarted(t *testing.T, c *cluster) {
	l := newLedger()
	ld := startLoad(c, l, 4, 25, 20*time.Millisecond, 3*time.Minute)
	defer ld.stop()
	time.Sleep(1500 * time.Millisecond)

	// Queries, throughout: every one answers 200 within the deadline.
	qctx, stopQueries := context.WithCancel(context.Background())
	var qwg sync.WaitGroup
	var qmu sync.Mutex
	var queries, failed int
	qwg.Add(1)
	go func() {
		defer qwg.Done()
		keys := []string{"c0-k0", "c1-k1", "c2-k2", "c3-k3"}
		for n := 0; n < 100000 && qctx.Err() == nil; n++ {
			base := c.serves[n%len(c.serves)].URL()
			rctx, rcancel := context.WithTimeout(qctx, patience)
			code, took, _, _, err := queryAges(rctx, base, keys)
			rcancel()
			if qctx.Err() != nil {
				return
			}
			qmu.Lock()
			queries++
			if err != nil || code != http.StatusOK || took > queryTimeout+slack {
				failed++
				if failed <= 5 {
					t.Errorf("query during the broker outage: status %d after %v: %v", code, took, err)
				}
			}
			qmu.Unlock()
			time.Sleep(50 * time.Millisecond)
		}
	}()

	c.kafka.Kill()
	down := time.Now()
	t.Logf("broker killed; down for %v", *brokerOutage)
	time.Sleep(*brokerOutage)
	restarting := time.Now()
	c.kafka.Restart()
	t.Logf("broker restarted after %v", time.Since(down).Round(time.Millisecond))

	// Uploads work again, through the same cairn processes.
	uploadUntilAccepted(t, c, l, "after-restart", readableWithin)
	time.Sleep(time.Second)
	results := ld.stop()
	stopQueries()
	qwg.Wait()

	// Every upload sent while the broker was down is answered within the
	// produce timeout plus a second; those answered before the restart
	// began are refused (503), the others may be either.
	var during, refused, wrong int
	errorf := func(format string, args ...any) {
		if wrong++; wrong <= 5 {
			t.Errorf(format, args...)
		}
	}
	for _, r := range results {
		if r.start.Before(down) || !r.start.Before(restarting) {
			continue
		}
		during++
		if took := r.end.Sub(r.start); took > produceTimeout+time.Second {
			errorf("upload during the broker outage answered %d (%v) after %v, want within %v", r.status, r.err, took, produceTimeout+time.Second)
		}
		switch {
		case r.status == http.StatusServiceUnavailable:
			refused++
		case r.end.Before(restarting):
			errorf("upload during the broker outage answered %d (%v), want 503", r.status, r.err)
		case r.status != http.StatusAccepted:
			errorf("upload across the broker restart answered %d (%v), want 503 or 202", r.status, r.err)
		}
	}
	if wrong > 5 {
		t.Errorf("... and %d more uploads answered wrongly during the outage", wrong-5)
	}
	if refused == 0 {
		t.Error("no upload was refused while the broker was down: nothing was measured")
	}
	qmu.Lock()
	t.Logf("%d uploads inside the outage, %d answered 503; %d queries, %d failed", during, refused, queries, failed)
	if queries == 0 {
		t.Error("no query ran during the outage")
	}
	qmu.Unlock()
	c.requireAllRunning()
	l.verify(t, c, time.Now().Add(readableWithin))
}

// The store down and back, on redis-server (killed and restarted: its
// append-only file keeps what it acknowledged) and on moto (paused and
// resumed). Queries answer 200 with field errors within the query deadline,
// /healthz of every query server goes 503 and back to 200, and the
// writers, paused meanwhile, catch up without dropping a record.
func TestStoreDownAndBack(t *testing.T) {
	forEachStore(t, storeDownAndBack)
}

// forEachStore runs scenario on a cluster of two query servers and two
// writers over each store, Redis and DynamoDB's API (moto).
func forEachStore(t *testing.T, scenario func(*testing.T, *cluster)) {
	t.Helper()
	for _, kind := range []string{"redis", "moto"} {
		t.Run(kind, func(t *testing.T) { scenario(t, startCluster(t, kind, 2, 2)) })
	}
}

func storeDownAndBack(t *testing.T, c *cluster) {
	l := newLedger()
	ld := startLoad(c, l, 3, 20, 30*time.Millisecond, 3*time.Minute)
	defer ld.stop()
	// Some acknowledged values are in the store before the outage.
	uploadUntilAccepted(t, c, l, "before-outage", readableWithin)
	time.Sleep(1500 * time.Millisecond)

	c.store.down()
	t.Log("store down")
	for _, s := range c.serves {
		waitHealth(t, s, http.StatusServiceUnavailable, healthWithin)
	}
	// Queries while the store is down: 200, field errors, within the
	// deadline.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	withErrors := 0
	for i := range 6 {
		base := c.serves[i%len(c.serves)].URL()
		qctx, qcancel := context.WithTimeout(ctx, patience)
		code, took, _, a, err := queryAges(qctx, base, []string{"before-outage", "c0-k0"})
		qcancel()
		if err != nil || code != http.StatusOK {
			t.Errorf("query while the store is down: status %d: %v", code, err)
			continue
		}
		if took > queryTimeout+slack {
			t.Errorf("query while the store is down answered after %v, want within the deadline %v (+%v)", took, queryTimeout, slack)
		}
		if len(a.Errors) > 0 {
			withErrors++
			for _, e := range a.Errors {
				if e.Category != "FIELD" || e.Feature == "" {
					t.Errorf("field error %+v: want category FIELD naming the feature", e)
				}
			}
		}
	}
	if withErrors == 0 {
		t.Error("no query answered a field error while the store was down")
	}
	time.Sleep(time.Second)

	c.store.up()
	up := time.Now()
	t.Log("store back")
	for _, s := range c.serves {
		waitHealth(t, s, http.StatusOK, healthWithin)
	}
	time.Sleep(time.Second)
	ld.stop()
	c.requireAllRunning()
	l.verify(t, c, up.Add(readableWithin))
}

// SIGTERM to every cairn process at once, during load. What broke: a writer
// stopped while it could not finish its work never exited (its deferred
// Close blocked); `cairn serve` without a writer exited at once. Every
// process must exit within CAIRN_SHUTDOWN_TIMEOUT with status 0, having
// committed nothing it did not write: restarted, the cluster serves every
// acknowledged value.
func TestSIGTERMDuringLoad(t *testing.T) {
	forEachStore(t, sigtermDuringLoad)
}

func sigtermDuringLoad(t *testing.T, c *cluster) {
	l := newLedger()
	ld := startLoad(c, l, 4, 25, 10*time.Millisecond, 2*time.Minute)
	defer ld.stop()
	time.Sleep(2 * time.Second)

	roles := c.roles()
	var wg sync.WaitGroup
	codes := make([]int, len(roles))
	errs := make([]error, len(roles))
	tookAll := make([]time.Duration, len(roles))
	for i, r := range roles {
		p := r.Process()
		if err := p.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		wg.Add(1)
		go func() {
			defer wg.Done()
			// The process's own shutdown timeout, and a second to exit.
			codes[i], errs[i] = p.Wait(shutdownGrace + time.Second)
			tookAll[i] = time.Since(start)
		}()
	}
	wg.Wait()
	results := ld.stop()
	for i, r := range roles {
		name := r.Process().Name() + " " + r.Addr()
		switch {
		case errs[i] != nil:
			t.Errorf("%s: %v", name, errs[i])
		case codes[i] != 0:
			t.Errorf("%s exited with status %d after SIGTERM, want 0", name, codes[i])
		default:
			t.Logf("%s exited 0 in %v", name, tookAll[i].Round(time.Millisecond))
		}
	}
	t.Logf("%d uploads before and during the shutdown", len(results))

	// Nothing acknowledged is lost: one writer and one query server,
	// restarted, serve every acknowledged value.
	for _, r := range append(c.writers[:min(1, len(c.writers))], c.serves[0]) {
		r.Restart()
	}
	c.serves = c.serves[:1]
	l.verify(t, c, time.Now().Add(readableWithin))
}
