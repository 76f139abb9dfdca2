package feature

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Aggregation is how a windowed feature folds the events of the feature
// it aggregates.
type Aggregation uint8

// The aggregations a windowed feature may declare.
const (
	// AggCount counts events, whatever their value; its type is int.
	AggCount Aggregation = iota + 1
	// AggSum adds the values of an int or float feature; its type is
	// the aggregated feature's.
	AggSum
	// AggMin is the least value of an int or float feature.
	AggMin
	// AggMax is the greatest value of an int or float feature.
	AggMax
	// AggMean is the arithmetic mean of an int or float feature; its
	// type is float.
	AggMean
	// AggApproxCountDistinct estimates the number of distinct values
	// of an int, string, bool, datetime or bytes feature with a
	// HyperLogLog sketch (docs/aggregations.md); its type is int.
	AggApproxCountDistinct
)

var aggregationNames = [...]string{
	AggCount:               "count",
	AggSum:                 "sum",
	AggMin:                 "min",
	AggMax:                 "max",
	AggMean:                "mean",
	AggApproxCountDistinct: "approx_count_distinct",
}

// String returns the aggregation as written in the feature file.
func (a Aggregation) String() string {
	if a == 0 || int(a) >= len(aggregationNames) {
		return "invalid"
	}
	return aggregationNames[a]
}

// ParseAggregation parses an aggregation as written in the feature file.
func ParseAggregation(s string) (Aggregation, error) {
	for a, name := range aggregationNames {
		if a != 0 && name == s {
			return Aggregation(a), nil
		}
	}
	return 0, fmt.Errorf("unknown aggregate %q (want count, sum, min, max, mean or approx_count_distinct)", s)
}

// Limits of a windowed feature's declaration.
const (
	// MinBucket is the shortest bucket a windowed feature may declare.
	MinBucket = time.Second
	// MaxWindowBuckets is the most buckets one window may span, which
	// bounds the items one query of it reads.
	MaxWindowBuckets = 10_000
)

// Windowed is the declaration of a windowed feature: an aggregation of
// the events of another feature of its namespace over sliding windows,
// materialized in buckets of a fixed duration.
type Windowed struct {
	// Aggregate is the aggregation.
	Aggregate Aggregation
	// Of is the aggregated feature: each of its uploaded values is one
	// event at its observed-at time. Never the primary key nor itself
	// windowed.
	Of *Feature
	// Windows are the window lengths served, ascending and distinct;
	// each is a whole multiple of Bucket.
	Windows []time.Duration
	// Bucket is the duration of one bucket, in whole seconds, at least
	// MinBucket. Buckets are aligned to the Unix epoch.
	Bucket time.Duration
	// Derived are the features served for each window, in the order of
	// Windows (wire names ns.name__<seconds>__).
	Derived []*Feature
}

// Longest returns the longest window, the age past which a bucket is no
// longer read.
func (w *Windowed) Longest() time.Duration { return w.Windows[len(w.Windows)-1] }

// Windowed reports whether f is a windowed feature (declared with
// aggregate). The features derived from it for each window, which carry
// WindowOf, are not.
func (f *Feature) Windowed() bool { return f.Window != nil }

// WireName returns the name a window w of the windowed feature called
// name is queried by: name__<w in whole seconds>__.
func WireName(name string, w time.Duration) string {
	return name + "__" + strconv.FormatInt(int64(w/time.Second), 10) + "__"
}

// windowDoc is the part of a feature's declaration that makes it windowed.
type windowDoc struct {
	feature   *Feature
	aggregate string
	of        string
	windows   []string
	bucket    string
}

// parseWindowDuration parses a window or bucket: a positive Go duration,
// or whole or fractional days with a d suffix.
func parseWindowDuration(s string) (time.Duration, error) {
	st, err := ParseStaleness(s)
	if err != nil || st <= 0 {
		return 0, fmt.Errorf("invalid duration %q (want a positive duration like 5m, 1h or 7d)", s)
	}
	return time.Duration(st), nil
}

