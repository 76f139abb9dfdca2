package feature

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// ResolverKind names how a resolver computes its features.
type ResolverKind string

// The kinds of resolver.
const (
	// ResolverHTTP posts the keys to resolve to a URL and reads the
	// values from its answer (docs/resolvers.md has the formats).
	ResolverHTTP ResolverKind = "http"
	// ResolverSQL runs a PostgreSQL query with the keys as one array
	// parameter, $1; columns map to features by name.
	ResolverSQL ResolverKind = "sql"
	// ResolverExpression computes one feature from other features of the
	// same entity with an expression (CEL).
	ResolverExpression ResolverKind = "expression"
)

// Defaults of a resolver's declaration.
const (
	// DefaultResolverTimeout bounds one call of a resolver; the query's
	// deadline bounds it too.
	DefaultResolverTimeout = time.Second
	// DefaultResolverBatchSize is the most keys one call carries.
	DefaultResolverBatchSize = 100
	// DefaultResolverMaxConcurrency is the most calls of one resolver in
	// flight at once, across all queries of a server.
	DefaultResolverMaxConcurrency = 16
	// DefaultResolverMaxConnections is the size of a sql resolver's
	// connection pool.
	DefaultResolverMaxConnections = 4
	// MaxResolverBatchSize bounds batch_size.
	MaxResolverBatchSize = 10_000
)

// Resolver is one declared resolver: how features of one namespace are
// computed when the store has no fresh value of them. The declaration is
// checked here for shape only; package resolver builds it, reading the
// environment, connecting, and type-checking expressions.
type Resolver struct {
	// Name is the resolver's name, unique in its namespace.
	Name string
	// FQN is namespace.name, as answers' meta name it
	// (chosen_resolver_fqn).
	FQN string
	// Namespace is the namespace whose features it computes.
	Namespace *Namespace
	// Kind says how it computes them.
	Kind ResolverKind
	// Outputs are the features it computes, in declaration order; never
	// the primary key. One call computes all of them.
	Outputs []*Feature
	// Timeout bounds one call. Default DefaultResolverTimeout.
	Timeout time.Duration
	// BatchSize is the most keys one call carries. Default
	// DefaultResolverBatchSize.
	BatchSize int
	// MaxConcurrency is the most calls in flight at once. Default
	// DefaultResolverMaxConcurrency.
	MaxConcurrency int

	// URL is where an http resolver posts; it may name environment
	// variables as ${NAME}.
	URL string
	// Headers are sent with every call of an http resolver; values may
	// name environment variables as ${NAME}.
	Headers map[string]string

	// DSN is a sql resolver's PostgreSQL connection string; it may name
	// environment variables as ${NAME}.
	DSN string
	// Query is a sql resolver's query; $1 is the array of keys.
	Query string
	// MaxConnections is a sql resolver's pool size. Default
	// DefaultResolverMaxConnections.
	MaxConnections int

	// Expression is an expression resolver's CEL expression over the
	// namespace's features, by name.
	Expression string
}

type resolverDoc struct {
	Name           string            `yaml:"name"`
	Kind           string            `yaml:"kind"`
	Outputs        []string          `yaml:"outputs"`
	Timeout        string            `yaml:"timeout"`
	BatchSize      *int              `yaml:"batch_size"`
	MaxConcurrency *int              `yaml:"max_concurrency"`
	URL            string            `yaml:"url"`
	Headers        map[string]string `yaml:"headers"`
	DSN            string            `yaml:"dsn"`
	Query          string            `yaml:"query"`
	MaxConnections *int              `yaml:"max_connections"`
	Expression     string            `yaml:"expression"`
}

// envRef matches ${NAME} in strings that may name the environment.
var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// ExpandEnv replaces every ${NAME} in s with getenv(NAME). It fails
// naming the first variable that is unset or empty, and what was being
// expanded (what).
func ExpandEnv(s, what string, getenv func(string) string) (string, error) {
	var missing string
	out := envRef.ReplaceAllStringFunc(s, func(m string) string {
		name := envRef.FindStringSubmatch(m)[1]
		v := getenv(name)
		if v == "" && missing == "" {
			missing = name
		}
		return v
	})
	if missing != "" {
		return "", fmt.Errorf("%s names the environment variable %s, which is not set", what, missing)
	}
	return out, nil
}

