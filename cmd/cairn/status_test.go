package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/cairnfs/cairn/internal/config"
	"github.com/cairnfs/cairn/internal/metrics"
	"github.com/cairnfs/cairn/internal/node"
	"github.com/cairnfs/cairn/internal/queue"
	"github.com/cairnfs/cairn/internal/testserver"
)

// runStatusCmd runs `cairn status` in this process.
func runStatusCmd(t *testing.T, env map[string]string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := run(context.Background(), append([]string{"status", "--features", "../../examples/features.yaml"}, args...), config.FromMap(env), &out, &bytes.Buffer{})
	return out.String(), err
}

func TestStatus(t *testing.T) {
	t.Parallel()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()[0]
	if _, _, err := topicsCreate(t, brokers, "--partitions", "2"); err != nil {
		t.Fatal(err)
	}
	// What status expects: the settings the topics were created with,
	// but for one hour of retention.
	env := map[string]string{"CAIRN_TOPIC_PARTITIONS": "2", "CAIRN_TOPIC_REPLICATION_FACTOR": "1",
		"CAIRN_TOPIC_MIN_INSYNC_REPLICAS": "1", "CAIRN_TOPIC_RETENTION": "1h", "CAIRN_STATUS_TIMEOUT": "3s"}
	uri := fmt.Sprintf("redis://%s/0?prefix=cairn-status-%d:", testserver.Redis(t), time.Now().UnixNano())

	out, err := runStatusCmd(t, env, "--brokers", brokers, "--store", uri)
	if err != nil {
		t.Fatalf("cairn status: %v\n%s", err, out)
	}
	for _, want := range []string{
		"Writer group cairn-writer:",
		"Lag of cairn.persist: 0 records",
		"Dead letters in cairn.persist.dlq: 0 records",
		"Topics: 3 differences",
		"604800000 * [3600000]",
		"reachable",
		"no rollups",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}

	out, err = runStatusCmd(t, env, "--brokers", brokers, "--store", uri, "--json")
	var r struct {
		Topics struct {
			Mismatches int `json:"mismatches"`
		} `json:"topics"`
		Store struct {
			Reachable bool `json:"reachable"`
		} `json:"store"`
	}
	if err != nil || json.Unmarshal([]byte(out), &r) != nil || r.Topics.Mismatches != 3 || !r.Store.Reachable {
		t.Errorf("--json: %v %+v\n%s", err, r, out)
	}

	// The store unreachable: its section says so, the Kafka sections are
	// all there, and the command exits non-zero naming the section.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	start := time.Now()
	out, err = runStatusCmd(t, env, "--brokers", brokers, "--store", "redis://"+closed+"/0")
	if err == nil || !strings.Contains(err.Error(), "store") {
		t.Errorf("exit with the store unreachable: %v", err)
	}
	if took := time.Since(start); took > 4*time.Second {
		t.Errorf("took %v, past the 3s timeout", took)
	}
	if !strings.Contains(out, "Store redis://"+closed+"/0: UNREACHABLE:") || !strings.Contains(out, "Topics: 3 differences") ||
		!strings.Contains(out, "Lag of cairn.persist: 0 records") {
		t.Errorf("report with the store unreachable:\n%s", out)
	}
}

// A timeout that cannot work is refused before anything is read, whether
// it comes from the flag or the knob, and `cairn config` reports the knob.
func TestStatusTimeoutChecked(t *testing.T) {
	t.Parallel()
	if _, err := runStatusCmd(t, nil, "--timeout", "1ms"); err == nil || !strings.Contains(err.Error(), "--timeout 1ms: want at least 100ms") {
		t.Errorf("--timeout 1ms: %v", err)
	}
	if _, err := runStatusCmd(t, map[string]string{"CAIRN_STATUS_TIMEOUT": "soon"}); err == nil || !strings.Contains(err.Error(), "CAIRN_STATUS_TIMEOUT") {
		t.Errorf("CAIRN_STATUS_TIMEOUT=soon: %v", err)
	}
	err := run(context.Background(), []string{"config"}, config.FromMap(map[string]string{"CAIRN_STATUS_TIMEOUT": "1ms"}), &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "CAIRN_STATUS_TIMEOUT=1ms: want at least 100ms") {
		t.Errorf("cairn config with CAIRN_STATUS_TIMEOUT=1ms: %v", err)
	}
}

// The rollup section reads what the writers' metrics consumers keep in
// the store: records of the last complete minute, consumed from the
// metrics topic into Redis, show per namespace, the fleet row left out.
func TestStatusShowsRollups(t *testing.T) {
	t.Parallel()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()[0]
	if _, _, err := topicsCreate(t, brokers, "--partitions", "2"); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"CAIRN_TOPIC_PARTITIONS": "2", "CAIRN_TOPIC_REPLICATION_FACTOR": "1",
		"CAIRN_TOPIC_MIN_INSYNC_REPLICAS": "1", "CAIRN_TOPIC_RETENTION": "168h", "CAIRN_STATUS_TIMEOUT": "5s"}
	uri := fmt.Sprintf("redis://%s/0?prefix=cairn-status-%d:", testserver.Redis(t), time.Now().UnixNano())

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sc, err := node.StoreFromEnv(config.FromMap(env), uri)
	if err != nil {
		t.Fatal(err)
	}
	st, err := node.OpenStore(ctx, sc, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	qcfg := queue.Config{Brokers: []string{brokers}}
	qcfg.EnsureDefaults()
	cons, err := metrics.NewConsumer(qcfg, metrics.ConsumerConfig{Partitions: 2}, st, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	cctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- cons.Run(cctx) }()
	defer func() { stop(); <-done }()

	// The last complete minute, and the one after it in case the test
	// crosses into the next minute.
	prod, err := kgo.NewClient(kgo.SeedBrokers(brokers))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	last := time.Now().UTC().Truncate(time.Minute).Add(-time.Minute)
	for _, m := range []time.Time{last, last.Add(time.Minute)} {
		r := &metrics.Record{Source: "host-a/1/00000001", Start: m, Interval: 10 * time.Second,
			Fleet:      metrics.Fleet{StoreRequests: 100},
			Namespaces: []metrics.Namespace{{Name: "user", Queries: 42, CacheHits: 7, Errors: []metrics.CodeCount{{Code: "UPSTREAM_FAILED", Count: 3}}}}}
		if err := prod.ProduceSync(ctx, &kgo.Record{Topic: qcfg.MetricsTopic, Value: r.Append(nil)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	for {
		out, err := runStatusCmd(t, env, "--brokers", brokers, "--store", uri, "--json")
		var rep struct {
			Rollups struct {
				Lines []struct {
					Namespace string `json:"namespace"`
					Queries   int64  `json:"queries"`
					Errors    int64  `json:"errors"`
					CacheHits int64  `json:"cache_hits"`
				} `json:"lines"`
			} `json:"rollups"`
		}
		if jerr := json.Unmarshal([]byte(out), &rep); jerr != nil {
			t.Fatalf("cairn status --json: %v (%v)\n%s", jerr, err, out)
		}
		if l := rep.Rollups.Lines; len(l) == 1 {
			if l[0].Namespace != "user" || l[0].Queries != 42 || l[0].Errors != 3 || l[0].CacheHits != 7 {
				t.Fatalf("rollup line %+v, want user: 42 queries, 3 errors, 7 cache hits", l[0])
			}
			return
		} else if len(l) > 1 {
			t.Fatalf("%d rollup lines, want 1 (the fleet row left out):\n%s", len(l), out)
		}
		if ctx.Err() != nil {
			t.Fatalf("no rollup line within a minute; last report:\n%s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
