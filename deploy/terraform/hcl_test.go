package terraform_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/tryfunc"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

// module is one directory of .tf files, parsed.
type module struct {
	dir   string
	files map[string]*hclsyntax.Body // by file name
	src   map[string][]byte
}

// blocks returns every top-level block of type typ in m, in file order.
func (m *module) blocks(typ string) []*hclsyntax.Block {
	var out []*hclsyntax.Block
	for _, name := range m.fileNames() {
		for _, b := range m.files[name].Blocks {
			if b.Type == typ {
				out = append(out, b)
			}
		}
	}
	return out
}

func (m *module) fileNames() []string {
	var names []string
	for n := range m.files {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// block returns the top-level block of type typ with labels, or fails t.
func (m *module) block(t *testing.T, typ string, labels ...string) *hclsyntax.Block {
	t.Helper()
	for _, b := range m.blocks(typ) {
		if slices.Equal(b.Labels, labels) {
			return b
		}
	}
	t.Fatalf("%s: no %s %q", m.dir, typ, labels)
	return nil
}

// variables returns the module's variable blocks by name.
func (m *module) variables() map[string]*hclsyntax.Block {
	out := map[string]*hclsyntax.Block{}
	for _, b := range m.blocks("variable") {
		out[b.Labels[0]] = b
	}
	return out
}

// locals returns the module's local value expressions by name.
func (m *module) locals() map[string]hclsyntax.Expression {
	out := map[string]hclsyntax.Expression{}
	for _, b := range m.blocks("locals") {
		for name, a := range b.Body.Attributes {
			out[name] = a.Expr
		}
	}
	return out
}

// loadModules parses every directory under deploy/terraform holding .tf
// files, keyed by its path relative to deploy/terraform.
func loadModules(t *testing.T) map[string]*module {
	t.Helper()
	mods := map[string]*module{}
	err := filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(path) != ".tf" {
			return err
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		f, diags := hclsyntax.ParseConfig(src, path, hcl.InitialPos)
		if diags.HasErrors() {
			return fmt.Errorf("parse: %s", diags.Error())
		}
		dir := filepath.Dir(path)
		m := mods[dir]
		if m == nil {
			m = &module{dir: dir, files: map[string]*hclsyntax.Body{}, src: map[string][]byte{}}
			mods[dir] = m
		}
		m.files[filepath.Base(path)] = f.Body.(*hclsyntax.Body)
		m.src[filepath.Base(path)] = src
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"modules/msk", "modules/msk-replicated", "modules/dynamodb", "modules/dynamodb/autoscaling",
		"modules/iam", "examples/single-region", "examples/multi-region",
	} {
		if mods[want] == nil {
			t.Fatalf("no .tf files in %s", want)
		}
	}
	return mods
}

// functions are the Terraform functions the modules' validations and
// locals use that can be evaluated here.
var functions = map[string]function.Function{
	"can":        tryfunc.CanFunc,
	"try":        tryfunc.TryFunc,
	"concat":     stdlib.ConcatFunc,
	"contains":   stdlib.ContainsFunc,
	"distinct":   stdlib.DistinctFunc,
	"floor":      stdlib.FloorFunc,
	"jsonencode": stdlib.JSONEncodeFunc,
	"length":     lengthFunc,
	"merge":      stdlib.MergeFunc,
	"regex":      stdlib.RegexFunc,
	"replace":    stdlib.ReplaceFunc,
	"setproduct": stdlib.SetProductFunc,
}

// lengthFunc is Terraform's length: the characters of a string, or the
// elements of a collection (cty's own length takes collections only).
var lengthFunc = function.New(&function.Spec{
	Params: []function.Parameter{{Name: "value", Type: cty.DynamicPseudoType, AllowDynamicType: true, AllowUnknown: true}},
	Type:   function.StaticReturnType(cty.Number),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		if args[0].Type() == cty.String {
			return stdlib.Strlen(args[0])
		}
		return stdlib.Length(args[0])
	},
})

// varType returns the type constraint of variable block v.
func varType(t *testing.T, v *hclsyntax.Block) cty.Type {
	t.Helper()
	a, ok := v.Body.Attributes["type"]
	if !ok {
		t.Fatalf("variable %s has no type", v.Labels[0])
	}
	ty, diags := typeexpr.TypeConstraint(a.Expr)
	if diags.HasErrors() {
		t.Fatalf("variable %s: type: %s", v.Labels[0], diags.Error())
	}
	return ty
}

// defaults returns the default of every variable of m that has one,
// converted to its type; overrides replace or add values.
func defaults(t *testing.T, m *module, overrides map[string]cty.Value) map[string]cty.Value {
	t.Helper()
	vals := map[string]cty.Value{}
	for name, v := range m.variables() {
		a, ok := v.Body.Attributes["default"]
		if !ok {
			continue
		}
		val, diags := a.Expr.Value(nil)
		if diags.HasErrors() {
			t.Fatalf("%s: variable %s: default: %s", m.dir, name, diags.Error())
		}
		val, err := convert.Convert(val, varType(t, v))
		if err != nil {
			t.Fatalf("%s: variable %s: default does not fit its type: %v", m.dir, name, err)
		}
		vals[name] = val
	}
	for k, v := range overrides {
		vals[k] = v
	}
	return vals
}

// evalLocals evaluates every local of m that depends only on variables
// (given in vars), functions above, and other such locals.
func evalLocals(t *testing.T, m *module, vars map[string]cty.Value) map[string]cty.Value {
	t.Helper()
	exprs := m.locals()
	done := map[string]cty.Value{}
	for progress := true; progress; {
		progress = false
		for name, e := range exprs {
			if _, ok := done[name]; ok {
				continue
			}
			ctx := &hcl.EvalContext{
				Variables: map[string]cty.Value{"var": cty.ObjectVal(vars), "local": cty.ObjectVal(done)},
				Functions: functions,
			}
			if v, diags := e.Value(ctx); !diags.HasErrors() && v.IsWhollyKnown() {
				done[name] = v
				progress = true
			}
		}
	}
	return done
}

// eval evaluates e in m with the given variables and the locals they
// determine.
func eval(t *testing.T, m *module, e hcl.Expression, vars map[string]cty.Value) cty.Value {
	t.Helper()
	ctx := &hcl.EvalContext{
		Variables: map[string]cty.Value{"var": cty.ObjectVal(vars), "local": cty.ObjectVal(evalLocals(t, m, vars))},
		Functions: functions,
	}
	v, diags := e.Value(ctx)
	if diags.HasErrors() {
		t.Fatalf("%s: evaluate %s: %s", m.dir, exprText(m, e), diags.Error())
	}
	return v
}

// exprText returns the source text of e.
func exprText(m *module, e hcl.Expression) string {
	r := e.Range()
	src := m.src[filepath.Base(r.Filename)]
	if src == nil || r.End.Byte > len(src) {
		return r.String()
	}
	return string(src[r.Start.Byte:r.End.Byte])
}

// TestParseAndFormat checks that every .tf file parses and is already in
// the canonical format `terraform fmt` writes.
func TestParseAndFormat(t *testing.T) {
	mods := loadModules(t)
	for dir, m := range mods {
		for name, src := range m.src {
			if got := hclwrite.Format(src); !bytes.Equal(got, src) {
				t.Errorf("%s/%s is not formatted canonically; want:\n%s", dir, name, got)
			}
		}
	}
}

// attrsAndBlocks calls fn for every attribute in body and the blocks
// nested in it, with the types of the enclosing blocks.
func walkAttrs(body *hclsyntax.Body, path []string, fn func(path []string, a *hclsyntax.Attribute)) {
	for _, a := range body.Attributes {
		fn(path, a)
	}
	for _, b := range body.Blocks {
		walkAttrs(b.Body, append(slices.Clone(path), b.Type), fn)
	}
}

// dynamicIterators returns the iterator names of the dynamic blocks
// enclosing nothing in particular: every dynamic block label in body.
func dynamicIterators(body *hclsyntax.Body, into map[string]bool) {
	for _, b := range body.Blocks {
		if b.Type == "dynamic" && len(b.Labels) == 1 {
			into[b.Labels[0]] = true
			if it, ok := b.Body.Attributes["iterator"]; ok {
				into[hcl.ExprAsKeyword(it.Expr)] = true
			}
		}
		dynamicIterators(b.Body, into)
	}
}

// TestReferences checks, module by module, that every reference names a
// declared variable, local, resource, data source, module or module
// output, and that every declared variable is used.
func TestReferences(t *testing.T) {
	mods := loadModules(t)
	for dir, m := range mods {
		t.Run(dir, func(t *testing.T) {
			vars := m.variables()
			locals := m.locals()
			resources := map[string]bool{}
			data := map[string]bool{}
			modules := map[string]*hclsyntax.Block{}
			for _, b := range m.blocks("resource") {
				resources[b.Labels[0]+"."+b.Labels[1]] = true
			}
			for _, b := range m.blocks("data") {
				data[b.Labels[0]+"."+b.Labels[1]] = true
			}
			for _, b := range m.blocks("module") {
				modules[b.Labels[0]] = b
			}
			used := map[string]bool{}
			for _, fname := range m.fileNames() {
				body := m.files[fname]
				for _, top := range body.Blocks {
					iterators := map[string]bool{}
					dynamicIterators(top.Body, iterators)
					var attrs []*hclsyntax.Attribute
					if top.Type == "terraform" {
						continue // provider requirements, not expressions
					}
					walkAttrs(top.Body, nil, func(path []string, a *hclsyntax.Attribute) {
						if a.Name == "provider" || a.Name == "providers" || a.Name == "source" || (top.Type == "variable" && a.Name == "type") ||
							(len(path) > 0 && path[len(path)-1] == "lifecycle" && a.Name == "ignore_changes") {
							return
						}
						attrs = append(attrs, a)
					})
					for _, a := range attrs {
						for _, tr := range a.Expr.Variables() {
							where := fmt.Sprintf("%s: %s", tr.SourceRange(), exprText(m, a.Expr))
							root := tr.RootName()
							switch {
							case root == "var":
								name := attrName(tr, 1)
								if top.Type != "variable" {
									used[name] = true
								}
								if vars[name] == nil {
									t.Errorf("%s: undeclared variable %s", where, name)
								}
							case root == "local":
								if _, ok := locals[attrName(tr, 1)]; !ok {
									t.Errorf("%s: undeclared local %s", where, attrName(tr, 1))
								}
							case root == "data":
								if !data[attrName(tr, 1)+"."+attrName(tr, 2)] {
									t.Errorf("%s: undeclared data source %s.%s", where, attrName(tr, 1), attrName(tr, 2))
								}
							case root == "module":
								mb := modules[attrName(tr, 1)]
								if mb == nil {
									t.Errorf("%s: undeclared module %s", where, attrName(tr, 1))
									continue
								}
								out := attrName(tr, 2)
								if out == "" {
									continue // the whole module object
								}
								child := mods[childDir(t, m, mb)]
								if child == nil {
									t.Errorf("%s: module %s: source not found", where, attrName(tr, 1))
									continue
								}
								if !slices.ContainsFunc(child.blocks("output"), func(b *hclsyntax.Block) bool { return b.Labels[0] == out }) {
									t.Errorf("%s: module %s (%s) has no output %s", where, attrName(tr, 1), child.dir, out)
								}
							case root == "each" || root == "count" || root == "path" || root == "self" || root == "terraform" || iterators[root]:
							default:
								if !resources[root+"."+attrName(tr, 1)] {
									t.Errorf("%s: undeclared resource %s.%s", where, root, attrName(tr, 1))
								}
							}
						}
					}
				}
			}
			for name := range vars {
				if !used[name] {
					t.Errorf("variable %s is declared but never used", name)
				}
			}
			for _, mb := range modules {
				// Every argument given to a module is a variable it declares,
				// and every variable it requires is given.
				child := mods[childDir(t, m, mb)]
				if child == nil {
					t.Errorf("module %s: source %s not found", mb.Labels[0], childDir(t, m, mb))
					continue
				}
				cv := child.variables()
				for name := range mb.Body.Attributes {
					if name == "source" || name == "providers" || name == "count" || name == "for_each" || name == "depends_on" {
						continue
					}
					if cv[name] == nil {
						t.Errorf("module %s: argument %s is not a variable of %s", mb.Labels[0], name, child.dir)
					}
				}
				for name, v := range cv {
					if _, ok := v.Body.Attributes["default"]; ok {
						continue
					}
					if _, ok := mb.Body.Attributes[name]; !ok {
						t.Errorf("module %s: required variable %s of %s not given", mb.Labels[0], name, child.dir)
					}
				}
			}
		})
	}
}

// attrName returns the name of step i of tr, or "".
func attrName(tr hcl.Traversal, i int) string {
	if i >= len(tr) {
		return ""
	}
	if a, ok := tr[i].(hcl.TraverseAttr); ok {
		return a.Name
	}
	return ""
}

// childDir returns the directory, relative to deploy/terraform, of the
// local module block mb calls.
func childDir(t *testing.T, m *module, mb *hclsyntax.Block) string {
	t.Helper()
	v, diags := mb.Body.Attributes["source"].Expr.Value(nil)
	if diags.HasErrors() {
		t.Fatalf("%s: module %s: source: %s", m.dir, mb.Labels[0], diags.Error())
	}
	return filepath.Clean(filepath.Join(m.dir, v.AsString()))
}

// TestEveryDefaultPassesItsValidation checks that no variable's default
// is refused by its own validation.
func TestEveryDefaultPassesItsValidation(t *testing.T) {
	for dir, m := range loadModules(t) {
		vars := defaults(t, m, nil)
		for name, v := range m.variables() {
			if _, ok := vars[name]; !ok {
				continue
			}
			for _, vb := range v.Body.Blocks {
				if vb.Type != "validation" {
					continue
				}
				got := eval(t, m, vb.Body.Attributes["condition"].Expr, vars)
				if !got.True() {
					t.Errorf("%s: variable %s: default %s fails its validation", dir, name, got.GoString())
				}
			}
		}
	}
}
