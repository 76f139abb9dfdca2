package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/cairnfs/cairn/internal/config"
)

// topicsCreate runs `cairn topics create` in this process.
func topicsCreate(t *testing.T, brokers string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errw bytes.Buffer
	args = append([]string{"topics", "create", "--brokers", brokers, "--replication-factor", "1", "--min-insync-replicas", "1"}, args...)
	err = run(context.Background(), args, config.FromMap(nil), &out, &errw)
	return out.String(), errw.String(), err
}

func TestTopicsCreateReconciles(t *testing.T) {
	t.Parallel()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()[0]

	out, _, err := topicsCreate(t, brokers, "--partitions", "2", "--dry-run")
	if err != nil || strings.Count(out, ": would create: 2 partitions") != 3 {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	out, _, err = topicsCreate(t, brokers, "--partitions", "2")
	if err != nil || strings.Count(out, ": done") != 3 || strings.Contains(out, "would") {
		t.Fatalf("first run: %v\n%s", err, out)
	}
	out, _, err = topicsCreate(t, brokers, "--partitions", "2")
	if err != nil || out != "nothing to change: the topics have the requested settings\n" {
		t.Fatalf("second run: %v\n%s", err, out)
	}
	out, _, err = topicsCreate(t, brokers, "--partitions", "2", "--retention", "24h")
	if err != nil || !strings.Contains(out, "cairn.persist: set retention.ms 604800000 -> 86400000: done") {
		t.Fatalf("shorter retention: %v\n%s", err, out)
	}
	// More partitions: reported without the flag, added with it, and the
	// operator is warned that keys move.
	out, _, err = topicsCreate(t, brokers, "--partitions", "4", "--retention", "24h")
	if err != nil || !strings.Contains(out, "cairn.persist: has 2 partitions, 4 asked: left as it is") ||
		!strings.Contains(out, "nothing to change") {
		t.Fatalf("more partitions without --add-partitions: %v\n%s", err, out)
	}
	out, warn, err := topicsCreate(t, brokers, "--partitions", "4", "--retention", "24h", "--add-partitions")
	if err != nil || !strings.Contains(out, "cairn.persist: add partitions 2 -> 4: done") ||
		strings.Count(warn, "warning: adding partitions moves keys") != 1 {
		t.Fatalf("--add-partitions: %v\n%s\n%s", err, out, warn)
	}
	_, _, err = topicsCreate(t, brokers, "--partitions", "3", "--retention", "24h")
	if err == nil || !strings.Contains(err.Error(), "cairn.persist has 4 partitions and 3 were asked") {
		t.Fatalf("fewer partitions: %v", err)
	}
}
