package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairnfs/cairn/internal/testserver"
	"github.com/cairnfs/cairn/internal/testserver/gtreplicator"
	"github.com/cairnfs/cairn/internal/testserver/kreplicator"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The regional failover drill on Redis (docs/multi-region.md). Two regions,
// every part a process of its own but the replicator:
//
//	region A: broker A, redis-server A, `cairn write` and `cairn serve`
//	region B: broker B, fed by a replicator from A that copies records
//	          and group offsets replicatorLag after they were written;
//	          redis-server B, kept warm by B's writer consuming B's
//	          broker; B's query server, producing to A until the failover
//
// Uploads go to region A. A's broker and A's redis-server are killed
// mid-stream; `cairn failover kafka --to secondary` switches B's query
// server to B's broker, and uploads go on through it. Redis has no
// replication of its own: what region B holds is what came through Kafka.
//
// It checks: every upload acknowledged after the failover is readable in
// region B; an upload acknowledged by A before the kill is missing from B
// only if it was acknowledged within the replicator's lag (plus slack)
// before the kill, the recovery point the lag allows; no value region B
// answered ever goes backwards; region B's query server answered every
// query throughout. It reports the time from the failover command to the
// first upload acknowledged in region B, and the recovery point measured.
func TestRegionalFailoverRedis(t *testing.T) {
	regionalFailover(t, func(t *testing.T, ctx context.Context, bin, features string) drillStores {
		redisA, redisB := testserver.StartRedisProcess(t), testserver.StartRedisProcess(t)
		return drillStores{
			a: drillStore{uri: redisA.URI(0)},
			// A group of its own: MSK Replicator copies the groups of A,
			// whose offsets say what A's writer wrote to A's store.
			b:            drillStore{uri: redisB.URI(0), writerEnv: []string{"CAIRN_KAFKA_WRITER_GROUP=cairn-writer-b"}},
			writerBEarly: true,
			killA:        redisA.Kill,
		}
	})
}

// The same drill on DynamoDB: a moto_server per region, the table copied
// between them by a Global Tables replicator (streams, last writer wins
// per item) a second after each write, feature ids from one lock file.
// Region B's writer is not running until the failover (the standby region
// of a global table does not write it); it then starts on B's cluster from
// the group offsets the Kafka replicator copied. A's moto is paused: an
// outage, its data kept, as DynamoDB's would be.
func TestRegionalFailoverDynamoDB(t *testing.T) {
	regionalFailover(t, func(t *testing.T, ctx context.Context, bin, features string) drillStores {
		const table = "cairn-drill"
		motoA, motoB := testserver.StartMotoProcess(t), testserver.StartMotoProcess(t)
		gt := gtreplicator.New(gtreplicator.Region{Name: "us-east-1", Endpoint: motoA.Endpoint()},
			gtreplicator.Region{Name: "us-west-2", Endpoint: motoB.Endpoint()}, gtreplicator.Options{Table: table, Lag: time.Second})
		if err := gt.Prepare(ctx); err != nil {
			t.Fatal(err)
		}
		gctx, stopGT := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- gt.Run(gctx) }()
		var once sync.Once
		stop := func() { once.Do(func() { stopGT(); <-done }) }
		t.Cleanup(stop)
		lock := filepath.Join(t.TempDir(), "features.lock")
		p := testserver.StartProcess(t, testserver.Command{Name: "cairn-features-lock", Path: bin,
			Args: []string{"features", "lock", "--features", features, "--lock", lock}})
		if code, err := p.Wait(30 * time.Second); err != nil || code != 0 {
			t.Fatalf("cairn features lock: exit %d, %v:\n%s", code, err, p.Output())
		}
		// Every process sees a global table: moto lists no replicas, so
		// each region's endpoint is a proxy adding the other's.
		store := func(m *testserver.MotoProcess, region, other string) drillStore {
			return drillStore{uri: "dynamodb:///" + table + "?region=" + region + "&endpoint=" + replicaProxy(t, m.Endpoint(), other),
				env: []string{"CAIRN_FEATURES_LOCK=" + lock, "DYNAMODB_GLOBAL_TABLE_REGIONS=us-east-1,us-west-2",
					"DYNAMODB_CREATE_TABLES_IF_NOT_EXISTS=true", "AWS_REGION=" + region,
					"AWS_ACCESS_KEY_ID=testing", "AWS_SECRET_ACCESS_KEY=testing", "AWS_EC2_METADATA_DISABLED=true"}}
		}
		a, b := store(motoA, "us-east-1", "us-west-2"), store(motoB, "us-west-2", "us-east-1")
		return drillStores{
			a: a, b: b,
			writerBStandby: true,
			killA:          func() { motoA.Pause(); stop() },
			storeLag:       time.Second,
			copied:         func() time.Time { return gt.Position("us-east-1").Copied },
			// Both regions' tables map every feature to the lock file's
			// id: the ids each start wrote and those replicated agree.
			resumeA: motoA.Resume,
			checkB: func(t *testing.T) {
				want, err := os.ReadFile(lock)
				if err != nil {
					t.Fatal(err)
				}
				for _, s := range []drillStore{a, b} {
					merged := filepath.Join(t.TempDir(), "features.lock")
					if err := os.WriteFile(merged, want, 0o644); err != nil {
						t.Fatal(err)
					}
					p := testserver.StartProcess(t, testserver.Command{Name: "cairn-features-lock", Path: bin,
						Args: []string{"features", "lock", "--features", features, "--lock", merged, "--from-store", "--store", s.uri},
						Env:  append(os.Environ(), s.env...)})
					if code, err := p.Wait(30 * time.Second); err != nil || code != 0 {
						t.Fatalf("cairn features lock --from-store on %s: exit %d, %v:\n%s", s.uri, code, err, p.Output())
					}
					if got, _ := os.ReadFile(merged); string(got) != string(want) {
						t.Errorf("the table of %s maps features otherwise than the lock file:\n%s\nwant\n%s", s.uri, got, want)
					}
				}
			},
		}
	})
}

