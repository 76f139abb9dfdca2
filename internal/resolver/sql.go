package resolver

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cairnfs/cairn/internal/feature"
)

// sqlKind runs a PostgreSQL query with the keys as one array parameter and
// maps its columns to features by name.
type sqlKind struct {
	pool    *pgxpool.Pool
	query   string
	intKeys bool
	key     int // index of the key column
	columns []sqlColumn
	outputs int
}

// sqlColumn reads one result column into an output's canonical value.
type sqlColumn struct {
	name string
	// out is the output's index in the declaration, -1 for the key.
	out int
	// dest returns a fresh scan destination.
	dest func() any
	// value returns the canonical value in dest, nil for SQL NULL.
	value func(dest any) (any, error)
}

// PostgreSQL types that can become each kind of feature, by OID.
var (
	pgInts    = oids(pgtype.Int2OID, pgtype.Int4OID, pgtype.Int8OID)
	pgFloats  = oids(pgtype.Float4OID, pgtype.Float8OID, pgtype.NumericOID)
	pgStrings = oids(pgtype.TextOID, pgtype.VarcharOID, pgtype.BPCharOID, pgtype.NameOID, pgtype.UUIDOID)
	pgTimes   = oids(pgtype.TimestamptzOID, pgtype.TimestampOID)
	pgJSONs   = oids(pgtype.JSONOID, pgtype.JSONBOID)
	pgArrays  = map[uint32]uint32{pgtype.Int2ArrayOID: pgtype.Int2OID, pgtype.Int4ArrayOID: pgtype.Int4OID,
		pgtype.Int8ArrayOID: pgtype.Int8OID, pgtype.Float4ArrayOID: pgtype.Float4OID,
		pgtype.Float8ArrayOID: pgtype.Float8OID, pgtype.NumericArrayOID: pgtype.NumericOID,
		pgtype.TextArrayOID: pgtype.TextOID, pgtype.VarcharArrayOID: pgtype.VarcharOID,
		pgtype.BPCharArrayOID: pgtype.BPCharOID, pgtype.UUIDArrayOID: pgtype.UUIDOID,
		pgtype.BoolArrayOID: pgtype.BoolOID, pgtype.ByteaArrayOID: pgtype.ByteaOID,
		pgtype.TimestamptzArrayOID: pgtype.TimestamptzOID, pgtype.TimestampArrayOID: pgtype.TimestampOID}
)

func oids(o ...uint32) map[uint32]bool {
	m := map[uint32]bool{}
	for _, x := range o {
		m[x] = true
	}
	return m
}

// newSQL builds a sql resolver: DSN expanded from the environment likewise,
// a pgxpool.Pool of d.MaxConnections, and at start the query is
// prepared/described on a connection (ctx bounds it) to check its result
// columns: one column named as the namespace's primary key
// (d.Namespace.PrimaryKey.Name), and every output feature present as a
// column (by name) whose PostgreSQL type can become the feature's type
// (feature.Type). An unconvertible column is a start-up error naming both
// the column with its PostgreSQL type and the feature with its type.
// Columns that are neither key nor output are an error too. The $1
// parameter must accept an array of the key type (text[] for string keys,
// bigint[] for int keys).
func newSQL(ctx context.Context, d *feature.Resolver, env func(string) string) (kind, error) {
	dsn, err := feature.ExpandEnv(d.DSN, "resolver "+d.FQN+": dsn", env)
	if err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's message does not quote a password.
		return nil, fmt.Errorf("resolver %s: dsn: %v", d.FQN, err)
	}
	cfg.MaxConns = int32(d.MaxConnections)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("resolver %s: %v", d.FQN, err)
	}
	k, err := describe(ctx, pool, d)
	if errors.Is(err, errUnreachable) {
		// A query server starts while the resolver's database is down:
		// the store answers most features, and an outage of one
		// resolver's database must not keep servers from starting (or
		// scaling out). The query is checked at the first call that
		// reaches the database; until then its calls fail.
		return &lateSQL{d: d, pool: pool, startErr: err}, nil
	}
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("resolver %s: %w", d.FQN, err)
	}
	return k, nil
}

