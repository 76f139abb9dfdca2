package deploy

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	promql "github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v3"
)

// ruleFile is a Prometheus rule file, as far as the checks need it.
type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []rule `yaml:"rules"`
	} `yaml:"groups"`
}

type rule struct {
	Record      string            `yaml:"record"`
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

// ruleFiles are the files of deploy/prometheus an operator loads.
func ruleFiles(t *testing.T) map[string][]rule {
	t.Helper()
	paths, err := filepath.Glob("prometheus/*.yml")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no rule files in deploy/prometheus (%v)", err)
	}
	out := map[string][]rule{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var f ruleFile
		if err := yaml.Unmarshal(b, &f); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		for _, g := range f.Groups {
			out[p] = append(out[p], g.Rules...)
		}
	}
	return out
}

// selector is one series selection in a PromQL expression.
type selector struct {
	name   string
	labels []string
}

// selectors parses expr and returns what it selects; Grafana's interval
// variables are replaced by a duration first.
func selectors(expr string) ([]selector, error) {
	expr = grafanaIntervals.ReplaceAllString(expr, "5m")
	e, err := promql.NewParser(promql.Options{}).ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	var out []selector
	var errs []string
	promql.Inspect(e, func(n promql.Node, _ []promql.Node) error {
		vs, ok := n.(*promql.VectorSelector)
		if !ok {
			return nil
		}
		s := selector{name: vs.Name}
		for _, m := range vs.LabelMatchers {
			if m.Name != labels.MetricName {
				s.labels = append(s.labels, m.Name)
				continue
			}
			if m.Type != labels.MatchEqual {
				errs = append(errs, fmt.Sprintf("selects metrics by a pattern (%s): name them", m))
			}
			s.name = m.Value
		}
		out = append(out, s)
		return nil
	})
	if len(errs) > 0 {
		return out, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return out, nil
}

// grafanaIntervals are the interval variables Grafana fills in before
// sending a panel's query.
var grafanaIntervals = regexp.MustCompile(`\$(__rate_interval|__interval|__range)\b|\$\{(__rate_interval|__interval|__range)\}`)

// checkExpr reports every metric expr selects that is neither exported by
// cairn nor one of the recording rules in recorded, every label it matches
// on that the metric does not have, and every label an aggregation keeps
// (by) that none of its metrics has: each would leave a panel empty or an
// alert silent.
func checkExpr(expr string, exp exported, recorded map[string]bool) []string {
	sels, err := selectors(expr)
	if err != nil {
		return []string{err.Error()}
	}
	var problems []string
	for _, s := range sels {
		if recorded[s.name] {
			continue
		}
		known, ok := exp[s.name]
		if !ok {
			problems = append(problems, fmt.Sprintf("selects %s, which cairn does not export", s.name))
			continue
		}
		for _, l := range s.labels {
			if known != nil && !known[l] {
				problems = append(problems, fmt.Sprintf("matches %s on label %q; it has %v", s.name, l, slices.Sorted(maps.Keys(known))))
			}
		}
	}
	return append(problems, checkGrouping(expr, exp, recorded)...)
}

// checkGrouping reports labels kept by an aggregation's by clause that
// none of the metrics under it has. Aggregations over a recording rule, a
// metric of unknown labels, or label_replace/label_join (which make
// labels) are not checked.
func checkGrouping(expr string, exp exported, recorded map[string]bool) []string {
	e, err := promql.NewParser(promql.Options{}).ParseExpr(grafanaIntervals.ReplaceAllString(expr, "5m"))
	if err != nil {
		return nil // reported by selectors
	}
	var problems []string
	promql.Inspect(e, func(n promql.Node, _ []promql.Node) error {
		agg, ok := n.(*promql.AggregateExpr)
		if !ok || agg.Without || len(agg.Grouping) == 0 {
			return nil
		}
		have := map[string]bool{}
		var names []string
		checkable := true
		promql.Inspect(agg.Expr, func(m promql.Node, _ []promql.Node) error {
			switch m := m.(type) {
			case *promql.Call:
				if m.Func.Name == "label_replace" || m.Func.Name == "label_join" {
					checkable = false
				}
			case *promql.VectorSelector:
				labels, ok := exp[m.Name]
				if recorded[m.Name] || !ok || labels == nil {
					checkable = false
				}
				maps.Copy(have, labels)
				names = append(names, m.Name)
			}
			return nil
		})
		if !checkable {
			return nil
		}
		for _, l := range agg.Grouping {
			if !have[l] {
				problems = append(problems, fmt.Sprintf("%s by (%s): no label %q on %v", agg.Op, strings.Join(agg.Grouping, ", "), l, names))
			}
		}
		return nil
	})
	return problems
}

// recordedNames returns the names of the recording rules.
func recordedNames(files map[string][]rule) map[string]bool {
	out := map[string]bool{}
	for _, rules := range files {
		for _, r := range rules {
			if r.Record != "" {
				out[r.Record] = true
			}
		}
	}
	return out
}

// TestRulesSelectExportedMetrics fails when a recording rule or an alert
// selects a metric cairn does not export, or matches on a label the
// metric does not have: the alert would never fire.
func TestRulesSelectExportedMetrics(t *testing.T) {
	exp := exportedMetrics(t)
	files := ruleFiles(t)
	recorded := recordedNames(files)
	for path, rules := range files {
		for _, r := range rules {
			for _, p := range checkExpr(r.Expr, exp, recorded) {
				t.Errorf("%s: %s%s: %s", path, r.Record, r.Alert, p)
			}
		}
	}
}

// TestCheckExprCatchesUnknownMetrics shows the check failing on a
// misspelled metric, a label the metric lacks, a bucket series of a
// metric that is not a histogram, a metric chosen by pattern, and an
// aggregation by a label the metric lacks; and passing correct queries.
func TestCheckExprCatchesUnknownMetrics(t *testing.T) {
	exp := exportedMetrics(t)
	for _, tc := range []struct {
		expr, want string
	}{
		{`rate(cairn_dynamo_request_total[5m])`, "cairn_dynamo_request_total, which cairn does not export"},
		{`rate(cairn_redis_requests_total{operation="read"}[5m])`, `label "operation"`},
		{`cairn_writer_lag_records_bucket`, "cairn_writer_lag_records_bucket, which"},
		{`{__name__=~"cairn_.*"}`, "by a pattern"},
		{`sum by (op) (rate(cairn_dynamo_requests_total[5m]))`, `no label "op"`},
		{`sum by (job, store) (label_replace(rate(cairn_dynamo_requests_total[5m]), "store", "dynamodb", "", ""))`, ""},
		{`histogram_quantile(0.99, rate(cairn_dynamo_request_duration_seconds_bucket{operation="GetItem"}[$__rate_interval]))`, ""},
	} {
		got := strings.Join(checkExpr(tc.expr, exp, nil), "; ")
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("checkExpr(%s) = %q; want %q", tc.expr, got, tc.want)
		}
	}
}