// drillStore is one region's online store in the drill.
type drillStore struct {
	uri string
	// env is every process's of the region; writerEnv the writer's too.
	env, writerEnv []string
}

// drillStores is what differs between stores in the drill.
type drillStores struct {
	a, b drillStore
	// writerBStandby runs region B's writer from the start in standby, as
	// the runbook has it for a global table: on A's cluster, in A's
	// writers' group but no member of it; the failover switches it to B's
	// cluster and makes it write.
	writerBStandby bool
	// writerBEarly runs region B's writer from the start (a store of its
	// own to keep warm); else it starts at the failover.
	writerBEarly bool
	// killA is region A's store outage, and the end of the store's own
	// replication out of A.
	killA func()
	// storeLag is the store's own replication lag (0: none).
	storeLag time.Duration
	// copied, if set, says up to which write time the store's own
	// replication had copied region A's writes when A went (read after
	// killA): on a loaded machine the test replicator can fall behind
	// its lag, and what region B must hold is bounded by what it had
	// copied, not by the lag it aims at.
	copied func() time.Time
	// resumeA, if set, ends region A's store outage with its data kept:
	// a query server started on it then reads no value older than region
	// A answered before the outage.
	resumeA func()
	// checkB, if set, checks the stores once the drill is over (after
	// resumeA).
	checkB func(t *testing.T)
}

