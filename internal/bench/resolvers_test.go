package bench

import (
	"bufio"
	"strings"
	"testing"

	"github.com/cairnfs/cairn/internal/feature"
)

// The registries of (e) and (f) declare the same features as (a)'s, the
// last ten with the resolver and a maximum staleness of 0s.
func TestRegistryWith(t *testing.T) {
	plain, err := Registry(50)
	if err != nil {
		t.Fatal(err)
	}
	pns, _ := plain.Namespace(Namespace)
	for _, kind := range []string{HTTPResolver, SQLResolver} {
		reg, err := RegistryWith(50, kind)
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		ns, _ := reg.Namespace(Namespace)
		if len(ns.Features) != len(pns.Features) {
			t.Fatalf("%s: %d features, want %d", kind, len(ns.Features), len(pns.Features))
		}
		for i, f := range ns.Features {
			if f.Name != pns.Features[i].Name || f.Type != pns.Features[i].Type {
				t.Errorf("%s: feature %d is %s %v, want %s %v", kind, i, f.Name, f.Type, pns.Features[i].Name, pns.Features[i].Type)
			}
		}
		if len(ns.Resolvers) != 1 {
			t.Fatalf("%s: %d resolvers, want 1", kind, len(ns.Resolvers))
		}
		r := ns.Resolvers[0]
		if string(r.Kind) != kind || len(r.Outputs) != ResolvedFeatures || r.Outputs[0].Name != "f040" || r.Outputs[9].Name != "f049" {
			t.Errorf("%s: resolver %+v, want kind %s computing f040 to f049", kind, r, kind)
		}
	}
	if _, err := RegistryWith(9, HTTPResolver); err == nil {
		t.Error("a resolver over 9 features: no error")
	}
	if _, err := RegistryWith(12, "grpc"); err == nil || !strings.Contains(err.Error(), "--resolver") {
		t.Errorf("resolver kind grpc: %v, want an error naming --resolver", err)
	}
	if q := resolvedQuery(50); q != "SELECT id, f040, f041, f042, f043, f044, f045, f046, f047, f048, f049 FROM cairn_bench_resolved WHERE id = ANY($1)" {
		t.Errorf("sql query %q", q)
	}
	if got := pgColumn(feature.Type{Kind: feature.KindBytes}); got != "bytea" {
		t.Errorf("bytes column %q, want bytea", got)
	}
}

func TestParseResolverCalls(t *testing.T) {
	text := `# HELP cairn_resolver_calls_total Calls.
# TYPE cairn_resolver_calls_total counter
cairn_resolver_calls_total{outcome="ok",resolver="bench.computed"} 1234
cairn_resolver_calls_total{outcome="timeout",resolver="bench.computed"} 2
cairn_resolver_calls_totally{outcome="ok"} 9
cairn_query_resolve_seconds_count 7
`
	calls, err := parseResolverCalls(bufio.NewScanner(strings.NewReader(text)))
	if err != nil {
		t.Fatal(err)
	}
	if calls["ok"] != 1234 || calls["timeout"] != 2 || calls["error"] != 0 || len(calls) != 2 {
		t.Errorf("calls %v, want ok 1234 and timeout 2", calls)
	}
	for _, bad := range []string{"", "cairn_resolver_calls_total{outcome=\"ok\"} x\n", "cairn_resolver_calls_total{outcome=\"ok\"}\n", "cairn_resolver_calls_total{outcome=\"ok\"} \n"} {
		if _, err := parseResolverCalls(bufio.NewScanner(strings.NewReader(bad))); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// The exposition comes from another process: any text gives calls or an
// error, never a panic.
func FuzzParseResolverCalls(f *testing.F) {
	f.Add("cairn_resolver_calls_total{outcome=\"ok\",resolver=\"r\"} 3\n")
	f.Add("cairn_resolver_calls_total{} 1e3 1700000000\n")
	f.Add("cairn_resolver_calls_total{outcome=\"ok\"}  \n")
	f.Fuzz(func(t *testing.T, text string) {
		calls, err := parseResolverCalls(bufio.NewScanner(strings.NewReader(text)))
		if err == nil && len(calls) == 0 {
			t.Errorf("%q: no calls and no error", text)
		}
	})
}

// The http resolver's service reads the pool index back from a key, and
// leaves out keys not of the pool.
func TestEntityIndex(t *testing.T) {
	for key, want := range map[string]int{"e0000000": 0, "e0000042": 42} {
		if i, ok := entityIndex(key); !ok || i != want {
			t.Errorf("entityIndex(%q) = %d, %v, want %d", key, i, ok, want)
		}
	}
	for _, key := range []string{"", "e", "x0000001", "e-1", "eabc"} {
		if _, ok := entityIndex(key); ok {
			t.Errorf("entityIndex(%q): ok", key)
		}
	}
}
