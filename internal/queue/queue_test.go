package queue

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

func cluster(t *testing.T, brokers int) Config {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(brokers))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cfg := Config{Brokers: c.ListenAddrs()}
	cfg.EnsureDefaults()
	return cfg
}

func TestCreateTopics(t *testing.T) {
	cfg := cluster(t, 3)
	ctx := context.Background()
	res, err := CreateTopics(ctx, cfg, TopicSpec{Retention: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 3 || !res[0].Created || !res[1].Created || !res[2].Created {
		t.Fatalf("first run: %+v", res)
	}
	cl, _ := kgo.NewClient(cfg.ClientOpts()...)
	defer cl.Close()
	adm := kadm.NewClient(cl)
	details, err := adm.ListTopics(ctx, cfg.PersistTopic, cfg.MetricsTopic, cfg.DeadLetterTopic)
	if err != nil {
		t.Fatal(err)
	}
	for _, td := range details {
		if len(td.Partitions) != 12 || td.Partitions.NumReplicas() != 3 {
			t.Errorf("%s: %d partitions, %d replicas; want the defaults 12 and 3", td.Topic, len(td.Partitions), td.Partitions.NumReplicas())
		}
	}
	rc, err := adm.DescribeTopicConfigs(ctx, cfg.PersistTopic)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, c := range rc[0].Configs {
		if c.Value != nil {
			got[c.Key] = *c.Value
		}
	}
	if got["retention.ms"] != "86400000" || got["min.insync.replicas"] != "2" {
		t.Errorf("configs retention.ms=%q min.insync.replicas=%q", got["retention.ms"], got["min.insync.replicas"])
	}
	// A second run changes nothing and says so.
	res, err = CreateTopics(ctx, cfg, TopicSpec{})
	if err != nil || res[0].Created {
		t.Fatalf("second run: %+v, %v", res, err)
	}
}

func TestTopicSpecValidate(t *testing.T) {
	s := TopicSpec{Partitions: -1, ReplicationFactor: 2, MinInsyncReplicas: 3, Retention: time.Minute}
	err := s.Validate()
	for _, want := range []string{"partitions", "min.insync.replicas 3", "retention"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v; want mention of %q", err, want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	c := Config{SASLMechanism: "GSSAPI", SASLUser: "u", ProduceTimeout: time.Millisecond, MaxRecordBytes: 10}
	err := c.Validate()
	for _, want := range []string{"no Kafka brokers", "GSSAPI", "without a password", "produce timeout", "max record bytes"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v; want mention of %q", err, want)
		}
	}
}

func TestPersist(t *testing.T) {
	cfg := cluster(t, 1)
	cfg.MaxRecordBytes = 2048
	ctx := context.Background()
	if _, err := CreateTopics(ctx, cfg, TopicSpec{Partitions: 1, ReplicationFactor: 1, MinInsyncReplicas: 1}); err != nil {
		t.Fatal(err)
	}
	p, err := NewProducer(cfg, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	rec := &Record{Kind: KindUpload, Entities: []Entity{{Namespace: "user", Key: "u1",
		Values: []Value{{FQN: "user.name", Value: "ada", ObservedAt: time.Unix(1, 0)}}}}}
	if err := p.Persist(ctx, EntityKey("user", "u1"), rec); err != nil {
		t.Fatal(err)
	}
	rec.Entities[0].Values[0].Value = strings.Repeat("x", 4096)
	if err := p.Persist(ctx, nil, rec); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized record: %v, want ErrTooLarge", err)
	}

	cl, _ := kgo.NewClient(append(cfg.ClientOpts(), kgo.ConsumeTopics(cfg.PersistTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	defer cl.Close()
	fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	recs := cl.PollFetches(fctx).Records()
	if len(recs) != 1 || string(recs[0].Key) != "user\x00u1" {
		t.Fatalf("persist topic holds %d records", len(recs))
	}
	got, err := DecodeRecord(recs[0].Value)
	if err != nil || got.Entities[0].Values[0].Value != "ada" {
		t.Fatalf("decoded %+v, %v", got, err)
	}
}

// Regression: CreateTopics (`cairn topics create`, `cairn dev`) waited
// without end when no broker answered, retrying in silence. It must fail
// within its timeout with one error naming the cause.
func TestCreateTopicsUnreachable(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nothing := ln.Addr().String()
	ln.Close() // nothing listens there now

	hungCfg, _, hung := proxiedCluster(t)
	hung.Hang()
	t.Cleanup(hung.Resume)
	cutCfg, _, cut := proxiedCluster(t)
	cut.Cut()

	for _, tc := range []struct {
		name    string
		brokers []string
		// causes: the error names one of them (a cut connection reads
		// as an end of file or as a reset, as the kernel has it).
		causes []string
	}{
		{"nothing listening", []string{nothing}, []string{"connection refused"}},
		{"connections closed", cutCfg.Brokers, []string{"closed the connection", "connection reset by peer"}},
		{"hung broker", hungCfg.Brokers, []string{"no answer within 2s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			spec := TopicSpec{Partitions: 1, ReplicationFactor: 1, MinInsyncReplicas: 1, Timeout: 2 * time.Second}
			start := time.Now()
			answer := make(chan error, 1)
			go func() {
				_, err := CreateTopics(context.Background(), Config{Brokers: tc.brokers}, spec)
				answer <- err
			}()
			select {
			case err := <-answer:
				if took := time.Since(start); took > spec.Timeout+2*time.Second {
					t.Errorf("CreateTopics took %v; want at most %v", took, spec.Timeout+2*time.Second)
				}
				named := err != nil && slices.ContainsFunc(tc.causes, func(c string) bool { return strings.Contains(err.Error(), c) })
				if !named || !strings.Contains(err.Error(), tc.brokers[0]) {
					t.Errorf("CreateTopics() = %v; want an error naming the broker and one of %q", err, tc.causes)
				}
			case <-time.After(spec.Timeout + 10*time.Second):
				t.Fatalf("CreateTopics still waiting after %v", time.Since(start))
			}
		})
	}
}
