package resolver

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairnfs/cairn/internal/feature"
)

// exprFeatures declares a feature of every type as an input, and one
// output per case.
const exprFeatures = `
namespaces:
  - name: user
    primary_key: id
    features:
      id: string
      age: int
      score: float
      name: string
      active: bool
      blob: bytes
      seen: datetime
      tags: list[string]
      nums: list[int]
      emb: vector[3]
      prefs: json
      o_int: int
      o_float: float
      o_string: string
      o_bool: bool
      o_bytes: bytes
      o_dt: datetime
      o_tags: list[string]
      o_nums: list[int]
      o_nested: list[list[int]]
      o_vec: vector[3]
      o_json: json
`

// exprRegistry parses exprFeatures with one expression resolver, r,
// computing output from expr.
func exprRegistry(t testing.TB, output, expr string) *feature.Resolver {
	t.Helper()
	doc := exprFeatures + "    resolvers:\n      - name: r\n        kind: expression\n        outputs: [" + output + "]\n" +
		"        expression: " + strings.ReplaceAll(quoteYAML(expr), "\n", " ") + "\n"
	reg, err := feature.Parse("features.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	ns, _ := reg.Namespace("user")
	return ns.Resolvers[0]
}

func quoteYAML(s string) string {
	b, _ := json.Marshal(s) // a JSON string is a YAML double-quoted scalar
	return string(b)
}

// sample holds one value of each input feature.
var sample = map[string]any{
	"id":     "u1",
	"age":    int64(21),
	"score":  1.25,
	"name":   "ada",
	"active": true,
	"blob":   []byte{1, 2},
	"seen":   time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC),
	"tags":   []any{"a", "b"},
	"nums":   []any{int64(2), int64(3)},
	"emb":    []float32{0.5, -1, 2},
	"prefs":  map[string]any{"color": "red", "n": json.Number("2"), "none": nil, "deep": []any{map[string]any{"k": true}}},
}

// inputsOf returns the sample values of k's inputs, in order.
func inputsOf(k kind, over map[string]any) []any {
	var out []any
	for _, f := range k.inputs() {
		v, ok := over[f.Name]
		if !ok {
			v = sample[f.Name]
		}
		out = append(out, v)
	}
	return out
}

func names(fs []*feature.Feature) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Name)
	}
	return out
}

