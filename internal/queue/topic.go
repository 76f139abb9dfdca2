package queue

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TopicSpec is how `cairn topics create` makes topics. The defaults follow
// the production MSK configuration: 12 partitions, replication factor 3,
// min.insync.replicas 2, 168 hours of retention.
type TopicSpec struct {
	// Partitions per topic. Default 12.
	Partitions int32
	// ReplicationFactor of each partition. Default 3.
	ReplicationFactor int16
	// MinInsyncReplicas is min.insync.replicas: with acks=all a produce
	// succeeds only while this many replicas have it. Default 2.
	MinInsyncReplicas int
	// Retention is retention.ms: the replay window after a writer outage and
	// the main driver of broker storage. Default 168h.
	Retention time.Duration
	// Timeout bounds CreateTopics as a whole: brokers that refuse
	// connections or do not answer make it fail by then, naming the
	// cause. Default 15s.
	Timeout time.Duration
}

// EnsureDefaults fills zero fields with their defaults.
func (s *TopicSpec) EnsureDefaults() {
	if s.Partitions == 0 {
		s.Partitions = 12
	}
	if s.ReplicationFactor == 0 {
		s.ReplicationFactor = 3
	}
	if s.MinInsyncReplicas == 0 {
		s.MinInsyncReplicas = 2
	}
	if s.Retention == 0 {
		s.Retention = 168 * time.Hour
	}
	if s.Timeout == 0 {
		s.Timeout = 15 * time.Second
	}
}

// Validate reports every problem with s.
func (s *TopicSpec) Validate() error {
	var errs []error
	if s.Partitions < 1 {
		errs = append(errs, fmt.Errorf("topics: partitions %d: want at least 1", s.Partitions))
	}
	if s.ReplicationFactor < 1 {
		errs = append(errs, fmt.Errorf("topics: replication factor %d: want at least 1", s.ReplicationFactor))
	}
	if s.MinInsyncReplicas < 1 || s.MinInsyncReplicas > int(s.ReplicationFactor) {
		errs = append(errs, fmt.Errorf("topics: min.insync.replicas %d: want between 1 and the replication factor %d", s.MinInsyncReplicas, s.ReplicationFactor))
	}
	if s.Retention < time.Hour {
		errs = append(errs, fmt.Errorf("topics: retention %v: want at least 1h", s.Retention))
	}
	if s.Timeout < time.Second {
		errs = append(errs, fmt.Errorf("topics: timeout %v: want at least 1s", s.Timeout))
	}
	return errors.Join(errs...)
}

// TopicResult is what happened to one topic.
type TopicResult struct {
	Topic string
	// Created is false when the topic already existed; it is left as it is.
	Created bool
}

// CreateTopics creates the persistence, metrics and dead-letter topics of
// cfg with spec. Existing topics are reported and left unchanged, so the
// command is safe to run again. It returns within spec.Timeout (or when ctx
// ends): brokers that cannot be reached or do not answer make it fail with
// the last connection or request error seen.
func CreateTopics(ctx context.Context, cfg Config, spec TopicSpec) ([]TopicResult, error) {
	ctx, a, err := dialTopicAdmin(ctx, cfg, spec, "create")
	if err != nil {
		return nil, err
	}
	defer a.close()
	spec = a.spec
	retention := strconv.FormatInt(spec.Retention.Milliseconds(), 10)
	minISR := strconv.Itoa(spec.MinInsyncReplicas)
	configs := map[string]*string{"retention.ms": &retention, "min.insync.replicas": &minISR}
	topics := a.topics
	resp, err := a.adm.CreateTopics(ctx, spec.Partitions, spec.ReplicationFactor, configs, topics...)
	if err != nil {
		return nil, a.fail(ctx, "create", err)
	}
	var out []TopicResult
	var errs []error
	for _, t := range topics {
		r := resp[t]
		switch {
		case r.Err == nil:
			out = append(out, TopicResult{Topic: t, Created: true})
		case errors.Is(r.Err, kerr.TopicAlreadyExists):
			out = append(out, TopicResult{Topic: t})
		default:
			errs = append(errs, fmt.Errorf("topics: create %s: %w (%s)", t, r.Err, r.ErrMessage))
		}
	}
	return out, errors.Join(errs...)
}

