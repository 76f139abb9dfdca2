package deploy

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/cairnfs/cairn/internal/node"
)

// promPath is the import path whose Opts literals declare metrics.
const promPath = "github.com/prometheus/client_golang/prometheus"

// family is one metric family cairn exports.
type family struct {
	name string
	// kind is counter, gauge, histogram, summary, untyped, or desc for a
	// custom collector's prometheus.NewDesc, which may be any of them.
	kind string
	// labels are the family's label names; nil when they could not be
	// worked out from the source, and then not checked.
	labels map[string]bool
	// where says where the family is declared.
	where string
}

// series returns the names under which the family's samples are exposed,
// each with the labels it carries beyond the family's own.
func (f family) series() map[string][]string {
	switch f.kind {
	case "histogram":
		return map[string][]string{f.name + "_bucket": {"le"}, f.name + "_sum": nil, f.name + "_count": nil}
	case "summary":
		return map[string][]string{f.name: {"quantile"}, f.name + "_sum": nil, f.name + "_count": nil}
	case "desc":
		// A custom collector's Desc does not say what it collects.
		return map[string][]string{f.name: {"quantile"}, f.name + "_bucket": {"le"}, f.name + "_sum": nil, f.name + "_count": nil}
	default:
		return map[string][]string{f.name: nil}
	}
}

// exported is what a rule or panel may select: series name to the labels it
// may match on (nil: any).
type exported map[string]map[string]bool

// targetLabels are added by Prometheus to every scraped series.
var targetLabels = []string{"job", "instance"}

func (e exported) add(f family) {
	for name, extra := range f.series() {
		var labels map[string]bool
		if f.labels != nil {
			labels = maps.Clone(f.labels)
			for _, l := range append(extra, targetLabels...) {
				labels[l] = true
			}
		}
		if old, ok := e[name]; ok && (old == nil || labels == nil) {
			labels = nil
		} else if ok {
			maps.Copy(labels, old)
		}
		e[name] = labels
	}
}

// exportedMetrics returns every series cairn's processes can expose: the
// families declared in the source of ./internal and ./cmd (sourceFamilies)
// and those of the registry every process starts from (node.NewMetrics: Go
// runtime and process collectors), gathered from the running code.
func exportedMetrics(t *testing.T) exported {
	t.Helper()
	fams, err := sourceFamilies("..", "internal", "cmd")
	if err != nil {
		t.Fatal(err)
	}
	e := exported{}
	for _, f := range fams {
		e.add(f)
	}
	gathered, err := node.NewMetrics().Gather()
	if err != nil {
		t.Fatalf("gather node.NewMetrics: %v", err)
	}
	for _, mf := range gathered {
		e.add(gatheredFamily(mf))
	}
	return e
}

// gatheredFamily describes a family gathered from a registry.
func gatheredFamily(mf *dto.MetricFamily) family {
	f := family{name: mf.GetName(), labels: map[string]bool{}, where: "gathered"}
	switch mf.GetType() {
	case dto.MetricType_COUNTER:
		f.kind = "counter"
	case dto.MetricType_GAUGE:
		f.kind = "gauge"
	case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
		f.kind = "histogram"
	case dto.MetricType_SUMMARY:
		f.kind = "summary"
	default:
		f.kind = "untyped"
	}
	for _, m := range mf.GetMetric() {
		for _, lp := range m.GetLabel() {
			f.labels[lp.GetName()] = true
		}
	}
	return f
}

// optsKinds maps the client library's Opts types to the kind of metric
// they declare; prometheus.Opts (kind "") takes it from the constructor.
var optsKinds = map[string]string{
	"CounterOpts": "counter", "GaugeOpts": "gauge", "HistogramOpts": "histogram",
	"SummaryOpts": "summary", "UntypedOpts": "untyped", "Opts": "",
}

