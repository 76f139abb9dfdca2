// Package bench drives a target at a constant rate, open loop, and reports
// the latency a caller would have seen.
//
// Request i is due at t0 + i/Rate, whether or not the requests before it
// have been answered, and its latency is measured from that due time, not
// from when it was actually sent. A target that stalls therefore cannot
// slow the load down and hide its own stall (the "coordinated omission" of
// closed-loop generators, which wait for one answer before sending the next
// request): the requests that fell due during the stall are sent late, and
// each counts the time it waited. Requests outstanding at once are bounded
// by Load.MaxInFlight; a request due while all are outstanding is sent as
// soon as one is answered, still timed from when it fell due.
//
// [Run] makes one run and returns every latency recorded; percentiles are
// exact, computed from the sorted samples. [FindMaxRate] looks for the
// highest rate at which a percentile of latency stays under a bound, with
// a series of short runs.
//
// [MeasureQueries] is `cairn bench`, built on them: it writes entities of
// namespace [Namespace] into an online store, starts a query server (in a
// process of its own, `cairn bench-server`, or in this one through
// Options.StartServer) and drives, in interleaved slices, (a) queries
// through the server's HTTP API and, for a Redis or Valkey store, (b) the
// store's bare round trip, a go-redis client sending the commands the
// store sends to the keys the store writes. It reports both side by side
// in Markdown, with the CPU each process used (cpu.go). Options.Security
// (security.go) and Options.Resolvers (resolvers.go) add query server
// processes of other kinds, measured in the same rounds; Options.Formats
// (formats.go) adds the columnar JSON and Arrow answers of the same
// server; Options.Metrics (metrics.go) a server with query metrics, to a
// Kafka broker of the run's own. Every path answered by a server process
// reports that process's CPU per query, read around each of its slices,
// and where its tail may come from: the runtimes' scheduling delays and
// collections over its slices (tail.go); Options.Pin (pin.go) pins the
// processes apart. The package builds
// no query server itself: the command supplies how to open the store and
// how to start a server.
package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"
)

// Target is what a run drives: one call is one request. A non-nil error
// counts the request as failed; its latency is recorded all the same.
type Target func(ctx context.Context) error

// Load says how hard a run drives its target.
type Load struct {
	// Rate is the number of requests due per second. Required: more than 0.
	Rate float64

	// Duration is how long requests fall due: the run sends
	// Rate × Duration requests (at least one), then waits for the last
	// answers. Required: more than 0.
	Duration time.Duration

	// MaxInFlight bounds the requests outstanding at once. Default: 64.
	MaxInFlight int

	// Wait returns at time t (or as soon after it as it can). The
	// scheduler calls it before sending each request that is not yet due.
	// Default: on Linux, a nanosleep on an operating-system thread of the
	// scheduler's own, with a timer slack of 1ns; elsewhere time.Sleep.
	// Go's timers wake up to a millisecond late in a process that is
	// otherwise waiting for the network, and an open-loop generator counts
	// that lateness as latency. Tests that run in a testing/synctest
	// bubble, whose clock only time.Sleep advances, set it to a time.Sleep.
	Wait func(t time.Time)
}

// DefaultMaxInFlight is the default of Load.MaxInFlight.
const DefaultMaxInFlight = 64

// maxRequests bounds the requests of one run (and so the memory of its
// samples): a day at 10,000 requests per second is far beyond any use.
const maxRequests = 1 << 30

// EnsureDefaults fills zero fields with their defaults.
func (l *Load) EnsureDefaults() {
	if l.MaxInFlight == 0 {
		l.MaxInFlight = DefaultMaxInFlight
	}
}

// Validate reports every problem with l at once.
func (l Load) Validate() error {
	var errs []error
	if !(l.Rate > 0) || math.IsInf(l.Rate, 1) {
		errs = append(errs, fmt.Errorf("bench: rate %v: want a finite number of requests per second, more than 0", l.Rate))
	}
	if l.Duration <= 0 {
		errs = append(errs, fmt.Errorf("bench: duration %v: want more than 0", l.Duration))
	}
	if l.MaxInFlight < 1 {
		errs = append(errs, fmt.Errorf("bench: max in flight %d: want 1 or more", l.MaxInFlight))
	}
	if n := l.requests(); l.Rate > 0 && l.Duration > 0 && n > maxRequests {
		errs = append(errs, fmt.Errorf("bench: %v at %v requests/s is %.0f requests: want at most %d", l.Duration, l.Rate, n, maxRequests))
	}
	return errors.Join(errs...)
}

