package node

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/cairnfs/cairn/internal/config"
	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/queue"
	"github.com/cairnfs/cairn/internal/store"
	"github.com/cairnfs/cairn/internal/store/embedded"
)

// The secondary cluster inherits the primary's security settings it does
// not set, prefixes its topics and keeps the group names.
func TestFailoverConfigInherits(t *testing.T) {
	env := config.FromMap(map[string]string{
		"CAIRN_API_AUTH":                      "none",
		"CAIRN_KAFKA_SASL_MECHANISM":          "SCRAM-SHA-256",
		"CAIRN_KAFKA_SASL_USERNAME":           "primary-user",
		"CAIRN_KAFKA_SASL_PASSWORD":           "primary-pass",
		"CAIRN_KAFKA_SASL_PLAIN_WITHOUT_TLS":  "true",
		"CAIRN_KAFKA_SECONDARY_BROKERS":       "b1:9096, b2:9096",
		"CAIRN_KAFKA_SECONDARY_TOPIC_PREFIX":  "primary-alias.",
		"CAIRN_KAFKA_SECONDARY_SASL_USERNAME": "secondary-user",
		"CAIRN_KAFKA_SECONDARY_SASL_PASSWORD": "secondary-pass",
		"CAIRN_KAFKA_ACTIVE":                  "secondary",
		"CAIRN_KAFKA_FAILOVER_REWIND":         "2m",
	})
	cfg, err := Load(Serve, env, flagsFor("redis://127.0.0.1:1/0"))
	if err != nil {
		t.Fatal(err)
	}
	fo := cfg.Failover
	s := fo.Secondary
	if fo.Active != queue.Secondary || fo.Rewind != 2*time.Minute || fo.AutoAfter != 0 {
		t.Errorf("active %q rewind %v auto %v", fo.Active, fo.Rewind, fo.AutoAfter)
	}
	if strings.Join(s.Brokers, ",") != "b1:9096,b2:9096" {
		t.Errorf("brokers %v", s.Brokers)
	}
	if s.SASLMechanism != "SCRAM-SHA-256" || s.SASLUser != "secondary-user" || s.SASLPassword != "secondary-pass" {
		t.Errorf("SASL %q %q %q: want the primary's mechanism, the secondary's user and password", s.SASLMechanism, s.SASLUser, s.SASLPassword)
	}
	if s.PersistTopic != "primary-alias.cairn.persist" || s.MetricsTopic != "primary-alias.cairn.metrics" || s.DeadLetterTopic != "primary-alias.cairn.persist.dlq" {
		t.Errorf("topics %q %q %q", s.PersistTopic, s.MetricsTopic, s.DeadLetterTopic)
	}
	if s.WriterGroup != cfg.Queue.WriterGroup {
		t.Errorf("group %q: want the primary's %q (the replicator keeps group names)", s.WriterGroup, cfg.Queue.WriterGroup)
	}
	if cfg.Queue.PersistTopic != "cairn.persist" || cfg.Queue.SASLUser != "primary-user" {
		t.Errorf("the primary changed: %q %q", cfg.Queue.PersistTopic, cfg.Queue.SASLUser)
	}
}

// Bad failover knobs are reported by name.
func TestFailoverConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"CAIRN_KAFKA_ACTIVE": "secondary"}, "CAIRN_KAFKA_ACTIVE=secondary needs CAIRN_KAFKA_SECONDARY_BROKERS"},
		{map[string]string{"CAIRN_KAFKA_ACTIVE": "tertiary"}, `CAIRN_KAFKA_ACTIVE="tertiary"`},
		{map[string]string{"CAIRN_KAFKA_FAILOVER_REWIND": "10ms"}, "CAIRN_KAFKA_FAILOVER_REWIND"},
		{map[string]string{"CAIRN_KAFKA_AUTO_FAILOVER_AFTER": "1m"}, "CAIRN_KAFKA_AUTO_FAILOVER_AFTER needs CAIRN_KAFKA_SECONDARY_BROKERS"},
		{map[string]string{"CAIRN_KAFKA_SECONDARY_BROKERS": "127.0.0.1:1"}, "names the primary's brokers"},
		{map[string]string{"CAIRN_KAFKA_SECONDARY_BROKERS": "b:1", "CAIRN_KAFKA_SECONDARY_TLS_CA_FILE": "/nonexistent"},
			"secondary Kafka cluster"},
	} {
		tc.env["CAIRN_API_AUTH"] = "none"
		_, err := Load(Serve, config.FromMap(tc.env), flagsFor("redis://127.0.0.1:1/0"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want an error containing %q", tc.env, err, tc.want)
		}
	}
}

