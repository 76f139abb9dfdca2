// Package status is `cairn status`: one look at a deployment for an
// operator at a terminal. It collects, at once and each on its own, the
// persistence writers' consumer group (members, the partitions each is
// assigned, and the lag of every partition), the number of records in the
// dead-letter topic, the configuration of each topic against the expected
// one, whether the online store answers, and the metrics rollup of the last
// minute.
//
// Every section is reported whatever happens to the others: with Kafka down
// the store's section is still collected, and a section that failed says why
// in one line. [Collect] returns within its timeout even when a dependency
// does not answer; a section still waiting then reports that it got no
// answer in time.
package status

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/cairnfs/cairn/internal/queue"
)

// Config is what Collect looks at.
type Config struct {
	// Queue names the brokers, the topics and the writers' group, and
	// holds the connection's TLS and SASL settings (after ReadFiles).
	Queue queue.Config
	// QueueErr is a problem with the Kafka configuration found before
	// Collect: the Kafka sections report it and are not collected.
	// Default none.
	QueueErr error
	// Expected are the topic settings the topics should have (those of
	// `cairn topics create`). Zero fields take TopicSpec's defaults.
	Expected queue.TopicSpec

	// Store names the online store as shown to the operator (a URI with
	// its password redacted). Default none.
	Store string
	// StoreProbe opens the store and reads its reserved health key
	// (health.ProbeKey); nil error is reachable. Nil when no store is
	// configured; StoreErr then says why.
	StoreProbe func(ctx context.Context) error
	// StoreErr is a problem with the store's configuration found before
	// Collect: the store section reports it. Default none.
	StoreErr error

	// Rollups gives the metrics rollups of a time range. Nil when none is
	// available: the section then says "no rollups". Default nil.
	Rollups Rollups

	// Timeout bounds Collect as a whole. Default 10s.
	Timeout time.Duration
	// Now is the clock, for the rollups' minute. Default time.Now.
	Now func() time.Time
}

