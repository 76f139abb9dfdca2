package feature

import (
	"strings"
	"testing"
	"time"
)

// The examples declare one resolver of each kind, linked to the features
// they compute.
func TestExampleResolvers(t *testing.T) {
	r, err := Load("../../examples/features.yaml")
	if err != nil {
		t.Fatal(err)
	}
	user, _ := r.Namespace("user")
	kinds := map[ResolverKind]bool{}
	for _, res := range user.Resolvers {
		kinds[res.Kind] = true
		for _, f := range res.Outputs {
			if f.Resolver != res {
				t.Errorf("%s: output %s is not linked back to it", res.FQN, f.FQN)
			}
		}
	}
	for _, k := range []ResolverKind{ResolverHTTP, ResolverSQL, ResolverExpression} {
		if !kinds[k] {
			t.Errorf("examples/features.yaml declares no %s resolver", k)
		}
	}
	cs, _ := r.Lookup("user.credit_score")
	if cs.Resolver == nil || cs.Resolver.FQN != "user.credit" || cs.Resolver.Timeout != 500*time.Millisecond || cs.Resolver.BatchSize != 100 {
		t.Errorf("user.credit_score's resolver: %+v", cs.Resolver)
	}
}

// Maximum staleness of features with a resolver: their own bound, else
// the namespace's declared one, else 0 (computed on every query); without
// a resolver, the namespace's, else none.
func TestMaxAgeWithResolvers(t *testing.T) {
	r, err := Parse("f.yaml", []byte(`
namespaces:
  - name: plain
    primary_key: id
    features:
      id: string
      a: string
      b: {type: string, max_staleness: 1h}
      c: {type: string, max_staleness: 0s}
      d: string
    resolvers:
      - {name: r, kind: http, url: "http://x", outputs: [b, c, d]}
  - name: bounded
    primary_key: id
    max_staleness: 10m
    features: {id: string, e: string}
    resolvers:
      - {name: r, kind: http, url: "http://x", outputs: [e]}
`))
	if err != nil {
		t.Fatal(err)
	}
	for fqn, want := range map[string]struct {
		d       time.Duration
		bounded bool
		ttl     time.Duration
	}{
		"plain.a":   {0, false, 0},
		"plain.b":   {time.Hour, true, time.Hour},
		"plain.c":   {0, true, time.Millisecond},
		"plain.d":   {0, true, time.Millisecond},
		"bounded.e": {10 * time.Minute, true, 10 * time.Minute},
	} {
		f, _ := r.Lookup(fqn)
		d, bounded := f.MaxAge()
		if d != want.d || bounded != want.bounded || f.Staleness() != want.ttl {
			t.Errorf("%s: MaxAge %v, %v, Staleness %v; want %v, %v, %v", fqn, d, bounded, f.Staleness(), want.d, want.bounded, want.ttl)
		}
	}
}

// Every problem with a resolver's declaration is reported, naming the file,
// the namespace and the resolver.
func TestResolverErrors(t *testing.T) {
	const head = `
namespaces:
  - name: user
    primary_key: id
    features: {id: string, a: int, b: int, c: string}
    resolvers:
`
	for _, tc := range []struct{ name, resolvers, want string }{
		{"unknown kind", `      - {name: r, kind: grpc, outputs: [a]}`, `resolver "r": kind "grpc": want http, sql or expression`},
		{"bad name", `      - {name: R-1, kind: http, url: "http://x", outputs: [a]}`, `resolver #1: invalid name "R-1"`},
		{"twice", "      - {name: r, kind: http, url: \"http://x\", outputs: [a]}\n      - {name: r, kind: http, url: \"http://x\", outputs: [b]}", `resolver "r": declared twice`},
		{"no url", `      - {name: r, kind: http, outputs: [a]}`, `kind http needs url`},
		{"no outputs", `      - {name: r, kind: http, url: "http://x"}`, `outputs: name at least one feature`},
		{"unknown output", `      - {name: r, kind: http, url: "http://x", outputs: [zz]}`, `output "zz" is not a feature of "user"`},
		{"primary key", `      - {name: r, kind: http, url: "http://x", outputs: [id]}`, `output "id" is the primary key`},
		{"two resolvers", "      - {name: r, kind: http, url: \"http://x\", outputs: [a]}\n      - {name: s, kind: http, url: \"http://y\", outputs: [a]}", `resolver "s": output "a" is computed by resolver "r" already`},
		{"output twice", `      - {name: r, kind: http, url: "http://x", outputs: [a, a]}`, `output "a" named twice`},
		{"another kind's setting", `      - {name: r, kind: http, url: "http://x", query: "select", outputs: [a]}`, `query is a setting of kind sql, not http`},
		{"sql without $1", `      - {name: r, kind: sql, dsn: "postgres://x", query: "SELECT id, a FROM t", outputs: [a]}`, `query does not use $1`},
		{"sql without dsn", `      - {name: r, kind: sql, query: "SELECT id, a FROM t WHERE id = ANY($1)", outputs: [a]}`, `kind sql needs dsn`},
		{"expression of two", `      - {name: r, kind: expression, expression: "1", outputs: [a, b]}`, `want one output, got 2`},
		{"expression with a timeout", `      - {name: r, kind: expression, expression: "1", timeout: 1s, outputs: [a]}`, `kind expression takes no timeout`},
		{"bad timeout", `      - {name: r, kind: http, url: "http://x", timeout: soon, outputs: [a]}`, `timeout "soon"`},
		{"batch too large", `      - {name: r, kind: http, url: "http://x", batch_size: 100000, outputs: [a]}`, `batch_size 100000: want 1 to 10000`},
		{"no concurrency", `      - {name: r, kind: http, url: "http://x", max_concurrency: 0, outputs: [a]}`, `max_concurrency 0: want at least 1`},
		{"unknown field", `      - {name: r, kind: http, url: "http://x", outputs: [a], retries: 3}`, `field retries not found`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("features.yaml", []byte(head+tc.resolvers+"\n"))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "features.yaml") {
				t.Errorf("error %v, want one containing %q and the file", err, tc.want)
			}
		})
	}
}

