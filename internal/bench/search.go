package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"
)

// Search configures [FindMaxRate].
type Search struct {
	// Start is the first rate tried, in requests per second. Required:
	// more than 0.
	Start float64

	// MaxRate is the highest rate tried; a target that passes at MaxRate
	// ends the search there. Default: 1,000,000 requests per second.
	MaxRate float64

	// Step is how long each run of the search lasts. Required: more than 0.
	Step time.Duration

	// Percentile is the percentile of latency held to Bound, over 0 and at
	// most 100. Default: 99.
	Percentile float64

	// Bound is the latency the percentile must not exceed. Required: more
	// than 0.
	Bound time.Duration

	// Resolution ends the search once the highest rate that passed and
	// the lowest that failed are within this fraction of the latter.
	// Default: 0.05.
	Resolution float64

	// MaxInFlight and Wait are those of each run's [Load] (see there).
	MaxInFlight int
	Wait        func(t time.Time)

	// Progress, when not nil, is called after each run with its outcome.
	Progress func(Step)
}

// Defaults of the Search fields (see each field).
const (
	DefaultSearchMaxRate    = 1_000_000
	DefaultSearchPercentile = 99
	DefaultSearchResolution = 0.05
)

// maxSearchSteps bounds the runs of one search. Doubling from 1 request
// per second to a million takes 20; bisecting to 5% takes 5 more.
const maxSearchSteps = 40

// minSearchRate is the lowest rate tried: a target failing even there has
// no rate worth reporting.
const minSearchRate = 1.0

// minAchieved is the share of the rate asked for that answers must come
// back at for a run to pass.
const minAchieved = 0.95

// EnsureDefaults fills zero fields with their defaults.
func (s *Search) EnsureDefaults() {
	if s.MaxRate == 0 {
		s.MaxRate = DefaultSearchMaxRate
	}
	if s.Percentile == 0 {
		s.Percentile = DefaultSearchPercentile
	}
	if s.Resolution == 0 {
		s.Resolution = DefaultSearchResolution
	}
	if s.MaxInFlight == 0 {
		s.MaxInFlight = DefaultMaxInFlight
	}
}

// Validate reports every problem with s at once.
func (s Search) Validate() error {
	var errs []error
	if !(s.Start > 0) || math.IsInf(s.Start, 1) {
		errs = append(errs, fmt.Errorf("bench: search start rate %v: want a finite rate, more than 0", s.Start))
	}
	if !(s.MaxRate >= s.Start) || math.IsInf(s.MaxRate, 1) {
		errs = append(errs, fmt.Errorf("bench: search max rate %v: want a finite rate, at least the start rate %v", s.MaxRate, s.Start))
	}
	if s.Step <= 0 {
		errs = append(errs, fmt.Errorf("bench: search step %v: want more than 0", s.Step))
	}
	if !(s.Percentile > 0 && s.Percentile <= 100) {
		errs = append(errs, fmt.Errorf("bench: search percentile %v: want over 0 and at most 100", s.Percentile))
	}
	if s.Bound <= 0 {
		errs = append(errs, fmt.Errorf("bench: search bound %v: want more than 0", s.Bound))
	}
	if !(s.Resolution > 0 && s.Resolution < 1) {
		errs = append(errs, fmt.Errorf("bench: search resolution %v: want over 0 and under 1", s.Resolution))
	}
	if s.MaxInFlight < 1 {
		errs = append(errs, fmt.Errorf("bench: search max in flight %d: want 1 or more", s.MaxInFlight))
	}
	return errors.Join(errs...)
}

// Step is one run of a search.
type Step struct {
	// Rate is the rate the run was asked for.
	Rate float64
	// Result is what it measured.
	Result *Result
	// Latency is the searched percentile of Result.Latency.
	Latency time.Duration
	// Pass reports whether the run met the bound: Latency at most the
	// bound, no errors, and answers coming back at 95% of Rate or more.
	Pass bool
}

// FindMaxRate returns the highest rate at which target keeps the
// percentile of latency s asks for within its bound, as the step that
// measured it. It doubles the rate from s.Start until a run fails (or
// s.MaxRate passes), then bisects between the highest rate that passed
// and the lowest that failed, to s.Resolution; a failure at s.Start
// bisects down from it. Each step is a run of s.Step. It returns an error
// when no rate down to 1 request per second passes, or when ctx ends, with
// the best step found so far.
func FindMaxRate(ctx context.Context, s Search, target Target) (Step, error) {
	s.EnsureDefaults()
	if err := s.Validate(); err != nil {
		return Step{}, err
	}
	var best Step
	pass, fail := 0.0, math.Inf(1) // highest passing rate, lowest failing one
	rate := s.Start
	for range maxSearchSteps {
		res, err := Run(ctx, Load{Rate: rate, Duration: s.Step, MaxInFlight: s.MaxInFlight, Wait: s.Wait}, target)
		if err != nil {
			return best, fmt.Errorf("bench: search at %v requests/s: %w", rate, err)
		}
		st := Step{Rate: rate, Result: res, Latency: res.Latency.Percentile(s.Percentile)}
		st.Pass = st.Latency <= s.Bound && res.Errors == 0 && res.Achieved() >= minAchieved*rate
		if s.Progress != nil {
			s.Progress(st)
		}
		if st.Pass {
			pass, best = rate, st
		} else {
			fail = rate
		}
		switch {
		case pass == s.MaxRate:
			return best, nil
		case math.IsInf(fail, 1):
			rate = min(2*rate, s.MaxRate)
			continue
		case fail-pass <= s.Resolution*fail:
			return best, nil
		case pass == 0 && fail <= minSearchRate:
			return best, fmt.Errorf("bench: no rate down to %v requests/s keeps p%v within %v", fail, s.Percentile, s.Bound)
		}
		next := roundRate((pass + fail) / 2)
		if next <= pass || next >= fail {
			return best, nil // the rates in between round to these two
		}
		rate = next
	}
	if pass == 0 {
		return best, fmt.Errorf("bench: no rate passed in %d steps", maxSearchSteps)
	}
	return best, nil
}

// roundRate rounds r to a whole number of requests per second, or to a
// hundredth below 10.
func roundRate(r float64) float64 {
	if r >= 10 {
		return math.Round(r)
	}
	return math.Round(r*100) / 100
}
