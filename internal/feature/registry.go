package feature

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Feature is one declared feature.
type Feature struct {
	// FQN is the fully-qualified name, namespace.name.
	FQN string
	// Name is the name inside the namespace.
	Name string
	// Namespace is the namespace the feature belongs to.
	Namespace *Namespace
	// Type is the declared type.
	Type Type
	// MaxStaleness overrides the namespace's when non-zero.
	MaxStaleness Staleness
	// Resolver computes the feature when no fresh value is stored; nil
	// when the feature is only ever uploaded.
	Resolver *Resolver
	// Window declares a windowed feature: an aggregation of another
	// feature's events over sliding windows (windowed.go). nil for a
	// plain feature. A windowed feature is stored in buckets, never as a
	// plain value, and queried through the features of Window.Derived.
	Window *Windowed

	// WindowOf is, for a feature derived for one window of a windowed
	// feature (wire name ns.name__<seconds>__), that windowed feature;
	// nil otherwise. Derived features are found by [Registry.Lookup] but
	// are not in their namespace's Features: no store holds them.
	WindowOf *Feature
	// WindowLength is a derived feature's window; 0 otherwise.
	WindowLength time.Duration
}

// Staleness is how old a stored value may be and still be served.
// The zero value means "use the default"; [Infinite] means no bound;
// [Recompute] (declared 0s) means a stored value is never served.
type Staleness time.Duration

const (
	// Infinite is a Staleness with no bound.
	Infinite Staleness = -1
	// Recompute is a maximum staleness of 0s: every query computes the
	// feature with its resolver, and its results are not persisted.
	Recompute Staleness = -2
)

// Namespace is a feature class such as user or merchant.
type Namespace struct {
	Name string
	// PrimaryKey is the feature that identifies an entity; its type is int
	// or string.
	PrimaryKey *Feature
	// MaxStaleness bounds the age of values served for this namespace;
	// Infinite when unbounded.
	MaxStaleness Staleness
	// Features lists every feature in declaration order, primary key
	// included.
	Features []*Feature
	// Resolvers lists the namespace's resolvers in declaration order.
	Resolvers []*Resolver

	byName map[string]*Feature
	// maxStalenessDeclared tells a declared namespace bound from the
	// default, which a feature with a resolver does not inherit.
	maxStalenessDeclared bool
}

// Feature returns the namespace's feature called name.
func (ns *Namespace) Feature(name string) (*Feature, bool) {
	f, ok := ns.byName[name]
	return f, ok
}

// MaxAge returns how old a stored value of f may be and still be served:
// its own bound, else its namespace's declared one, else the default. The
// default is no bound for a feature without a resolver, and 0 for one with
// a resolver (computed on every query unless it declares a bound, as
// Chalk's features are). bounded is false when any age is served; a
// bound of 0 serves no stored value.
func (f *Feature) MaxAge() (d time.Duration, bounded bool) {
	s := f.MaxStaleness
	if s == 0 && (f.Resolver == nil || f.Namespace.maxStalenessDeclared) {
		s = f.Namespace.MaxStaleness
	}
	switch {
	case s == 0 || s == Recompute:
		return 0, true
	case s < 0:
		return 0, false
	}
	return time.Duration(s), true
}

// Staleness returns the age after which a stored value of f is never
// served, for the stores' expiry: 0 when values never go stale. A feature
// whose stored values are never served (a bound of 0) gives the least
// positive age the stores keep, a millisecond.
func (f *Feature) Staleness() time.Duration {
	d, bounded := f.MaxAge()
	switch {
	case !bounded:
		return 0
	case d == 0:
		return time.Millisecond
	}
	return d
}

// Registry is the set of declared namespaces and features.
type Registry struct {
	namespaces []*Namespace
	byName     map[string]*Namespace
	byFQN      map[string]*Feature
	// derived holds the features of windowed features' windows, by FQN.
	derived map[string]*Feature
	// windowedOver maps a feature to the windowed features aggregating it.
	windowedOver map[*Feature][]*Feature
}

// Namespaces returns the namespaces in declaration order.
func (r *Registry) Namespaces() []*Namespace { return r.namespaces }

// Namespace returns the namespace called name.
func (r *Registry) Namespace(name string) (*Namespace, bool) {
	ns, ok := r.byName[name]
	return ns, ok
}

