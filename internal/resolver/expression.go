package resolver

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"cel.dev/cel-go/cel"
	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
	"cel.dev/cel-go/ext"

	"github.com/cairnfs/cairn/internal/feature"
)

// Limits of an expression resolver. They are not knobs: an expression
// that needs more is not a feature computation but a program.
const (
	// maxExpressionCost bounds the work of one evaluation, in CEL's cost
	// units (roughly one per operation, and one per few bytes a string
	// function reads). An evaluation that would exceed it fails for its
	// key. A million is milliseconds of CPU at most.
	maxExpressionCost = 1_000_000
	// maxExpressionLength bounds the source of an expression, in code
	// points.
	maxExpressionLength = 4096
	// maxExpressionDepth bounds the nesting of an expression's syntax.
	maxExpressionDepth = 64
	// interruptEvery is how many comprehension iterations run between
	// checks of the query's context.
	interruptEvery = 100
)

// celReserved are CEL's reserved words: a feature with one of these names
// cannot be named in an expression, so it is not declared as a variable.
var celReserved = map[string]bool{
	"true": true, "false": true, "null": true, "in": true, "as": true, "break": true,
	"const": true, "continue": true, "else": true, "for": true, "function": true, "if": true,
	"import": true, "let": true, "loop": true, "package": true, "namespace": true,
	"return": true, "var": true, "void": true, "while": true,
}

// expression is the expression kind: one feature computed from other
// features of the same entity by a CEL program, compiled once.
type expression struct {
	d   *feature.Resolver
	out *feature.Feature
	prg cel.Program
	// ins are the features the expression reads, in namespace order, and
	// names their variable names.
	ins   []*feature.Feature
	names []string
}

// newExpression compiles and type-checks d.Expression against d's
// namespace: every feature but the output is a variable named by its
// short name and typed by its feature type. The expression's type must be
// the output feature's type exactly (an int is not converted to a float;
// dyn, from a json input, is checked at each evaluation instead).
func newExpression(d *feature.Resolver) (kind, error) {
	if d.Kind != feature.ResolverExpression || len(d.Outputs) != 1 {
		return nil, fmt.Errorf("resolver %s: want kind expression with one output, got kind %s with %d",
			d.FQN, d.Kind, len(d.Outputs))
	}
	out := d.Outputs[0]
	opts := []cel.EnvOption{
		cel.ParserExpressionSizeLimit(maxExpressionLength),
		cel.ParserRecursionLimit(maxExpressionDepth),
		cel.CrossTypeNumericComparisons(true),
		cel.DefaultUTCTimeZone(true),
		ext.Strings(),
		ext.Math(),
	}
	for _, f := range d.Namespace.Features {
		if f == out || celReserved[f.Name] {
			continue
		}
		opts = append(opts, cel.Variable(f.Name, celType(f.Type)))
	}
	env, err := cel.NewEnv(opts...)
	if err != nil {
		return nil, fmt.Errorf("resolver %s: declare the features of %s: %w", d.FQN, d.Namespace.Name, err)
	}
	ast, iss := env.Compile(d.Expression)
	if iss.Err() != nil {
		msg := iss.Err().Error()
		if strings.Contains(msg, "undeclared reference to '"+out.Name+"'") {
			return nil, fmt.Errorf("resolvers: cycle: %s (expression %s) → %s: an expression cannot read its own output",
				out.FQN, d.Name, out.FQN)
		}
		return nil, fmt.Errorf("resolver %s: expression %q: %s", d.FQN, d.Expression, msg)
	}
	got, want := ast.OutputType(), celOutputType(out.Type)
	if !assignable(want, got) {
		hint := ""
		if got.IsExactType(cel.IntType) && out.Type.Kind == feature.KindFloat {
			hint = " (ints are not converted: write double(...))"
		}
		return nil, fmt.Errorf("resolver %s: expression %q has type %s, but feature %s is %s%s",
			d.FQN, d.Expression, got, out.FQN, out.Type, hint)
	}
	prg, err := env.Program(ast,
		cel.CostLimit(maxExpressionCost),
		cel.InterruptCheckFrequency(interruptEvery),
	)
	if err != nil {
		return nil, fmt.Errorf("resolver %s: expression %q: %w", d.FQN, d.Expression, err)
	}

	checked := ast.NativeRep()
	refs := map[string]bool{}
	freeIdents(checked.Expr(), nil, func(id int64, name string) {
		if r, ok := checked.ReferenceMap()[id]; ok && r.Name == name && r.Value == nil {
			refs[name] = true
		}
	})
	e := &expression{d: d, out: out, prg: prg}
	for _, f := range d.Namespace.Features {
		if f != out && !celReserved[f.Name] && refs[f.Name] {
			e.ins = append(e.ins, f)
			e.names = append(e.names, f.Name)
		}
	}
	return e, nil
}

