package e2e

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairnfs/cairn/internal/testserver"
)

// walkthrough is the README's local walk-through of the production
// topology, step for step, on free ports instead of the fixed ones below:
//
//	go build -o cairn ./cmd/cairn
//	go run ./internal/testserver/kafkabroker --dir ./kafka-data --port 9092 &
//	redis-server --port 6380 --save '' --appendonly yes --appendfsync always &
//	./cairn topics create --brokers 127.0.0.1:9092 \
//	    --replication-factor 1 --min-insync-replicas 1 --partitions 4
//	CAIRN_WRITER_INSTANCE_ID=writer-1 ./cairn write --addr 127.0.0.1:8090 \
//	    --store redis://127.0.0.1:6380/0 --brokers 127.0.0.1:9092 --features examples/features.yaml &
//	CAIRN_API_AUTH=none ./cairn serve --addr 127.0.0.1:8080 \
//	    --store redis://127.0.0.1:6380/0 --brokers 127.0.0.1:9092 --features examples/features.yaml &
//	CAIRN_API_AUTH=none ./cairn serve --addr 127.0.0.1:8081 \
//	    --store redis://127.0.0.1:6380/0 --brokers 127.0.0.1:9092 --features examples/features.yaml &
//	curl -s -X POST 127.0.0.1:8080/v1/upload_features \
//	    -d '{"inputs": {"user.id": "u1", "user.age": 31, "user.name": "Ada", "user.tags": ["new", "vip"]}}'
//	curl -s -X POST 127.0.0.1:8081/v1/query/online \
//	    -d '{"inputs": {"user.id": "u1"}, "outputs": ["user.age", "user.name", "user.tags"]}'
//	CAIRN_TOPIC_PARTITIONS=4 CAIRN_TOPIC_REPLICATION_FACTOR=1 CAIRN_TOPIC_MIN_INSYNC_REPLICAS=1 \
//	    ./cairn status --store redis://127.0.0.1:6380/0 --brokers 127.0.0.1:9092 --features examples/features.yaml
//
// It returns the two query servers and the writer, running, and the
// command line of `cairn status` against them.
func walkthrough(t *testing.T) (serves [2]*testserver.Role, writer *testserver.Role, status testserver.Command) {
	t.Helper()
	bin := testserver.BuildCairn(t)
	kafka := testserver.StartKafka(t, testserver.KafkaOptions{})
	redis := testserver.StartRedisProcess(t)
	createTopics(t, bin, kafka.Addr(), 4)
	args := []string{
		"--store", redis.URI(0),
		"--brokers", kafka.Addr(),
		"--features", filepath.Join(testserver.ModuleRoot(t), "examples", "features.yaml"),
	}
	writer = testserver.StartRole(t, bin, "write", args, []string{"CAIRN_WRITER_INSTANCE_ID=writer-1"})
	for i := range serves {
		serves[i] = testserver.StartRole(t, bin, "serve", args, []string{"CAIRN_API_AUTH=none"})
	}
	status = testserver.Command{Name: "cairn-status", Path: bin, Args: append([]string{"status"}, args...),
		Env: append(os.Environ(), "CAIRN_TOPIC_PARTITIONS=4", "CAIRN_TOPIC_REPLICATION_FACTOR=1", "CAIRN_TOPIC_MIN_INSYNC_REPLICAS=1")}
	return serves, writer, status
}

// The README's walk-through works as written: a value uploaded through one
// query server is read back through the other, and `cairn status` shows
// the writer in its group, every partition caught up, the topics as
// created and the store reachable.
func TestReadmeWalkthrough(t *testing.T) {
	serves, _, status := walkthrough(t)
	ctx, cancel := context.WithTimeout(context.Background(), readableWithin)
	defer cancel()
	code, body, err := post(ctx, serves[0].URL()+"/v1/upload_features", map[string]any{
		"inputs": map[string]any{"user.id": "u1", "user.age": 31, "user.name": "Ada", "user.tags": []string{"new", "vip"}},
	})
	if err != nil || code != http.StatusAccepted || strings.TrimSpace(string(body)) != `{"accepted":1}` {
		t.Fatalf("upload: %d %s %v; want 202 {\"accepted\":1}", code, body, err)
	}
	for {
		_, _, ages, _, err := queryAges(ctx, serves[1].URL(), []string{"u1"})
		if err == nil && ages["u1"] == 31 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("u1's age not readable through the second query server within %v (last: %v, %v)", readableWithin, ages, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The writer commits what it wrote: status converges on no lag.
	var last string
	for deadline := time.Now().Add(readableWithin); ; time.Sleep(200 * time.Millisecond) {
		p := testserver.StartProcess(t, status)
		code, err := p.Wait(30 * time.Second)
		last = p.Output()
		if err != nil || code != 0 {
			t.Fatalf("cairn status: exit %d, %v:\n%s", code, err, last)
		}
		if strings.Contains(last, "Lag of cairn.persist: 0 records") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cairn status shows lag after %v:\n%s", readableWithin, last)
		}
	}
	for _, want := range []string{"writer-1", "Dead letters in cairn.persist.dlq: 0 records", "reachable"} {
		if !strings.Contains(last, want) {
			t.Errorf("cairn status lacks %q:\n%s", want, last)
		}
	}
	if strings.Contains(last, " * ") || strings.Contains(last, "FAILED") {
		t.Errorf("cairn status reports a difference or a failure on the walk-through's own topology:\n%s", last)
	}
}