// ExpandEnv names the first variable it cannot expand.
func TestExpandEnv(t *testing.T) {
	env := map[string]string{"HOST": "db", "PORT": "5432"}
	get := func(k string) string { return env[k] }
	if got, err := ExpandEnv("postgres://${HOST}:${PORT}/x?a=$b", "dsn", get); err != nil || got != "postgres://db:5432/x?a=$b" {
		t.Errorf("ExpandEnv = %q, %v", got, err)
	}
	if _, err := ExpandEnv("${HOST}/${TOKEN}", "resolver user.r: url", get); err == nil || err.Error() != "resolver user.r: url names the environment variable TOKEN, which is not set" {
		t.Errorf("unset variable: %v", err)
	}
}

// FuzzParse: any feature file is either refused with an error or gives a
// registry whose resolvers are consistent; it never panics.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"namespaces:\n  - name: user\n    primary_key: id\n    features: {id: string, a: int}\n    resolvers:\n      - {name: r, kind: http, url: \"http://x\", outputs: [a]}\n",
		"namespaces:\n  - name: m\n    primary_key: id\n    max_staleness: 0s\n    features: {id: int, e: float, v: vector[3]}\n    resolvers:\n      - {name: e, kind: expression, expression: \"double(id)\", outputs: [e]}\n",
		"namespaces: []",
		"namespaces:\n  - name: u\n    primary_key: id\n    features: {id: string, a: {type: int, max_staleness: 1d}}\n",
		"namespaces:\n  - name: u\n    primary_key: id\n    features: {id: string, a: float, n: {aggregate: sum, of: a, windows: [1h, 1d], bucket: 5m}}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Parse("fuzz.yaml", data)
		if err != nil {
			return
		}
		for _, ns := range r.Namespaces() {
			for _, res := range ns.Resolvers {
				if len(res.Outputs) == 0 || res.BatchSize < 1 || res.MaxConcurrency < 1 || res.Timeout <= 0 {
					t.Fatalf("resolver %s accepted with %+v", res.FQN, res)
				}
				for _, o := range res.Outputs {
					if o.Resolver != res || o == ns.PrimaryKey || o.Namespace != ns {
						t.Fatalf("resolver %s: output %s badly linked", res.FQN, o.FQN)
					}
				}
			}
			for _, fe := range ns.Features {
				fe.MaxAge()
				_ = fe.Staleness()
				if w := fe.Window; w != nil {
					if w.Of.Window != nil || w.Of == ns.PrimaryKey || w.Bucket < MinBucket || len(w.Derived) != len(w.Windows) {
						t.Fatalf("windowed %s accepted with %+v", fe.FQN, w)
					}
					for i, d := range w.Derived {
						if w.Windows[i]%w.Bucket != 0 || d.WindowOf != fe || d.WindowLength != w.Windows[i] {
							t.Fatalf("windowed %s: window %v badly derived", fe.FQN, w.Windows[i])
						}
						if got, ok := r.Lookup(d.FQN); !ok || got != d {
							t.Fatalf("derived %s not found", d.FQN)
						}
					}
				}
			}
		}
	})
}
