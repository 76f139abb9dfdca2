package bloom

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/bits-and-blooms/bloom/v3"
)

// Spec sizes one namespace's filter.
type Spec struct {
	// Namespace is the namespace whose entity keys the filter holds.
	Namespace string `json:"namespace"`
	// ExpectedKeys is how many distinct keys the filter is sized for. When
	// more are added the filter is rebuilt twice as large, up to
	// TrackerConfig.MaxExpectedKeys. At most [MaxExpectedKeys] (2^36).
	// Default 1,000,000.
	ExpectedKeys uint `json:"expected_keys"`
	// FalsePositiveRate is the target rate of "maybe present" answers for
	// absent keys at ExpectedKeys keys. Default 0.01.
	FalsePositiveRate float64 `json:"false_positive_rate"`
}

// ParseSpecs parses CAIRN_BLOOM_NAMESPACES, a JSON list such as
// [{"namespace": "user", "expected_keys": 1000000, "false_positive_rate": 0.01}].
// Every problem is reported, each naming its entry.
func ParseSpecs(s string) ([]Spec, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	var specs []Spec
	if err := dec.Decode(&specs); err != nil {
		return nil, fmt.Errorf("bloom namespaces: want a JSON list of {namespace, expected_keys, false_positive_rate}: %w", err)
	}
	var errs []error
	seen := map[string]bool{}
	for i := range specs {
		sp := &specs[i]
		sp.ensureDefaults()
		switch {
		case sp.Namespace == "":
			errs = append(errs, fmt.Errorf("bloom namespaces: entry %d: namespace is required", i))
		case seen[sp.Namespace]:
			errs = append(errs, fmt.Errorf("bloom namespaces: entry %d: namespace %q listed twice", i, sp.Namespace))
		}
		seen[sp.Namespace] = true
		for _, err := range sp.problems(MaxExpectedKeys) {
			errs = append(errs, fmt.Errorf("bloom namespaces: entry %d (%s): %w", i, sp.Namespace, err))
		}
	}
	return specs, errors.Join(errs...)
}

// ensureDefaults fills the zero fields of sp with their defaults.
func (sp *Spec) ensureDefaults() {
	if sp.ExpectedKeys == 0 {
		sp.ExpectedKeys = 1_000_000
	}
	if sp.FalsePositiveRate == 0 {
		sp.FalsePositiveRate = 0.01
	}
}

// problems lists what is wrong with sp's sizing, with maxKeys the largest
// ExpectedKeys allowed.
func (sp *Spec) problems(maxKeys uint) []error {
	var errs []error
	if sp.FalsePositiveRate <= 0 || sp.FalsePositiveRate >= 1 {
		errs = append(errs, fmt.Errorf("false_positive_rate %g: want between 0 and 1", sp.FalsePositiveRate))
	}
	if sp.ExpectedKeys > maxKeys {
		errs = append(errs, fmt.Errorf("expected_keys %d is over the maximum %d", sp.ExpectedKeys, maxKeys))
	}
	return errs
}

// Filter is a Bloom filter of entity keys, safe for concurrent use.
type Filter struct {
	spec  Spec
	mu    sync.RWMutex
	bf    *bloom.BloomFilter
	added atomic.Uint64 // keys that were new to the filter when added
}

// NewFilter returns an empty filter sized by spec.
func NewFilter(spec Spec) *Filter {
	return &Filter{spec: spec, bf: bloom.NewWithEstimates(spec.ExpectedKeys, spec.FalsePositiveRate)}
}

// Add inserts key.
func (f *Filter) Add(key string) {
	f.mu.Lock()
	present := f.bf.TestAndAddString(key)
	f.mu.Unlock()
	if !present {
		f.added.Add(1)
	}
}

// MayContain reports whether key may have been added. False is certain.
func (f *Filter) MayContain(key string) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.bf.TestString(key)
}

// Added estimates the distinct keys added (a key whose bits were all set
// already is not counted).
func (f *Filter) Added() uint64 { return f.added.Load() }

// Saturated reports whether more keys were added than the filter is sized
// for, so that its false-positive rate exceeds the target.
func (f *Filter) Saturated() bool { return f.added.Load() > uint64(f.spec.ExpectedKeys) }

// FillRatio returns the fraction of bits set. It walks the whole bit set:
// call it for metrics, not per query.
func (f *Filter) FillRatio() float64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return float64(f.bf.BitSet().Count()) / float64(f.bf.Cap())
}

// Bytes returns the filter's memory footprint, in bytes.
func (f *Filter) Bytes() int { return int(f.bf.Cap() / 8) }
