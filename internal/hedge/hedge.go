// Package hedge races a slow call against a second copy of itself: a call
// still unanswered after a wait is sent again, the first answer wins, and
// the other call is cancelled. This trades a few extra requests for a much
// shorter tail of latency when a server occasionally answers slowly
// ("request racing", or hedged requests).
//
// The wait is best set near the 95th percentile of the call's latency: then
// only the slowest twentieth of calls is sent twice, and the tail beyond it
// collapses towards that percentile. Hedges in flight at once are bounded,
// so that a server slow for everyone is not sent twice the load.
package hedge

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Config configures a [Hedger].
type Config struct {
	// Wait is how long a call runs alone before a second copy is sent.
	// Required: it must be positive.
	Wait time.Duration

	// MaxInFlight bounds the second copies running at once across every
	// [Do] on the Hedger. A call due a second copy while that many run goes
	// on alone (and is counted in cairn_hedge_skipped_total). Required: it
	// must be at least 1.
	MaxInFlight int
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	if c.Wait <= 0 {
		errs = append(errs, fmt.Errorf("hedge: wait %v: want a positive duration", c.Wait))
	}
	if c.MaxInFlight < 1 {
		errs = append(errs, fmt.Errorf("hedge: max in flight %d: want 1 or more", c.MaxInFlight))
	}
	return errors.Join(errs...)
}

// Hedger holds the wait, the bound on second copies in flight and the
// metrics shared by the calls raced through it. It is safe for concurrent
// use.
type Hedger struct {
	wait time.Duration
	// slots holds one token per second copy in flight.
	slots chan struct{}

	started prometheus.Counter
	won     prometheus.Counter
	skipped prometheus.Counter
}

// New returns a Hedger for calls of the kind name (a metric label, such as
// "dynamo_batch_get"), registering its metrics with reg unless reg is nil:
//
//	cairn_hedge_started_total{name}  calls sent a second time (races started)
//	cairn_hedge_won_total{name}      races won by the second copy
//	cairn_hedge_skipped_total{name}  calls due a second copy that went on
//	                                 alone, MaxInFlight copies being in flight
func New(name string, cfg Config, reg prometheus.Registerer) (*Hedger, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	labels := prometheus.Labels{"name": name}
	h := &Hedger{
		wait:  cfg.Wait,
		slots: make(chan struct{}, cfg.MaxInFlight),
		started: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_hedge_started_total", ConstLabels: labels,
			Help: "Calls still unanswered after the wait and sent a second time (races started).",
		}),
		won: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_hedge_won_total", ConstLabels: labels,
			Help: "Races won by the second copy of the call.",
		}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_hedge_skipped_total", ConstLabels: labels,
			Help: "Calls due a second copy that went on alone because the most second copies allowed were in flight.",
		}),
	}
	if reg != nil {
		for i, c := range []prometheus.Collector{h.started, h.won, h.skipped} {
			if err := reg.Register(c); err != nil {
				for _, done := range []prometheus.Collector{h.started, h.won, h.skipped}[:i] {
					reg.Unregister(done)
				}
				return nil, fmt.Errorf("hedge %s: register metrics: %w", name, err)
			}
		}
	}
	return h, nil
}

// Wait returns how long a call runs alone before a second copy is sent.
func (h *Hedger) Wait() time.Duration { return h.wait }

// result is one copy's answer.
type result[T any] struct {
	v     T
	err   error
	hedge bool
}

// Do runs fn, and if it has not returned after h's wait, runs it a second
// time, concurrently. The first successful answer is returned, and the
// context of the other copy is cancelled; Do does not wait for that copy
// to return, and its answer is discarded. fn must therefore be safe to run
// twice at once and must heed its context.
//
// An error ends the race only when no other copy is still running: a copy
// that fails while the other runs leaves the other to answer. When both
// fail, the first copy's error is returned. A call failing before the wait
// is not sent again (retrying is fn's business).
func Do[T any](ctx context.Context, h *Hedger, fn func(ctx context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // cancels the loser, if still running
	// Buffered for both copies, so that the loser never blocks.
	results := make(chan result[T], 2)
	go func() {
		v, err := fn(ctx)
		results <- result[T]{v: v, err: err}
	}()

	timer := time.NewTimer(h.wait)
	defer timer.Stop()
	select {
	case r := <-results:
		return r.v, r.err
	case <-timer.C:
	}

	running := 1
	select {
	case h.slots <- struct{}{}:
		h.started.Inc()
		running++
		go func() {
			defer func() { <-h.slots }()
			v, err := fn(ctx)
			results <- result[T]{v: v, err: err, hedge: true}
		}()
	default:
		h.skipped.Inc()
	}

	// The answer when every copy fails: the first copy's failure.
	var failure result[T]
	failed := false
	for ; running > 0; running-- {
		r := <-results
		if r.err == nil {
			if r.hedge {
				h.won.Inc()
			}
			return r.v, nil
		}
		if !failed || !r.hedge {
			failure, failed = r, true
		}
	}
	return failure.v, failure.err
}
