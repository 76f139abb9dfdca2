package feature

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestWindowedExample(t *testing.T) {
	r, err := Load("../../examples/features.yaml")
	if err != nil {
		t.Fatal(err)
	}
	amount, _ := r.Lookup("user.amount")
	count, ok := r.Lookup("user.txn_count")
	if !ok || !count.Windowed() || count.Window.Aggregate != AggCount || count.Window.Of != amount {
		t.Fatalf("user.txn_count: %+v", count)
	}
	if count.Type.Kind != KindInt || count.Window.Bucket != 5*time.Minute || count.Window.Longest() != 7*24*time.Hour {
		t.Fatalf("user.txn_count: type %s bucket %v longest %v", count.Type, count.Window.Bucket, count.Window.Longest())
	}
	if total, _ := r.Lookup("user.txn_total"); total.Type.Kind != KindFloat {
		t.Fatalf("sum of a float: type %s, want float", total.Type)
	}
	if m, _ := r.Lookup("user.merchants"); m.Type.Kind != KindInt || m.Window.Aggregate != AggApproxCountDistinct {
		t.Fatalf("user.merchants: %+v", m)
	}

	// Derived features: found by wire name, not in the namespace's
	// features nor in the names the stores give ids to.
	day, ok := r.Lookup("user.txn_count__86400__")
	if !ok || day.WindowOf != count || day.WindowLength != 24*time.Hour || day.Type != count.Type || day.Name != "txn_count__86400__" || day.Windowed() {
		t.Fatalf("user.txn_count__86400__: %+v", day)
	}
	if _, ok := r.Lookup("user.txn_count__60__"); ok {
		t.Fatal("an undeclared window was found")
	}
	user, _ := r.Namespace("user")
	if slices.Contains(user.Features, day) || slices.Contains(r.FQNs(), day.FQN) {
		t.Fatal("a derived feature is among the namespace's stored features")
	}
	if !slices.Contains(user.Features, count) || !slices.Contains(r.FQNs(), "user.txn_count") {
		t.Fatal("a windowed feature is missing from its namespace's features")
	}
	if got := len(count.Window.Derived); got != 3 || count.Window.Derived[1] != day {
		t.Fatalf("derived %v", count.Window.Derived)
	}

	over := r.WindowedOver(amount)
	if len(over) != 2 || over[0] != count || over[1].Name != "txn_total" {
		t.Fatalf("WindowedOver(user.amount) = %v", over)
	}
	if mid, _ := r.Lookup("user.merchant_id"); len(r.WindowedOver(mid)) != 1 {
		t.Fatal("WindowedOver(user.merchant_id)")
	}
	if age, _ := r.Lookup("user.age"); r.WindowedOver(age) != nil {
		t.Fatal("WindowedOver(user.age) should be empty")
	}
}

func TestWindowedSortsWindows(t *testing.T) {
	r, err := Parse("f.yaml", []byte(`
namespaces:
  - name: u
    primary_key: id
    features:
      id: int
      n: {aggregate: max, of: v, windows: [1d, 90s, 1h], bucket: 30s}
      v: int
`))
	if err != nil {
		t.Fatal(err)
	}
	n, _ := r.Lookup("u.n")
	if want := []time.Duration{90 * time.Second, time.Hour, 24 * time.Hour}; !slices.Equal(n.Window.Windows, want) {
		t.Fatalf("windows %v, want %v", n.Window.Windows, want)
	}
	if n.Type.Kind != KindInt {
		t.Fatalf("max of an int: type %s", n.Type)
	}
	if _, ok := r.Lookup("u.n__90__"); !ok {
		t.Fatal("u.n__90__ not found")
	}
}

