package queue

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// topicState is what the brokers hold of one topic.
type topicState struct {
	partitions, replicas int
	retention, minISR    string
}

// describe reads the state of cfg's topics from the brokers themselves.
func describe(t *testing.T, cfg Config) map[string]topicState {
	t.Helper()
	cl, err := kgo.NewClient(cfg.ClientOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx := context.Background()
	topics := []string{cfg.PersistTopic, cfg.MetricsTopic, cfg.DeadLetterTopic}
	details, err := adm.ListTopics(ctx, topics...)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]topicState{}
	for _, td := range details {
		if td.Err != nil {
			continue
		}
		out[td.Topic] = topicState{partitions: len(td.Partitions), replicas: td.Partitions.NumReplicas()}
	}
	for topic := range out {
		rcs, err := adm.DescribeTopicConfigs(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		s := out[topic]
		for _, c := range rcs[0].Configs {
			switch c.Key {
			case "retention.ms":
				s.retention = c.MaybeValue()
			case "min.insync.replicas":
				s.minISR = c.MaybeValue()
			}
		}
		out[topic] = s
	}
	return out
}

// lines is the changes as an operator reads them.
func lines(changes []TopicChange) string {
	var b strings.Builder
	for _, c := range changes {
		b.WriteString(c.String() + "\n")
	}
	return b.String()
}

func actions(changes []TopicChange) []TopicChange {
	return slices.DeleteFunc(slices.Clone(changes), func(c TopicChange) bool { return !c.Action() })
}

var base = TopicSpec{Partitions: 3, ReplicationFactor: 3, MinInsyncReplicas: 2, Retention: 168 * time.Hour}

func TestReconcileCreatesMissingTopics(t *testing.T) {
	t.Parallel()
	cfg := cluster(t, 3)
	ctx := context.Background()
	// One topic exists already, with the settings asked: only the others
	// are created.
	if _, err := CreateTopics(ctx, Config{Brokers: cfg.Brokers, PersistTopic: cfg.PersistTopic, MetricsTopic: "other.a", DeadLetterTopic: "other.b"}, base); err != nil {
		t.Fatal(err)
	}
	changes, err := ReconcileTopics(ctx, cfg, base, ReconcileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var created []string
	for _, c := range changes {
		if c.Kind != CreateTopic || !c.Applied {
			t.Errorf("unexpected change: %s", c)
		}
		created = append(created, c.Topic)
	}
	if want := []string{cfg.MetricsTopic, cfg.DeadLetterTopic}; !slices.Equal(created, want) {
		t.Errorf("created %v; want %v\n%s", created, want, lines(changes))
	}
	want := topicState{partitions: 3, replicas: 3, retention: "604800000", minISR: "2"}
	for topic, s := range describe(t, cfg) {
		if s != want {
			t.Errorf("%s: %+v; want %+v", topic, s, want)
		}
	}
}

func TestReconcileAltersRetentionAndMinISR(t *testing.T) {
	t.Parallel()
	cfg := cluster(t, 3)
	ctx := context.Background()
	if _, err := CreateTopics(ctx, cfg, base); err != nil {
		t.Fatal(err)
	}
	spec := base
	spec.Retention, spec.MinInsyncReplicas = 24*time.Hour, 1

	// A dry run plans both changes on every topic and makes none.
	plan, err := ReconcileTopics(ctx, cfg, spec, ReconcileOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan) != 6 {
		t.Fatalf("dry run planned %d changes; want 6 (2 per topic):\n%s", len(plan), lines(plan))
	}
	for _, c := range plan {
		if c.Applied || !strings.Contains(c.String(), "would set") {
			t.Errorf("dry run: %s", c)
		}
	}
	if got := describe(t, cfg)[cfg.PersistTopic]; got.retention != "604800000" || got.minISR != "2" {
		t.Fatalf("the dry run changed the topic: %+v", got)
	}

	changes, err := ReconcileTopics(ctx, cfg, spec, ReconcileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := lines(changes)
	for _, want := range []string{
		cfg.PersistTopic + ": set retention.ms 604800000 -> 86400000: done",
		cfg.DeadLetterTopic + ": set min.insync.replicas 2 -> 1: done",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for topic, s := range describe(t, cfg) {
		if s.retention != "86400000" || s.minISR != "1" || s.partitions != 3 {
			t.Errorf("%s after reconcile: %+v", topic, s)
		}
	}

	// Idempotent: a second run finds nothing to do.
	again, err := ReconcileTopics(ctx, cfg, spec, ReconcileOptions{})
	if err != nil || len(again) != 0 {
		t.Errorf("second run: %v\n%s", err, lines(again))
	}
}

func TestReconcilePartitions(t *testing.T) {
	t.Parallel()
	cfg := cluster(t, 3)
	ctx := context.Background()
	if _, err := CreateTopics(ctx, cfg, base); err != nil {
		t.Fatal(err)
	}
	more := base
	more.Partitions = 6

	// Without --add-partitions the difference is reported, not made.
	changes, err := ReconcileTopics(ctx, cfg, more, ReconcileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(actions(changes)) != 0 || len(changes) != 3 || changes[0].Kind != PartitionsKept {
		t.Errorf("without add-partitions:\n%s", lines(changes))
	}
	if got := describe(t, cfg)[cfg.PersistTopic].partitions; got != 3 {
		t.Fatalf("partitions added without being asked: %d", got)
	}

	changes, err = ReconcileTopics(ctx, cfg, more, ReconcileOptions{AddPartitions: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 3 || changes[0].Kind != AddPartitions || !changes[0].Applied {
		t.Errorf("with add-partitions:\n%s", lines(changes))
	}
	for topic, s := range describe(t, cfg) {
		if s.partitions != 6 {
			t.Errorf("%s: %d partitions; want 6", topic, s.partitions)
		}
	}

	// Fewer partitions than the topics have: an error naming the topic
	// and both counts, and nothing changes, not even the retention asked
	// for alongside.
	fewer := base
	fewer.Retention = 24 * time.Hour
	_, err = ReconcileTopics(ctx, cfg, fewer, ReconcileOptions{AddPartitions: true})
	var fe *FewerPartitionsError
	if !errors.As(err, &fe) || fe.Has != 6 || fe.Want != 3 ||
		!strings.Contains(err.Error(), cfg.PersistTopic+" has 6 partitions and 3 were asked") {
		t.Fatalf("asking for fewer partitions: %v", err)
	}
	if got := describe(t, cfg)[cfg.PersistTopic]; got.partitions != 6 || got.retention != "604800000" {
		t.Errorf("a refused reconcile changed the topic: %+v", got)
	}
}

func TestReconcileNeverChangesReplicationFactor(t *testing.T) {
	t.Parallel()
	cfg := cluster(t, 3)
	ctx := context.Background()
	one := TopicSpec{Partitions: 3, ReplicationFactor: 1, MinInsyncReplicas: 1, Retention: 168 * time.Hour}
	if _, err := CreateTopics(ctx, cfg, one); err != nil {
		t.Fatal(err)
	}
	spec := one
	spec.ReplicationFactor = 3
	changes, err := ReconcileTopics(ctx, cfg, spec, ReconcileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 3 || len(actions(changes)) != 0 {
		t.Fatalf("changes:\n%s", lines(changes))
	}
	for _, c := range changes {
		if c.Kind != ReplicationFactorKept || c.From != "1" || c.To != "3" || !strings.Contains(c.String(), "left as it is") {
			t.Errorf("change %s", c)
		}
	}
	if got := describe(t, cfg)[cfg.PersistTopic].replicas; got != 1 {
		t.Errorf("replication factor changed to %d", got)
	}

	// min.insync.replicas 2 on topics of one replica would refuse every
	// upload: refused before anything changes, the retention asked for
	// alongside included.
	spec.MinInsyncReplicas, spec.Retention = 2, 24*time.Hour
	_, err = ReconcileTopics(ctx, cfg, spec, ReconcileOptions{})
	var me *MinInsyncError
	if !errors.As(err, &me) || me.ReplicationFactor != 1 || me.MinInsyncReplicas != 2 ||
		!strings.Contains(err.Error(), cfg.PersistTopic+" has replication factor 1 and min.insync.replicas 2 was asked") {
		t.Fatalf("min.insync.replicas above the replication factor: %v", err)
	}
	if got := describe(t, cfg)[cfg.PersistTopic]; got.minISR != "1" || got.retention != "604800000" {
		t.Errorf("a refused reconcile changed the topic: %+v", got)
	}
}