// Lookup returns the feature with the given fully-qualified name: a
// declared feature, or the feature derived for one window of a windowed
// feature, by its wire name (ns.name__<seconds>__).
func (r *Registry) Lookup(fqn string) (*Feature, bool) {
	if f, ok := r.byFQN[fqn]; ok {
		return f, true
	}
	f, ok := r.derived[fqn]
	return f, ok
}

// WindowedOver returns the windowed features aggregating of, in
// declaration order: each uploaded value of of is one event of each.
func (r *Registry) WindowedOver(of *Feature) []*Feature { return r.windowedOver[of] }

// Load reads a registry from a YAML file. Every problem is reported, each
// prefixed with the file, the namespace and the feature it concerns.
func Load(path string) (*Registry, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

type fileDoc struct {
	Namespaces []nsDoc `yaml:"namespaces"`
}

type nsDoc struct {
	Name         string        `yaml:"name"`
	PrimaryKey   string        `yaml:"primary_key"`
	MaxStaleness string        `yaml:"max_staleness"`
	Features     yaml.Node     `yaml:"features"`
	Resolvers    []resolverDoc `yaml:"resolvers"`
}

type featureDoc struct {
	Type         string   `yaml:"type"`
	MaxStaleness string   `yaml:"max_staleness"`
	Aggregate    string   `yaml:"aggregate"`
	Of           string   `yaml:"of"`
	Windows      []string `yaml:"windows"`
	Bucket       string   `yaml:"bucket"`
}

// Parse builds a registry from YAML text; file names the source in errors.
func Parse(file string, data []byte) (*Registry, error) {
	var doc fileDoc
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	r := &Registry{
		byName:       map[string]*Namespace{},
		byFQN:        map[string]*Feature{},
		derived:      map[string]*Feature{},
		windowedOver: map[*Feature][]*Feature{},
	}
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{file}, args...)...))
	}
	if len(doc.Namespaces) == 0 {
		fail("no namespaces declared")
	}
	for i, nd := range doc.Namespaces {
		if !nameRE.MatchString(nd.Name) {
			fail("namespace #%d: invalid name %q (want [a-z][a-z0-9_]*)", i+1, nd.Name)
			continue
		}
		if _, dup := r.byName[nd.Name]; dup {
			fail("namespace %q: declared twice", nd.Name)
			continue
		}
		ns := &Namespace{Name: nd.Name, MaxStaleness: Infinite, byName: map[string]*Feature{}}
		if nd.MaxStaleness != "" {
			s, err := ParseStaleness(nd.MaxStaleness)
			if err != nil {
				fail("namespace %q: max_staleness: %v", nd.Name, err)
			} else {
				ns.MaxStaleness, ns.maxStalenessDeclared = s, true
			}
		}
		failFeature := func(feat, format string, args ...any) {
			if feat == "" {
				fail("namespace %q: "+format, append([]any{nd.Name}, args...)...)
				return
			}
			fail("namespace %q: feature %q: "+format, append([]any{nd.Name, feat}, args...)...)
		}
		features, windows := parseFeatures(ns, &nd.Features, failFeature)
		for _, f := range features {
			ns.Features = append(ns.Features, f)
			ns.byName[f.Name] = f
			r.byFQN[f.FQN] = f
		}
		for _, df := range resolveWindows(ns, windows, nd.PrimaryKey, failFeature) {
			r.derived[df.FQN] = df
		}
		for _, f := range ns.Features {
			if f.Window != nil {
				r.windowedOver[f.Window.Of] = append(r.windowedOver[f.Window.Of], f)
			}
		}
		switch pk, ok := ns.byName[nd.PrimaryKey]; {
		case nd.PrimaryKey == "":
			fail("namespace %q: primary_key is required", nd.Name)
		case !ok:
			fail("namespace %q: primary_key %q is not one of its features", nd.Name, nd.PrimaryKey)
		case pk.Window != nil || isWindowDoc(windows, pk):
			fail("namespace %q: primary_key %q is a windowed feature, want a plain one", nd.Name, nd.PrimaryKey)
		case pk.Type.Kind != KindString && pk.Type.Kind != KindInt:
			fail("namespace %q: primary_key %q has type %s, want string or int", nd.Name, nd.PrimaryKey, pk.Type)
		default:
			ns.PrimaryKey = pk
		}
		parseResolvers(ns, nd.Resolvers, func(format string, args ...any) {
			fail("namespace %q: "+format, append([]any{nd.Name}, args...)...)
		})
		for _, d := range windows {
			if d.feature.Resolver != nil {
				failFeature(d.feature.Name, "a windowed feature is aggregated from events, it cannot be the output of resolver %q", d.feature.Resolver.Name)
			}
		}
		r.namespaces = append(r.namespaces, ns)
		r.byName[ns.Name] = ns
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return r, nil
}

