package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/cairnfs/cairn/internal/queue"
	"github.com/cairnfs/cairn/internal/testserver"
	"github.com/cairnfs/cairn/internal/testserver/gtreplicator"
)

// What broke: a standby writer (CAIRN_WRITER_STORE_WRITES=standby, the
// passive region of a DynamoDB global table) joined its consumer group
// and never polled, so with one active and one standby writer in one
// group the partitions given to the standby were consumed by no one.
//
// Two `cairn write` processes against a kafkabroker process and
// moto_server, one active and one standby, in one group: every partition
// is consumed and committed by the active one and the group has one
// member; switched active through its admin endpoint, the standby joins
// and takes its share, and records produced after are all committed.
//
// A standby writer needs DYNAMODB_GLOBAL_TABLE_REGIONS, whose start
// checks that DescribeTable lists the other region's replica, which moto
// never does. The test puts a proxy at the network seam, between the
// writers and moto, that adds the replica (ACTIVE) to DescribeTable's
// answer, as DynamoDB's would read; nothing in cairn is bent for the test.
func TestStandbyWriterIsNoGroupMember(t *testing.T) {
	const (
		table      = "cairn-standby"
		partitions = 4
	)
	bin := testserver.BuildCairn(t)
	features := filepath.Join(t.TempDir(), "features.yaml")
	if err := os.WriteFile(features, []byte(featuresYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	kafka := testserver.StartKafka(t, testserver.KafkaOptions{Partitions: partitions})
	createTopics(t, bin, kafka.Addr(), partitions)
	moto := testserver.StartMotoProcess(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The table, with the stream of NEW_AND_OLD_IMAGES a global table has.
	gt := gtreplicator.New(gtreplicator.Region{Name: "us-east-1", Endpoint: moto.Endpoint()},
		gtreplicator.Region{Name: "us-west-2", Endpoint: moto.Endpoint()}, gtreplicator.Options{Table: table})
	if err := gt.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	proxy := replicaProxy(t, moto.Endpoint(), "us-west-2")
	lock := filepath.Join(t.TempDir(), "features.lock")
	p := testserver.StartProcess(t, testserver.Command{Name: "cairn-features-lock", Path: bin,
		Args: []string{"features", "lock", "--features", features, "--lock", lock}})
	if code, err := p.Wait(30 * time.Second); err != nil || code != 0 {
		t.Fatalf("cairn features lock: exit %d, %v:\n%s", code, err, p.Output())
	}

	env := append(roleEnv(), "CAIRN_FEATURES_LOCK="+lock, "DYNAMODB_GLOBAL_TABLE_REGIONS=us-east-1,us-west-2",
		"AWS_REGION=us-east-1", "AWS_ACCESS_KEY_ID=testing", "AWS_SECRET_ACCESS_KEY=testing", "AWS_EC2_METADATA_DISABLED=true")
	args := []string{"--store", "dynamodb:///" + table + "?region=us-east-1&endpoint=" + proxy, "--brokers", kafka.Addr(), "--features", features}
	testserver.StartRole(t, bin, "write", args, append(env, "CAIRN_WRITER_INSTANCE_ID=writer-a"))
	// A standby writer's /readyz answers 503 (standby): started as a
	// process, ready once its /healthz answers.
	standby, _ := startStandbyWriter(t, bin, args, append(env, "CAIRN_WRITER_INSTANCE_ID=writer-b", "CAIRN_WRITER_STORE_WRITES=standby"))

	cl, err := kgo.NewClient(kgo.SeedBrokers(kafka.Addr()), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	var qcfg queue.Config
	qcfg.EnsureDefaults()
	produced := map[int32]int64{}
	produce := func(prefix string, perPartition int) {
		t.Helper()
		for p := range int32(partitions) {
			for i := range perPartition {
				v, err := queue.AppendRecord(nil, &queue.Record{Kind: queue.KindUpload, Entities: []queue.Entity{{
					Namespace: "user", Key: fmt.Sprintf("%s-%d-%d", prefix, p, i),
					Values: []queue.Value{{FQN: "user.age", Value: int64(i), ObservedAt: time.Now()}},
				}}})
				if err != nil {
					t.Fatal(err)
				}
				if err := cl.ProduceSync(ctx, &kgo.Record{Topic: qcfg.PersistTopic, Partition: p, Value: v}).FirstErr(); err != nil {
					t.Fatal(err)
				}
				produced[p]++
			}
		}
	}
	allCommitted := func() bool {
		offs, err := adm.FetchOffsets(ctx, qcfg.WriterGroup)
		if err != nil {
			return false
		}
		for p, n := range produced {
			if o, ok := offs.Lookup(qcfg.PersistTopic, p); !ok || o.At != n {
				return false
			}
		}
		return true
	}
	members := func() map[string][]int32 {
		d, err := adm.DescribeGroups(ctx, qcfg.WriterGroup)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string][]int32{}
		for _, m := range d[qcfg.WriterGroup].Members {
			var parts []int32
			if a, ok := m.Assigned.AsConsumer(); ok {
				for _, tp := range a.Topics {
					parts = append(parts, tp.Partitions...)
				}
			}
			slices.Sort(parts)
			out[*m.InstanceID] = parts
		}
		return out
	}
	waitFor := func(what string, within time.Duration, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(within)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("not within %v: %s (group: %v)", within, what, members())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	produce("before", 5)
	waitFor("every partition committed by the active writer", 30*time.Second, allCommitted)
	if m := members(); len(m) != 1 || len(m["writer-a"]) != partitions {
		t.Fatalf("group members %v: want writer-a alone, with all %d partitions", m, partitions)
	}
	if got := metric(t, standby, "cairn_writer_store_writes_active"); got != "0" {
		t.Errorf("standby writer: cairn_writer_store_writes_active %s, want 0", got)
	}

	resp, err := http.Post(standby+"/v1/admin/writer/store-writes", "application/json", strings.NewReader(`{"store_writes":"active"}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "active") {
		t.Fatalf("POST store-writes active: %s %s", resp.Status, body)
	}
	waitFor("both writers in the group with a share each", 30*time.Second, func() bool {
		m := members()
		return len(m) == 2 && len(m["writer-a"]) > 0 && len(m["writer-b"]) > 0
	})
	produce("after", 5)
	waitFor("every partition committed by both writers", 30*time.Second, allCommitted)
	if got := metric(t, standby, "cairn_writer_store_writes_active"); got != "1" {
		t.Errorf("activated writer: cairn_writer_store_writes_active %s, want 1", got)
	}
	if got := metric(t, standby, `cairn_writer_records_total{outcome="written"}`); got == "" || got == "0" {
		t.Errorf("activated writer wrote %q records: want its share", got)
	}
}

// replicaProxy serves moto at endpoint through a proxy whose DescribeTable
// answers list a replica in region, ACTIVE, as DynamoDB's answer for a
// global table does; it returns the proxy's URL.
func replicaProxy(t *testing.T, endpoint, region string) string {
	t.Helper()
	target, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ModifyResponse = func(resp *http.Response) error {
		if !strings.HasSuffix(resp.Request.Header.Get("X-Amz-Target"), ".DescribeTable") || resp.StatusCode != http.StatusOK {
			return nil
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		var answer map[string]map[string]any
		if err := json.Unmarshal(b, &answer); err != nil {
			return fmt.Errorf("DescribeTable answer: %w", err)
		}
		answer["Table"]["Replicas"] = []map[string]string{{"RegionName": region, "ReplicaStatus": "ACTIVE"}}
		if b, err = json.Marshal(answer); err != nil {
			return err
		}
		resp.Body = io.NopCloser(bytes.NewReader(b))
		resp.ContentLength = int64(len(b))
		resp.Header.Set("Content-Length", strconv.Itoa(len(b)))
		resp.Header.Set("X-Amz-Crc32", strconv.FormatUint(uint64(crc32.ChecksumIEEE(b)), 10))
		return nil
	}
	srv := httptest.NewServer(rp)
	t.Cleanup(srv.Close)
	return srv.URL
}

// startStandbyWriter starts `cairn write` on a free port and waits until
// its /healthz answers 200; it returns the writer's base URL and process.
func startStandbyWriter(t *testing.T, bin string, args, env []string) (string, *testserver.Process) {
	t.Helper()
	addr := freeAddr(t)
	p := testserver.StartProcess(t, testserver.Command{Name: "cairn-write-standby", Path: bin,
		Args: append([]string{"write", "--addr", addr}, args...), Env: append(outsideEnv(), env...)})
	base := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base, p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("standby writer not healthy within 30s:\n%s", p.Output())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// metric returns the value of the series named series (with its labels,
// as exposed) on base's /metrics, or "" when it is absent.
func metric(t testing.TB, base, series string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v
		}
	}
	return ""
}