// assignable reports whether an expression of type got may compute a
// feature of CEL type want: the same type, where dyn on either side (from
// a json input, or an empty list) matches anything and is checked at each
// evaluation instead.
func assignable(want, got *cel.Type) bool {
	if want.Kind() == types.DynKind || got.Kind() == types.DynKind {
		return true
	}
	wp, gp := want.Parameters(), got.Parameters()
	if want.Kind() != got.Kind() || len(wp) != len(gp) {
		return false
	}
	if len(wp) == 0 {
		return want.IsExactType(got)
	}
	for i := range wp {
		if !assignable(wp[i], gp[i]) {
			return false
		}
	}
	return true
}

// freeIdents calls fn for each identifier of e not bound by an enclosing
// comprehension (nums.map(age, age + 1) does not read the feature age).
// The checker's reference map names the identifier either way.
func freeIdents(e celast.Expr, bound []string, fn func(id int64, name string)) {
	switch e.Kind() {
	case celast.IdentKind:
		if !slices.Contains(bound, e.AsIdent()) {
			fn(e.ID(), e.AsIdent())
		}
	case celast.SelectKind:
		freeIdents(e.AsSelect().Operand(), bound, fn)
	case celast.CallKind:
		c := e.AsCall()
		if c.IsMemberFunction() {
			freeIdents(c.Target(), bound, fn)
		}
		for _, a := range c.Args() {
			freeIdents(a, bound, fn)
		}
	case celast.ListKind:
		for _, x := range e.AsList().Elements() {
			freeIdents(x, bound, fn)
		}
	case celast.MapKind:
		for _, en := range e.AsMap().Entries() {
			freeIdents(en.AsMapEntry().Key(), bound, fn)
			freeIdents(en.AsMapEntry().Value(), bound, fn)
		}
	case celast.StructKind:
		for _, f := range e.AsStruct().Fields() {
			freeIdents(f.AsStructField().Value(), bound, fn)
		}
	case celast.ComprehensionKind:
		c := e.AsComprehension()
		freeIdents(c.IterRange(), bound, fn)
		freeIdents(c.AccuInit(), bound, fn)
		inner := append(slices.Clip(bound), c.IterVar(), c.AccuVar())
		if c.HasIterVar2() {
			inner = append(inner, c.IterVar2())
		}
		freeIdents(c.LoopCondition(), inner, fn)
		freeIdents(c.LoopStep(), inner, fn)
		freeIdents(c.Result(), append(slices.Clip(bound), c.AccuVar()), fn)
	}
}

// celType is the CEL type of a feature type's values as variables.
func celType(t feature.Type) *cel.Type {
	switch t.Kind {
	case feature.KindInt:
		return cel.IntType
	case feature.KindFloat:
		return cel.DoubleType
	case feature.KindString:
		return cel.StringType
	case feature.KindBool:
		return cel.BoolType
	case feature.KindBytes:
		return cel.BytesType
	case feature.KindDatetime:
		return cel.TimestampType
	case feature.KindList:
		return cel.ListType(celType(*t.Elem))
	case feature.KindVector:
		return cel.ListType(cel.DoubleType)
	}
	return cel.DynType
}

// celOutputType is the CEL type an expression computing a feature of type
// t must have: as celType, but a json feature needs a map with string keys.
func celOutputType(t feature.Type) *cel.Type {
	if t.Kind == feature.KindJSON {
		return cel.MapType(cel.StringType, cel.DynType)
	}
	return celType(t)
}

func (e *expression) inputs() []*feature.Feature { return e.ins }