// ChangeKind is what one [TopicChange] does.
type ChangeKind int

const (
	// CreateTopic creates a missing topic with the spec.
	CreateTopic ChangeKind = iota
	// SetConfig sets one topic configuration (retention.ms or
	// min.insync.replicas) to the spec's value.
	SetConfig
	// AddPartitions raises a topic's partition count to the spec's. Keys
	// move to other partitions: see [AddPartitionsWarning].
	AddPartitions
	// PartitionsKept reports a topic with fewer partitions than the spec,
	// left as it is because adding partitions was not asked for.
	PartitionsKept
	// ReplicationFactorKept reports a topic whose replication factor
	// differs from the spec: reconciling never changes it (that is a
	// partition reassignment, an operator's decision).
	ReplicationFactorKept
)

// AddPartitionsWarning is what an operator must know before partitions are
// added to the persistence topic.
const AddPartitionsWarning = "adding partitions moves keys to other partitions: the persistence topic is keyed by entity, " +
	"so an entity's records written before the change and after it may sit in two partitions and be written " +
	"out of order until the old records drain; nothing breaks, because the store keeps the newest value by " +
	"observed-at whatever the order of writes, but per-entity ordering is not kept across the change"

// TopicChange is one difference between a topic and its [TopicSpec], and
// what [ReconcileTopics] does about it.
type TopicChange struct {
	Topic string
	Kind  ChangeKind
	// Key is the configuration set by a SetConfig change.
	Key string
	// From and To are the value found and the value asked for (the
	// configuration's value, the partition count or the replication
	// factor); From is empty for CreateTopic.
	From, To string
	// Applied is set once the brokers accepted the change; it stays false
	// in a dry run, for a change that failed, and for the differences that
	// are only reported (PartitionsKept, ReplicationFactorKept).
	Applied bool
	// Err is why the brokers refused the change.
	Err error
}

// Action reports whether c changes the topic (when applied), as opposed to
// reporting a difference that is left alone.
func (c TopicChange) Action() bool {
	return c.Kind == CreateTopic || c.Kind == SetConfig || c.Kind == AddPartitions
}

// String is c as one line for an operator: what was done, what would be
// done (not applied), or what was left alone and why.
func (c TopicChange) String() string {
	var what string
	switch c.Kind {
	case CreateTopic:
		what = "create: " + c.To
	case SetConfig:
		what = fmt.Sprintf("set %s %s -> %s", c.Key, c.From, c.To)
	case AddPartitions:
		what = fmt.Sprintf("add partitions %s -> %s", c.From, c.To)
	case PartitionsKept:
		return fmt.Sprintf("%s: has %s partitions, %s asked: left as it is (pass --add-partitions to add them)", c.Topic, c.From, c.To)
	case ReplicationFactorKept:
		return fmt.Sprintf("%s: replication factor is %s, %s asked: left as it is (cairn never changes the replication factor; reassign the partitions to change it)", c.Topic, c.From, c.To)
	}
	switch {
	case c.Err != nil:
		return fmt.Sprintf("%s: %s: failed: %v", c.Topic, what, c.Err)
	case !c.Applied:
		return fmt.Sprintf("%s: would %s", c.Topic, what)
	}
	return fmt.Sprintf("%s: %s: done", c.Topic, what)
}

// ReconcileOptions are what `cairn topics create` may do besides creating
// topics and setting their configurations.
type ReconcileOptions struct {
	// DryRun plans and changes nothing. Default false.
	DryRun bool
	// AddPartitions raises the partition count of a topic with fewer
	// partitions than the spec. Default false: the difference is reported.
	AddPartitions bool
}

// FewerPartitionsError is returned when the spec asks for fewer partitions
// than a topic has: Kafka cannot remove partitions, and cairn never
// recreates a topic.
type FewerPartitionsError struct {
	Topic     string
	Has, Want int32
}