// sourceFamilies parses the non-test Go files under root's dirs and returns
// every metric family declared with a composite literal of one of the
// client library's Opts types, its name joined from Namespace, Subsystem
// and Name as prometheus.BuildFQName does, and its labels from ConstLabels
// and a Vec constructor's label names. A declaration whose name is not a
// constant is an error: the check would otherwise miss it.
func sourceFamilies(root string, dirs ...string) ([]family, error) {
	var out []family
	var errs []string
	for _, dir := range dirs {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() {
				return nil
			}
			if d.Name() == "testdata" {
				return filepath.SkipDir
			}
			fams, perr := packageFamilies(path)
			out = append(out, fams...)
			errs = append(errs, perr...)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	if len(errs) > 0 {
		return out, fmt.Errorf("metric declarations the check cannot read:\n%s", strings.Join(errs, "\n"))
	}
	return out, nil
}

// packageFamilies returns the families declared in one directory's non-test
// Go files, and a description of each declaration it could not resolve.
func packageFamilies(dir string) ([]family, []string) {
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, dir, func(fi fs.FileInfo) bool {
		return !strings.HasSuffix(fi.Name(), "_test.go")
	}, 0)
	if err != nil {
		return nil, []string{err.Error()}
	}
	var out []family
	var errs []string
	for _, pkg := range pkgs {
		consts := packageConsts(pkg)
		for _, file := range pkg.Files {
			prom := importName(file, promPath)
			if prom == "" {
				continue
			}
			r := resolver{file: file, prom: prom, consts: consts, fset: fset}
			fams, ferrs := r.families()
			out = append(out, fams...)
			errs = append(errs, ferrs...)
		}
	}
	return out, errs
}

// packageConsts returns the package's string constants given as literals.
func packageConsts(pkg *ast.Package) map[string]string {
	consts := map[string]string{}
	for _, file := range pkg.Files {
		for _, decl := range file.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, name := range vs.Names {
					if i < len(vs.Values) {
						if s, ok := stringLit(vs.Values[i]); ok {
							consts[name.Name] = s
						}
					}
				}
			}
		}
	}
	return consts
}

// importName returns the name under which file imports path, or "".
func importName(file *ast.File, path string) string {
	for _, imp := range file.Imports {
		if p, _ := strconv.Unquote(imp.Path.Value); p == path {
			if imp.Name != nil {
				return imp.Name.Name
			}
			return filepath.Base(path)
		}
	}
	return ""
}

func stringLit(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

// resolver reads the metric declarations of one file.
type resolver struct {
	file   *ast.File
	prom   string
	consts map[string]string
	fset   *token.FileSet
}

// optsKind reports whether lit is a prometheus Opts literal, and its kind.
func (r resolver) optsKind(e ast.Expr) (*ast.CompositeLit, string, bool) {
	if u, ok := e.(*ast.UnaryExpr); ok && u.Op == token.AND {
		e = u.X
	}
	lit, ok := e.(*ast.CompositeLit)
	if !ok {
		return nil, "", false
	}
	sel, ok := lit.Type.(*ast.SelectorExpr)
	if !ok {
		return nil, "", false
	}
	if x, ok := sel.X.(*ast.Ident); !ok || x.Name != r.prom {
		return nil, "", false
	}
	kind, ok := optsKinds[sel.Sel.Name]
	return lit, kind, ok
}

// str resolves a string literal or a package constant.
func (r resolver) str(e ast.Expr) (string, bool) {
	if s, ok := stringLit(e); ok {
		return s, true
	}
	if id, ok := e.(*ast.Ident); ok {
		s, ok := r.consts[id.Name]
		return s, ok
	}
	return "", false
}

// local returns the value assigned to the identifier e in the file (name
// := value, or var name = value), for label lists and ConstLabels kept in
// a variable.
func (r resolver) local(e ast.Expr) ast.Expr {
	id, ok := e.(*ast.Ident)
	if !ok {
		return e
	}
	var found ast.Expr
	ast.Inspect(r.file, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.AssignStmt:
			for i, lhs := range n.Lhs {
				if l, ok := lhs.(*ast.Ident); ok && l.Name == id.Name && i < len(n.Rhs) && len(n.Lhs) == len(n.Rhs) {
					found = n.Rhs[i]
				}
			}
		case *ast.ValueSpec:
			for i, name := range n.Names {
				if name.Name == id.Name && i < len(n.Values) {
					found = n.Values[i]
				}
			}
		}
		return found == nil
	})
	return found
}

// labelNames resolves a []string literal, or a prometheus.Labels literal's
// keys, possibly through a variable; ok is false when it cannot.
func (r resolver) labelNames(e ast.Expr, keys bool) (names []string, ok bool) {
	lit, isLit := r.local(e).(*ast.CompositeLit)
	if !isLit {
		return nil, false
	}
	for _, elt := range lit.Elts {
		if keys {
			kv, isKV := elt.(*ast.KeyValueExpr)
			if !isKV {
				return nil, false
			}
			elt = kv.Key
		}
		s, isStr := r.str(elt)
		if !isStr {
			return nil, false
		}
		names = append(names, s)
	}
	return names, true
}