func (e *expression) close() {}

// call evaluates the expression for each key. A key with any input
// absent has no value (as SQL's NULL propagates); a key whose evaluation
// fails (division by zero, overflow, a dyn value of the wrong type, the
// cost limit) gets that error alone.
func (e *expression) call(ctx context.Context, keys []string, inputs [][]any) ([]Row, error) {
	if len(inputs) != len(keys) {
		return nil, fmt.Errorf("expression: %d keys but %d rows of inputs", len(keys), len(inputs))
	}
	rows := make([]Row, len(keys))
	vars := make(map[string]any, len(e.ins))
	for i := range keys {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		in := inputs[i]
		if len(in) != len(e.ins) {
			return nil, fmt.Errorf("expression: key %d has %d inputs, want %d", i, len(in), len(e.ins))
		}
		absent := false
		for j, v := range in {
			if v == nil {
				absent = true
				break
			}
			cv, err := toCEL(e.ins[j].Type, v)
			if err != nil {
				return nil, fmt.Errorf("expression: input %s: %w", e.ins[j].FQN, err)
			}
			vars[e.names[j]] = cv
		}
		if absent {
			continue
		}
		val, _, err := e.prg.ContextEval(ctx, vars)
		if err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				return nil, ctxErr
			}
			rows[i].Err = fmt.Errorf("evaluate: %w", err)
			continue
		}
		v, err := fromCEL(e.out.Type, val)
		if err == nil {
			err = feature.Check(e.out.Type, v)
		}
		switch {
		case err != nil:
			rows[i].Err = fmt.Errorf("result for %s: %w", e.out.FQN, err)
		case v != nil:
			rows[i].Values = []any{v}
		}
	}
	return rows, nil
}

// toCEL converts a canonical value of type t into a value CEL's default
// adapter takes. Lists and vectors are converted element by element;
// json numbers become doubles, as CEL's JSON mapping has them.
func toCEL(t feature.Type, v any) (any, error) {
	switch t.Kind {
	case feature.KindList:
		l, ok := v.([]any)
		if !ok {
			break
		}
		out := make([]any, len(l))
		for i, x := range l {
			var err error
			if out[i], err = toCEL(*t.Elem, x); err != nil {
				return nil, err
			}
		}
		return out, nil
	case feature.KindVector:
		vec, ok := v.([]float32)
		if !ok {
			break
		}
		out := make([]float64, len(vec))
		for i, x := range vec {
			out[i] = float64(x)
		}
		return out, nil
	case feature.KindJSON:
		m, ok := v.(map[string]any)
		if !ok {
			break
		}
		return jsonToCEL(m)
	default:
		if err := feature.Check(t, v); err != nil {
			return nil, err
		}
		return v, nil
	}
	return nil, fmt.Errorf("want %s, got %T", t, v)
}

func jsonToCEL(v any) (any, error) {
	switch x := v.(type) {
	case nil:
		return types.NullValue, nil
	case json.Number:
		return x.Float64()
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			var err error
			if out[k], err = jsonToCEL(e); err != nil {
				return nil, err
			}
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			var err error
			if out[i], err = jsonToCEL(e); err != nil {
				return nil, err
			}
		}
		return out, nil
	case string, bool, float64, int64:
		return x, nil
	}
	return nil, fmt.Errorf("json value of Go type %T", v)
}

// errNotFinite refuses NaN and the infinities, which no store answer can
// carry as JSON.
var errNotFinite = errors.New("not a finite number")

