package e2e

import (
	"context"
	"net/http"
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
//
// It returns the two query servers and the writer, running.
func walkthrough(t *testing.T) (serves [2]*testserver.Role, writer *testserver.Role) {
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
	return serves, writer
}

// The README's walk-through works as written: a value uploaded through one
// query server is read back through the other.
func TestReadmeWalkthrough(t *testing.T) {
	serves, _ := walkthrough(t)
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
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("u1's age not readable through the second query server within %v (last: %v, %v)", readableWithin, ages, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