func (e *FewerPartitionsError) Error() string {
	return fmt.Sprintf("topics: %s has %d partitions and %d were asked: partitions cannot be removed (ask for at least %d)", e.Topic, e.Has, e.Want, e.Has)
}

// MinInsyncError is returned when the spec asks for a min.insync.replicas
// above the replication factor of an existing topic (which reconciling
// does not change): every produce with acks=all, every upload, would then
// be refused with NOT_ENOUGH_REPLICAS.
type MinInsyncError struct {
	Topic                                string
	ReplicationFactor, MinInsyncReplicas int
}

func (e *MinInsyncError) Error() string {
	return fmt.Sprintf("topics: %s has replication factor %d and min.insync.replicas %d was asked: every upload would be refused (ask for at most %d)",
		e.Topic, e.ReplicationFactor, e.MinInsyncReplicas, e.ReplicationFactor)
}

// reconciled are the topic configurations reconciling sets.
var reconciled = []string{"retention.ms", "min.insync.replicas"}

// specConfigs returns the configurations spec asks for, by name.
func specConfigs(spec TopicSpec) map[string]string {
	return map[string]string{
		"retention.ms":        strconv.FormatInt(spec.Retention.Milliseconds(), 10),
		"min.insync.replicas": strconv.Itoa(spec.MinInsyncReplicas),
	}
}

// ReconcileTopics brings the persistence, metrics and dead-letter topics of
// cfg to spec: it creates missing topics, sets retention.ms and
// min.insync.replicas of existing ones to the spec's values (an incremental
// alter, which leaves their other configurations alone), adds partitions
// only with opts.AddPartitions, and reports a replication factor that
// differs without changing it. It returns every difference found, in topic
// order, with what was done about it; a second run finds nothing to do.
//
// A spec asking for fewer partitions than a topic has is a
// [*FewerPartitionsError], and one setting min.insync.replicas above a
// topic's replication factor a [*MinInsyncError]; both are found before
// anything is changed, and nothing is then changed on any topic. With opts.DryRun nothing is changed either.
// It returns within spec.Timeout (or when ctx ends).
func ReconcileTopics(ctx context.Context, cfg Config, spec TopicSpec, opts ReconcileOptions) ([]TopicChange, error) {
	ctx, a, err := dialTopicAdmin(ctx, cfg, spec, "reconcile")
	if err != nil {
		return nil, err
	}
	defer a.close()
	spec = a.spec
	adm, topics := a.adm, a.topics
	fail := func(what string, err error) error { return a.fail(ctx, what, err) }

	plan, refused, err := planTopics(ctx, adm, topics, spec, opts)
	switch {
	case err != nil:
		return nil, fail("describe", err)
	case refused != nil:
		return nil, refused
	case opts.DryRun:
		return plan, nil
	}
	err = applyTopics(ctx, adm, plan, spec)
	var failed changeErrors
	if err != nil && !errors.As(err, &failed) {
		err = fail("reconcile", err)
	}
	return plan, err
}

// topicAdmin is an admin client of the brokers for the topics commands,
// and what they need to say why the brokers failed them.
type topicAdmin struct {
	cfg    Config
	spec   TopicSpec
	topics []string
	cl     *kgo.Client
	adm    *kadm.Client
	last   *lastBrokerError
	cancel context.CancelFunc
}