// fromCEL converts a result into a canonical value of type t; nil for
// CEL's null. Nothing is converted implicitly: an int is not a float.
func fromCEL(t feature.Type, v ref.Val) (any, error) {
	if v.Type() == types.NullType {
		return nil, nil
	}
	switch t.Kind {
	case feature.KindInt:
		if x, ok := v.(types.Int); ok {
			return int64(x), nil
		}
	case feature.KindFloat:
		if x, ok := v.(types.Double); ok {
			f := float64(x)
			if math.IsNaN(f) || math.IsInf(f, 0) {
				return nil, errNotFinite
			}
			return f, nil
		}
	case feature.KindString:
		if x, ok := v.(types.String); ok {
			return string(x), nil
		}
	case feature.KindBool:
		if x, ok := v.(types.Bool); ok {
			return bool(x), nil
		}
	case feature.KindBytes:
		if x, ok := v.(types.Bytes); ok {
			return slices.Clone([]byte(x)), nil
		}
	case feature.KindDatetime:
		if x, ok := v.(types.Timestamp); ok {
			return feature.CanonicalTime(x.Time), nil
		}
	case feature.KindList:
		l, ok := v.(traits.Lister)
		if !ok {
			break
		}
		n := int(l.Size().(types.Int))
		out := make([]any, n)
		for i := range n {
			e, err := fromCEL(*t.Elem, l.Get(types.Int(i)))
			if err != nil {
				return nil, fmt.Errorf("element %d: %w", i, err)
			}
			if e == nil {
				return nil, fmt.Errorf("element %d: null is not allowed in a list", i)
			}
			out[i] = e
		}
		return out, nil
	case feature.KindVector:
		l, ok := v.(traits.Lister)
		if !ok {
			break
		}
		n := int(l.Size().(types.Int))
		if n != t.Dim {
			return nil, fmt.Errorf("want %d numbers, got %d", t.Dim, n)
		}
		out := make([]float32, n)
		for i := range n {
			d, ok := l.Get(types.Int(i)).(types.Double)
			if !ok {
				return nil, fmt.Errorf("element %d: want double, got %s", i, l.Get(types.Int(i)).Type().TypeName())
			}
			if f := float64(d); math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > math.MaxFloat32 {
				return nil, fmt.Errorf("element %d: %v is not a finite float32", i, f)
			}
			out[i] = float32(d)
		}
		return out, nil
	case feature.KindJSON:
		if _, ok := v.(traits.Mapper); !ok {
			break
		}
		j, err := celToJSON(v, 0)
		if err != nil {
			return nil, err
		}
		return j, nil
	}
	return nil, fmt.Errorf("want %s, got %s", t, v.Type().TypeName())
}

// maxJSONDepth bounds the nesting of a computed json value.
const maxJSONDepth = 64

// celToJSON converts a CEL value into the canonical form of a json
// feature's contents: objects, arrays, strings, bools, nil, and numbers as
// json.Number. Bytes become base64 text and timestamps RFC 3339 text, as
// the API answers them.
func celToJSON(v ref.Val, depth int) (any, error) {
	if depth > maxJSONDepth {
		return nil, fmt.Errorf("json value nested deeper than %d", maxJSONDepth)
	}
	switch x := v.(type) {
	case types.Null:
		return nil, nil
	case types.Bool:
		return bool(x), nil
	case types.String:
		return string(x), nil
	case types.Int:
		return json.Number(strconv.FormatInt(int64(x), 10)), nil
	case types.Uint:
		return json.Number(strconv.FormatUint(uint64(x), 10)), nil
	case types.Double:
		f := float64(x)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, errNotFinite
		}
		return json.Number(strconv.FormatFloat(f, 'g', -1, 64)), nil
	case types.Bytes:
		return base64.StdEncoding.EncodeToString(x), nil
	case types.Timestamp:
		return feature.CanonicalTime(x.Time).Format(feature.TimeLayout), nil
	case types.Duration:
		return x.Duration.String(), nil
	case traits.Mapper:
		out := map[string]any{}
		for it := x.Iterator(); it.HasNext() == types.True; {
			k := it.Next()
			ks, ok := k.(types.String)
			if !ok {
				return nil, fmt.Errorf("json object key %v: want string, got %s", k, k.Type().TypeName())
			}
			e, err := celToJSON(x.Get(k), depth+1)
			if err != nil {
				return nil, fmt.Errorf("key %q: %w", string(ks), err)
			}
			out[string(ks)] = e
		}
		return out, nil
	case traits.Lister:
		n := int(x.Size().(types.Int))
		out := make([]any, n)
		for i := range n {
			e, err := celToJSON(x.Get(types.Int(i)), depth+1)
			if err != nil {
				return nil, fmt.Errorf("element %d: %w", i, err)
			}
			out[i] = e
		}
		return out, nil
	}
	return nil, fmt.Errorf("%s has no json form", v.Type().TypeName())
}
