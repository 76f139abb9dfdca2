package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/cairnfs/cairn/internal/bench"
	"github.com/cairnfs/cairn/internal/queue"
	"github.com/cairnfs/cairn/internal/testserver"
)

// The write-path benchmarks run the production topology as separate
// processes: the broker, redis-server, and cairn's roles, each in a
// process of its own. Each reports, besides its throughput or latency, the
// CPU time each process used, from the process's own accounting (this
// machine is shared: wall-clock figures alone say little).
//
//	go test ./internal/e2e -run '^$' -bench . -benchtime 1x -timeout 30m

// benchFeatures declares ten features besides the key, of mixed types:
// one upload writes ten values per entity.
const benchFeatures = `namespaces:
  - name: user
    primary_key: id
    max_staleness: infinity
    features:
      id: string
      f0: int
      f1: float
      f2: string
      f3: bool
      f4: int
      f5: float
      f6: string
      f7: int
      f8: float
      f9: string
`

// benchValues returns the ten values of entity i at version v, as they
// travel on the topic.
func benchValues(i, v int, at time.Time) []queue.Value {
	vals := make([]queue.Value, 10)
	for j := range vals {
		var x any
		switch benchTypes[j] {
		case "int":
			x = int64(i*1000 + v)
		case "float":
			x = float64(i) + float64(v)/10
		case "string":
			x = fmt.Sprintf("value-%d-%d", i, v)
		case "bool":
			x = (i+v)%2 == 0
		}
		vals[j] = queue.Value{FQN: "user.f" + strconv.Itoa(j), Value: x, ObservedAt: at}
	}
	return vals
}

// benchTypes are the types of user.f0 to user.f9 in benchFeatures.
var benchTypes = [10]string{"int", "float", "string", "bool", "int", "float", "string", "int", "float", "string"}

// benchTopology starts the broker and redis-server and creates the topics
// (12 partitions, the production default).
type benchTopology struct {
	bin      string
	kafka    *testserver.Kafka
	redis    *testserver.RedisProcess
	features string
}

func startBenchTopology(b *testing.B) *benchTopology {
	b.Helper()
	t := &benchTopology{bin: testserver.BuildCairn(b)}
	t.kafka = testserver.StartKafka(b, testserver.KafkaOptions{Partitions: 12})
	t.redis = testserver.StartRedisProcess(b)
	t.features = filepath.Join(b.TempDir(), "features.yaml")
	if err := os.WriteFile(t.features, []byte(benchFeatures), 0o644); err != nil {
		b.Fatal(err)
	}
	createTopics(b, t.bin, t.kafka.Addr(), 12)
	return t
}

func (t *benchTopology) args() []string {
	return []string{"--store", t.redis.URI(0), "--brokers", t.kafka.Addr(), "--features", t.features, "--log-level", "warn"}
}

// cpuMeter measures the CPU time processes use over a span.
type cpuMeter struct {
	names []string
	pids  []int
	start []time.Duration
	at    time.Time
}

func newCPUMeter(procs map[string]int) *cpuMeter {
	m := &cpuMeter{at: time.Now()}
	for name, pid := range procs {
		c, _ := bench.ProcessCPU(pid)
		m.names, m.pids, m.start = append(m.names, name), append(m.pids, pid), append(m.start, c)
	}
	return m
}

// report adds, per process, its CPU time per op (ops done over the span)
// and its share of one CPU.
func (m *cpuMeter) report(b *testing.B, ops float64, unit string) {
	wall := time.Since(m.at)
	for i, pid := range m.pids {
		c, ok := bench.ProcessCPU(pid)
		if !ok {
			continue
		}
		used := c - m.start[i]
		b.ReportMetric(float64(used.Microseconds())/ops, m.names[i]+"-cpu-µs/"+unit)
		b.ReportMetric(used.Seconds()/wall.Seconds(), m.names[i]+"-cpus")
	}
}

var writerEntities = flag.Int("writer-entities", 200_000, "entities BenchmarkWriterThroughput writes")

