package terraform_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/sizing"
)

// tfvarsExamples are the examples `cairn size --tfvars` writes for.
var tfvarsExamples = []string{"examples/single-region", "examples/multi-region"}

// tfvarsArgument is the module argument an example passes a printed
// variable on to, when its name differs from the variable's: the example
// says which broker setting it is, the msk modules need no prefix.
var tfvarsArgument = map[string]string{"broker_volume_size": "volume_size"}

// tfvarsSample is one terraform.tfvars text and where it comes from.
type tfvarsSample struct {
	from, text string
}

// sizedTFVars computes plans across the capacity modes, retentions, broker
// counts and replication factors over the feature file docs/sizing.md
// works from, and returns their terraform.tfvars.
func sizedTFVars(t *testing.T) []tfvarsSample {
	t.Helper()
	features := filepath.Join(repoRoot, "examples", "sizing.yaml")
	reg, err := feature.Load(features)
	if err != nil {
		t.Fatal(err)
	}
	modes := map[string]bool{}
	var out []tfvarsSample
	for _, c := range []struct {
		qps, peak, persist, uploads float64
		retention                   time.Duration
		brokers, rf                 int
	}{
		{500, 500, 0, 0, 168 * time.Hour, 3, 3},          // flat: provisioned
		{500, 1500, 0.1, 20, 168 * time.Hour, 3, 3},      // daily cycle: autoscaled
		{10, 200, 0, 1, 24 * time.Hour, 3, 3},            // spiky: on demand
		{50000, 60000, 0.5, 2000, 72 * time.Hour, 9, 3},  // large
		{1, 1, 0, 0, time.Hour, 3, 1},                    // the smallest values
		{2000, 5000, 1, 100, 10 * 24 * time.Hour, 9, 2},  // a long window
		{0, 0, 0, 5, 168 * time.Hour, 3, 3},              // uploads only
		{100000, 100000, 0, 0, 24 * time.Hour, 12, 3},    // reads beyond the default quota
		{300, 900, 0.2, 10, 48 * time.Hour, 4, 3},        // broker count not a multiple of 3
		{30, 30, 0, 0, 168 * time.Hour, 3, 3},            // tiny flat
		{1000, 2000, 0.05, 50, 12 * time.Hour, 3, 3},     // short window
		{5, 400, 0, 0, 168 * time.Hour, 6, 3},            // very spiky
		{250, 250, 0, 1000, 168 * time.Hour, 3, 3},       // write heavy
		{10000, 14000, 0.3, 500, 168 * time.Hour, 15, 3}, // many brokers
	} {
		o := sizing.DefaultOptions()
		o.Features = features
		o.QPS, o.PeakQPS, o.EntitiesPerQuery = c.qps, c.peak, 10
		o.PersistFraction, o.UploadsPerSecond, o.EntitiesPerUpload = c.persist, c.uploads, 50
		o.Retention, o.BrokersCount, o.ReplicationFactor = c.retention, c.brokers, c.rf
		p, err := sizing.Compute(o, reg)
		if err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
		var b strings.Builder
		if err := p.WriteTFVars(&b); err != nil {
			t.Fatal(err)
		}
		modes[p.CapacityMode] = true
		out = append(out, tfvarsSample{fmt.Sprintf("cairn size for %+v", c), b.String()})
	}
	for _, m := range []string{sizing.Provisioned, sizing.Autoscaled, sizing.OnDemand} {
		if !modes[m] {
			t.Errorf("no sized case recommends %s: the cases no longer cover every capacity mode", m)
		}
	}
	return out
}

// docTFVars returns the terraform.tfvars blocks of the docs: the lines
// after a "terraform.tfvars" heading in cairn size's output, and every run
// of assignments starting with capacity_mode.
func docTFVars(t *testing.T, page string) []tfvarsSample {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(repoRoot, "docs", page))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(src), "\n")
	var out []tfvarsSample
	for i := 0; i < len(lines); i++ {
		if !strings.HasPrefix(strings.TrimSpace(lines[i]), "capacity_mode ") {
			continue
		}
		start := i
		var b strings.Builder
		for ; i < len(lines) && strings.Contains(lines[i], " = "); i++ {
			b.WriteString(strings.TrimSpace(lines[i]) + "\n")
		}
		out = append(out, tfvarsSample{fmt.Sprintf("docs/%s:%d", page, start+1), b.String()})
	}
	return out
}

