package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairnfs/cairn/internal/testserver"
)

var brokerOutage = flag.Duration("broker-outage", 15*time.Second, "how long the broker stays down in the broker outage scenario")

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(testserver.Run(m))
}

// The settings every cairn process of a scenario runs with.
const (
	produceTimeout = 3 * time.Second
	queryTimeout   = 1 * time.Second
	shutdownGrace  = 10 * time.Second
	probeInterval  = 500 * time.Millisecond
	sessionTimeout = 10 * time.Second

	// slack is what a loaded machine adds to a deadline the server keeps:
	// a request's own round trip and scheduling.
	slack = 400 * time.Millisecond
	// readableWithin bounds the time from the end of a fault to every
	// acknowledged value being readable.
	readableWithin = 30 * time.Second
	// healthWithin bounds the time /healthz takes to follow the store:
	// three failed probes, or one that succeeds, and the probe's own timeout.
	healthWithin = 10 * time.Second
	// patience is how long a query that should answer within the deadline
	// is waited for before it counts as hung, so that a hung server fails
	// a scenario in seconds rather than in minutes.
	patience = 5 * time.Second
)

// featuresYAML is the feature file of the scenarios.
const featuresYAML = `namespaces:
  - name: user
    primary_key: id
    max_staleness: infinity
    features:
      id: string
      age: int
      name: string
`

// roleEnv is the environment of every cairn process of a scenario.
// outsideEnv is the test binary's environment without cairn's knobs
// (CAIRN_*, DYNAMODB_*): the base of a cairn process's own.
func outsideEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CAIRN_") && !strings.HasPrefix(kv, "DYNAMODB_") {
			env = append(env, kv)
		}
	}
	return env
}

// freeAddr returns a loopback address with a port free at the time.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func roleEnv() []string {
	return []string{
		"CAIRN_KAFKA_PRODUCE_TIMEOUT=" + produceTimeout.String(),
		"CAIRN_QUERY_TIMEOUT=" + queryTimeout.String(),
		"CAIRN_SHUTDOWN_TIMEOUT=" + shutdownGrace.String(),
		"CAIRN_HEALTH_PROBE_INTERVAL=" + probeInterval.String(),
		"CAIRN_WRITER_SESSION_TIMEOUT=" + sessionTimeout.String(),
		// The scenarios are about the data path; API keys are tested
		// in internal/api and cmd/cairn.
		"CAIRN_API_AUTH=none",
	}
}

// store is the online store of a scenario, in a process of the test's own.
type store interface {
	// uri is the --store URI.
	uri() string
	// env is what the cairn processes need besides the URI.
	env() []string
	// down starts an outage; up ends it, waiting until the store answers.
	down()
	up()
}

type redisStore struct{ p *testserver.RedisProcess }

func (s redisStore) uri() string   { return s.p.URI(0) }
func (s redisStore) env() []string { return nil }

// down kills redis-server: what it acknowledged is in its fsynced
// append-only file.
func (s redisStore) down() { s.p.Kill() }
func (s redisStore) up()   { s.p.Restart() }

type motoStore struct {
	p     *testserver.MotoProcess
	table string
}

func (s motoStore) uri() string {
	return "dynamodb:///" + s.table + "?region=us-east-1&endpoint=" + s.p.Endpoint()
}

func (s motoStore) env() []string {
	return []string{
		"DYNAMODB_CREATE_TABLES_IF_NOT_EXISTS=true",
		"AWS_ACCESS_KEY_ID=testing",
		"AWS_SECRET_ACCESS_KEY=testing",
		"AWS_REGION=us-east-1",
		"AWS_EC2_METADATA_DISABLED=true",
	}
}

// down pauses moto_server (SIGSTOP): moto keeps its data in memory, so a
// kill would lose what it acknowledged, which no DynamoDB outage does.
func (s motoStore) down() { s.p.Pause() }
func (s motoStore) up()   { s.p.Resume() }

// newStore starts the named store ("redis" or "moto") for t.
func newStore(t *testing.T, kind string) store {
	t.Helper()
	switch kind {
	case "redis":
		return redisStore{p: testserver.StartRedisProcess(t)}
	case "moto":
		return motoStore{p: testserver.StartMotoProcess(t), table: "cairn-e2e"}
	}
	t.Fatalf("unknown store %q", kind)
	return nil
}