// BenchmarkWriterThroughput measures the sustained throughput of one
// `cairn write` process: the topic is filled first with row uploads of one
// entity of ten features each, then the writer is started and timed from
// 10% to 90% of the entities written, start-up and tail excluded.
func BenchmarkWriterThroughput(b *testing.B) {
	entities := *writerEntities
	for b.Loop() {
		topo := startBenchTopology(b)
		cl, err := kgo.NewClient(kgo.SeedBrokers(topo.kafka.Addr()), kgo.RequiredAcks(kgo.AllISRAcks()),
			kgo.DisableIdempotentWrite(), kgo.ProducerLinger(5*time.Millisecond), kgo.MaxBufferedRecords(50_000))
		if err != nil {
			b.Fatal(err)
		}
		at := time.Now().UTC().Truncate(time.Microsecond)
		for i := range entities {
			key := "u" + strconv.Itoa(i)
			rec := &queue.Record{Kind: queue.KindUpload, Entities: []queue.Entity{{Namespace: "user", Key: key, Values: benchValues(i, 0, at)}}}
			v, err := queue.AppendRecord(nil, rec)
			if err != nil {
				b.Fatal(err)
			}
			cl.Produce(context.Background(), &kgo.Record{Topic: "cairn.persist", Key: queue.EntityKey("user", key), Value: v}, func(_ *kgo.Record, err error) {
				if err != nil {
					b.Errorf("preload: %v", err)
				}
			})
		}
		if err := cl.Flush(context.Background()); err != nil {
			b.Fatal(err)
		}
		cl.Close()
		b.Logf("topic filled with %d records of one entity in %v", entities, time.Since(at).Round(time.Millisecond))

		w := testserver.StartRole(b, topo.bin, "write", topo.args(), []string{"CAIRN_WRITER_INSTANCE_ID=bench-writer"})
		meter := (*cpuMeter)(nil)
		var t10, t90 time.Time
		var n10, n90 float64
		deadline := time.Now().Add(10 * time.Minute)
		for time.Now().Before(deadline) {
			n := metricValue(b, w.URL(), "cairn_writer_entities_written_total")
			now := time.Now()
			if t10.IsZero() && n >= float64(entities)/10 {
				t10, n10 = now, n
				meter = newCPUMeter(map[string]int{"writer": w.PID(), "redis": topo.redis.PID(), "broker": topo.kafka.PID()})
			}
			if n >= float64(entities)*9/10 {
				t90, n90 = now, n
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if t90.IsZero() {
			b.Fatalf("the writer did not write 90%% of %d entities in 10 minutes", entities)
		}
		rate := (n90 - n10) / t90.Sub(t10).Seconds()
		b.ReportMetric(rate, "entity-writes/s")
		meter.report(b, n90-n10, "entity")
	}
}

// BenchmarkUploadToReadable measures, at 500 uploads a second to a
// `cairn serve` process, the time from an upload's 202 to its value being
// readable through the same server (written by a `cairn write` process).
// Each upload is one entity of ten features, observed at a time of its
// own; a poller asks every 2 ms for all the entities not yet readable, in
// one query, so the figure is exact to about 2 ms.
func BenchmarkUploadToReadable(b *testing.B) {
	const (
		rate     = 500
		duration = 20 * time.Second
		poll     = 2 * time.Millisecond
	)
	for b.Loop() {
		topo := startBenchTopology(b)
		env := []string{"CAIRN_WRITER_INSTANCE_ID=bench-writer", "CAIRN_API_AUTH=none"}
		w := testserver.StartRole(b, topo.bin, "write", topo.args(), env)
		s := testserver.StartRole(b, topo.bin, "serve", topo.args(), env)

		var mu sync.Mutex
		pending := map[string]pendingUpload{} // key → upload awaiting readability
		var lat bench.Samples
		stop := make(chan struct{})
		polled := make(chan struct{})
		client := &http.Client{Timeout: 5 * time.Second}
		go func() {
			defer close(polled)
			t := time.NewTicker(poll)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
				}
				mu.Lock()
				keys := make([]string, 0, len(pending))
				for k := range pending {
					keys = append(keys, k)
				}
				mu.Unlock()
				if len(keys) == 0 {
					continue
				}
				seen, err := readable(client, s.URL(), keys)
				if err != nil {
					continue
				}
				now := time.Now()
				mu.Lock()
				for k, ts := range seen {
					if p, ok := pending[k]; ok && ts.Equal(p.at) {
						lat = append(lat, now.Sub(p.acked))
						delete(pending, k)
					}
				}
				mu.Unlock()
			}
		}()

		var seq sync.Mutex
		next := 0
		meter := newCPUMeter(map[string]int{"serve": s.PID(), "writer": w.PID(), "redis": topo.redis.PID(), "broker": topo.kafka.PID()})
		res, err := bench.Run(context.Background(), bench.Load{Rate: rate, Duration: duration}, func(ctx context.Context) error {
			seq.Lock()
			i := next
			next++
			seq.Unlock()
			key := "u" + strconv.Itoa(i%5000)
			at := time.Unix(0, 0).Add(time.Duration(i+1) * time.Second).UTC() // newer for every upload
			body := uploadBody(key, i, at)
			resp, err := client.Post(s.URL()+"/v1/upload_features", "application/json", bytes.NewReader(body))
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusAccepted {
				return fmt.Errorf("upload: %s", resp.Status)
			}
			mu.Lock()
			pending[key] = pendingUpload{at: at, acked: time.Now()}
			mu.Unlock()
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		drain := time.Now().Add(30 * time.Second)
		for time.Now().Before(drain) {
			mu.Lock()
			n := len(pending)
			mu.Unlock()
			if n == 0 {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		close(stop)
		<-polled
		mu.Lock()
		left := len(pending)
		mu.Unlock()
		if left > 0 {
			b.Fatalf("%d acknowledged uploads were not readable 30s after the last", left)
		}
		if res.Errors > 0 {
			b.Fatalf("%d of %d uploads failed, the first: %v", res.Errors, res.Count, res.FirstError)
		}
		slices.Sort(lat)
		b.ReportMetric(float64(lat.Percentile(50).Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat.Percentile(99).Microseconds())/1000, "p99-ms")
		b.ReportMetric(float64(lat.Max().Microseconds())/1000, "max-ms")
		b.ReportMetric(float64(len(lat)), "uploads")
		meter.report(b, float64(len(lat)), "upload")
	}
}

type pendingUpload struct{ at, acked time.Time }

func uploadBody(key string, i int, at time.Time) []byte {
	inputs := map[string]any{"user.id": key}
	for _, v := range benchValues(i, i, at) {
		inputs[v.FQN] = v.Value
	}
	body, _ := json.Marshal(map[string]any{"inputs": inputs, "observed_at": at.Format(time.RFC3339Nano)})
	return body
}

// readable queries user.f0 of keys and returns the observed-at of each
// that has a value.
func readable(client *http.Client, base string, keys []string) (map[string]time.Time, error) {
	body, _ := json.Marshal(map[string]any{"inputs": map[string]any{"user.id": keys}, "outputs": []string{"user.f0"}})
	resp, err := client.Post(base+"/v1/query/online", "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var ans struct {
		Data []struct {
			PKey  string    `json:"pkey"`
			Value any       `json:"value"`
			TS    time.Time `json:"ts"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil {
		return nil, err
	}
	out := make(map[string]time.Time, len(ans.Data))
	for _, d := range ans.Data {
		if d.Value != nil {
			out[d.PKey] = d.TS
		}
	}
	return out, nil
}

// metricValue reads one series from a process's /metrics; 0 when absent.
func metricValue(b testing.TB, base, name string) float64 {
	f, _ := strconv.ParseFloat(strings.TrimSpace(metric(b, base, name)), 64)
	return f
}
