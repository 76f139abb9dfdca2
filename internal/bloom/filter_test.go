package bloom

import (
	"strconv"
	"strings"
	"testing"
)

// Filled to the keys it was sized for, the filter's false-positive rate is
// the target, within 25%.
func TestFalsePositiveRateMatchesTarget(t *testing.T) {
	for _, target := range []float64{0.01, 0.05} {
		spec := Spec{Namespace: "user", ExpectedKeys: 50_000, FalsePositiveRate: target}
		f := NewFilter(spec)
		for i := range int(spec.ExpectedKeys) {
			f.Add("present-" + strconv.Itoa(i))
		}
		for i := range int(spec.ExpectedKeys) {
			if !f.MayContain("present-" + strconv.Itoa(i)) {
				t.Fatalf("false negative for key %d", i)
			}
		}
		const probes = 200_000
		fp := 0
		for i := range probes {
			if f.MayContain("absent-" + strconv.Itoa(i)) {
				fp++
			}
		}
		rate := float64(fp) / probes
		if rate < target*0.75 || rate > target*1.25 {
			t.Errorf("target %g: measured false-positive rate %g, not within 25%%", target, rate)
		}
		if f.Saturated() {
			t.Errorf("saturated at exactly its expected keys (added %d)", f.Added())
		}
		f.Add("one-more-" + strconv.Itoa(1))
		for i := 0; !f.Saturated(); i++ {
			f.Add("more-" + strconv.Itoa(i))
		}
		if fr := f.FillRatio(); fr < 0.4 || fr > 0.6 {
			t.Errorf("fill ratio %g at saturation; an optimally sized filter is about half full", fr)
		}
	}
}

func TestParseSpecs(t *testing.T) {
	specs, err := ParseSpecs(`[{"namespace": "user", "expected_keys": 10, "false_positive_rate": 0.1}, {"namespace": "merchant"}]`)
	if err != nil {
		t.Fatal(err)
	}
	if specs[1].ExpectedKeys != 1_000_000 || specs[1].FalsePositiveRate != 0.01 || specs[0].ExpectedKeys != 10 {
		t.Errorf("specs = %+v", specs)
	}
	_, err = ParseSpecs(`[{"namespace": ""}, {"namespace": "a", "false_positive_rate": 2}, {"namespace": "a"}]`)
	for _, want := range []string{"entry 0: namespace is required", "entry 1 (a): false_positive_rate 2", `entry 2: namespace "a" listed twice`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
	if _, err := ParseSpecs(`[{"namespace": "a", "capacity": 3}]`); err == nil || !strings.Contains(err.Error(), "capacity") {
		t.Errorf("unknown field: %v", err)
	}
	if specs, err := ParseSpecs(""); err != nil || specs != nil {
		t.Errorf("empty: %v %v", specs, err)
	}
}