// parseResolvers reads a namespace's resolvers, once its features are
// known, and links each output to its resolver.
func parseResolvers(ns *Namespace, docs []resolverDoc, fail func(format string, args ...any)) {
	seen := map[string]bool{}
	for i, d := range docs {
		if !nameRE.MatchString(d.Name) {
			fail("resolver #%d: invalid name %q (want [a-z][a-z0-9_]*)", i+1, d.Name)
			continue
		}
		if seen[d.Name] {
			fail("resolver %q: declared twice", d.Name)
			continue
		}
		seen[d.Name] = true
		rfail := func(format string, args ...any) {
			fail("resolver %q: "+format, append([]any{d.Name}, args...)...)
		}
		r := &Resolver{Name: d.Name, FQN: ns.Name + "." + d.Name, Namespace: ns, Kind: ResolverKind(d.Kind),
			Timeout: DefaultResolverTimeout, BatchSize: DefaultResolverBatchSize,
			MaxConcurrency: DefaultResolverMaxConcurrency, MaxConnections: DefaultResolverMaxConnections,
			URL: d.URL, Headers: d.Headers, DSN: d.DSN, Query: d.Query, Expression: strings.TrimSpace(d.Expression)}
		ok := true
		bad := func(format string, args ...any) { rfail(format, args...); ok = false }

		// Each kind's own settings are required; another kind's are
		// refused, so that a typo in kind is not silently a different
		// resolver.
		own := map[ResolverKind][]string{
			ResolverHTTP:       {"url", "headers"},
			ResolverSQL:        {"dsn", "query", "max_connections"},
			ResolverExpression: {"expression"},
		}
		set := map[string]bool{"url": d.URL != "", "headers": len(d.Headers) > 0, "dsn": d.DSN != "",
			"query": d.Query != "", "max_connections": d.MaxConnections != nil, "expression": d.Expression != ""}
		switch r.Kind {
		case ResolverHTTP:
			if d.URL == "" {
				bad("kind http needs url")
			}
		case ResolverSQL:
			if d.DSN == "" {
				bad("kind sql needs dsn (a PostgreSQL connection string; ${NAME} reads it from the environment)")
			}
			if d.Query == "" {
				bad("kind sql needs query (with $1 for the array of keys)")
			} else if !strings.Contains(d.Query, "$1") {
				bad("query does not use $1, the array of keys to resolve")
			}
		case ResolverExpression:
			if r.Expression == "" {
				bad("kind expression needs expression")
			}
			if len(d.Outputs) != 1 {
				bad("kind expression computes one feature: want one output, got %d", len(d.Outputs))
			}
			if d.BatchSize != nil || d.MaxConcurrency != nil || d.Timeout != "" {
				bad("kind expression takes no timeout, batch_size or max_concurrency: it runs in the query server")
			}
		default:
			bad("kind %q: want http, sql or expression", d.Kind)
		}
		if own[r.Kind] != nil {
			for k, v := range own {
				if k == r.Kind {
					continue
				}
				for _, field := range v {
					if set[field] && !slices.Contains(own[r.Kind], field) {
						bad("%s is a setting of kind %s, not %s", field, k, r.Kind)
					}
				}
			}
		}
		if d.Timeout != "" {
			t, err := time.ParseDuration(d.Timeout)
			if err != nil || t <= 0 {
				bad("timeout %q: want a positive duration such as 500ms", d.Timeout)
			}
			r.Timeout = t
		}
		if d.BatchSize != nil {
			if r.BatchSize = *d.BatchSize; r.BatchSize < 1 || r.BatchSize > MaxResolverBatchSize {
				bad("batch_size %d: want 1 to %d", r.BatchSize, MaxResolverBatchSize)
			}
		}
		if d.MaxConcurrency != nil {
			if r.MaxConcurrency = *d.MaxConcurrency; r.MaxConcurrency < 1 {
				bad("max_concurrency %d: want at least 1", r.MaxConcurrency)
			}
		}
		if d.MaxConnections != nil {
			if r.MaxConnections = *d.MaxConnections; r.MaxConnections < 1 {
				bad("max_connections %d: want at least 1", r.MaxConnections)
			}
		}
		if len(d.Outputs) == 0 {
			bad("outputs: name at least one feature it computes")
		}
		for _, name := range d.Outputs {
			f, found := ns.byName[name]
			switch {
			case !found:
				bad("output %q is not a feature of %q", name, ns.Name)
			case f == ns.PrimaryKey:
				bad("output %q is the primary key, which queries give and nothing computes", name)
			case f.Resolver != nil && f.Resolver.Name != d.Name:
				bad("output %q is computed by resolver %q already: a feature has one resolver", name, f.Resolver.Name)
			case slices.Contains(r.Outputs, f):
				bad("output %q named twice", name)
			default:
				r.Outputs = append(r.Outputs, f)
			}
		}
		if !ok {
			continue
		}
		for _, f := range r.Outputs {
			f.Resolver = r
		}
		ns.Resolvers = append(ns.Resolvers, r)
	}
}