// resolveWindows checks the windowed features of ns once all its features
// are known, sets their type and Window, and returns the features derived
// for their windows. pk is the declared primary key's name.
func resolveWindows(ns *Namespace, docs []windowDoc, pk string, fail func(feat, format string, args ...any)) []*Feature {
	var derived []*Feature
	for _, d := range docs {
		f := d.feature
		name := f.Name
		w := &Windowed{}
		ok := true
		agg, err := ParseAggregation(strings.TrimSpace(d.aggregate))
		if err != nil {
			fail(name, "%v", err)
			ok = false
		}
		w.Aggregate = agg
		of, found := ns.byName[d.of]
		switch {
		case d.of == "":
			fail(name, "of: the aggregated feature is required")
			ok = false
		case !found:
			fail(name, "of: %q is not a feature of namespace %q", d.of, ns.Name)
			ok = false
		case d.of == pk:
			fail(name, "of: %q is the primary key, want another feature", d.of)
			ok = false
		case of.Window != nil || isWindowDoc(docs, of):
			fail(name, "of: %q is itself windowed, want a plain feature", d.of)
			ok = false
		case agg != 0 && !aggregable(agg, of.Type):
			fail(name, "of: %s of %q (type %s): want %s", agg, d.of, of.Type, aggregableTypes(agg))
			ok = false
		}
		w.Of = of

		bucket, err := parseWindowDuration(d.bucket)
		switch {
		case d.bucket == "":
			fail(name, "bucket: a bucket duration is required")
			ok = false
		case err != nil:
			fail(name, "bucket: %v", err)
			ok = false
		case bucket < MinBucket || bucket%time.Second != 0:
			fail(name, "bucket: %v, want whole seconds, at least %v", bucket, MinBucket)
			ok = false
		}
		w.Bucket = bucket
		if len(d.windows) == 0 {
			fail(name, "windows: at least one window is required")
			ok = false
		}
		for _, s := range d.windows {
			win, err := parseWindowDuration(s)
			switch {
			case err != nil:
				fail(name, "windows: %v", err)
				ok = false
				continue
			case slices.Contains(w.Windows, win):
				fail(name, "windows: %v declared twice", win)
				ok = false
				continue
			}
			if bucket >= MinBucket && bucket%time.Second == 0 {
				switch {
				case win%bucket != 0:
					fail(name, "windows: %v is not a whole multiple of the bucket %v", win, bucket)
					ok = false
				case win/bucket > MaxWindowBuckets:
					fail(name, "windows: %v spans %d buckets of %v, want at most %d", win, win/bucket, bucket, MaxWindowBuckets)
					ok = false
				}
			}
			w.Windows = append(w.Windows, win)
		}
		if !ok {
			continue
		}
		slices.Sort(w.Windows)
		f.Type = windowedType(agg, of.Type)
		f.Window = w
		for _, win := range w.Windows {
			wire := WireName(name, win)
			if _, clash := ns.byName[wire]; clash {
				fail(name, "window %v: its wire name %q is also a declared feature", win, wire)
				continue
			}
			df := &Feature{FQN: ns.Name + "." + wire, Name: wire, Namespace: ns, Type: f.Type, WindowOf: f, WindowLength: win}
			w.Derived = append(w.Derived, df)
			derived = append(derived, df)
		}
	}
	return derived
}

func isWindowDoc(docs []windowDoc, f *Feature) bool {
	for _, d := range docs {
		if d.feature == f {
			return true
		}
	}
	return false
}

// aggregable reports whether agg may aggregate a feature of type t.
func aggregable(agg Aggregation, t Type) bool {
	switch agg {
	case AggCount:
		return true
	case AggSum, AggMin, AggMax, AggMean:
		return t.Kind == KindInt || t.Kind == KindFloat
	case AggApproxCountDistinct:
		switch t.Kind {
		case KindInt, KindString, KindBool, KindDatetime, KindBytes:
			return true
		}
	}
	return false
}

func aggregableTypes(agg Aggregation) string {
	if agg == AggApproxCountDistinct {
		return "int, string, bool, datetime or bytes"
	}
	return "int or float"
}

// windowedType is the type of a windowed feature aggregating a feature of
// type of.
func windowedType(agg Aggregation, of Type) Type {
	switch agg {
	case AggCount, AggApproxCountDistinct:
		return Type{Kind: KindInt}
	case AggMean:
		return Type{Kind: KindFloat}
	}
	return of
}