// errUnreachable is a describe that could not reach the database: nothing
// is known yet about the query.
var errUnreachable = errors.New("PostgreSQL not reached")

// lateSQL is a sql resolver whose database was not reached at start. Each
// call first tries to check the query as newSQL would; once it is checked
// the resolver runs as any other, and a query found not to fit its
// features fails every call with the problem, as it would have failed the
// start.
type lateSQL struct {
	d        *feature.Resolver
	pool     *pgxpool.Pool
	startErr error
	mu       struct {
		sync.Mutex
		k   *sqlKind
		err error // the query's problem, once the database answered
	}
}

// Deferred reports why the resolver was not checked at start.
func (l *lateSQL) deferred() error { return l.startErr }

func (l *lateSQL) inputs() []*feature.Feature { return nil }

func (l *lateSQL) close() { l.pool.Close() }

func (l *lateSQL) call(ctx context.Context, keys []string, inputs [][]any) ([]Row, error) {
	l.mu.Lock()
	k, err := l.mu.k, l.mu.err
	if k == nil && err == nil {
		k, err = describe(ctx, l.pool, l.d)
		switch {
		case errors.Is(err, errUnreachable):
			l.mu.Unlock()
			return nil, fmt.Errorf("not checked yet: %w", err)
		case err != nil:
			l.mu.err = fmt.Errorf("query checked once PostgreSQL was reached: %w", err)
			err = l.mu.err
		default:
			l.mu.k = k
		}
	}
	l.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return k.call(ctx, keys, inputs)
}

// describe prepares the query on one of pool's connections and plans the
// reading of each of its columns.
func describe(ctx context.Context, pool *pgxpool.Pool, d *feature.Resolver) (*sqlKind, error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errUnreachable, err)
	}
	defer conn.Release()
	sd, err := conn.Conn().PgConn().Prepare(ctx, "", d.Query, nil)
	if err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	name := func(oid uint32) string {
		var s string
		if err := conn.QueryRow(ctx, "SELECT format_type($1, NULL)", oid).Scan(&s); err != nil {
			return "type oid " + strconv.FormatUint(uint64(oid), 10)
		}
		return s
	}

	keyType := d.Namespace.PrimaryKey.Type
	intKeys := keyType.Kind == feature.KindInt
	switch {
	case len(sd.ParamOIDs) != 1:
		return nil, fmt.Errorf("query takes %d parameters: want one, $1, the array of keys", len(sd.ParamOIDs))
	case intKeys && !oids(pgtype.Int8ArrayOID, pgtype.Int4ArrayOID, pgtype.Int2ArrayOID)[sd.ParamOIDs[0]]:
		return nil, fmt.Errorf("query's $1 is %s: want bigint[], the array of int keys (e.g. WHERE id = ANY($1))", name(sd.ParamOIDs[0]))
	case !intKeys && !oids(pgtype.TextArrayOID, pgtype.VarcharArrayOID, pgtype.BPCharArrayOID)[sd.ParamOIDs[0]]:
		return nil, fmt.Errorf("query's $1 is %s: want text[], the array of string keys (e.g. WHERE id = ANY($1))", name(sd.ParamOIDs[0]))
	}

	k := &sqlKind{pool: pool, query: d.Query, intKeys: intKeys, key: -1, outputs: len(d.Outputs)}
	outs := map[string]int{}
	for i, f := range d.Outputs {
		outs[f.Name] = i
	}
	seen := map[string]bool{}
	var problems, extra []string
	for i, fd := range sd.Fields {
		if seen[fd.Name] {
			problems = append(problems, fmt.Sprintf("column %s appears twice", fd.Name))
			continue
		}
		seen[fd.Name] = true
		if fd.Name == d.Namespace.PrimaryKey.Name {
			c, ok := plan(keyType, fd.DataTypeOID)
			if !ok {
				problems = append(problems, fmt.Sprintf("key column %s is %s, which cannot become primary key %s (%s)",
					fd.Name, name(fd.DataTypeOID), d.Namespace.PrimaryKey.FQN, keyType))
				continue
			}
			c.name, c.out, k.key = fd.Name, -1, i
			k.columns = append(k.columns, c)
			continue
		}
		j, ok := outs[fd.Name]
		if !ok {
			extra = append(extra, fd.Name)
			continue
		}
		f := d.Outputs[j]
		c, ok := plan(f.Type, fd.DataTypeOID)
		if !ok {
			problems = append(problems, fmt.Sprintf("column %s is %s, which cannot become feature %s (%s)",
				fd.Name, name(fd.DataTypeOID), f.FQN, f.Type))
			continue
		}
		c.name, c.out = fd.Name, j
		k.columns = append(k.columns, c)
	}
	if k.key < 0 && !seen[d.Namespace.PrimaryKey.Name] {
		problems = append(problems, fmt.Sprintf("no column %s: the query must return the primary key, to match rows to keys", d.Namespace.PrimaryKey.Name))
	}
	for _, f := range d.Outputs {
		if !seen[f.Name] {
			problems = append(problems, fmt.Sprintf("no column %s for output %s", f.Name, f.FQN))
		}
	}
	if len(extra) > 0 {
		problems = append(problems, fmt.Sprintf("columns %s are neither the primary key nor outputs", strings.Join(extra, ", ")))
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("query: %s", strings.Join(problems, "; "))
	}
	return k, nil
}