// dialTopicAdmin fills cfg's and spec's defaults and checks them, bounds
// ctx by spec.Timeout, makes one round trip first, so that wrong
// credentials or TLS settings end the command at once with their cause
// rather than at the timeout, and returns the bounded context and the
// admin client; what names the command. Close the admin when done.
func dialTopicAdmin(ctx context.Context, cfg Config, spec TopicSpec, what string) (context.Context, *topicAdmin, error) {
	cfg.EnsureDefaults()
	spec.EnsureDefaults()
	if err := errors.Join(cfg.Validate(), spec.Validate()); err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, spec.Timeout)
	topics := []string{cfg.PersistTopic, cfg.MetricsTopic, cfg.DeadLetterTopic}
	if err := probe(ctx, cfg, min(spec.Timeout, ProbeTimeout)); err != nil {
		cancel()
		return nil, nil, fmt.Errorf("topics: %s %v: %w", what, topics, err)
	}
	last := &lastBrokerError{}
	cl, err := kgo.NewClient(append(cfg.ClientOpts(), kgo.WithHooks(last))...)
	if err != nil {
		cancel()
		return nil, nil, fmt.Errorf("topics: connect: %w", err)
	}
	return ctx, &topicAdmin{cfg: cfg, spec: spec, topics: topics, cl: cl, adm: kadm.NewClient(cl), last: last, cancel: cancel}, nil
}

// close closes the client, which cannot hang: it neither produces nor
// joins a group, and Close only shuts its connections.
func (a *topicAdmin) close() {
	a.cl.Close()
	a.cancel()
}

// fail names the brokers' failure of a request of the command what: when
// ctx ended, the last connection or request error seen.
func (a *topicAdmin) fail(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil {
		if _, cause := a.last.get(); cause != nil {
			return fmt.Errorf("topics: %s %v: brokers %v gave no answer within %v: %w (last error: %w)", what, a.topics, a.cfg.Brokers, a.spec.Timeout, err, cause)
		}
		return fmt.Errorf("topics: %s %v: brokers %v gave no answer within %v: %w", what, a.topics, a.cfg.Brokers, a.spec.Timeout, err)
	}
	return fmt.Errorf("topics: %s %v at brokers %v: %w", what, a.topics, a.cfg.Brokers, err)
}

// changeErrors are the changes the brokers refused, each naming its topic.
type changeErrors []error

func (e changeErrors) Error() string   { return errors.Join(e...).Error() }
func (e changeErrors) Unwrap() []error { return e }

