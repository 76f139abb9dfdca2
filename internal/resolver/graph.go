package resolver

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/cairnfs/cairn/internal/feature"
)

// checkGraph orders the resolvers of kinds so that each comes after the
// resolvers computing its inputs, and reports every cycle among them. A
// resolver depends on another when one of its inputs is an output of the
// other; only kinds with inputs (expressions) have dependencies.
//
// The order is by namespace name, then, within a namespace, a depth-first
// walk in declaration order that places each resolver's dependencies
// (in the order of its inputs) before it. A cycle is an error naming the
// features around it, in order, starting at the resolver declared first:
//
//	resolvers: cycle: user.a (expression a_expr) → user.b (expression b_expr) → user.a
//
// Each back edge of the walk is one cycle, so every strongly connected
// group of resolvers is reported at least once.
func checkGraph(kinds map[*feature.Resolver]kind) (order []*feature.Resolver, err error) {
	// The namespaces, by name, and their resolvers in declaration order
	// (those of kinds only; a declaration not built has no place).
	byNS := map[*feature.Namespace]bool{}
	for r := range kinds {
		byNS[r.Namespace] = true
	}
	namespaces := make([]*feature.Namespace, 0, len(byNS))
	for ns := range byNS {
		namespaces = append(namespaces, ns)
	}
	slices.SortFunc(namespaces, func(a, b *feature.Namespace) int { return cmp.Compare(a.Name, b.Name) })

	const (
		unseen = iota
		walking
		done
	)
	state := map[*feature.Resolver]int{}
	// path is the walk's stack.
	var path []graphStep
	var cycles []error
	// position gives each resolver's index in its namespace's declaration,
	// to start a cycle's text at the first declared.
	position := func(r *feature.Resolver) int { return slices.Index(r.Namespace.Resolvers, r) }

	var visit func(r *feature.Resolver)
	visit = func(r *feature.Resolver) {
		state[r] = walking
		path = append(path, graphStep{r: r})
		for _, in := range kinds[r].inputs() {
			dep := in.Resolver
			if dep == nil {
				continue
			}
			if _, built := kinds[dep]; !built {
				continue
			}
			path[len(path)-1].via = in
			switch state[dep] {
			case unseen:
				visit(dep)
			case walking:
				start := slices.IndexFunc(path, func(s graphStep) bool { return s.r == dep })
				cycles = append(cycles, cycleError(path[start:], position))
			}
		}
		path = path[:len(path)-1]
		state[r] = done
		order = append(order, r)
	}
	for _, ns := range namespaces {
		for _, r := range ns.Resolvers {
			if _, built := kinds[r]; built && state[r] == unseen {
				visit(r)
			}
		}
	}
	// A resolver absent from its namespace's list (not made by Parse)
	// still gets a place, after the others.
	var rest []*feature.Resolver
	for r := range kinds {
		if state[r] == unseen {
			rest = append(rest, r)
		}
	}
	slices.SortFunc(rest, func(a, b *feature.Resolver) int { return cmp.Compare(a.FQN, b.FQN) })
	for _, r := range rest {
		if state[r] == unseen {
			visit(r)
		}
	}
	if len(cycles) > 0 {
		return nil, errors.Join(cycles...)
	}
	return order, nil
}

// graphStep is one resolver on the walk's path and the input through which
// the walk left it (nil while it is the top).
type graphStep struct {
	r   *feature.Resolver
	via *feature.Feature
}

// cycleError names the features around a cycle. cyc[i].via is the input
// of cyc[i].r that cyc[i+1].r (cyc[0].r for the last) computes; each
// resolver is named after the feature of it that the previous one reads.
func cycleError(cyc []graphStep, position func(*feature.Resolver) int) error {
	// Start at the resolver declared first, so that the text does not
	// depend on where the walk entered the cycle.
	first := 0
	for i, s := range cyc {
		if position(s.r) < position(cyc[first].r) {
			first = i
		}
	}
	steps := slices.Concat(cyc[first:], cyc[:first])
	var b strings.Builder
	b.WriteString("resolvers: cycle: ")
	last := steps[len(steps)-1].via
	for _, s := range steps {
		fmt.Fprintf(&b, "%s (%s %s) → ", last.FQN, s.r.Kind, s.r.Name)
		last = s.via
	}
	b.WriteString(last.FQN)
	return errors.New(b.String())
}