func TestExpressionEveryType(t *testing.T) {
	t.Parallel()
	tests := []struct {
		output, expr string
		inputs       []string // in namespace order
		want         any
	}{
		{"o_int", "age * 2 + size(tags)", []string{"age", "tags"}, int64(44)},
		{"o_float", "score * 2.0 + emb[2]", []string{"score", "emb"}, 4.5},
		{"o_float", "double(age) / 10.0", []string{"age"}, 2.1},
		{"o_string", "id + ':' + name.upperAscii()", []string{"id", "name"}, "u1:ADA"},
		{"o_bool", "active && age >= 18 && score > 1", []string{"age", "score", "active"}, true},
		{"o_bytes", "blob + b'x'", []string{"blob"}, []byte{1, 2, 'x'}},
		{"o_dt", "seen + duration('1h')", []string{"seen"}, time.Date(2026, 1, 2, 4, 4, 5, 6000, time.UTC)},
		{"o_dt", "timestamp('2026-05-01T00:00:00.1234567Z')", nil, time.Date(2026, 5, 1, 0, 0, 0, 123456000, time.UTC)},
		{"o_int", "seen.getHours()", []string{"seen"}, int64(3)},
		{"o_tags", "tags.map(t, t + name)", []string{"name", "tags"}, []any{"aada", "bada"}},
		{"o_nums", "nums.map(n, n * n)", []string{"nums"}, []any{int64(4), int64(9)}},
		{"o_nested", "[nums, [age]]", []string{"age", "nums"}, []any{[]any{int64(2), int64(3)}, []any{int64(21)}}},
		{"o_vec", "emb.map(x, x * 2.0)", []string{"emb"}, []float32{1, -2, 4}},
		{"o_string", "prefs.color", []string{"prefs"}, "red"},
		{"o_float", "prefs.n * 1.5", []string{"prefs"}, 3.0},
		{"o_bool", "prefs.deep[0].k", []string{"prefs"}, true},
		{"o_bool", "age > 1.5 && prefs.n == 2", []string{"age", "prefs"}, true},
		{"o_string", "name.reverse() + ' ' + 'a,b'.split(',').join('-') + '%d'.format([age])", []string{"age", "name"}, "ada a-b21"},
		{"o_int", "math.greatest(age, 30) + int(math.ceil(score))", []string{"age", "score"}, int64(32)},
		{"o_json", "{'c': prefs.color, 'n': prefs.n + 1.0, 'i': age, 't': tags, 'z': null, 'at': seen, 'b': blob}",
			[]string{"age", "blob", "seen", "tags", "prefs"},
			map[string]any{"c": "red", "n": json.Number("3"), "i": json.Number("21"), "t": []any{"a", "b"},
				"z": nil, "at": "2026-01-02T03:04:05.000006Z", "b": "AQI="}},
		{"o_json", "prefs", []string{"prefs"},
			map[string]any{"color": "red", "n": json.Number("2"), "none": nil, "deep": []any{map[string]any{"k": true}}}},
		// A comprehension's variable is not the feature of that name.
		{"o_nums", "nums.map(age, age + 1)", []string{"nums"}, []any{int64(3), int64(4)}},
	}
	for _, tt := range tests {
		t.Run(tt.output+"="+tt.expr, func(t *testing.T) {
			t.Parallel()
			d := exprRegistry(t, tt.output, tt.expr)
			k, err := newExpression(d)
			if err != nil {
				t.Fatal(err)
			}
			defer k.close()
			if got := names(k.inputs()); !reflect.DeepEqual(got, tt.inputs) {
				t.Fatalf("inputs() = %v, want %v", got, tt.inputs)
			}
			rows, err := k.call(context.Background(), []string{"u1"}, [][]any{inputsOf(k, nil)})
			if err != nil {
				t.Fatal(err)
			}
			if len(rows) != 1 || rows[0].Err != nil || len(rows[0].Values) != 1 {
				t.Fatalf("rows = %+v", rows)
			}
			got := rows[0].Values[0]
			if err := feature.Check(d.Outputs[0].Type, got); err != nil {
				t.Fatalf("result %#v is not canonical: %v", got, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %#v, want %#v", got, tt.want)
			}
			// The canonical value encodes, as the stores will.
			if _, err := feature.AppendValue(nil, got); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestExpressionStartErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		output, expr string
		want         []string
	}{
		{"o_float", "age / 10", []string{"resolver user.r", `"age / 10"`, "type int", "feature user.o_float is float", "double("}},
		{"o_int", "name", []string{"resolver user.r", "type string", "feature user.o_int is int"}},
		{"o_vec", "tags", []string{"resolver user.r", "type list(string)", "feature user.o_vec is vector[3]"}},
		{"o_dt", "seen - seen", []string{"type google.protobuf.Duration", "feature user.o_dt is datetime"}},
		{"o_json", "tags", []string{"type list(string)", "feature user.o_json is json"}},
		{"o_nums", "tags", []string{"type list(string)", "feature user.o_nums is list[int]"}},
		{"o_int", "agee + 1", []string{"resolver user.r", "undeclared reference to 'agee'"}},
		{"o_int", "age +", []string{"resolver user.r", "Syntax error"}},
		{"o_int", "size(age)", []string{"resolver user.r", "no matching overload"}},
		{"o_float", "age + 1.5", []string{"resolver user.r", "no matching overload"}},
		{"o_int", "o_int + 1", []string{"resolvers: cycle: user.o_int (expression r) → user.o_int"}},
		{"o_string", strings.Repeat("(", 100) + "name" + strings.Repeat(")", 100), []string{"resolver user.r", "recursion"}},
	}
	for _, tt := range tests {
		t.Run(tt.output+"="+tt.expr, func(t *testing.T) {
			t.Parallel()
			_, err := newExpression(exprRegistry(t, tt.output, tt.expr))
			if err == nil {
				t.Fatal("compiled")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestExpressionAbsentAndPerKeyErrors(t *testing.T) {
	t.Parallel()
	k, err := newExpression(exprRegistry(t, "o_int", "100 / age + age * age"))
	if err != nil {
		t.Fatal(err)
	}
	keys := []string{"ok", "absent", "zero", "overflow", "ok2"}
	rows, err := k.call(context.Background(), keys, [][]any{
		{int64(10)}, {nil}, {int64(0)}, {int64(1) << 40}, {int64(50)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(keys) {
		t.Fatalf("%d rows for %d keys", len(rows), len(keys))
	}
	want := []struct {
		v   any
		err string
	}{{int64(110), ""}, {nil, ""}, {nil, "division by zero"}, {nil, "overflow"}, {int64(2502), ""}}
	for i, w := range want {
		r := rows[i]
		switch {
		case w.err != "":
			if r.Err == nil || !strings.Contains(r.Err.Error(), w.err) || r.Values != nil {
				t.Errorf("key %s: %+v, want error %q", keys[i], r, w.err)
			}
		case w.v == nil:
			if r.Err != nil || r.Values != nil {
				t.Errorf("key %s: %+v, want no values", keys[i], r)
			}
		default:
			if r.Err != nil || len(r.Values) != 1 || r.Values[0] != w.v {
				t.Errorf("key %s: %+v, want %v", keys[i], r, w.v)
			}
		}
	}
}

func TestExpressionResultChecks(t *testing.T) {
	t.Parallel()
	tests := []struct {
		output, expr string
		over         map[string]any
		err          string // "" for an absent value
	}{
		{"o_float", "score / 0.0", nil, "not a finite number"},
		{"o_string", "prefs.color", map[string]any{"prefs": map[string]any{"color": json.Number("1")}}, "want string, got double"},
		{"o_string", "prefs.none", nil, ""},
		{"o_string", "prefs.missing", nil, "no such key"},
		{"o_vec", "emb.map(x, x * 1e300)", nil, "not a finite float32"},
		{"o_vec", "emb + emb", nil, "want 3 numbers, got 6"},
		{"o_json", "{'x': score / 0.0}", nil, "not a finite number"},
		{"o_tags", "[prefs.color, prefs.none]", nil, "element 1: null is not allowed"},
		{"o_int", "size(nums.map(a, nums.map(b, nums.map(c, a * b * c))))",
			map[string]any{"nums": func() []any {
				l := make([]any, 200)
				for i := range l {
					l[i] = int64(i)
				}
				return l
			}()}, "cost limit exceeded"},
	}
	for _, tt := range tests {
		t.Run(tt.output+"="+tt.expr, func(t *testing.T) {
			t.Parallel()
			k, err := newExpression(exprRegistry(t, tt.output, tt.expr))
			if err != nil {
				t.Fatal(err)
			}
			rows, err := k.call(context.Background(), []string{"u1"}, [][]any{inputsOf(k, tt.over)})
			if err != nil {
				t.Fatal(err)
			}
			r := rows[0]
			if tt.err == "" {
				if r.Err != nil || r.Values != nil {
					t.Fatalf("got %+v, want no values", r)
				}
				return
			}
			if r.Err == nil || !strings.Contains(r.Err.Error(), tt.err) {
				t.Fatalf("got %+v, want error %q", r, tt.err)
			}
		})
	}
}

func TestExpressionContext(t *testing.T) {
	t.Parallel()
	k, err := newExpression(exprRegistry(t, "o_int", "age + 1"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := k.call(ctx, []string{"a", "b"}, [][]any{{int64(1)}, {int64(2)}}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled call: %v", err)
	}
	// Inputs not of their feature's type are the caller's mistake: the
	// batch fails.
	if _, err := k.call(context.Background(), []string{"a"}, [][]any{{"1"}}); err == nil || !strings.Contains(err.Error(), "user.age") {
		t.Fatalf("string for an int input: %v", err)
	}
	if _, err := k.call(context.Background(), []string{"a"}, [][]any{{int64(1), int64(2)}}); err == nil {
		t.Fatal("two inputs for one accepted")
	}
}

// FuzzExpressionCompile compiles arbitrary text against a namespace with
// a feature of every type, and evaluates what compiles: neither may
// panic, and what is computed must be a canonical value of the output.
func FuzzExpressionCompile(f *testing.F) {
	for _, s := range []string{
		"age + 1", "double(age) / 3.0", "name.size()", "tags.map(t, t + name)", "prefs.color",
		"[nums, [age]]", "seen + duration('1h')", "{'a': prefs}", "emb.map(x, x * 2.0)",
		"nums.all(n, n > 0) ? 1 : 2", "agee", "((((", "'\\xff'", "b'\\xff'.size()",
		"int(score)", "uint(age)", "math.greatest(age, 3)", "string(prefs.n)",
	} {
		f.Add(s, "o_int")
		f.Add(s, "o_json")
	}
	outputs := []string{"o_int", "o_float", "o_string", "o_bool", "o_bytes", "o_dt", "o_tags", "o_nums", "o_nested", "o_vec", "o_json"}
	bases := map[string]*feature.Resolver{}
	for _, o := range outputs {
		bases[o] = exprRegistry(f, o, "1")
	}
	f.Fuzz(func(t *testing.T, expr, output string) {
		base, ok := bases[output]
		if !ok {
			base = bases["o_string"]
		}
		d := *base
		d.Expression = expr
		k, err := newExpression(&d)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		rows, err := k.call(context.Background(), []string{"u1"}, [][]any{inputsOf(k, nil)})
		if err != nil {
			t.Fatal(err)
		}
		if rows[0].Values != nil {
			if err := feature.Check(d.Outputs[0].Type, rows[0].Values[0]); err != nil {
				t.Fatalf("%q: result %#v: %v", expr, rows[0].Values[0], err)
			}
		}
	})
}

// TestExpressionConcurrentCalls runs one compiled expression from many
// goroutines, as a Set's concurrent batches do (go test -race checks it).
func TestExpressionConcurrentCalls(t *testing.T) {
	t.Parallel()
	k, err := newExpression(exprRegistry(t, "o_tags", "tags.map(t, t + name)"))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			name := strconv.Itoa(g)
			for range 50 {
				rows, err := k.call(context.Background(), []string{"a", "b"},
					[][]any{{name, []any{"x"}}, {nil, []any{"y"}}})
				if err != nil {
					t.Error(err)
					return
				}
				if got := rows[0].Values[0].([]any)[0]; got != "x"+name || rows[1].Values != nil {
					t.Errorf("goroutine %d: rows %+v", g, rows)
					return
				}
			}
		})
	}
	wg.Wait()
}