// requests is how many requests a run with l sends.
func (l Load) requests() float64 {
	return math.Max(1, math.Floor(l.Rate*l.Duration.Seconds()))
}

// dueAt returns when request i of a run started at t0 falls due.
func (l Load) dueAt(t0 time.Time, i int) time.Time {
	return t0.Add(time.Duration(float64(i) * float64(time.Second) / l.Rate))
}

// Result is what one run measured.
type Result struct {
	// Load is the load the run was asked for, defaults filled in.
	Load Load
	// Count is the number of requests sent and answered.
	Count int
	// Errors is the number of them whose call returned an error, and
	// FirstError the first such error.
	Errors     int
	FirstError error
	// Elapsed runs from when the first request fell due to when the last
	// answer came back.
	Elapsed time.Duration
	// Latency holds, for every request, the time from when it fell due to
	// its answer, sorted.
	Latency Samples
	// Lag holds, for every request, the time from when it fell due to when
	// it was sent, sorted: the generator's own lateness (waking up late,
	// or waiting for a free slot), which Latency includes.
	Lag Samples
}

// Achieved returns the rate of answers over the run, in requests per
// second: the answers over Load.Duration, or over Elapsed when the last
// answer came later. It falls short of the rate asked for when the target
// cannot keep up.
func (r *Result) Achieved() float64 {
	span := max(r.Elapsed, r.Load.Duration)
	if span <= 0 {
		return 0
	}
	return float64(r.Count) / span.Seconds()
}

// worker is what one in-flight slot records; merged when the run ends.
type worker struct {
	latency, lag []time.Duration
	errors       int
	firstErr     error
	firstErrAt   time.Time
	last         time.Time
}

// Run drives target at load.Rate for load.Duration and returns what it
// measured. It returns an error for an invalid load, or when ctx ends
// before the run does; the Result then holds what was measured so far.
// The ctx given to target is ctx.
func Run(ctx context.Context, load Load, target Target) (*Result, error) {
	load.EnsureDefaults()
	if err := load.Validate(); err != nil {
		return nil, err
	}
	n := int(load.requests())
	due := make(chan time.Time)
	workers := make([]worker, min(load.MaxInFlight, n))
	var wg sync.WaitGroup
	for w := range workers {
		rec := &workers[w]
		rec.latency = make([]time.Duration, 0, n/len(workers)+1)
		rec.lag = make([]time.Duration, 0, n/len(workers)+1)
		wg.Go(func() {
			for at := range due {
				sent := time.Now()
				err := target(ctx)
				done := time.Now()
				rec.lag = append(rec.lag, sent.Sub(at))
				rec.latency = append(rec.latency, done.Sub(at))
				rec.last = done
				if err != nil {
					rec.errors++
					if rec.firstErr == nil {
						rec.firstErr, rec.firstErrAt = err, done
					}
				}
			}
		})
	}

	// The scheduler runs on a goroutine of its own, so that the default
	// wait can keep its thread to itself.
	start := make(chan time.Time, 1)
	go func() {
		defer close(due)
		wait := load.Wait
		if wait == nil {
			lockPreciseThread()
			wait = sleepUntil
		}
		t0 := time.Now()
		start <- t0
		for i := range n {
			at := load.dueAt(t0, i)
			if time.Now().Before(at) {
				wait(at)
			}
			if ctx.Err() != nil {
				return
			}
			select {
			case due <- at:
			case <-ctx.Done():
				return
			}
		}
	}()
	t0 := <-start
	wg.Wait()

	res := &Result{Load: load}
	var firstErrAt time.Time
	last := t0
	for _, w := range workers {
		res.Count += len(w.latency)
		res.Latency = append(res.Latency, w.latency...)
		res.Lag = append(res.Lag, w.lag...)
		res.Errors += w.errors
		if w.firstErr != nil && (res.FirstError == nil || w.firstErrAt.Before(firstErrAt)) {
			res.FirstError, firstErrAt = w.firstErr, w.firstErrAt
		}
		if w.last.After(last) {
			last = w.last
		}
	}
	res.Elapsed = last.Sub(t0)
	slices.Sort(res.Latency)
	slices.Sort(res.Lag)
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("bench: run at %v requests/s stopped after %d of %d requests: %w", load.Rate, res.Count, n, err)
	}
	return res, nil
}
