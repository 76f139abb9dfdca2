package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/cairnfs/cairn/internal/config"
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