// TestSizeTFVarsFitTheExamples checks that every variable cairn size
// --tfvars prints, for computed plans and in the docs, is declared by each
// example, passes that variable's validation, and is passed on to a module
// argument of the same name. Terraform only warns about an undeclared
// variable in a .tfvars file, so a name the examples do not declare would
// silently leave their default in place.
func TestSizeTFVarsFitTheExamples(t *testing.T) {
	mods := loadModules(t)
	samples := sizedTFVars(t)
	docs := docTFVars(t, "sizing.md")
	if len(docs) < 3 {
		t.Fatalf("docs/sizing.md: %d terraform.tfvars blocks, want one per worked example", len(docs))
	}
	samples = append(samples, docs...)
	samples = append(samples, docTFVars(t, "operations.md")...)

	printed := map[string]bool{}
	for _, s := range samples {
		f, diags := hclsyntax.ParseConfig([]byte(s.text), s.from, hcl.InitialPos)
		if diags.HasErrors() {
			t.Errorf("%s: not HCL: %s", s.from, diags.Error())
			continue
		}
		attrs := f.Body.(*hclsyntax.Body).Attributes
		if len(attrs) == 0 {
			t.Errorf("%s: no variables", s.from)
		}
		for _, line := range strings.Split(strings.TrimSpace(s.text), "\n") {
			name, value, _ := strings.Cut(line, "=")
			name, value = strings.TrimSpace(name), strings.TrimSpace(value)
			printed[name] = true
			for _, dir := range tfvarsExamples {
				m := mods[dir]
				v := m.variables()[name]
				if v == nil {
					t.Errorf("%s: %s is not a variable of %s", s.from, name, dir)
					continue
				}
				if !validates(t, m, v, value) {
					t.Errorf("%s: %s = %s is refused by the validation of %s", s.from, name, value, dir)
				}
			}
		}
	}

	for name := range printed {
		want := name
		if a, ok := tfvarsArgument[name]; ok {
			want = a
		}
		for _, dir := range tfvarsExamples {
			if args := passedAs(mods[dir], name); !args[want] {
				t.Errorf("%s: variable %s is passed to no module argument %s (only to %v)", dir, name, want, args)
			}
		}
	}
}

// passedAs returns the module arguments of m whose value is exactly
// var.name.
func passedAs(m *module, name string) map[string]bool {
	out := map[string]bool{}
	for _, mb := range m.blocks("module") {
		for arg, a := range mb.Body.Attributes {
			st, ok := a.Expr.(*hclsyntax.ScopeTraversalExpr)
			if ok && len(st.Traversal) == 2 && st.Traversal.RootName() == "var" && attrName(st.Traversal, 1) == name {
				out[arg] = true
			}
		}
	}
	return out
}

// TestExamplesSCRAMUserFromTheModule checks that the CAIRN_* environment
// every example outputs names the SASL/SCRAM user the msk module created,
// not a copy of its default that a changed scram_username would leave
// behind.
func TestExamplesSCRAMUserFromTheModule(t *testing.T) {
	mods := loadModules(t)
	for _, dir := range tfvarsExamples {
		m := mods[dir]
		found := 0
		for _, ob := range m.blocks("output") {
			obj, ok := ob.Body.Attributes["value"].Expr.(*hclsyntax.ObjectConsExpr)
			if !ok {
				continue
			}
			for _, item := range obj.Items {
				if exprText(m, item.KeyExpr) != "CAIRN_KAFKA_SASL_USERNAME" {
					continue
				}
				found++
				if got := exprText(m, item.ValueExpr); got != "module.msk.scram_username" {
					t.Errorf("%s: output %s: CAIRN_KAFKA_SASL_USERNAME = %s, want module.msk.scram_username", dir, ob.Labels[0], got)
				}
			}
		}
		if found == 0 {
			t.Errorf("%s: no output sets CAIRN_KAFKA_SASL_USERNAME", dir)
		}
	}
}