// cluster is the production topology of one scenario.
type cluster struct {
	t        *testing.T
	bin      string
	kafka    *testserver.Kafka
	store    store
	features string
	serves   []*testserver.Role
	writers  []*testserver.Role
}

// startCluster starts a broker, creates the topics, and starts nWrite
// writers and nServe query servers against a store of the given kind.
func startCluster(t *testing.T, kind string, nServe, nWrite int) *cluster {
	t.Helper()
	return startClusterWith(t, kind, featuresYAML, nServe, nWrite)
}

// startClusterWith is startCluster with a feature file of the caller's and
// env added to every role's environment.
func startClusterWith(t *testing.T, kind, features string, nServe, nWrite int, env ...string) *cluster {
	t.Helper()
	c := &cluster{
		t:     t,
		bin:   testserver.BuildCairn(t),
		store: newStore(t, kind),
		kafka: testserver.StartKafka(t, testserver.KafkaOptions{Partitions: 4}),
	}
	c.features = filepath.Join(t.TempDir(), "features.yaml")
	if err := os.WriteFile(c.features, []byte(features), 0o644); err != nil {
		t.Fatal(err)
	}
	createTopics(t, c.bin, c.kafka.Addr(), 4)
	for i := range nWrite {
		c.writers = append(c.writers, c.startRole("write", append(env, fmt.Sprintf("CAIRN_WRITER_INSTANCE_ID=e2e-writer-%d", i))...))
	}
	for range nServe {
		c.serves = append(c.serves, c.startRole("serve", env...))
	}
	return c
}

// createTopics runs `cairn topics create` for a single broker.
func createTopics(t testing.TB, bin, brokers string, partitions int) {
	t.Helper()
	p := testserver.StartProcess(t, testserver.Command{
		Name: "cairn-topics",
		Path: bin,
		Args: []string{"topics", "create", "--brokers", brokers,
			"--replication-factor", "1", "--min-insync-replicas", "1", "--partitions", strconv.Itoa(partitions)},
	})
	if code, err := p.Wait(30 * time.Second); err != nil || code != 0 {
		t.Fatalf("cairn topics create: status %d, %v; output:\n%s", code, err, p.Output())
	}
}

func (c *cluster) startRole(role string, env ...string) *testserver.Role {
	c.t.Helper()
	args := []string{"--store", c.store.uri(), "--brokers", c.kafka.Addr(), "--features", c.features}
	env = append(append(roleEnv(), c.store.env()...), env...)
	return testserver.StartRole(c.t, c.bin, role, args, env)
}

// roles returns every cairn process of the cluster.
func (c *cluster) roles() []*testserver.Role {
	return append(append([]*testserver.Role(nil), c.serves...), c.writers...)
}

// requireAllRunning fails the test if a cairn process has exited.
func (c *cluster) requireAllRunning() {
	c.t.Helper()
	for _, r := range c.roles() {
		select {
		case <-r.Process().Exited():
			code, _ := r.Process().Wait(0)
			c.t.Errorf("%s on %s exited (status %d); no cairn process may need a restart", r.Process().Name(), r.Addr(), code)
		default:
		}
	}
}

// client is the HTTP client of every request of the scenarios; the server
// deadlines under test are all far below its timeout.
var client = &http.Client{Timeout: 20 * time.Second}

// post sends body to url and returns the status and the answer.
func post(ctx context.Context, url string, body any) (int, []byte, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return 0, nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	return resp.StatusCode, out, err
}

// get fetches url and returns the status and the answer.
func get(ctx context.Context, url string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	return resp.StatusCode, out, err
}

// uploadAge uploads user.age of key, observed at at.
func uploadAge(ctx context.Context, base, key string, age int64, at time.Time) (int, []byte, error) {
	return post(ctx, base+"/v1/upload_features", map[string]any{
		"inputs":      map[string]any{"user.id": key, "user.age": age},
		"observed_at": at.UTC().Format(time.RFC3339Nano),
	})
}

// queryAnswer is the part of a query's answer the scenarios read.
type queryAnswer struct {
	Data []struct {
		Field string          `json:"field"`
		Value json.RawMessage `json:"value"`
		Pkey  json.RawMessage `json:"pkey"`
	} `json:"data"`
	Errors []struct {
		Code     string `json:"code"`
		Category string `json:"category"`
		Feature  string `json:"feature"`
		Message  string `json:"message"`
	} `json:"errors"`
}