func (k *sqlKind) inputs() []*feature.Feature { return nil }

func (k *sqlKind) close() { k.pool.Close() }

func (k *sqlKind) call(ctx context.Context, keys []string, _ [][]any) ([]Row, error) {
	var arg any = keys
	if k.intKeys {
		ints := make([]int64, len(keys))
		for i, key := range keys {
			n, err := strconv.ParseInt(key, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("key %q is not an int", key)
			}
			ints[i] = n
		}
		arg = ints
	}
	pos := make(map[string]int, len(keys))
	for i, key := range keys {
		if _, dup := pos[key]; !dup {
			pos[key] = i
		}
	}
	out := make([]Row, len(keys))
	seen := make([]bool, len(keys))

	rows, err := k.pool.Query(ctx, k.query, arg)
	if err != nil {
		return nil, k.queryErr(ctx, err)
	}
	defer rows.Close()
	dests := make([]any, len(k.columns))
	for r := 0; rows.Next(); r++ {
		for i, c := range k.columns {
			dests[i] = c.dest()
		}
		if err := rows.Scan(dests...); err != nil {
			return nil, k.queryErr(ctx, fmt.Errorf("row %d: %w", r, err))
		}
		kv, err := k.columns[k.key].value(dests[k.key])
		if err != nil || kv == nil {
			return nil, fmt.Errorf("row %d: key column %s is NULL", r, k.columns[k.key].name)
		}
		key := fmt.Sprint(kv)
		i, ok := pos[key]
		switch {
		case !ok:
			return nil, fmt.Errorf("row %d: key %q was not asked for", r, key)
		case seen[i]:
			return nil, fmt.Errorf("row %d: key %q returned twice", r, key)
		}
		seen[i] = true
		var values []any
		for ci, c := range k.columns {
			if c.out < 0 {
				continue
			}
			v, err := c.value(dests[ci])
			if err != nil {
				return nil, fmt.Errorf("row %d (key %q): column %s: %v", r, key, c.name, err)
			}
			if v == nil {
				continue
			}
			if values == nil {
				values = make([]any, k.outputs)
			}
			values[c.out] = v
		}
		out[i].Values = values
	}
	if err := rows.Err(); err != nil {
		return nil, k.queryErr(ctx, err)
	}
	for i, key := range keys {
		if first := pos[key]; first != i {
			out[i] = out[first]
		}
	}
	return out, nil
}

// queryErr wraps ctx's error when ctx ended, so that a timeout is told
// from a failed query.
func (k *sqlKind) queryErr(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("query ended before its answer: %w (%v)", ctxErr, err)
	}
	return fmt.Errorf("query: %w", err)
}

