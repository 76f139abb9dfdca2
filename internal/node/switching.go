package node

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairnfs/cairn/internal/queue"
)

// restarting runs a Kafka consumer that cannot switch cluster itself (the
// metrics consumer) as one component: at a switch, the running consumer is
// stopped (it commits and leaves its group as at a stop) and a new one of
// the new cluster started. Consumers of this kind must tolerate replays,
// since the new cluster's group offsets are the replicator's, which may
// lag.
type restarting struct {
	cfg queue.Config
	// start makes a consumer of cfg's cluster whose metrics go to reg.
	start    func(cfg queue.Config, reg prometheus.Registerer) (func(context.Context) error, error)
	reg      *reregisterer
	switches chan restartRequest
	stopped  chan struct{}
}

type restartRequest struct {
	cfg  queue.Config
	done chan error
}

func newRestarting(cfg queue.Config, reg prometheus.Registerer, start func(queue.Config, prometheus.Registerer) (func(context.Context) error, error)) *restarting {
	return &restarting{cfg: cfg, start: start, reg: &reregisterer{reg: reg}, switches: make(chan restartRequest), stopped: make(chan struct{})}
}

// Run runs the consumer until ctx ends, restarting it at each Switch.
func (r *restarting) Run(ctx context.Context) error {
	defer close(r.stopped)
	run, err := r.start(r.cfg, r.reg)
	if err != nil {
		return err
	}
	for {
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- run(cctx) }()
		select {
		case err := <-done:
			cancel()
			return err
		case req := <-r.switches:
			cancel()
			if err := <-done; err != nil {
				req.done <- err
				return err
			}
			r.reg.unregisterAll()
			run, err = r.start(req.cfg, r.reg)
			req.done <- err
			if err != nil {
				return err
			}
		}
	}
}

// Switch is the consumer's [queue.Participant].
func (r *restarting) Switch(ctx context.Context, cfg queue.Config, _ time.Time) error {
	req := restartRequest{cfg: cfg, done: make(chan error, 1)}
	select {
	case r.switches <- req:
	case <-r.stopped:
		return errors.New("stopped")
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// reregisterer registers collectors with reg and can unregister them all,
// so that a consumer made again registers metrics of the same names (its
// counters start again from zero, which Prometheus reads as a reset).
type reregisterer struct {
	reg prometheus.Registerer
	mu  sync.Mutex
	cs  []prometheus.Collector
}

func (r *reregisterer) Register(c prometheus.Collector) error {
	if r.reg == nil {
		return nil
	}
	if err := r.reg.Register(c); err != nil {
		return err
	}
	r.mu.Lock()
	r.cs = append(r.cs, c)
	r.mu.Unlock()
	return nil
}

func (r *reregisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err) // as prometheus.Registerer's MustRegister documents
		}
	}
}

func (r *reregisterer) Unregister(c prometheus.Collector) bool {
	if r.reg == nil {
		return false
	}
	return r.reg.Unregister(c)
}

func (r *reregisterer) unregisterAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.cs {
		r.Unregister(c)
	}
	r.cs = nil
}