// parseFeatures reads the features mapping, keeping its order. A feature is
// either "name: type", "name: {type: T, max_staleness: D}" or a windowed
// feature "name: {aggregate: A, of: F, windows: [W...], bucket: B}", whose
// declaration is returned for resolveWindows to check once every feature
// of the namespace is known.
func parseFeatures(ns *Namespace, node *yaml.Node, fail func(feat, format string, args ...any)) ([]*Feature, []windowDoc) {
	if node.Kind == 0 {
		fail("", "features: at least one feature is required")
		return nil, nil
	}
	if node.Kind != yaml.MappingNode {
		fail("", "features: want a mapping of name to type (line %d)", node.Line)
		return nil, nil
	}
	var out []*Feature
	var windows []windowDoc
	seen := map[string]bool{}
	for i := 0; i+1 < len(node.Content); i += 2 {
		name, val := node.Content[i].Value, node.Content[i+1]
		if !nameRE.MatchString(name) {
			fail(name, "invalid name (want [a-z][a-z0-9_]*)")
			continue
		}
		if seen[name] {
			fail(name, "declared twice")
			continue
		}
		seen[name] = true
		var fd featureDoc
		switch val.Kind {
		case yaml.ScalarNode:
			fd.Type = val.Value
		case yaml.MappingNode:
			if err := val.Decode(&fd); err != nil {
				fail(name, "%v", err)
				continue
			}
		default:
			fail(name, "want a type or {type, max_staleness} (line %d)", val.Line)
			continue
		}
		if fd.Aggregate != "" {
			f := &Feature{FQN: ns.Name + "." + name, Name: name, Namespace: ns}
			bad := false
			if fd.Type != "" {
				fail(name, "type is not allowed with aggregate (a windowed feature's type follows from its aggregation)")
				bad = true
			}
			if fd.MaxStaleness != "" {
				fail(name, "max_staleness is not allowed with aggregate (a window is always current)")
				bad = true
			}
			if !bad {
				out = append(out, f)
				windows = append(windows, windowDoc{feature: f, aggregate: fd.Aggregate, of: fd.Of, windows: fd.Windows, bucket: fd.Bucket})
			}
			continue
		}
		if fd.Of != "" || fd.Windows != nil || fd.Bucket != "" {
			fail(name, "of, windows and bucket declare a windowed feature and need aggregate")
			continue
		}
		t, err := ParseType(fd.Type)
		if err != nil {
			fail(name, "%v", err)
			continue
		}
		f := &Feature{FQN: ns.Name + "." + name, Name: name, Namespace: ns, Type: t}
		if fd.MaxStaleness != "" {
			s, err := ParseStaleness(fd.MaxStaleness)
			if err != nil {
				fail(name, "max_staleness: %v", err)
				continue
			}
			f.MaxStaleness = s
		}
		out = append(out, f)
	}
	if len(out) == 0 && len(node.Content) == 0 {
		fail("", "features: at least one feature is required")
	}
	return out, windows
}

// ParseStaleness parses "infinity", 0 (or 0s: never serve a stored value,
// [Recompute]) or a positive duration such as 90s, 10m, 1h or 1d (days are
// accepted in addition to Go's units).
func ParseStaleness(s string) (Staleness, error) {
	s = strings.TrimSpace(s)
	if s == "infinity" || s == "inf" {
		return Infinite, nil
	}
	if d, err := time.ParseDuration(s); s == "0" || err == nil && d == 0 && !strings.HasPrefix(s, "-") {
		return Recompute, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseFloat(days, 64)
		if err == nil && n == 0 && !strings.HasPrefix(days, "-") {
			return Recompute, nil
		}
		if err != nil || n <= 0 || n > 106751 {
			return 0, fmt.Errorf("invalid duration %q", s)
		}
		return Staleness(time.Duration(n * float64(24*time.Hour))), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("invalid duration %q (want infinity, 0s or a positive duration like 90s, 10m, 1h, 1d)", s)
	}
	return Staleness(d), nil
}

// FQNs returns every feature name in the registry, sorted.
func (r *Registry) FQNs() []string {
	out := make([]string, 0, len(r.byFQN))
	for fqn := range r.byFQN {
		out = append(out, fqn)
	}
	sort.Strings(out)
	return out
}
