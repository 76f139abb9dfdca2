package queue

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// LagReader reads the writers' lag on the persistence topic: for each
// partition, the records past the writers' group's committed offset. A
// query server uses it to draw the lag on /ui, which no process of its own
// measures.
//
// It is a [Participant] of [Failover] (SwitchTo): it reads the active
// cluster.
type LagReader struct {
	cur atomic.Pointer[lagReader]
	// mu serializes SwitchTo and Close.
	mu sync.Mutex
}

// lagReader reads the lag on one cluster.
type lagReader struct {
	cfg Config
	cl  *kgo.Client
	adm *kadm.Client
}

// NewLagReader returns a reader of the lag of cfg's writer group. It
// connects on first use.
func NewLagReader(cfg Config) (*LagReader, error) {
	cl, err := kgo.NewClient(cfg.ClientOpts()...)
	if err != nil {
		return nil, fmt.Errorf("queue: new lag reader: %w", err)
	}
	l := &LagReader{}
	l.cur.Store(&lagReader{cfg: cfg, cl: cl, adm: kadm.NewClient(cl)})
	return l, nil
}

// Lag returns the lag in records of each partition of the persistence
// topic. A partition whose group has committed nothing counts from its
// start. A group that does not exist yet has the lag of every record.
func (l *LagReader) Lag(ctx context.Context) (map[int32]int64, error) {
	return l.cur.Load().Lag(ctx)
}

// SwitchTo reads the lag on the cluster cfg names from now on.
func (l *LagReader) SwitchTo(_ context.Context, cfg Config, _ time.Time) error {
	cl, err := kgo.NewClient(cfg.ClientOpts()...)
	if err != nil {
		return fmt.Errorf("queue: new lag reader: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	old := l.cur.Swap(&lagReader{cfg: cfg, cl: cl, adm: kadm.NewClient(cl)})
	old.cl.Close()
	return nil
}

// Lag is LagReader.Lag on one cluster.
func (l *lagReader) Lag(ctx context.Context) (map[int32]int64, error) {
	lags, err := l.adm.Lag(ctx, l.cfg.WriterGroup)
	if err != nil {
		return nil, fmt.Errorf("queue: lag of group %s: %w", l.cfg.WriterGroup, err)
	}
	gl, ok := lags[l.cfg.WriterGroup]
	if !ok {
		return nil, fmt.Errorf("queue: lag of group %s: not in the brokers' answer", l.cfg.WriterGroup)
	}
	if err := gl.Error(); errors.Is(err, kerr.GroupIDNotFound) {
		return l.unconsumed(ctx)
	} else if err != nil {
		return nil, fmt.Errorf("queue: lag of group %s: %w", l.cfg.WriterGroup, err)
	}
	out := map[int32]int64{}
	var errs []error
	for p, m := range gl.Lag[l.cfg.PersistTopic] {
		if m.Err != nil {
			errs = append(errs, fmt.Errorf("partition %d: %w", p, m.Err))
			continue
		}
		out[p] = m.Lag
	}
	if len(out) == 0 && len(errs) > 0 {
		return nil, fmt.Errorf("queue: lag of group %s on %s: %w", l.cfg.WriterGroup, l.cfg.PersistTopic, errors.Join(errs...))
	}
	return out, nil
}

// unconsumed is the lag of a group that has never committed: every record
// still in the persistence topic.
func (l *lagReader) unconsumed(ctx context.Context) (map[int32]int64, error) {
	starts, err := l.adm.ListStartOffsets(ctx, l.cfg.PersistTopic)
	if err != nil {
		return nil, fmt.Errorf("queue: start offsets of %s: %w", l.cfg.PersistTopic, err)
	}
	ends, err := l.adm.ListEndOffsets(ctx, l.cfg.PersistTopic)
	if err != nil {
		return nil, fmt.Errorf("queue: end offsets of %s: %w", l.cfg.PersistTopic, err)
	}
	if err := errors.Join(starts.Error(), ends.Error()); err != nil {
		return nil, fmt.Errorf("queue: offsets of %s: %w", l.cfg.PersistTopic, err)
	}
	out := map[int32]int64{}
	ends.Each(func(e kadm.ListedOffset) {
		if s, ok := starts.Lookup(e.Topic, e.Partition); ok {
			out[e.Partition] = e.Offset - s.Offset
		}
	})
	return out, nil
}

// Close closes the reader's client.
func (l *LagReader) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cur.Load().cl.Close()
}