// queryAges asks base for user.age of keys. It returns the status, the time
// the query took, the ages found (absent keys are left out) and the answer.
func queryAges(ctx context.Context, base string, keys []string) (int, time.Duration, map[string]int64, *queryAnswer, error) {
	start := time.Now()
	code, body, err := post(ctx, base+"/v1/query/online", map[string]any{
		"inputs":  map[string]any{"user.id": keys},
		"outputs": []string{"user.age"},
	})
	took := time.Since(start)
	if err != nil {
		return 0, took, nil, nil, err
	}
	if code != http.StatusOK {
		return code, took, nil, nil, fmt.Errorf("query: %d %s", code, body)
	}
	var a queryAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		return code, took, nil, nil, fmt.Errorf("query answer %s: %w", body, err)
	}
	ages := make(map[string]int64, len(keys))
	for _, d := range a.Data {
		if d.Field != "user.age" || len(d.Value) == 0 || string(d.Value) == "null" {
			continue
		}
		var key string
		var age int64
		if err := json.Unmarshal(d.Pkey, &key); err != nil {
			return code, took, nil, &a, fmt.Errorf("pkey %s: %w", d.Pkey, err)
		}
		if err := json.Unmarshal(d.Value, &age); err != nil {
			return code, took, nil, &a, fmt.Errorf("user.age of %s = %s: %w", key, d.Value, err)
		}
		ages[key] = age
	}
	return code, took, ages, &a, nil
}

// ledger is what the clients sent and what was acknowledged, per key. The
// value uploaded for a key is its sequence number, and its observed-at grows
// with it, so the newest value of a key is its greatest.
type ledger struct {
	base time.Time // observed-at of value 0

	mu struct {
		sync.Mutex
		acked map[string]int64 // newest value answered 202
		sent  map[string]int64 // newest value sent, whatever the answer
	}
}

func newLedger() *ledger {
	l := &ledger{base: time.Now().Add(-time.Hour).Truncate(time.Second)}
	l.mu.acked = make(map[string]int64)
	l.mu.sent = make(map[string]int64)
	return l
}

// observedAt returns the observed-at of value v: one millisecond per value.
func (l *ledger) observedAt(v int64) time.Time {
	return l.base.Add(time.Duration(v) * time.Millisecond)
}

func (l *ledger) sent(key string, v int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.mu.sent[key] = max(l.mu.sent[key], v)
}

func (l *ledger) acked(key string, v int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.mu.acked[key] = max(l.mu.acked[key], v)
}

// ackedCount returns how many keys have an acknowledged value.
func (l *ledger) ackedCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.mu.acked)
}

// snapshot returns copies of the acknowledged and sent values.
func (l *ledger) snapshot() (acked, sent map[string]int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	acked = make(map[string]int64, len(l.mu.acked))
	sent = make(map[string]int64, len(l.mu.sent))
	for k, v := range l.mu.acked {
		acked[k] = v
	}
	for k, v := range l.mu.sent {
		sent[k] = v
	}
	return acked, sent
}