// families returns the file's metric declarations.
func (r resolver) families() ([]family, []string) {
	var out []family
	var errs []string
	inCall := map[*ast.CompositeLit]bool{}
	// Constructors first: they give a Vec's label names and the kind of
	// a plain prometheus.Opts.
	ast.Inspect(r.file, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok || len(call.Args) == 0 {
			return true
		}
		if r.isProm(call.Fun, "NewDesc") {
			f, err := r.desc(call)
			if err != "" {
				errs = append(errs, err)
			} else {
				out = append(out, f)
			}
			return true
		}
		lit, kind, ok := r.optsKind(call.Args[0])
		if !ok {
			return true
		}
		inCall[lit] = true
		fn := ""
		switch f := call.Fun.(type) {
		case *ast.SelectorExpr:
			fn = f.Sel.Name
		case *ast.Ident:
			fn = f.Name
		}
		if kind == "" {
			for _, k := range []string{"Counter", "Gauge", "Histogram", "Summary", "Untyped"} {
				if strings.HasPrefix(fn, "New"+k) {
					kind = strings.ToLower(k)
				}
			}
		}
		var vecLabels []string
		known := true
		if strings.HasSuffix(fn, "Vec") {
			if len(call.Args) < 2 {
				known = false
			} else {
				vecLabels, known = r.labelNames(call.Args[1], false)
			}
		}
		f, err := r.family(lit, kind, vecLabels, known)
		if err != "" {
			errs = append(errs, err)
			return true
		}
		out = append(out, f)
		return true
	})
	// Opts literals built apart from their constructor: their names are
	// still exported, their labels unknown.
	ast.Inspect(r.file, func(n ast.Node) bool {
		e, ok := n.(ast.Expr)
		if !ok {
			return true
		}
		lit, kind, ok := r.optsKind(e)
		if !ok || inCall[lit] {
			return true
		}
		inCall[lit] = true
		f, err := r.family(lit, kind, nil, false)
		if err != "" {
			errs = append(errs, err)
			return true
		}
		out = append(out, f)
		return true
	})
	return out, errs
}

// isProm reports whether e is prometheus.<name>.
func (r resolver) isProm(e ast.Expr, name string) bool {
	sel, ok := e.(*ast.SelectorExpr)
	if !ok || sel.Sel.Name != name {
		return false
	}
	x, ok := sel.X.(*ast.Ident)
	return ok && x.Name == r.prom
}

// desc reads a prometheus.NewDesc(fqName, help, variableLabels,
// constLabels) call; fqName is a constant or a BuildFQName of constants.
func (r resolver) desc(call *ast.CallExpr) (family, string) {
	where := r.fset.Position(call.Pos()).String()
	if len(call.Args) != 4 {
		return family{}, where + ": NewDesc with other than 4 arguments"
	}
	name, ok := r.str(call.Args[0])
	if b, isCall := call.Args[0].(*ast.CallExpr); isCall && r.isProm(b.Fun, "BuildFQName") && len(b.Args) == 3 {
		var parts [3]string
		ok = true
		for i, a := range b.Args {
			var partOK bool
			parts[i], partOK = r.str(a)
			ok = ok && partOK
		}
		name = prometheus.BuildFQName(parts[0], parts[1], parts[2])
	}
	if !ok {
		return family{}, where + ": NewDesc name is not a string constant"
	}
	f := family{name: name, kind: "desc", where: where}
	vl, vok := r.labelNames(call.Args[2], false)
	if id, isNil := call.Args[2].(*ast.Ident); isNil && id.Name == "nil" {
		vl, vok = nil, true
	}
	cl, cok := r.labelNames(call.Args[3], true)
	if id, isNil := call.Args[3].(*ast.Ident); isNil && id.Name == "nil" {
		cl, cok = nil, true
	}
	if vok && cok {
		f.labels = map[string]bool{}
		for _, l := range append(vl, cl...) {
			f.labels[l] = true
		}
	}
	return f, ""
}

// family reads one Opts literal.
func (r resolver) family(lit *ast.CompositeLit, kind string, vecLabels []string, labelsKnown bool) (family, string) {
	where := r.fset.Position(lit.Pos()).String()
	var parts [3]string // Namespace, Subsystem, Name
	var constLabels []string
	for _, elt := range lit.Elts {
		kv, ok := elt.(*ast.KeyValueExpr)
		if !ok {
			return family{}, where + ": Opts literal without field names"
		}
		key := kv.Key.(*ast.Ident).Name
		i := slices.Index([]string{"Namespace", "Subsystem", "Name"}, key)
		switch {
		case i >= 0:
			s, ok := r.str(kv.Value)
			if !ok {
				return family{}, fmt.Sprintf("%s: %s is not a string constant", where, key)
			}
			parts[i] = s
		case key == "ConstLabels":
			names, ok := r.labelNames(kv.Value, true)
			if !ok {
				labelsKnown = false
			}
			constLabels = names
		}
	}
	if parts[2] == "" {
		return family{}, where + ": metric without a Name"
	}
	f := family{name: prometheus.BuildFQName(parts[0], parts[1], parts[2]), kind: kind, where: where}
	if kind == "" {
		f.kind = "untyped"
	}
	if labelsKnown {
		f.labels = map[string]bool{}
		for _, l := range append(vecLabels, constLabels...) {
			f.labels[l] = true
		}
	}
	return f, ""
}

