package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cairnfs/cairn/internal/feature"
)

// With Options.Resolvers the measurement starts two more query server
// processes on the same store, whose registry declares the same features
// as (a)'s but computes the last [ResolvedFeatures] of them with a
// resolver, and drives them side by side with (a) and the floor:
//
//	(e) an http resolver, calling a service this process serves on
//	    127.0.0.1 (resolverService), which answers each key's values
//	    from the same deterministic function the entities were written
//	    with, at once;
//	(f) a sql resolver, querying table [ResolvedTable] of the PostgreSQL
//	    Options.PGDSN names, which this process creates (or replaces)
//	    with one row per entity of the pool.
//
// The computed features have a maximum staleness of 0s: their stored
// values are never served, so every query computes them, which is the
// cost measured. The other features are read from the store, as in (a).
// The server process learns its resolver from its --resolver flag; where
// the resolver reaches, from the environment variables the declaration
// names ([ResolverURLEnv], [ResolverDSNEnv]), which keeps the DSN off
// the command line.

// ResolvedFeatures is how many features of namespace [Namespace], the
// last ones, a resolver computes with Options.Resolvers.
const ResolvedFeatures = 10

// ResolvedTable is the PostgreSQL table the sql resolver of path (f)
// queries.
const ResolvedTable = "cairn_bench_resolved"

// ResolverURLEnv names the environment variable holding the URL the http
// resolver of a query server process calls; ResolverDSNEnv the DSN its
// sql resolver connects to.
const (
	ResolverURLEnv = "CAIRN_BENCH_RESOLVER_URL"
	ResolverDSNEnv = "CAIRN_BENCH_RESOLVER_DSN"
)

// Resolver kinds of [RegistryWith]: the kinds of the resolver computing
// the last [ResolvedFeatures] features, or none.
const (
	NoResolver   = ""
	HTTPResolver = "http"
	SQLResolver  = "sql"
)

// resolverName is the name of the resolver a registry declares.
const resolverName = "computed"

// resolvedFeatureNames returns the names of the features a resolver
// computes among n.
func resolvedFeatureNames(n int) []string {
	var names []string
	for i := max(n-ResolvedFeatures, 0); i < n; i++ {
		names = append(names, featureName(i))
	}
	return names
}

// resolvedQuery is the sql resolver's query for n features.
func resolvedQuery(n int) string {
	return fmt.Sprintf("SELECT id, %s FROM %s WHERE id = ANY($1)", strings.Join(resolvedFeatureNames(n), ", "), ResolvedTable)
}

// resolverYAML declares the resolver of kind computing the last
// ResolvedFeatures of n features, indented under a namespace.
func resolverYAML(kind string, n int) (string, error) {
	outputs := "[" + strings.Join(resolvedFeatureNames(n), ", ") + "]"
	switch kind {
	case HTTPResolver:
		return fmt.Sprintf("  resolvers:\n  - name: %s\n    kind: http\n    url: ${%s}\n    outputs: %s\n", resolverName, ResolverURLEnv, outputs), nil
	case SQLResolver:
		return fmt.Sprintf("  resolvers:\n  - name: %s\n    kind: sql\n    dsn: ${%s}\n    query: %q\n    outputs: %s\n", resolverName, ResolverDSNEnv, resolvedQuery(n), outputs), nil
	}
	return "", fmt.Errorf("--resolver %q: want %q or %q", kind, HTTPResolver, SQLResolver)
}

// pgColumn is the PostgreSQL column type holding a feature of type t.
func pgColumn(t feature.Type) string {
	switch t.Kind {
	case feature.KindInt:
		return "bigint"
	case feature.KindFloat:
		return "double precision"
	case feature.KindBool:
		return "boolean"
	case feature.KindDatetime:
		return "timestamptz"
	case feature.KindBytes:
		return "bytea"
	}
	return "text"
}

// entityIndex returns i of key "e%07d", the entity's index in the pool.
func entityIndex(key string) (int, bool) {
	if len(key) < 2 || key[0] != 'e' {
		return 0, false
	}
	i, err := strconv.Atoi(key[1:])
	return i, err == nil && i >= 0
}

// seedResolvedTable creates (or replaces) ResolvedTable on the PostgreSQL
// dsn names, with one row per key holding the values of feats (the
// resolved ones; first is the index of the first among the namespace's
// features).
func seedResolvedTable(ctx context.Context, dsn string, keys []string, feats []*feature.Feature, first int) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("--pg-dsn %s: connect: %w", redactDSN(dsn), err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	cols := []string{"id text PRIMARY KEY"}
	names := []string{"id"}
	for _, f := range feats {
		cols = append(cols, f.Name+" "+pgColumn(f.Type)+" NOT NULL")
		names = append(names, f.Name)
	}
	for _, s := range []string{"DROP TABLE IF EXISTS " + ResolvedTable, "CREATE TABLE " + ResolvedTable + " (" + strings.Join(cols, ", ") + ")"} {
		if _, err := conn.Exec(ctx, s); err != nil {
			return fmt.Errorf("--pg-dsn %s: %s: %w", redactDSN(dsn), s, err)
		}
	}
	rows := make([][]any, len(keys))
	for i, k := range keys {
		row := []any{k}
		for j, f := range feats {
			row = append(row, value(f.Type, i, first+j))
		}
		rows[i] = row
	}
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{ResolvedTable}, names, pgx.CopyFromRows(rows)); err != nil {
		return fmt.Errorf("--pg-dsn %s: fill %s: %w", redactDSN(dsn), ResolvedTable, err)
	}
	if _, err := conn.Exec(ctx, "ANALYZE "+ResolvedTable); err != nil {
		return fmt.Errorf("--pg-dsn %s: analyze %s: %w", redactDSN(dsn), ResolvedTable, err)
	}
	return nil
}