// runNode runs a process of role against the two clusters until the test
// ends and returns its HTTP address.
func runNode(t *testing.T, role Role, env map[string]string, primary string) string {
	t.Helper()
	f := flagsFor("embedded://" + t.TempDir())
	f.Brokers = primary
	cfg, err := Load(role, config.FromMap(env), f)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, cfg, Options{Log: slog.New(slog.DiscardHandler), OnListen: func(a string) { addr <- a }})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s: %v", role, err)
		}
	})
	select {
	case a := <-addr:
		return a
	case err := <-done:
		t.Fatalf("%s stopped: %v", role, err)
	case <-time.After(20 * time.Second):
		t.Fatalf("%s did not listen", role)
	}
	return ""
}

// Every role with Kafka serves the failover endpoint on its HTTP address
// with the admin scope, and a POST moves every Kafka client of the process.
func TestFailoverEndpointOfEachRole(t *testing.T) {
	var brokers [2]string
	for i := range brokers {
		c, err := kfake.NewCluster(kfake.NumBrokers(1))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		brokers[i] = c.ListenAddrs()[0]
		qc := queue.Config{Brokers: c.ListenAddrs()}
		qc.EnsureDefaults()
		if _, err := queue.CreateTopics(context.Background(), qc, queue.TopicSpec{Partitions: 2, ReplicationFactor: 1, MinInsyncReplicas: 1}); err != nil {
			t.Fatal(err)
		}
	}
	keys := adminKeysFile(t)
	env := map[string]string{
		"CAIRN_KAFKA_SECONDARY_BROKERS": brokers[1],
		"CAIRN_API_KEYS_FILE":           keys,
		"CAIRN_WRITER_INSTANCE_ID":      "",
	}
	for _, tc := range []struct {
		role   Role
		client string
	}{{Serve, "producer"}, {Write, "writer"}, {Write, "metrics consumer"}} {
		t.Run(tc.role.String(), func(t *testing.T) {
			addr := runNode(t, tc.role, env, brokers[0])
			url := "http://" + addr + "/v1/admin/kafka/active"
			req, _ := http.NewRequest("POST", url, strings.NewReader(`{"cluster": "secondary"}`))
			if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 401 {
				t.Fatalf("without a key: %v %v", resp, err)
			}
			req, _ = http.NewRequest("POST", url, strings.NewReader(`{"cluster": "secondary"}`))
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var got struct {
				Cluster string            `json:"cluster"`
				Clients map[string]string `json:"clients"`
			}
			body, _ := io.ReadAll(resp.Body)
			if err := json.Unmarshal(body, &got); err != nil || resp.StatusCode != 200 {
				t.Fatalf("%d %v: %s", resp.StatusCode, err, body)
			}
			if got.Cluster != "secondary" || got.Clients[tc.client] != "secondary" {
				t.Errorf("answer %+v: want the %s on the secondary", got, tc.client)
			}
		})
	}
}