// EnsureDefaults fills zero fields with their defaults.
func (c *Config) EnsureDefaults() {
	c.Queue.EnsureDefaults()
	c.Expected.EnsureDefaults()
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports every problem with c.
func (c *Config) Validate() error {
	if c.Timeout < 100*time.Millisecond {
		return fmt.Errorf("status: timeout %v: want at least 100ms", c.Timeout)
	}
	return nil
}

// Rollups is where the metrics rollups come from: the metrics role's
// reader of the rollups it keeps in the online store, adapted.
type Rollups interface {
	// Rollups returns the rollups of the minutes starting in [from, to),
	// one per namespace and minute.
	Rollups(ctx context.Context, from, to time.Time) ([]Rollup, error)
}

// RollupsFunc adapts a function to [Rollups].
type RollupsFunc func(ctx context.Context, from, to time.Time) ([]Rollup, error)

// Rollups calls f.
func (f RollupsFunc) Rollups(ctx context.Context, from, to time.Time) ([]Rollup, error) {
	return f(ctx, from, to)
}

// Rollup is one namespace's queries of one minute, fleet-wide.
type Rollup struct {
	Namespace string    `json:"namespace"`
	Minute    time.Time `json:"minute"`
	// Queries counts the queries; Errors those that failed.
	Queries int64 `json:"queries"`
	Errors  int64 `json:"errors"`
	// CacheHits counts the cells (one feature of one entity) answered by
	// the cache; BloomShortCircuits the entities the Bloom filter
	// answered absent without a store read.
	CacheHits          int64 `json:"cache_hits"`
	BloomShortCircuits int64 `json:"bloom_short_circuits"`
	// P50, P99 are latency quantiles in seconds.
	P50 float64 `json:"p50_seconds"`
	P99 float64 `json:"p99_seconds"`
}

// Report is what Collect found. Each section's Error is set when the
// section could not be collected, and says why.
type Report struct {
	Time       time.Time     `json:"time"`
	Brokers    []string      `json:"brokers"`
	Group      Group         `json:"writer_group"`
	DeadLetter DeadLetter    `json:"dead_letter"`
	Topics     TopicsSection `json:"topics"`
	Store      Store         `json:"store"`
	Rollups    RollupSection `json:"rollups"`
}

// Group is the persistence writers' consumer group.
type Group struct {
	Name string `json:"name"`
	// State is the group's state as the coordinator has it (Stable,
	// PreparingRebalance, Empty, Dead ...).
	State   string   `json:"state,omitempty"`
	Members []Member `json:"members"`
	// Topic is the persistence topic, whose lag Lag holds.
	Topic string         `json:"topic"`
	Lag   []PartitionLag `json:"lag"`
	// TotalLag sums the partitions' lag.
	TotalLag int64  `json:"total_lag"`
	Error    string `json:"error,omitempty"`
}

// Member is one writer in the group.
type Member struct {
	MemberID   string `json:"member_id"`
	InstanceID string `json:"instance_id,omitempty"`
	ClientID   string `json:"client_id"`
	ClientHost string `json:"client_host"`
	// Partitions of the persistence topic assigned to it.
	Partitions []int32 `json:"partitions"`
}

// PartitionLag is how far the group is behind on one partition.
type PartitionLag struct {
	Partition int32 `json:"partition"`
	// Committed is the group's committed offset, -1 when it has none.
	Committed int64 `json:"committed"`
	// Start and End are the partition's first retained offset and the
	// offset the next record gets.
	Start int64 `json:"start"`
	End   int64 `json:"end"`
	// Lag is End − Committed, or End − Start without a commit: the
	// records not yet written to the store.
	Lag int64 `json:"lag"`
	// Member is the instance id (or else member id) of the writer
	// assigned the partition; empty when none is.
	Member string `json:"member,omitempty"`
	Error  string `json:"error,omitempty"`
}

// DeadLetter is the dead-letter topic's content.
type DeadLetter struct {
	Topic string `json:"topic"`
	// Records counts the records retained: the sum over partitions of end
	// minus start offsets.
	Records int64  `json:"records"`
	Error   string `json:"error,omitempty"`
}

// TopicsSection is every topic against its expected settings.
type TopicsSection struct {
	Topics []Topic `json:"topics"`
	// Mismatches counts the settings that differ from the expected ones,
	// and the missing topics.
	Mismatches int    `json:"mismatches"`
	Error      string `json:"error,omitempty"`
}

// Topic is one topic's settings.
type Topic struct {
	Name string `json:"name"`
	// Role is persist, metrics or dead-letter.
	Role     string    `json:"role"`
	Missing  bool      `json:"missing,omitempty"`
	Settings []Setting `json:"settings,omitempty"`
	Error    string    `json:"error,omitempty"`
}

// Setting is one setting of a topic, found and expected.
type Setting struct {
	Name     string `json:"name"`
	Value    string `json:"value"`
	Expected string `json:"expected"`
	Mismatch bool   `json:"mismatch,omitempty"`
}

// Store is whether the online store answers.
type Store struct {
	Name      string `json:"name"`
	Reachable bool   `json:"reachable"`
	// Seconds is how long opening the store and the read took.
	Seconds float64 `json:"seconds"`
	Error   string  `json:"error,omitempty"`
}

// RollupSection is the metrics rollup of the last complete minute.
type RollupSection struct {
	From  time.Time `json:"from"`
	To    time.Time `json:"to"`
	Lines []Rollup  `json:"lines"`
	// Absent is set when no rollup reader is available.
	Absent bool   `json:"absent,omitempty"`
	Error  string `json:"error,omitempty"`
}

// Collect collects every section of the report, concurrently, within
// cfg.Timeout. It always returns a report; the error is only cfg's.
func Collect(ctx context.Context, cfg Config) (*Report, error) {
	cfg.EnsureDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	now := cfg.Now()
	r := &Report{
		Time:       now.UTC(),
		Brokers:    cfg.Queue.Brokers,
		Group:      Group{Name: cfg.Queue.WriterGroup, Topic: cfg.Queue.PersistTopic},
		DeadLetter: DeadLetter{Topic: cfg.Queue.DeadLetterTopic},
		Store:      Store{Name: cfg.Store},
	}
	to := now.UTC().Truncate(time.Minute)
	r.Rollups.From, r.Rollups.To = to.Add(-time.Minute), to

	// Each section is collected by a goroutine of its own and handed
	// back on a channel; a section not back by the deadline reports
	// that, and its goroutine is left to end with ctx.
	kafkaDone := make(chan kafkaSections, 1)
	storeDone := make(chan Store, 1)
	rollupsDone := make(chan RollupSection, 1)
	go func() { kafkaDone <- collectKafka(ctx, cfg, r.Group, r.DeadLetter) }()
	go func() { storeDone <- collectStore(ctx, cfg, r.Store) }()
	go func() { rollupsDone <- collectRollups(ctx, cfg, r.Rollups) }()

	// A grace past the deadline lets a section that failed because of it
	// report its own error, which names the cause better than ours.
	grace := time.NewTimer(cfg.Timeout + 250*time.Millisecond)
	defer grace.Stop()
	late := fmt.Sprintf("no answer within %v", cfg.Timeout)
	for pending := 3; pending > 0; pending-- {
		select {
		case k := <-kafkaDone:
			r.Group, r.DeadLetter, r.Topics = k.group, k.deadLetter, k.topics
			kafkaDone = nil
		case s := <-storeDone:
			r.Store = s
			storeDone = nil
		case s := <-rollupsDone:
			r.Rollups = s
			rollupsDone = nil
		case <-grace.C:
			if kafkaDone != nil {
				r.Group.Error, r.DeadLetter.Error, r.Topics.Error = late, late, late
			}
			if storeDone != nil {
				r.Store.Error = late
			}
			if rollupsDone != nil {
				r.Rollups.Error = late
			}
			return r, nil
		}
	}
	return r, nil
}

// collectStore opens the store and reads its health key.
func collectStore(ctx context.Context, cfg Config, s Store) Store {
	switch {
	case cfg.StoreErr != nil:
		s.Error = cfg.StoreErr.Error()
		return s
	case cfg.StoreProbe == nil:
		s.Error = "no online store configured (--store or CAIRN_ONLINE_STORE)"
		return s
	}
	start := time.Now()
	err := cfg.StoreProbe(ctx)
	s.Seconds = time.Since(start).Seconds()
	if err != nil {
		s.Error = err.Error()
		return s
	}
	s.Reachable = true
	return s
}

// collectRollups reads the last complete minute's rollups.
func collectRollups(ctx context.Context, cfg Config, s RollupSection) RollupSection {
	if cfg.Rollups == nil {
		s.Absent = true
		return s
	}
	lines, err := cfg.Rollups.Rollups(ctx, s.From, s.To)
	if err != nil {
		s.Error = err.Error()
		return s
	}
	s.Lines = lines
	return s
}

// kafkaSections are the sections read from Kafka.
type kafkaSections struct {
	group      Group
	deadLetter DeadLetter
	topics     TopicsSection
}

func (k *kafkaSections) fail(err error) kafkaSections {
	k.group.Error, k.deadLetter.Error, k.topics.Error = err.Error(), err.Error(), err.Error()
	return *k
}

// collectKafka reads the group, the dead-letter topic and the topics'
// settings through one client.
func collectKafka(ctx context.Context, cfg Config, g Group, dl DeadLetter) kafkaSections {
	k := kafkaSections{group: g, deadLetter: dl}
	if cfg.QueueErr != nil {
		return k.fail(cfg.QueueErr)
	}
	if err := cfg.Queue.Validate(); err != nil {
		return k.fail(fmt.Errorf("configuration: %s", strings.ReplaceAll(err.Error(), "\n", "; ")))
	}
	// One round trip first: wrong credentials, TLS settings or brokers
	// that refuse connections end every Kafka section at once with their
	// cause rather than at the timeout.
	if err := queue.Probe(ctx, cfg.Queue); err != nil {
		return k.fail(err)
	}
	cl, err := kgo.NewClient(cfg.Queue.ClientOpts()...)
	if err != nil {
		return k.fail(fmt.Errorf("kafka: %w", err))
	}
	// Close cannot hang: this client neither produces nor joins a group.
	defer cl.Close()
	adm := kadm.NewClient(cl)
	q := cfg.Queue

	starts, serr := adm.ListStartOffsets(ctx, q.PersistTopic, q.DeadLetterTopic)
	ends, eerr := adm.ListEndOffsets(ctx, q.PersistTopic, q.DeadLetterTopic)
	offsetsErr := errors.Join(serr, eerr)

	k.deadLetter = deadLetters(dl, starts, ends, offsetsErr)
	k.group = groupLag(ctx, adm, g, starts, ends, offsetsErr)
	k.topics = topicSettings(ctx, adm, q, cfg.Expected)
	return k
}

// deadLetters counts the records retained in the dead-letter topic.
func deadLetters(dl DeadLetter, starts, ends kadm.ListedOffsets, err error) DeadLetter {
	if err != nil {
		dl.Error = fmt.Sprintf("list offsets of %s: %v", dl.Topic, err)
		return dl
	}
	ps, ok := ends[dl.Topic]
	if !ok {
		dl.Error = fmt.Sprintf("topic %s does not exist", dl.Topic)
		return dl
	}
	for p, end := range ps {
		start, _ := starts.Lookup(dl.Topic, p)
		if err := errors.Join(end.Err, start.Err); err != nil {
			dl.Error = fmt.Sprintf("%s partition %d: %v", dl.Topic, p, err)
			return dl
		}
		dl.Records += end.Offset - start.Offset
	}
	return dl
}

// groupLag describes the group and the lag of every partition of the
// persistence topic.
func groupLag(ctx context.Context, adm *kadm.Client, g Group, starts, ends kadm.ListedOffsets, offsetsErr error) Group {
	g.Members, g.Lag = []Member{}, []PartitionLag{}
	lags, err := adm.Lag(ctx, g.Name)
	if err == nil {
		gl := lags[g.Name]
		err = gl.Error()
		g.State = gl.State
		if err == nil {
			owner := map[int32]string{}
			for _, m := range gl.Members {
				mem := Member{MemberID: m.MemberID, ClientID: m.ClientID, ClientHost: m.ClientHost, Partitions: []int32{}}
				name := m.MemberID
				if m.InstanceID != nil {
					mem.InstanceID, name = *m.InstanceID, *m.InstanceID
				}
				if c, ok := m.Assigned.AsConsumer(); ok {
					for _, t := range c.Topics {
						if t.Topic == g.Topic {
							mem.Partitions = append(mem.Partitions, t.Partitions...)
						}
					}
				}
				slices.Sort(mem.Partitions)
				for _, p := range mem.Partitions {
					owner[p] = name
				}
				g.Members = append(g.Members, mem)
			}
			g.Lag, err = partitionLags(g.Topic, gl.Lag, owner, starts, ends, offsetsErr)
		}
	}
	if err != nil {
		// A group no writer ever joined is not an error: it has no
		// members and, with no commits, every record is lag.
		if errors.Is(err, kerr.GroupIDNotFound) {
			g.State = "Dead"
			g.Lag, err = partitionLags(g.Topic, nil, nil, starts, ends, offsetsErr)
		}
		if err != nil {
			g.Error = fmt.Sprintf("group %s: %v", g.Name, err)
			return g
		}
	}
	for _, l := range g.Lag {
		if l.Lag > 0 {
			g.TotalLag += l.Lag
		}
	}
	return g
}

// partitionLags is the lag of every partition of topic: from the group's
// commits where it has them, else everything retained.
func partitionLags(topic string, lag kadm.GroupLag, owner map[int32]string, starts, ends kadm.ListedOffsets, offsetsErr error) ([]PartitionLag, error) {
	if offsetsErr != nil {
		return nil, fmt.Errorf("list offsets of %s: %w", topic, offsetsErr)
	}
	ps, ok := ends[topic]
	if !ok {
		return nil, fmt.Errorf("topic %s does not exist", topic)
	}
	out := make([]PartitionLag, 0, len(ps))
	for p, end := range ps {
		start, _ := starts.Lookup(topic, p)
		pl := PartitionLag{Partition: p, Committed: -1, Start: start.Offset, End: end.Offset, Member: owner[p]}
		if err := errors.Join(end.Err, start.Err); err != nil {
			pl.Error, pl.Lag = err.Error(), -1
			out = append(out, pl)
			continue
		}
		pl.Lag = end.Offset - start.Offset
		if l, ok := lag.Lookup(topic, p); ok && l.Commit.At >= 0 {
			pl.Committed = l.Commit.At
			pl.Lag = max(end.Offset-l.Commit.At, 0)
		}
		out = append(out, pl)
	}
	slices.SortFunc(out, func(a, b PartitionLag) int { return int(a.Partition - b.Partition) })
	return out, nil
}

// topicSettings compares every topic with the expected settings.
func topicSettings(ctx context.Context, adm *kadm.Client, q queue.Config, want queue.TopicSpec) TopicsSection {
	ts := TopicsSection{Topics: []Topic{}}
	roles := []struct{ name, role string }{{q.PersistTopic, "persist"}, {q.MetricsTopic, "metrics"}, {q.DeadLetterTopic, "dead-letter"}}
	names := []string{q.PersistTopic, q.MetricsTopic, q.DeadLetterTopic}
	details, err := adm.ListTopics(ctx, names...)
	if err != nil {
		ts.Error = fmt.Sprintf("describe topics %v: %v", names, err)
		return ts
	}
	var existing []string
	for _, r := range roles {
		t := Topic{Name: r.name, Role: r.role}
		td, ok := details[r.name]
		switch {
		case !ok || errors.Is(td.Err, kerr.UnknownTopicOrPartition):
			t.Missing = true
			ts.Mismatches++
		case td.Err != nil:
			t.Error = td.Err.Error()
		default:
			existing = append(existing, r.name)
			t.Settings = append(t.Settings,
				setting("partitions", strconv.Itoa(len(td.Partitions)), strconv.Itoa(int(want.Partitions))),
				setting("replication factor", strconv.Itoa(td.Partitions.NumReplicas()), strconv.Itoa(int(want.ReplicationFactor))))
		}
		ts.Topics = append(ts.Topics, t)
	}
	if len(existing) > 0 {
		rcs, err := adm.DescribeTopicConfigs(ctx, existing...)
		expected := map[string]string{
			"retention.ms":        strconv.FormatInt(want.Retention.Milliseconds(), 10),
			"min.insync.replicas": strconv.Itoa(want.MinInsyncReplicas),
		}
		for i := range ts.Topics {
			t := &ts.Topics[i]
			if t.Missing || t.Error != "" {
				continue
			}
			rc, cerr := rcs.On(t.Name, nil)
			if err != nil {
				cerr = err // the request as a whole failed
			} else if cerr == nil {
				cerr = rc.Err
			}
			if cerr != nil {
				t.Error = fmt.Sprintf("describe configs: %v", cerr)
				continue
			}
			have := map[string]string{}
			for _, c := range rc.Configs {
				have[c.Key] = c.MaybeValue()
			}
			for _, k := range []string{"retention.ms", "min.insync.replicas"} {
				t.Settings = append(t.Settings, setting(k, have[k], expected[k]))
			}
		}
	}
	for _, t := range ts.Topics {
		for _, s := range t.Settings {
			if s.Mismatch {
				ts.Mismatches++
			}
		}
	}
	return ts
}

func setting(name, value, expected string) Setting {
	return Setting{Name: name, Value: value, Expected: expected, Mismatch: value != expected}
}