// redactDSN hides the password of a URL-form DSN.
func redactDSN(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.Scheme != "" {
		return u.Redacted()
	}
	return "(a keyword/value DSN)"
}

// resolverService is the service the http resolver of path (e) calls: it
// answers every key asked with the values of the features asked, from
// value, without waiting.
type resolverService struct {
	srv   *http.Server
	url   string
	calls atomic.Int64
	// types are the types of the features it computes, by name, and
	// index their index among the namespace's features.
	types map[string]feature.Type
	index map[string]int
}

// startResolverService serves the resolver service on a loopback port.
func startResolverService(feats []*feature.Feature, first int) (*resolverService, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("bench: the resolver service: %w", err)
	}
	s := &resolverService{url: "http://" + ln.Addr().String() + "/resolve", types: map[string]feature.Type{}, index: map[string]int{}}
	for j, f := range feats {
		s.types[f.Name], s.index[f.Name] = f.Type, first+j
	}
	s.srv = &http.Server{Handler: http.HandlerFunc(s.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// resolveRequest is what an http resolver sends (docs/resolvers.md).
type resolveRequest struct {
	Keys     []string `json:"keys"`
	Features []string `json:"features"`
}

type resolveRow struct {
	Key    string         `json:"key"`
	Values map[string]any `json:"values"`
}

func (s *resolverService) serve(w http.ResponseWriter, r *http.Request) {
	s.calls.Add(1)
	var req resolveRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<20)).Decode(&req); err != nil {
		http.Error(w, "malformed request: "+err.Error(), http.StatusBadRequest)
		return
	}
	rows := make([]resolveRow, 0, len(req.Keys))
	for _, k := range req.Keys {
		i, ok := entityIndex(k)
		if !ok {
			continue // no value for a key not of the pool
		}
		vals := make(map[string]any, len(req.Features))
		for _, name := range req.Features {
			if t, ok := s.types[name]; ok {
				vals[name] = value(t, i, s.index[name])
			}
		}
		rows = append(rows, resolveRow{Key: k, Values: vals})
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"rows": rows})
}

func (s *resolverService) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
}

// resolverVariants returns the variants (e) and (f): query server
// processes with an http and a sql resolver.
func resolverVariants(o Options, serviceURL string) []serverVariant {
	env := plainEnv[:len(plainEnv):len(plainEnv)]
	return []serverVariant{
		{name: "(e)", label: fmt.Sprintf("(e) %d of %d from an http resolver", ResolvedFeatures, o.Features),
			env: append(env, ResolverURLEnv+"="+serviceURL), args: []string{"--resolver", HTTPResolver}},
		{name: "(f)", label: fmt.Sprintf("(f) %d of %d from a sql resolver", ResolvedFeatures, o.Features),
			env: append(env, ResolverDSNEnv+"="+o.PGDSN), args: []string{"--resolver", SQLResolver}},
	}
}

// resolverCalls reads cairn_resolver_calls_total from the /metrics of
// the query server at addr, by outcome.
func resolverCalls(ctx context.Context, addr string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: HTTP %d", resp.StatusCode)
	}
	return parseResolverCalls(bufio.NewScanner(resp.Body))
}

// parseResolverCalls sums the samples of cairn_resolver_calls_total in a
// Prometheus text exposition, by their outcome label.
func parseResolverCalls(sc *bufio.Scanner) (map[string]float64, error) {
	const metric = "cairn_resolver_calls_total{"
	calls := map[string]float64{}
	for sc.Scan() {
		line := sc.Text()
		labels, ok := strings.CutPrefix(line, metric)
		if !ok {
			continue
		}
		labels, sample, ok := strings.Cut(labels, "} ")
		if !ok {
			return nil, fmt.Errorf("metrics: malformed line %q", line)
		}
		fields := strings.Fields(sample)
		if len(fields) == 0 {
			return nil, fmt.Errorf("metrics: malformed line %q", line)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics: malformed line %q: %w", line, err)
		}
		outcome := ""
		for l := range strings.SplitSeq(labels, ",") {
			if val, ok := strings.CutPrefix(l, `outcome="`); ok {
				outcome = strings.TrimSuffix(val, `"`)
			}
		}
		calls[outcome] += v
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(calls) == 0 {
		return nil, errors.New("metrics: no cairn_resolver_calls_total")
	}
	return calls, nil
}
