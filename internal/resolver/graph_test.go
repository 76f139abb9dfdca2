package resolver

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/cairnfs/cairn/internal/feature"
)

// buildGraph parses a registry and builds every expression resolver in
// it; other kinds are left out, as their constructors are not needed to
// order expressions.
func buildGraph(t *testing.T, doc string) map[*feature.Resolver]kind {
	t.Helper()
	reg, err := feature.Parse("features.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[*feature.Resolver]kind{}
	for _, ns := range reg.Namespaces() {
		for _, r := range ns.Resolvers {
			if r.Kind != feature.ResolverExpression {
				continue
			}
			k, err := newExpression(r)
			if err != nil {
				t.Fatal(err)
			}
			kinds[r] = k
		}
	}
	return kinds
}

func TestCheckGraphCycles(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, resolvers string
		want            []string
	}{
		{"two steps", `
      - {name: a_expr, kind: expression, outputs: [a], expression: "b + 1"}
      - {name: b_expr, kind: expression, outputs: [b], expression: "a + x"}`,
			[]string{"resolvers: cycle: user.a (expression a_expr) → user.b (expression b_expr) → user.a"}},
		// Declared in another order than the walk enters it: the text
		// starts at the first declared all the same.
		{"three steps", `
      - {name: c_expr, kind: expression, outputs: [c], expression: "a * 2"}
      - {name: a_expr, kind: expression, outputs: [a], expression: "x + b"}
      - {name: b_expr, kind: expression, outputs: [b], expression: "c - 1"}`,
			[]string{"resolvers: cycle: user.c (expression c_expr) → user.a (expression a_expr) → user.b (expression b_expr) → user.c"}},
		{"two cycles", `
      - {name: a_expr, kind: expression, outputs: [a], expression: "b"}
      - {name: b_expr, kind: expression, outputs: [b], expression: "a"}
      - {name: c_expr, kind: expression, outputs: [c], expression: "d + x"}
      - {name: d_expr, kind: expression, outputs: [d], expression: "c"}
      - {name: ok_expr, kind: expression, outputs: [ok], expression: "x + 1"}`,
			[]string{
				"resolvers: cycle: user.a (expression a_expr) → user.b (expression b_expr) → user.a",
				"resolvers: cycle: user.c (expression c_expr) → user.d (expression d_expr) → user.c",
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			doc := `
namespaces:
  - name: user
    primary_key: id
    features: {id: string, x: int, a: int, b: int, c: int, d: int, ok: int}
    resolvers:` + tt.resolvers
			order, err := checkGraph(buildGraph(t, doc))
			if err == nil {
				t.Fatalf("no cycle found; order %v", order)
			}
			if order != nil {
				t.Errorf("order %v with an error", order)
			}
			if got := strings.Split(err.Error(), "\n"); !slices.Equal(got, tt.want) {
				t.Fatalf("error:\n%s\nwant:\n%s", err, strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestExpressionReadingItsOwnOutputIsACycle(t *testing.T) {
	t.Parallel()
	reg, err := feature.Parse("features.yaml", []byte(`
namespaces:
  - name: user
    primary_key: id
    features: {id: string, a: int}
    resolvers:
      - {name: a_expr, kind: expression, outputs: [a], expression: "a + 1"}`))
	if err != nil {
		t.Fatal(err)
	}
	ns, _ := reg.Namespace("user")
	_, err = newExpression(ns.Resolvers[0])
	if want := "resolvers: cycle: user.a (expression a_expr) → user.a"; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("error %v, want %q", err, want)
	}
}

func TestCheckGraphOrder(t *testing.T) {
	t.Parallel()
	// Declared with every dependent before what it reads, in two
	// namespaces, with an expression reading a feature of an http
	// resolver (not built here: it has no dependencies to order).
	kinds := buildGraph(t, `
namespaces:
  - name: user
    primary_key: id
    features: {id: string, x: int, score: int, a: int, b: int, c: int, d: int, lone: string}
    resolvers:
      - {name: d_expr, kind: expression, outputs: [d], expression: "c + b + a"}
      - {name: c_expr, kind: expression, outputs: [c], expression: "a * b"}
      - {name: b_expr, kind: expression, outputs: [b], expression: "a + score"}
      - {name: a_expr, kind: expression, outputs: [a], expression: "x + 1"}
      - {name: lone_expr, kind: expression, outputs: [lone], expression: "id + '!'"}
      - {name: credit, kind: http, url: "http://127.0.0.1:1/resolve", outputs: [score]}
  - name: merchant
    primary_key: id
    features: {id: int, p: int, q: int}
    resolvers:
      - {name: q_expr, kind: expression, outputs: [q], expression: "p * 2"}
      - {name: p_expr, kind: expression, outputs: [p], expression: "id + 1"}
`)
	order, err := checkGraph(kinds)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range order {
		got = append(got, r.FQN)
	}
	// Namespaces by name; in each, dependencies first, then declaration
	// order.
	want := []string{
		"merchant.p_expr", "merchant.q_expr",
		"user.a_expr", "user.b_expr", "user.c_expr", "user.d_expr", "user.lone_expr",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
	// The property the Set relies on, checked on its own.
	for i, r := range order {
		for _, in := range kinds[r].inputs() {
			if in.Resolver == nil || kinds[in.Resolver] == nil {
				continue
			}
			if j := slices.Index(order, in.Resolver); j > i {
				t.Errorf("%s reads %s, computed later by %s", r.FQN, in.FQN, in.Resolver.FQN)
			}
		}
	}
}

func TestCheckGraphEmpty(t *testing.T) {
	t.Parallel()
	order, err := checkGraph(nil)
	if err != nil || len(order) != 0 {
		t.Fatalf("order %v, err %v", order, err)
	}
}

// TestExpressionDocExample keeps docs/expressions.md's example true: it
// parses, every expression compiles, and the resolvers order with the
// ones vip reads first.
func TestExpressionDocExample(t *testing.T) {
	t.Parallel()
	text, err := os.ReadFile("../../docs/expressions.md")
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(text), "```yaml\n")
	if !ok {
		t.Fatal("docs/expressions.md has no yaml example")
	}
	block, _, _ = strings.Cut(block, "```")
	kinds := buildGraph(t, block)
	if len(kinds) != 5 {
		t.Fatalf("%d expression resolvers in the example, want 5", len(kinds))
	}
	order, err := checkGraph(kinds)
	if err != nil {
		t.Fatal(err)
	}
	pos := map[string]int{}
	for i, r := range order {
		pos[r.Name] = i
	}
	if pos["vip"] < pos["age_bucket"] || pos["vip"] < pos["refund_rate"] {
		t.Fatalf("order %v: vip before what it reads", pos)
	}
	for r, k := range kinds {
		if r.Name != "refund_rate" {
			continue
		}
		rows, err := k.call(context.Background(), []string{"u1", "u2"}, [][]any{{int64(4), int64(1)}, {int64(0), int64(0)}})
		if err != nil {
			t.Fatal(err)
		}
		if rows[0].Values[0] != 0.25 || rows[1].Values[0] != 0.0 {
			t.Fatalf("refund_rate rows %+v", rows)
		}
	}
}