// regionalFailover runs the drill on the stores stores makes.
func regionalFailover(t *testing.T, stores func(t *testing.T, ctx context.Context, bin, features string) drillStores) {
	const (
		replicatorLag = 2 * time.Second
		clients       = 4
		keysPerClient = 10
		pause         = 20 * time.Millisecond
	)
	bin := testserver.BuildCairn(t)
	features := filepath.Join(t.TempDir(), "features.yaml")
	if err := os.WriteFile(features, []byte(featuresYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	kafkaA := testserver.StartKafka(t, testserver.KafkaOptions{Partitions: 4})
	kafkaB := testserver.StartKafka(t, testserver.KafkaOptions{Partitions: 4})
	createTopics(t, bin, kafkaA.Addr(), 4)
	createTopics(t, bin, kafkaB.Addr(), 4)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := stores(t, ctx, bin, features)
	rep := kreplicator.New([]string{kafkaA.Addr()}, []string{kafkaB.Addr()}, kreplicator.Options{Lag: replicatorLag, Log: t.Logf})
	repCtx, stopRep := context.WithCancel(ctx)
	repDone := make(chan error, 1)
	go func() { repDone <- rep.Run(repCtx) }()
	defer func() { stopRep(); <-repDone }()

	role := func(name string, s drillStore, env ...string) *testserver.Role {
		t.Helper()
		args := []string{"--store", s.uri, "--brokers", kafkaA.Addr(), "--features", features}
		env = append(append(roleEnv(), s.env...), env...)
		if name == "write" {
			env = append(env, s.writerEnv...)
		}
		return testserver.StartRole(t, bin, name, args, env)
	}
	secondary := []string{"CAIRN_KAFKA_SECONDARY_BROKERS=" + kafkaB.Addr()}
	role("write", st.a, "CAIRN_WRITER_INSTANCE_ID=writer-a")
	serveA := role("serve", st.a)
	startWriterB := func() *testserver.Role {
		return role("write", st.b, append(secondary, "CAIRN_KAFKA_ACTIVE=secondary", "CAIRN_WRITER_INSTANCE_ID=writer-b")...)
	}
	var writerB *testserver.Role
	if st.writerBEarly {
		writerB = startWriterB()
	}
	var standbyB string // region B's standby writer's base URL
	var standbyBProc *testserver.Process
	if st.writerBStandby {
		args := []string{"--store", st.b.uri, "--brokers", kafkaA.Addr(), "--features", features}
		env := append(append(append(roleEnv(), st.b.env...), st.b.writerEnv...), append(secondary,
			"CAIRN_WRITER_STORE_WRITES=standby", "CAIRN_WRITER_INSTANCE_ID=writer-b")...)
		standbyB, standbyBProc = startStandbyWriter(t, bin, args, env)
	}
	serveB := role("serve", st.b, secondary...)

	// Uploads: increasing values per key, each with its answer's time.
	type ack struct {
		v  int64
		at time.Time
	}
	var (
		target  atomic.Pointer[string]
		mu      sync.Mutex
		acks    = map[string][]ack{} // per key, in order
		sent    = map[string]int64{}
		firstB  atomic.Pointer[time.Time]
		baseObs = time.Now().Add(-time.Hour).Truncate(time.Second)
	)
	urlA, urlB := serveA.URL(), serveB.URL()
	target.Store(&urlA)
	// Keys of region A's uploads and keys of region B's, so that a value
	// region B lost is not hidden by a newer one uploaded after the
	// failover.
	var prefix atomic.Pointer[string]
	pa, pb := "a-", "b-"
	prefix.Store(&pa)
	lctx, stopLoad := context.WithCancel(ctx)
	var lwg sync.WaitGroup
	for c := range clients {
		lwg.Go(func() {
			for n := 0; lctx.Err() == nil; n++ {
				base, pre := *target.Load(), *prefix.Load()
				key := fmt.Sprintf("%sc%d-k%d", pre, c, n%keysPerClient)
				v := int64(n/keysPerClient + 1)
				mu.Lock()
				sent[key] = max(sent[key], v)
				mu.Unlock()
				rctx, rcancel := context.WithTimeout(lctx, produceTimeout+time.Second)
				code, _, _ := uploadAge(rctx, base, key, v, baseObs.Add(time.Duration(v)*time.Millisecond))
				rcancel()
				if code == http.StatusAccepted {
					now := time.Now()
					mu.Lock()
					acks[key] = append(acks[key], ack{v, now})
					mu.Unlock()
					if base == urlB {
						firstB.CompareAndSwap(nil, &now)
					}
				}
				select {
				case <-lctx.Done():
				case <-time.After(pause):
				}
			}
		})
	}

	// Region B's query server, queried throughout: always 200, and no
	// key's value ever goes backwards.
	var (
		queries, failedQueries, regressions atomic.Int64
		qwg                                 sync.WaitGroup
	)
	qctx, stopQueries := context.WithCancel(ctx)
	qwg.Go(func() {
		seen := map[string]int64{}
		keys := make([]string, 0, 2*clients*keysPerClient)
		for _, pre := range []string{pa, pb} {
			for c := range clients {
				for k := range keysPerClient {
					keys = append(keys, fmt.Sprintf("%sc%d-k%d", pre, c, k))
				}
			}
		}
		for qctx.Err() == nil {
			rctx, rcancel := context.WithTimeout(qctx, patience)
			code, _, ages, _, err := queryAges(rctx, urlB, keys)
			rcancel()
			if qctx.Err() != nil {
				return
			}
			queries.Add(1)
			if err != nil || code != http.StatusOK {
				if failedQueries.Add(1) <= 3 {
					t.Errorf("region B query: %d %v", code, err)
				}
			}
			for k, v := range ages {
				if v < seen[k] {
					if regressions.Add(1) <= 3 {
						t.Errorf("region B: %s went back from %d to %d", k, seen[k], v)
					}
				}
				seen[k] = max(seen[k], v)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	time.Sleep(2 * time.Second)
	// What the replicator must have copied when the region goes: every
	// record acknowledged before mark. On a loaded machine it can fall
	// behind the lag it aims at; the drill then waits for it, and what
	// region B must hold is bounded by what it had copied.
	mark := time.Now()
	ends := endOffsets(t, kafkaA.Addr(), "cairn.persist")
	time.Sleep(2 * time.Second)
	caughtUp := time.Now().Add(30 * time.Second)
	for !covers(rep.Copied()["cairn.persist"], ends) {
		if time.Now().After(caughtUp) {
			t.Fatalf("the Kafka replicator had not copied, 30s later, what region A acknowledged 2s into the drill (copied %v, want %v): the drill measures nothing of cairn", rep.Copied(), ends)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// What region A answers just before it goes: after its store comes
	// back, no value there may be older.
	aKeys := make([]string, 0, clients*keysPerClient)
	for c := range clients {
		for k := range keysPerClient {
			aKeys = append(aKeys, fmt.Sprintf("%sc%d-k%d", pa, c, k))
		}
	}
	heldA := answeredAges(t, ctx, urlA, aKeys, "region A before the kill")
	// The region goes, and with it what the replicator had read but not
	// yet copied: the loss the replicator's lag allows.
	kafkaA.Kill()
	st.killA()
	killed := time.Now()
	stopRep()
	<-repDone
	repDone <- nil
	t.Logf("region A's broker and store killed; the Kafka replicator had copied %v", rep.Copied())
	// The store's replication lag at the kill: the one it aims at, or
	// what it had copied, whichever is further behind.
	storeLag := st.storeLag
	if st.copied != nil {
		c := st.copied()
		if c.IsZero() {
			t.Fatal("the store's replication had copied nothing of region A's writes by the kill")
		}
		storeLag = max(storeLag, killed.Sub(c))
		t.Logf("the store's replication had copied region A's writes up to %v before the kill (it aims at %v)", killed.Sub(c).Round(time.Millisecond), st.storeLag)
		if killed.Sub(c) > 20*time.Second {
			t.Errorf("the store's replication was %v behind at the kill: the drill measures nothing of cairn", killed.Sub(c))
		}
	}
	target.Store(&urlB)
	prefix.Store(&pb)

	targets := serveB.Addr()
	if standbyB != "" {
		targets += "," + strings.TrimPrefix(standbyB, "http://")
	}
	failover := testserver.StartProcess(t, testserver.Command{Name: "cairn-failover", Path: bin,
		Args: []string{"failover", "kafka", "--to", "secondary", "--targets", targets}})
	commanded := time.Now()
	if code, err := failover.Wait(30 * time.Second); err != nil || code != 0 {
		t.Fatalf("cairn failover kafka: exit %d, %v:\n%s", code, err, failover.Output())
	}
	t.Logf("cairn failover kafka: %s", lastLine(failover.Output()))
	switch {
	case standbyB != "":
		// The runbook's step 3: B's writers write.
		resp, err := http.Post(standbyB+"/v1/admin/writer/store-writes", "application/json", strings.NewReader(`{"store_writes":"active"}`))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("region B's writer, store writes active: %s %s", resp.Status, body)
		}
		t.Logf("region B's writer: %s", bytes.TrimSpace(body))
	case writerB == nil:
		writerB = startWriterB()
	}
	deadline := time.Now().Add(readableWithin)
	for firstB.Load() == nil && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if firstB.Load() == nil {
		t.Fatal("no upload acknowledged in region B after the failover")
	}
	toFirst := firstB.Load().Sub(commanded)
	t.Logf("failover command to the first upload acknowledged in region B: %v", toFirst.Round(time.Millisecond))
	if toFirst > 5*time.Second {
		t.Errorf("the first upload acknowledged in region B came %v after the failover command, want within 5s", toFirst)
	}
	time.Sleep(3 * time.Second)
	stopLoad()
	lwg.Wait()

	// Region B converges: every key reads its newest value acknowledged
	// after the kill, and of the values acknowledged before it, at least
	// the newest acknowledged lag + slack before the kill.
	bound := killed.Add(-max(replicatorLag, storeLag) - 2*slack)
	if bound.After(mark) {
		t.Logf("the Kafka replicator fell behind its lag: region B must hold what was acknowledged before %v before the kill", killed.Sub(mark).Round(time.Millisecond))
		bound = mark
	}
	mu.Lock()
	want := map[string]int64{} // the least value region B must hold
	for k, as := range acks {
		for _, a := range as {
			if a.at.After(killed) || a.at.Before(bound) {
				want[k] = max(want[k], a.v)
			}
		}
	}
	mu.Unlock()
	var got map[string]int64
	for {
		keys := make([]string, 0, len(want))
		for k := range want {
			keys = append(keys, k)
		}
		qc, qcancel := context.WithTimeout(ctx, patience)
		_, _, ages, _, err := queryAges(qc, urlB, keys)
		qcancel()
		missing := 0
		for k, v := range want {
			if err != nil || ages[k] < v {
				missing++
			}
			if ages[k] > sent[k] {
				t.Fatalf("%s reads %d in region B, newer than anything sent (%d)", k, ages[k], sent[k])
			}
		}
		got = ages
		if err == nil && missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			if writerB != nil {
				t.Logf("region B's writer:\n%s", writerB.Process().Tail(30))
			}
			if standbyBProc != nil {
				t.Logf("region B's writer:\n%s", standbyBProc.Tail(30))
			}
			t.Fatalf("%d of %d keys in region B older than what they must hold (%v); got %v, want at least %v", missing, len(want), err, got, want)
		}
		time.Sleep(250 * time.Millisecond)
	}
	stopQueries()
	qwg.Wait()

	// The recovery point measured: the oldest acknowledgement region B
	// lost, before the kill.
	var lost int
	var rpo time.Duration
	mu.Lock()
	for k, as := range acks {
		for _, a := range as {
			if !a.at.After(killed) && a.v > got[k] {
				lost++
				rpo = max(rpo, killed.Sub(a.at))
			}
		}
	}
	mu.Unlock()
	t.Logf("replicator lag %v: %d acknowledged uploads lost, the oldest acknowledged %v before the kill; %d queries to region B, %d failed, %d regressions",
		replicatorLag, lost, rpo.Round(time.Millisecond), queries.Load(), failedQueries.Load(), regressions.Load())
	if allowed := killed.Sub(bound); rpo > allowed {
		t.Errorf("an upload acknowledged %v before the kill is lost, more than the replicators' lag allows (%v)", rpo, allowed)
	}
	if lost == 0 {
		t.Error("no acknowledged upload was lost: the drill measured no recovery point")
	}
	if queries.Load() == 0 {
		t.Error("region B was never queried")
	}
	if st.resumeA != nil {
		st.resumeA()
		// A query server of its own, with a cold cache: what it reads
		// is what region A's store holds.
		fresh := role("serve", st.a)
		ages := answeredAges(t, ctx, fresh.URL(), aKeys, "region A's store after the outage")
		older := 0
		for k, v := range heldA {
			if ages[k] < v {
				if older++; older <= 3 {
					t.Errorf("region A's store holds %s = %d after the outage, older than the %d it answered before", k, ages[k], v)
				}
			}
		}
		t.Logf("region A's store after the outage: %d keys compared with what A answered before it, %d older", len(heldA), older)
	}
	if st.checkB != nil {
		st.checkB(t)
	}
}

// endOffsets returns the end offsets of topic's partitions on brokers.
func endOffsets(t *testing.T, brokers, topic string) map[int32]int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	listed, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err == nil {
		err = listed.Error()
	}
	if err != nil {
		t.Fatalf("end offsets of %s: %v", topic, err)
	}
	out := map[int32]int64{}
	listed.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out
}

// covers reports whether copied reaches ends on every partition.
func covers(copied, ends map[int32]int64) bool {
	for p, end := range ends {
		if copied[p] < end {
			return false
		}
	}
	return true
}

// answeredAges queries base for keys' ages until an answer comes without
// field errors (moto, serving one request at a time to the writers and
// the table replicator too, can make a read miss the query's deadline),
// and returns it; what of 20 s of tries gives none fails the test.
func answeredAges(t *testing.T, ctx context.Context, base string, keys []string, what string) map[string]int64 {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		qc, cancel := context.WithTimeout(ctx, patience)
		_, _, ages, a, err := queryAges(qc, base, keys)
		cancel()
		if err == nil && len(a.Errors) == 0 {
			if len(ages) == 0 {
				t.Fatalf("%s: no key has a value", what)
			}
			return ages
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("field errors %+v", a.Errors)
			}
			t.Fatalf("%s: no answer without errors within 20s: %v", what, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