// TestAlertsAreDocumented checks what an operator paged at night needs:
// a severity, a summary and description, and a runbook section of
// docs/operations.md that exists.
func TestAlertsAreDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for path, rules := range ruleFiles(t) {
		for _, r := range rules {
			if r.Alert == "" {
				continue
			}
			n++
			if s := r.Labels["severity"]; s != "critical" && s != "warning" {
				t.Errorf("%s: %s: severity %q; want critical or warning", path, r.Alert, s)
			}
			for _, a := range []string{"summary", "description"} {
				if r.Annotations[a] == "" {
					t.Errorf("%s: %s has no %s annotation", path, r.Alert, a)
				}
			}
			if want := "docs/operations.md#" + strings.ToLower(r.Alert); r.Annotations["runbook"] != want {
				t.Errorf("%s: %s: runbook %q; want %q", path, r.Alert, r.Annotations["runbook"], want)
			}
			if !bytes.Contains(doc, []byte("\n#### "+r.Alert+"\n")) {
				t.Errorf("docs/operations.md has no section \"#### %s\"", r.Alert)
			}
		}
	}
	if n == 0 {
		t.Fatal("no alerts found")
	}
}

// ruleTests is a promtool unit test file, as far as the checks need it.
type ruleTests struct {
	Tests []struct {
		Name        string `yaml:"name"`
		InputSeries []struct {
			Series string `yaml:"series"`
		} `yaml:"input_series"`
		AlertRuleTest []struct {
			Alertname string `yaml:"alertname"`
			ExpAlerts []struct {
				ExpLabels map[string]string `yaml:"exp_labels"`
			} `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

// TestEveryAlertIsUnitTested checks that the promtool tests show every
// alert firing, and silent on healthy series: in a case expecting no
// alert, or on a job whose series appear in a test where only other jobs
// alert.
func TestEveryAlertIsUnitTested(t *testing.T) {
	paths, err := filepath.Glob("prometheus/tests/*.yml")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no promtool tests in deploy/prometheus/tests (%v)", err)
	}
	fires, silent := map[string]bool{}, map[string]bool{}
	jobLabel := regexp.MustCompile(`\bjob="([^"]*)"`)
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var f ruleTests
		if err := yaml.Unmarshal(b, &f); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		for _, tc := range f.Tests {
			jobs := map[string]bool{}
			for _, s := range tc.InputSeries {
				if m := jobLabel.FindStringSubmatch(s.Series); m != nil {
					jobs[m[1]] = true
				}
			}
			for _, a := range tc.AlertRuleTest {
				if len(a.ExpAlerts) == 0 {
					silent[a.Alertname] = true
					continue
				}
				fires[a.Alertname] = true
				alerting := map[string]bool{}
				for _, e := range a.ExpAlerts {
					alerting[e.ExpLabels["job"]] = true
				}
				for j := range jobs {
					if !alerting[j] {
						silent[a.Alertname] = true
					}
				}
			}
		}
	}
	for _, rules := range ruleFiles(t) {
		for _, r := range rules {
			if r.Alert == "" {
				continue
			}
			if !fires[r.Alert] {
				t.Errorf("no promtool test shows %s firing", r.Alert)
			}
			if !silent[r.Alert] {
				t.Errorf("no promtool test shows %s silent on a healthy series", r.Alert)
			}
		}
	}
}

// TestPromtool runs `promtool check rules` on the rule files and `promtool
// test rules` on deploy/prometheus/tests. Without promtool (Debian's
// prometheus package) it is skipped, unless CAIRN_REQUIRE_SERVERS=1, as CI
// sets it, where it fails.
func TestPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CAIRN_REQUIRE_SERVERS") == "1" {
			t.Fatalf("promtool is not installed (Debian package prometheus) and CAIRN_REQUIRE_SERVERS=1")
		}
		t.Skip("promtool is not installed (Debian package prometheus)")
	}
	rules, _ := filepath.Glob("prometheus/*.yml")
	tests, _ := filepath.Glob("prometheus/tests/*.yml")
	for _, args := range [][]string{
		append([]string{"check", "rules"}, rules...),
		append([]string{"test", "rules"}, tests...),
	} {
		out, err := exec.CommandContext(t.Context(), promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args[:2], " "), err, out)
		}
	}
}