// plan returns how to read a column of PostgreSQL type oid as a value of
// t, and whether it can be.
func plan(t feature.Type, oid uint32) (sqlColumn, bool) {
	if pgJSONs[oid] {
		// Any type with a JSON form reads from json and jsonb as an
		// upload's value does.
		return sqlColumn{
			dest: func() any { return new([]byte) },
			value: func(d any) (any, error) {
				raw := *(d.(*[]byte))
				if raw == nil {
					return nil, nil
				}
				return feature.FromJSON(t, raw)
			},
		}, t.Kind == feature.KindJSON || t.Kind == feature.KindList || t.Kind == feature.KindVector
	}
	switch t.Kind {
	case feature.KindList:
		elem, isArray := pgArrays[oid]
		if !isArray {
			return sqlColumn{}, false
		}
		asList := func(vals []any) (any, error) { return vals, nil }
		switch t.Elem.Kind {
		case feature.KindInt:
			return arrayOf(asInt, asList), pgInts[elem]
		case feature.KindFloat:
			return arrayOf(asFloat, asList), pgFloats[elem]
		case feature.KindString:
			return arrayOf(asString, asList), pgStrings[elem]
		case feature.KindBool:
			return arrayOf(asBool, asList), elem == pgtype.BoolOID
		case feature.KindBytes:
			return arrayOf(asBytes, asList), elem == pgtype.ByteaOID
		case feature.KindDatetime:
			return arrayOf(asTime, asList), pgTimes[elem]
		}
		return sqlColumn{}, false
	case feature.KindVector:
		return arrayOf(asFloat, func(vals []any) (any, error) {
			if len(vals) != t.Dim {
				return nil, fmt.Errorf("want %d numbers, got %d", t.Dim, len(vals))
			}
			vec := make([]float32, len(vals))
			for i, v := range vals {
				f := v.(float64)
				if math.Abs(f) > math.MaxFloat32 {
					return nil, fmt.Errorf("element %d: %g is out of float32 range", i, f)
				}
				vec[i] = float32(f)
			}
			return vec, nil
		}), pgFloats[pgArrays[oid]]
	case feature.KindInt:
		return scalar(asInt), pgInts[oid]
	case feature.KindFloat:
		if pgInts[oid] {
			return scalar(func(n int64) (any, error) { return float64(n), nil }), true
		}
		return scalar(asFloat), pgFloats[oid]
	case feature.KindString:
		return scalar(asString), pgStrings[oid]
	case feature.KindBool:
		return scalar(asBool), oid == pgtype.BoolOID
	case feature.KindBytes:
		return scalar(asBytes), oid == pgtype.ByteaOID
	case feature.KindDatetime:
		return scalar(asTime), pgTimes[oid]
	}
	return sqlColumn{}, false
}

// Conversions of scanned values to canonical ones.
func asInt(n int64) (any, error)     { return n, nil }
func asFloat(f float64) (any, error) { return f, nil }
func asString(s string) (any, error) { return s, nil }
func asBool(b bool) (any, error)     { return b, nil }
func asBytes(b []byte) (any, error)  { return b, nil }
func asTime(t time.Time) (any, error) {
	if t.Year() < 1 || t.Year() > 9999 {
		return nil, fmt.Errorf("%v is outside the years 1 to 9999", t)
	}
	return feature.CanonicalTime(t), nil
}

// scalar reads a column into a T, converted to its canonical value.
func scalar[T any](conv func(T) (any, error)) sqlColumn {
	return sqlColumn{
		dest: func() any { return new(*T) },
		value: func(d any) (any, error) {
			p := *(d.(**T))
			if p == nil {
				return nil, nil
			}
			return conv(*p)
		},
	}
}

// arrayOf reads a one-dimensional array column whose elements conv
// makes canonical, into the value whole makes of them. A NULL element is
// an error: lists and vectors have none.
func arrayOf[T any](conv func(T) (any, error), whole func([]any) (any, error)) sqlColumn {
	return sqlColumn{
		dest: func() any { return new(*[]*T) },
		value: func(d any) (any, error) {
			p := *(d.(**[]*T))
			if p == nil {
				return nil, nil
			}
			vals := make([]any, len(*p))
			for i, e := range *p {
				if e == nil {
					return nil, fmt.Errorf("element %d: NULL is not allowed in a list or vector", i)
				}
				v, err := conv(*e)
				if err != nil {
					return nil, fmt.Errorf("element %d: %w", i, err)
				}
				vals[i] = v
			}
			return whole(vals)
		},
	}
}
