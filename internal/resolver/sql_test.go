package resolver

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/url"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/testserver"
)

func TestMain(m *testing.M) { os.Exit(testserver.Run(m)) }

// sqlResolver declares a sql resolver reading its DSN from ${PG_DSN}.
func sqlResolver(t testing.TB, keyType, features, outputs, query string) *feature.Resolver {
	t.Helper()
	q, _ := json.Marshal(query)
	return declare(t, keyType, features,
		"        kind: sql\n        dsn: ${PG_DSN}\n        max_connections: 2\n        outputs: "+outputs+"\n        query: "+string(q)+"\n")
}

func envDSN(pg *testserver.PG) func(string) string {
	return func(name string) string {
		if name == "PG_DSN" {
			return pg.DSN
		}
		return ""
	}
}

func startSQL(t testing.TB, pg *testserver.PG, d *feature.Resolver) (kind, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	k, err := newSQL(ctx, d, envDSN(pg))
	if err == nil {
		t.Cleanup(k.close)
	}
	return k, err
}

func mustSQL(t testing.TB, pg *testserver.PG, d *feature.Resolver) kind {
	t.Helper()
	k, err := startSQL(t, pg, d)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Every feature type reads from its natural PostgreSQL type into its
// canonical value; NULL is no value, a key with no row a nil row.
func TestSQLAllTypes(t *testing.T) {
	pg := testserver.Postgres(t)
	pg.Exec(t, `CREATE TABLE users (id text PRIMARY KEY, i bigint, f double precision, s text, b boolean,
		by bytea, dt timestamptz, l bigint[], ll jsonb, v real[], j jsonb)`,
		`INSERT INTO users VALUES ('u1', 7, 1.5, 'x', true, '\x0001ff', '2024-05-01T10:00:00.123456+02:00',
		 '{1,2}', '[["a"], []]', '{0.5,1,-2}', '{"n": 1.50, "o": {"p": [true]}}')`,
		`INSERT INTO users (id, s) VALUES ('u2', 'only')`)
	d := sqlResolver(t, "string", allTypesFeatures, allTypesOutputs,
		"SELECT id, i, f, s, b, by, dt, l, ll, v, j FROM users WHERE id = ANY($1)")
	k := mustSQL(t, pg, d)
	rows, err := call(t, k, "u3", "u1", "u2")
	if err != nil {
		t.Fatal(err)
	}
	want := []any{int64(7), 1.5, "x", true, []byte{0, 1, 255},
		time.Date(2024, 5, 1, 8, 0, 0, 123456000, time.UTC),
		[]any{int64(1), int64(2)}, []any{[]any{"a"}, []any{}},
		[]float32{0.5, 1, -2},
		map[string]any{"n": json.Number("1.50"), "o": map[string]any{"p": []any{true}}}}
	if rows[0].Values != nil {
		t.Errorf("u3 has no row: got %#v", rows[0].Values)
	}
	if !reflect.DeepEqual(rows[1].Values, want) {
		t.Fatalf("u1:\n got %#v\nwant %#v", rows[1].Values, want)
	}
	for i, v := range rows[1].Values {
		if err := feature.Check(d.Outputs[i].Type, v); err != nil {
			t.Errorf("%s: not canonical: %v", d.Outputs[i].Name, err)
		}
	}
	want2 := make([]any, 10)
	want2[2] = "only"
	if !reflect.DeepEqual(rows[2].Values, want2) {
		t.Fatalf("u2: got %#v, want only s", rows[2].Values)
	}
}

// Other PostgreSQL types that can become a feature's type do: ints and
// numeric as floats, varchar and uuid as strings, timestamp as UTC, int
// arrays as lists, json arrays as vectors.
func TestSQLConversions(t *testing.T) {
	pg := testserver.Postgres(t)
	pg.Exec(t, `CREATE TABLE m (id int PRIMARY KEY, a smallint, b numeric, c varchar(8), d uuid,
		e timestamp, g integer[], h json, k text[], n float8[])`,
		`INSERT INTO m VALUES (1, 3, 2.25, 'vc', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
		 '2024-01-02 03:04:05.678901', '{5,6}', '[1, 2.5]', '{x,y}', '{1e300}')`)
	d := sqlResolver(t, "int", `
        a: float
        b: float
        c: string
        d: string
        e: datetime
        g: list[int]
        h: vector[2]
        k: list[string]
        n: list[float]`, "[a, b, c, d, e, g, h, k, n]", "SELECT id, a, b, c, d, e, g, h, k, n FROM m WHERE id = ANY($1)")
	rows, err := call(t, mustSQL(t, pg, d), "1", "2")
	if err != nil {
		t.Fatal(err)
	}
	want := []any{3.0, 2.25, "vc", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
		time.Date(2024, 1, 2, 3, 4, 5, 678901000, time.UTC), []any{int64(5), int64(6)},
		[]float32{1, 2.5}, []any{"x", "y"}, []any{1e300}}
	if !reflect.DeepEqual(rows[0].Values, want) {
		t.Fatalf("got  %#v\nwant %#v", rows[0].Values, want)
	}
	if rows[1].Values != nil {
		t.Fatalf("key 2 has no row: got %#v", rows[1].Values)
	}
}

// The query's columns are checked against the declaration at start, and
// each problem is named.
func TestSQLChecksColumnsAtStart(t *testing.T) {
	pg := testserver.Postgres(t)
	pg.Exec(t, `CREATE TABLE u (id text, score text, n bigint, note text)`)
	for _, tc := range []struct {
		name, query string
		want        []string
	}{
		{"unconvertible", "SELECT id, score FROM u WHERE id = ANY($1)",
			[]string{"resolver user.r", "column score is text", "feature user.score (int)"}},
		{"missing output", "SELECT id FROM u WHERE id = ANY($1)", []string{"no column score for output user.score"}},
		{"extra column", "SELECT id, n AS score, note FROM u WHERE id = ANY($1)", []string{"columns note are neither the primary key nor outputs"}},
		{"no key", "SELECT n AS score FROM u WHERE id = ANY($1)", []string{"no column id"}},
		{"key of wrong type", "SELECT n AS id, n AS score FROM u WHERE id = ANY($1)", []string{"key column id is bigint", "user.id (string)"}},
		{"twice", "SELECT id, n AS score, n AS score FROM u WHERE id = ANY($1)", []string{"column score appears twice"}},
		{"not an array", "SELECT id, n AS score FROM u WHERE id = $1", []string{"$1 is text: want text[]"}},
		{"two parameters", "SELECT id, n AS score FROM u WHERE id = ANY($1) AND note = $2", []string{"2 parameters"}},
		{"bad sql", "SELECT id, n AS score FROM nowhere WHERE id = ANY($1)", []string{`relation "nowhere" does not exist`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := startSQL(t, pg, sqlResolver(t, "string", "\n        score: int", "[score]", tc.query))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
	// Int keys want a bigint-compatible array.
	_, err := startSQL(t, pg, sqlResolver(t, "int", "\n        score: int", "[score]", "SELECT 1::bigint AS id, n AS score FROM u WHERE id = ANY($1)"))
	if err == nil || !strings.Contains(err.Error(), "$1 is text[]: want bigint[]") {
		t.Fatalf("int keys with a text[] parameter: %v", err)
	}
}

// A DSN naming an unset variable fails the start naming the resolver, the
// setting and the variable.
func TestSQLMissingEnv(t *testing.T) {
	d := sqlResolver(t, "string", "\n        score: int", "[score]", "SELECT id, 1 AS score FROM unnest($1::text[]) AS id")
	_, err := newSQL(context.Background(), d, noEnv)
	if err == nil || !strings.Contains(err.Error(), "user.r: dsn") || !strings.Contains(err.Error(), "PG_DSN") {
		t.Fatalf("error %v, want one naming user.r, dsn and PG_DSN", err)
	}
}

// Rows the query should not give fail the batch: a key twice, a key not
// asked for, a NULL key, a NULL in a list, a vector of the wrong length.
func TestSQLBadRows(t *testing.T) {
	pg := testserver.Postgres(t)
	for _, tc := range []struct {
		name, features, outputs, query, want string
	}{
		{"twice", "\n        score: int", "[score]", "SELECT id, 1 AS score FROM unnest($1::text[] || $1::text[]) AS id", `key "u1" returned twice`},
		{"not asked", "\n        score: int", "[score]", "SELECT 'zz' AS id, 1 AS score WHERE $1::text[] IS NOT NULL", `key "zz" was not asked for`},
		{"null key", "\n        score: int", "[score]", "SELECT NULL::text AS id, 1 AS score WHERE $1::text[] IS NOT NULL", "key column id is NULL"},
		{"null element", "\n        l: list[int]", "[l]", "SELECT id, ARRAY[1, NULL]::bigint[] AS l FROM unnest($1::text[]) AS id", "element 1: NULL is not allowed"},
		{"short vector", "\n        v: vector[3]", "[v]", "SELECT id, ARRAY[1, 2]::real[] AS v FROM unnest($1::text[]) AS id", "want 3 numbers, got 2"},
		{"json not an object", "\n        j: json", "[j]", "SELECT id, '[1]'::jsonb AS j FROM unnest($1::text[]) AS id", "want a JSON object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := mustSQL(t, pg, sqlResolver(t, "string", tc.features, tc.outputs, tc.query))
			_, err := call(t, k, "u1")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
}

// A key asked for twice in one batch gets its row twice.
func TestSQLRepeatedKeyInBatch(t *testing.T) {
	pg := testserver.Postgres(t)
	d := sqlResolver(t, "int", "\n        score: int", "[score]", "SELECT DISTINCT id, id * 10 AS score FROM unnest($1::bigint[]) AS id")
	rows, err := call(t, mustSQL(t, pg, d), "4", "-2", "4")
	if err != nil {
		t.Fatal(err)
	}
	if rows[0].Values[0] != int64(40) || rows[1].Values[0] != int64(-20) || rows[2].Values[0] != int64(40) {
		t.Fatalf("rows %v", rows)
	}
}

// A query still running at ctx's deadline ends then, with an error the
// caller can tell for a timeout.
func TestSQLDeadline(t *testing.T) {
	pg := testserver.Postgres(t)
	d := sqlResolver(t, "string", "\n        score: int", "[score]", "SELECT id, 1 AS score FROM unnest($1::text[]) AS id, pg_sleep(5)")
	k := mustSQL(t, pg, d)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := k.call(ctx, []string{"u1"}, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v, want one wrapping context.DeadlineExceeded", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("returned after %v", el)
	}
}

// A query server starts while the resolver's database is down: the
// resolver's calls fail, saying so, until the database answers; then the
// query is checked and runs. A query that does not fit, found then, fails
// every call as it would have failed the start.
func TestSQLUnreachableAtStart(t *testing.T) {
	pg := testserver.Postgres(t)
	pg.Exec(t, "CREATE TABLE late (id text PRIMARY KEY, score bigint)", "INSERT INTO late VALUES ('u1', 7)")
	u, err := url.Parse(pg.DSN)
	if err != nil {
		t.Fatal(err)
	}
	target := u.Host
	// A port nothing listens on yet.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u.Host = ln.Addr().String()
	ln.Close()
	env := func(string) string { return u.String() }
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	good := sqlResolver(t, "string", "\n        score: int", "[score]", "SELECT id, score FROM late WHERE id = ANY($1)")
	bad := sqlResolver(t, "string", "\n        score: int", "[score]", "SELECT id, 'x'::text AS score FROM late WHERE id = ANY($1)")
	kinds := map[string]kind{}
	for name, d := range map[string]*feature.Resolver{"good": good, "bad": bad} {
		k, err := newSQL(ctx, d, env)
		if err != nil {
			t.Fatalf("%s: start with the database down: %v, want a resolver checked later", name, err)
		}
		t.Cleanup(k.close)
		kinds[name] = k
		if _, err := k.call(ctx, []string{"u1"}, nil); err == nil || !strings.Contains(err.Error(), "not checked yet") {
			t.Errorf("%s: call with the database down: %v, want one saying it is not checked yet", name, err)
		}
	}

	// The database comes up at that address.
	ln, err = net.Listen("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				s, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer s.Close()
				go io.Copy(s, c)
				_, _ = io.Copy(c, s)
			}()
		}
	}()
	rows, err := kinds["good"].call(ctx, []string{"u1"}, nil)
	if err != nil || len(rows) != 1 || len(rows[0].Values) != 1 || rows[0].Values[0] != int64(7) {
		t.Errorf("good query once the database is up: %+v, %v; want score 7", rows, err)
	}
	for range 2 {
		if _, err := kinds["bad"].call(ctx, []string{"u1"}, nil); err == nil || !strings.Contains(err.Error(), "cannot become feature") {
			t.Errorf("bad query once the database is up: %v, want the column problem", err)
		}
	}
}