// planTopics compares the topics with spec. refused are the
// [*FewerPartitionsError] and [*MinInsyncError] found, joined; err is a
// request that failed.
func planTopics(ctx context.Context, adm *kadm.Client, topics []string, spec TopicSpec, opts ReconcileOptions) (plan []TopicChange, refused, err error) {
	details, err := adm.ListTopics(ctx, topics...)
	if err != nil {
		return nil, nil, err
	}
	want := specConfigs(spec)
	var existing []string
	var errs, refusals []error
	rfs := map[string]int{}
	for _, t := range topics {
		td, ok := details[t]
		if !ok || errors.Is(td.Err, kerr.UnknownTopicOrPartition) {
			plan = append(plan, TopicChange{Topic: t, Kind: CreateTopic,
				To: fmt.Sprintf("%d partitions, replication factor %d, retention.ms=%s, min.insync.replicas=%s",
					spec.Partitions, spec.ReplicationFactor, want["retention.ms"], want["min.insync.replicas"])})
			continue
		}
		if td.Err != nil {
			errs = append(errs, fmt.Errorf("describe %s: %w", t, td.Err))
			continue
		}
		existing = append(existing, t)
		has := int32(len(td.Partitions))
		switch {
		case has > spec.Partitions:
			refusals = append(refusals, &FewerPartitionsError{Topic: t, Has: has, Want: spec.Partitions})
		case has < spec.Partitions && opts.AddPartitions:
			plan = append(plan, TopicChange{Topic: t, Kind: AddPartitions, From: strconv.Itoa(int(has)), To: strconv.Itoa(int(spec.Partitions))})
		case has < spec.Partitions:
			plan = append(plan, TopicChange{Topic: t, Kind: PartitionsKept, From: strconv.Itoa(int(has)), To: strconv.Itoa(int(spec.Partitions))})
		}
		rf := td.Partitions.NumReplicas()
		rfs[t] = rf
		if rf != int(spec.ReplicationFactor) {
			plan = append(plan, TopicChange{Topic: t, Kind: ReplicationFactorKept, From: strconv.Itoa(rf), To: strconv.Itoa(int(spec.ReplicationFactor))})
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	if len(existing) == 0 {
		return plan, errors.Join(refusals...), nil
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, existing...)
	if err != nil {
		return nil, nil, err
	}
	for _, t := range existing {
		rc, err := rcs.On(t, nil)
		if err == nil {
			err = rc.Err
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("describe configs of %s: %w", t, err))
			continue
		}
		have := map[string]string{}
		for _, c := range rc.Configs {
			have[c.Key] = c.MaybeValue()
		}
		for _, k := range reconciled {
			if have[k] == want[k] {
				continue
			}
			if k == "min.insync.replicas" && spec.MinInsyncReplicas > rfs[t] {
				refusals = append(refusals, &MinInsyncError{Topic: t, ReplicationFactor: rfs[t], MinInsyncReplicas: spec.MinInsyncReplicas})
				continue
			}
			plan = append(plan, TopicChange{Topic: t, Kind: SetConfig, Key: k, From: orUnset(have[k]), To: want[k]})
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	slices.SortStableFunc(plan, func(a, b TopicChange) int {
		return cmp.Compare(slices.Index(topics, a.Topic), slices.Index(topics, b.Topic))
	})
	return plan, errors.Join(refusals...), nil
}

func orUnset(v string) string {
	if v == "" {
		return "(unset)"
	}
	return v
}

// applyTopics makes the action changes of plan, marking each Applied or
// giving it its Err. The error is a request that failed as a whole, or
// the [changeErrors] of the changes the brokers refused.
func applyTopics(ctx context.Context, adm *kadm.Client, plan []TopicChange, spec TopicSpec) error {
	want := specConfigs(spec)
	var create, grow []string
	alter := map[string][]kadm.AlterConfig{}
	for _, c := range plan {
		switch c.Kind {
		case CreateTopic:
			create = append(create, c.Topic)
		case AddPartitions:
			grow = append(grow, c.Topic)
		case SetConfig:
			v := c.To
			alter[c.Topic] = append(alter[c.Topic], kadm.AlterConfig{Op: kadm.SetConfig, Name: c.Key, Value: &v})
		}
	}
	done := map[string]error{} // topic and kind → outcome
	key := func(t string, k ChangeKind) string { return t + "\x00" + strconv.Itoa(int(k)) }
	if len(create) > 0 {
		configs := map[string]*string{}
		for k, v := range want {
			configs[k] = &v
		}
		resp, err := adm.CreateTopics(ctx, spec.Partitions, spec.ReplicationFactor, configs, create...)
		if err != nil {
			return err
		}
		for _, t := range create {
			r := resp[t]
			done[key(t, CreateTopic)] = brokerErr(r.Err, r.ErrMessage)
		}
	}
	// Every topic is altered on its own: each carries its own changes.
	for t, ops := range alter {
		resp, err := adm.AlterTopicConfigs(ctx, ops, t)
		if err != nil {
			return err
		}
		r, err := resp.On(t, nil)
		if err == nil {
			err = brokerErr(r.Err, r.ErrMessage)
		}
		done[key(t, SetConfig)] = err
	}
	if len(grow) > 0 {
		resp, err := adm.UpdatePartitions(ctx, int(spec.Partitions), grow...)
		if err != nil {
			return err
		}
		for _, t := range grow {
			r := resp[t]
			done[key(t, AddPartitions)] = brokerErr(r.Err, r.ErrMessage)
		}
	}
	var errs changeErrors
	for i := range plan {
		c := &plan[i]
		if !c.Action() {
			continue
		}
		c.Err = done[key(c.Topic, c.Kind)]
		c.Applied = c.Err == nil
		if c.Err != nil {
			errs = append(errs, fmt.Errorf("topics: %s", c))
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return errs
}

// brokerErr is a broker's refusal with its message, or nil.
func brokerErr(err error, msg string) error {
	if err == nil || msg == "" {
		return err
	}
	return fmt.Errorf("%w (%s)", err, msg)
}