// TestSourceFamiliesMatchRunningCode checks the source reading against
// metrics registered by the running code: real components built on one
// registry must export only families read from their source, of the same
// kind, with labels the source declares; otherwise the checks of the rules
// and the dashboard would rest on a wrong list.
func TestSourceFamiliesMatchRunningCode(t *testing.T) {
	fams, err := sourceFamilies("..", "internal", "cmd")
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]family{}
	for _, f := range fams {
		byName[f.name] = f
	}
	if len(byName) < 20 {
		t.Fatalf("found %d metric families in the source; the reading is broken", len(byName))
	}
	for _, tc := range []struct {
		name     string
		register func(*testing.T, *prometheus.Registry)
		prefixes []string // families that must be among those gathered
	}{
		{"kafka and query components", registerComponents, []string{"cairn_queue_", "cairn_writer_", "cairn_hedge_", "cairn_bloom_barrier_"}},
		{"stores", registerStores, []string{"cairn_dynamo_requests_total", "cairn_dynamo_request_duration_seconds", "cairn_redis_requests_total"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			tc.register(t, reg)
			gathered, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range tc.prefixes {
				if !slices.ContainsFunc(gathered, func(mf *dto.MetricFamily) bool { return strings.HasPrefix(mf.GetName(), p) }) {
					t.Errorf("no family %s* gathered; the components did not register what they declare", p)
				}
			}
			for _, mf := range gathered {
				got := gatheredFamily(mf)
				src, ok := byName[got.name]
				if !ok {
					t.Errorf("running code exports %s (%s), not found in the source", got.name, got.kind)
					continue
				}
				if src.kind != got.kind {
					t.Errorf("%s: source says %s, running code exports a %s", got.name, src.kind, got.kind)
				}
				if src.labels == nil {
					continue
				}
				for l := range got.labels {
					if !src.labels[l] {
						t.Errorf("%s: running code has label %q, source declares %v (%s)", got.name, l, slices.Sorted(maps.Keys(src.labels)), src.where)
					}
				}
			}
		})
	}
}

// TestSourceFamiliesRejectsUnreadable shows that a metric whose name the
// check cannot read fails it rather than being left out, and that names
// joined from constants, Vec labels kept in a variable and custom
// collectors' Descs are read.
func TestSourceFamiliesRejectsUnreadable(t *testing.T) {
	dir := t.TempDir()
	pkg := filepath.Join(dir, "internal", "x")
	if err := os.MkdirAll(pkg, 0o755); err != nil {
		t.Fatal(err)
	}
	src := `package x

import "github.com/prometheus/client_golang/prometheus"

const sub = "x"

var labels = []string{"shard"}

func name() string { return "cairn_x_computed_total" }

var (
	a = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "cairn", Subsystem: sub, Name: "reads_total"}, labels)
	b = prometheus.NewCounter(prometheus.CounterOpts{Name: name()})
	c = prometheus.NewDesc(prometheus.BuildFQName("cairn", sub, "rollup_seconds"), "help", []string{"namespace"}, nil)
)
`
	if err := os.WriteFile(filepath.Join(pkg, "x.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	fams, err := sourceFamilies(dir, "internal")
	if err == nil || !strings.Contains(err.Error(), "Name is not a string constant") {
		t.Errorf("sourceFamilies = %v; want an error naming the computed Name", err)
	}
	byName := map[string]family{}
	for _, f := range fams {
		byName[f.name] = f
	}
	if f := byName["cairn_x_reads_total"]; f.kind != "counter" || !f.labels["shard"] {
		t.Errorf("cairn_x_reads_total = %+v; want a counter labelled shard", f)
	}
	if f := byName["cairn_x_rollup_seconds"]; f.kind != "desc" || !f.labels["namespace"] {
		t.Errorf("cairn_x_rollup_seconds = %+v; want a custom collector's Desc labelled namespace", f)
	}
	if len(fams) != 2 {
		t.Errorf("families = %+v; want the two with constant names", fams)
	}
}
