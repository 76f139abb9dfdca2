package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/store"
	"github.com/cairnfs/cairn/internal/store/redis"
)

// Namespace is the namespace a measurement declares, writes and queries.
const Namespace = "bench"

// requestSets is how many distinct queries a measurement prepares;
// requests cycle through them.
const requestSets = 1024

// Registry declares namespace [Namespace]: a string primary key, id, and n
// features, f000 to f(n-1), cycling through the plain types. The query
// server of a measurement serves it.
func Registry(n int) (*feature.Registry, error) { return RegistryWith(n, NoResolver) }

// RegistryWith declares the namespace of [Registry], and with a resolver
// kind ([HTTPResolver], [SQLResolver]) a resolver of that kind computing
// its last [ResolvedFeatures] features, which then have a maximum
// staleness of 0s (computed on every query). The http resolver calls the
// URL in environment variable [ResolverURLEnv], the sql resolver connects
// to the DSN in [ResolverDSNEnv] and queries table [ResolvedTable].
func RegistryWith(n int, resolver string) (*feature.Registry, error) {
	if resolver != NoResolver && n < ResolvedFeatures {
		return nil, fmt.Errorf("bench: %d features: a resolver computes the last %d, want at least as many", n, ResolvedFeatures)
	}
	types := []string{"int", "float", "string", "bool", "datetime", "float", "int", "string", "bytes", "int"}
	var y strings.Builder
	fmt.Fprintf(&y, "namespaces:\n- name: %s\n  primary_key: id\n  features:\n    id: string\n", Namespace)
	for i := range n {
		if resolver != NoResolver && i >= n-ResolvedFeatures {
			fmt.Fprintf(&y, "    %s: {type: %s, max_staleness: 0s}\n", featureName(i), types[i%len(types)])
			continue
		}
		fmt.Fprintf(&y, "    %s: %s\n", featureName(i), types[i%len(types)])
	}
	if resolver != NoResolver {
		decl, err := resolverYAML(resolver, n)
		if err != nil {
			return nil, err
		}
		y.WriteString(decl)
	}
	return feature.Parse("bench", []byte(y.String()))
}

// featureName is the name of feature i of namespace [Namespace].
func featureName(i int) string { return fmt.Sprintf("f%03d", i) }

// value is the value of feature j of entity i, canonical for t.
func value(t feature.Type, i, j int) any {
	switch t.Kind {
	case feature.KindInt:
		return int64(i*1000 + j)
	case feature.KindFloat:
		return float64(i) + float64(j)/7
	case feature.KindString:
		return fmt.Sprintf("value %d of entity %d", j, i)
	case feature.KindBool:
		return (i+j)%2 == 0
	case feature.KindDatetime:
		return time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i*60+j) * time.Second)
	case feature.KindBytes:
		return []byte{byte(i), byte(i >> 8), byte(j), 0xca, 0x1e}
	}
	return nil
}

// seed writes every feature of every key through the store's Write, in
// batches.
func seed(ctx context.Context, st Store, ns *feature.Namespace, feats []*feature.Feature, keys []string, progress func(string, ...any)) error {
	const batch = 100
	at := time.Now().UTC()
	lastReport := time.Now()
	for lo := 0; lo < len(keys); lo += batch {
		ws := make([]store.EntityWrite, 0, batch)
		for i := lo; i < min(lo+batch, len(keys)); i++ {
			w := store.EntityWrite{Namespace: ns, Key: keys[i], Values: make([]store.Value, len(feats))}
			for j, f := range feats {
				w.Values[j] = store.Value{Feature: f, Value: value(f.Type, i, j), ObservedAt: at}
			}
			ws = append(ws, w)
		}
		if err := st.Write(ctx, ws); err != nil {
			return fmt.Errorf("bench: write entities %d to %d: %w", lo, lo+len(ws)-1, err)
		}
		if time.Since(lastReport) > time.Second {
			progress("writing entities: %d of %d", lo+len(ws), len(keys))
			lastReport = time.Now()
		}
	}
	return nil
}

// storeURI returns the store URI to use: a Redis URI without a key prefix
// gets a fresh one (ownPrefix), so that the measurement neither touches
// nor leaves behind anything else's keys.
func storeURI(uri string) (_ string, ownPrefix bool, _ error) {
	u, err := url.Parse(uri)
	if err != nil {
		return "", false, fmt.Errorf("store URI %q: %w", uri, err)
	}
	if !redis.IsURIScheme(u.Scheme) {
		return uri, false, nil
	}
	q := u.Query()
	if q.Has("prefix") {
		return uri, false, nil
	}
	q.Set("prefix", "cairn-bench-"+strconv.FormatInt(time.Now().UnixNano(), 36)+":")
	u.RawQuery = q.Encode()
	return u.String(), true, nil
}

// requestSet is one query: its entities and its HTTP body.
type requestSet struct {
	keys []string
	body []byte
}

// requests prepares requestSets queries of n distinct keys each, drawn
// from keys with a fixed seed, asking for every feature of feats.
func requests(keys []string, n int, feats []*feature.Feature) []requestSet {
	outputs := make([]string, len(feats))
	for i, f := range feats {
		outputs[i] = f.FQN
	}
	rng := rand.New(rand.NewPCG(1, 2))
	sets := make([]requestSet, requestSets)
	for i := range sets {
		idx := rng.Perm(len(keys))[:n]
		ks := make([]string, n)
		for j, k := range idx {
			ks[j] = keys[k]
		}
		var input any = ks
		if n == 1 {
			input = ks[0]
		}
		body, _ := json.Marshal(map[string]any{
			"inputs":  map[string]any{Namespace + ".id": input},
			"outputs": outputs,
		})
		sets[i] = requestSet{keys: ks, body: body}
	}
	return sets
}