// After a switch of Kafka cluster, reads go past the Bloom filters to the
// store: filters fed from the old cluster could miss keys the writers now
// write from the new one.
func TestFilterSwitchReadsStoreAfterSwitch(t *testing.T) {
	reg, err := feature.Parse("t.yaml", []byte("namespaces:\n  - name: user\n    primary_key: id\n    features: {id: string, age: int}\n"))
	if err != nil {
		t.Fatal(err)
	}
	ns, _ := reg.Namespace("user")
	age, _ := reg.Lookup("user.age")
	open := func(v int64) *embedded.Store {
		st, err := embedded.Open(t.TempDir(), embedded.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		if err := st.Write(context.Background(), []store.EntityWrite{{Namespace: ns, Key: "u1",
			Values: []store.Value{{Feature: age, Value: v, ObservedAt: time.Unix(1, 0)}}}}); err != nil {
			t.Fatal(err)
		}
		return st
	}
	fs := &filterSwitch{filtered: open(1), direct: open(2), log: slog.New(slog.DiscardHandler)}
	read := func() any {
		rows, err := fs.ReadInto(context.Background(), ns, []string{"u1"}, []*feature.Feature{age}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return rows[0].Cells[0].Value
	}
	if v := read(); v != int64(1) {
		t.Errorf("before the switch read %v from the wrong path", v)
	}
	f, err := queue.NewFailover(queue.FailoverConfig{Primary: queue.Config{Brokers: []string{"a:1"}}, Secondary: queue.Config{Brokers: []string{"b:1"}}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.Register("bloom filters", fs.Switch)
	if err := f.Switch(context.Background(), queue.Secondary); err != nil {
		t.Fatal(err)
	}
	if v := read(); v != int64(2) {
		t.Errorf("after the switch read %v: want the store's", v)
	}
}

// cairn write serves the regional switch of its store writes on its own
// address, behind the admin scope; a writer of a store other than a
// DynamoDB global table refuses standby, naming the field.
func TestStoreWritesEndpoint(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	qc := queue.Config{Brokers: c.ListenAddrs()}
	qc.EnsureDefaults()
	if _, err := queue.CreateTopics(context.Background(), qc, queue.TopicSpec{Partitions: 2, ReplicationFactor: 1, MinInsyncReplicas: 1}); err != nil {
		t.Fatal(err)
	}
	keys := adminKeysFile(t)
	addr := runNode(t, Write, map[string]string{"CAIRN_API_KEYS_FILE": keys, "CAIRN_WRITER_INSTANCE_ID": ""}, c.ListenAddrs()[0])
	call := func(method, body, tok string) (int, string) {
		req, _ := http.NewRequest(method, "http://"+addr+"/v1/admin/writer/store-writes", strings.NewReader(body))
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := call("POST", `{"store_writes": "active"}`, ""); code != 401 {
		t.Errorf("without a key: %d %s, want 401", code, body)
	}
	if code, body := call("POST", `{"store_writes": "standby"}`, token); code != 400 || !strings.Contains(body, `field \"store_writes\"`) || !strings.Contains(body, "global table") {
		t.Errorf("standby on a store that is no global table: %d %s, want 400 naming the field", code, body)
	}
	if code, body := call("POST", `{"store_writes": "active"}`, token); code != 200 || !strings.Contains(body, `"store_writes":"active"`) {
		t.Errorf("active: %d %s, want 200 active", code, body)
	}
	if code, body := call("GET", "", token); code != 200 || !strings.Contains(body, `"store_writes":"active"`) {
		t.Errorf("GET: %d %s, want 200 active", code, body)
	}
}

// token is the admin token of adminKeysFile.
const token = "cairn_ops-token"

// adminKeysFile writes a keys file of one key, token's, with the admin
// scope, and returns its path.
func adminKeysFile(t *testing.T) string {
	t.Helper()
	sum := sha256.Sum256([]byte(token))
	keys := filepath.Join(t.TempDir(), "keys.yaml")
	if err := os.WriteFile(keys, []byte("keys:\n  - {name: ops, sha256: "+hex.EncodeToString(sum[:])+", scopes: [admin]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return keys
}