func TestWindowedErrors(t *testing.T) {
	const head = "namespaces:\n  - name: user\n    primary_key: id\n    features:\n      id: string\n      amount: float\n      tags: list[string]\n      doc: json\n"
	tests := []struct {
		name, features string
		want           []string
	}{
		{"unknown aggregate", `w: {aggregate: median, of: amount, windows: [1h], bucket: 5m}`,
			[]string{`namespace "user": feature "w": unknown aggregate "median"`}},
		{"of missing", `w: {aggregate: count, windows: [1h], bucket: 5m}`, []string{`feature "w": of: the aggregated feature is required`}},
		{"of unknown", `w: {aggregate: count, of: nope, windows: [1h], bucket: 5m}`, []string{`feature "w": of: "nope" is not a feature of namespace "user"`}},
		{"of primary key", `w: {aggregate: count, of: id, windows: [1h], bucket: 5m}`, []string{`feature "w": of: "id" is the primary key`}},
		{"of windowed", "w: {aggregate: count, of: amount, windows: [1h], bucket: 5m}\n      w2: {aggregate: sum, of: w, windows: [1h], bucket: 5m}",
			[]string{`feature "w2": of: "w" is itself windowed`}},
		{"of windowed declared later", "w2: {aggregate: sum, of: w, windows: [1h], bucket: 5m}\n      w: {aggregate: count, of: amount, windows: [1h], bucket: 5m}",
			[]string{`feature "w2": of: "w" is itself windowed`}},
		{"sum of a list", `w: {aggregate: sum, of: tags, windows: [1h], bucket: 5m}`, []string{`feature "w": of: sum of "tags" (type list[string]): want int or float`}},
		{"mean of json", `w: {aggregate: mean, of: doc, windows: [1h], bucket: 5m}`, []string{`of: mean of "doc" (type json): want int or float`}},
		{"distinct of float", `w: {aggregate: approx_count_distinct, of: amount, windows: [1h], bucket: 5m}`,
			[]string{`of: approx_count_distinct of "amount" (type float): want int, string, bool, datetime or bytes`}},
		{"no windows", `w: {aggregate: count, of: amount, bucket: 5m}`, []string{`feature "w": windows: at least one window is required`}},
		{"no bucket", `w: {aggregate: count, of: amount, windows: [1h]}`, []string{`feature "w": bucket: a bucket duration is required`}},
		{"bad durations", `w: {aggregate: count, of: amount, windows: [soon, -1h, 0s, infinity], bucket: 5m}`,
			[]string{`windows: invalid duration "soon"`, `windows: invalid duration "-1h"`, `windows: invalid duration "0s"`, `windows: invalid duration "infinity"`}},
		{"short bucket", `w: {aggregate: count, of: amount, windows: [1s], bucket: 500ms}`, []string{`feature "w": bucket: 500ms, want whole seconds, at least 1s`}},
		{"fractional bucket", `w: {aggregate: count, of: amount, windows: [3s], bucket: 1500ms}`, []string{`bucket: 1.5s, want whole seconds`}},
		{"not a multiple", `w: {aggregate: count, of: amount, windows: [1h, 7m], bucket: 5m}`, []string{`feature "w": windows: 7m0s is not a whole multiple of the bucket 5m0s`}},
		{"too many buckets", `w: {aggregate: count, of: amount, windows: [7d], bucket: 1m}`, []string{`feature "w": windows: 168h0m0s spans 10080 buckets of 1m0s, want at most 10000`}},
		{"duplicate window", `w: {aggregate: count, of: amount, windows: [1h, 60m], bucket: 5m}`, []string{`feature "w": windows: 1h0m0s declared twice`}},
		{"type with aggregate", `w: {type: int, aggregate: count, of: amount, windows: [1h], bucket: 5m}`, []string{`feature "w": type is not allowed with aggregate`}},
		{"staleness with aggregate", `w: {max_staleness: 1h, aggregate: count, of: amount, windows: [1h], bucket: 5m}`, []string{`feature "w": max_staleness is not allowed with aggregate`}},
		{"window fields without aggregate", `w: {type: int, of: amount}`, []string{`feature "w": of, windows and bucket declare a windowed feature and need aggregate`}},
		{"wire name clash", "w: {aggregate: count, of: amount, windows: [1h], bucket: 5m}\n      w__3600__: int",
			[]string{`feature "w": window 1h0m0s: its wire name "w__3600__" is also a declared feature`}},
		{"every problem at once", `w: {aggregate: sum, of: tags, windows: [7m], bucket: 0.5s}`,
			[]string{`of: sum of "tags"`, `bucket: 500ms`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse("features.yaml", []byte(head+"      "+tt.features+"\n"))
			if err == nil {
				t.Fatal("want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), "features.yaml: ") || !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
		})
	}
}

func TestWindowedNotPrimaryKeyNorResolved(t *testing.T) {
	_, err := Parse("f.yaml", []byte(`
namespaces:
  - name: u
    primary_key: w
    features:
      v: int
      w: {aggregate: count, of: v, windows: [1h], bucket: 1h}
  - name: m
    primary_key: id
    features:
      id: int
      v: int
      w: {aggregate: count, of: v, windows: [1h], bucket: 1h}
    resolvers:
      - {name: r, kind: expression, expression: "1", outputs: [w]}
`))
	for _, w := range []string{
		`namespace "u": primary_key "w" is a windowed feature`,
		`namespace "m": feature "w": a windowed feature is aggregated from events, it cannot be the output of resolver "r"`,
	} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("error %v\nlacks %q", err, w)
		}
	}
}

func TestAggregationNames(t *testing.T) {
	for a := AggCount; a <= AggApproxCountDistinct; a++ {
		got, err := ParseAggregation(a.String())
		if err != nil || got != a {
			t.Errorf("ParseAggregation(%q) = %v, %v", a.String(), got, err)
		}
	}
	if _, err := ParseAggregation("invalid"); err == nil {
		t.Error("ParseAggregation(invalid) succeeded")
	}
	if Aggregation(0).String() != "invalid" || Aggregation(99).String() != "invalid" {
		t.Error("out-of-range aggregations should print as invalid")
	}
}