// verify waits until every acknowledged key reads back, from every query
// server in turn, a value at least as new as its newest acknowledged one and
// no newer than anything sent, and fails the test if that has not happened
// by deadline.
func (l *ledger) verify(t *testing.T, c *cluster, deadline time.Time) {
	t.Helper()
	acked, sent := l.snapshot()
	if len(acked) == 0 {
		t.Fatal("no upload was acknowledged: the scenario proved nothing")
	}
	keys := make([]string, 0, len(acked))
	for k := range acked {
		keys = append(keys, k)
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline.Add(5*time.Second))
	defer cancel()
	var bad []string
	for round := 0; ; round++ {
		base := c.serves[round%len(c.serves)].URL()
		bad = bad[:0]
		for start := 0; start < len(keys); start += 200 {
			batch := keys[start:min(start+200, len(keys))]
			_, _, ages, _, err := queryAges(ctx, base, batch)
			if err != nil {
				bad = append(bad, fmt.Sprintf("query %s: %v", base, err))
				break
			}
			for _, k := range batch {
				got, ok := ages[k]
				switch {
				case got > sent[k]:
					t.Errorf("%s reads %d, newer than anything sent (%d)", k, got, sent[k])
					return
				case !ok || got < acked[k]:
					bad = append(bad, fmt.Sprintf("%s reads %d (found %v), newest acknowledged %d", k, got, ok, acked[k]))
				}
			}
		}
		if len(bad) == 0 {
			t.Logf("all %d acknowledged keys read back their newest value (round %d)", len(keys), round)
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%d of %d acknowledged keys not readable with their newest value by the deadline; first ones:", len(bad), len(keys))
			for _, b := range bad[:min(10, len(bad))] {
				t.Errorf("  %s", b)
			}
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// uploadResult is the outcome of one upload of the load.
type uploadResult struct {
	start, end time.Time
	status     int // 0 when the request failed
	err        error
}

// load uploads, from clients goroutines, increasing values to keys of their
// own, spread over the query servers, until stop is called or maxUploads
// uploads per client were sent. Every result goes to the ledger and, in
// order per client, to results.
type load struct {
	l       *ledger
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	mu      sync.Mutex
	results []uploadResult
}

// startLoad starts the clients; each sends one upload every pause. The load
// stops by itself after maxFor.
func startLoad(c *cluster, l *ledger, clients, keysPerClient int, pause, maxFor time.Duration) *load {
	ctx, cancel := context.WithTimeout(context.Background(), maxFor)
	ld := &load{l: l, cancel: cancel}
	const maxUploads = 5000 // per client, a bound whatever the pace
	for i := range clients {
		ld.wg.Add(1)
		go func() {
			defer ld.wg.Done()
			seq := make([]int64, keysPerClient)
			for n := 0; n < maxUploads && ctx.Err() == nil; n++ {
				j := n % keysPerClient
				key := fmt.Sprintf("c%d-k%d", i, j)
				seq[j]++
				v := seq[j]
				base := c.serves[(i+n)%len(c.serves)].URL()
				l.sent(key, v)
				r := uploadResult{start: time.Now()}
				r.status, _, r.err = uploadAge(ctx, base, key, v, l.observedAt(v))
				r.end = time.Now()
				if ctx.Err() != nil && r.err != nil {
					return // stopped mid-request: neither acknowledged nor refused
				}
				if r.status == http.StatusAccepted {
					l.acked(key, v)
				}
				ld.mu.Lock()
				ld.results = append(ld.results, r)
				ld.mu.Unlock()
				select {
				case <-ctx.Done():
				case <-time.After(pause):
				}
			}
		}()
	}
	return ld
}

// stop stops the clients and waits for them.
func (ld *load) stop() []uploadResult {
	ld.cancel()
	ld.wg.Wait()
	ld.mu.Lock()
	defer ld.mu.Unlock()
	return append([]uploadResult(nil), ld.results...)
}

// waitHealth polls /healthz of r until it answers want, or fails the test
// after within. The body must be JSON either way.
func waitHealth(t *testing.T, r *testserver.Role, want int, within time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var last string
	for ctx.Err() == nil {
		code, body, err := get(ctx, r.URL()+"/healthz")
		switch {
		case err != nil:
			last = err.Error()
		case !json.Valid(body):
			t.Errorf("/healthz of %s answered %d with a body that is not JSON: %q", r.Addr(), code, body)
			return
		case code == want:
			return
		default:
			last = fmt.Sprintf("%d %s", code, body)
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Errorf("/healthz of %s did not answer %d within %v; last answer: %s", r.Addr(), want, within, last)
}

// uploadUntilAccepted uploads a fresh value of key until one is answered
// 202, or fails the test after within.
func uploadUntilAccepted(t *testing.T, c *cluster, l *ledger, key string, within time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var last string
	for v := int64(1); ctx.Err() == nil; v++ {
		base := c.serves[int(v)%len(c.serves)].URL()
		l.sent(key, v)
		code, body, err := uploadAge(ctx, base, key, v, l.observedAt(v))
		if code == http.StatusAccepted {
			l.acked(key, v)
			return
		}
		last = fmt.Sprintf("%d %s %v", code, body, err)
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	t.Fatalf("no upload of %s accepted within %v; last answer: %s", key, within, last)
}
