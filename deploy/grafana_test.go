package deploy

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
)

// dashboardPath is the dashboard operators import into Grafana.
const dashboardPath = "grafana/cairn.json"

// panel is a Grafana panel, as far as the checks need it; a row's own
// panels are listed in it when the row is collapsed.
type panel struct {
	ID          int               `json:"id"`
	Type        string            `json:"type"`
	Title       string            `json:"title"`
	Description string            `json:"description"`
	Datasource  map[string]string `json:"datasource"`
	GridPos     *struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		RefID      string            `json:"refId"`
		Expr       string            `json:"expr"`
		Datasource map[string]string `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

type dashboard struct {
	UID        string `json:"uid"`
	Title      string `json:"title"`
	Templating struct {
		List []struct {
			Name       string            `json:"name"`
			Type       string            `json:"type"`
			Query      json.RawMessage   `json:"query"`
			Definition string            `json:"definition"`
			Datasource map[string]string `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

func loadDashboard(t *testing.T) (dashboard, []panel) {
	t.Helper()
	b, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	var all []panel
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			all = append(all, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return d, all
}

// labelValues is the metric of a Grafana label_values(metric, label) query.
var labelValues = regexp.MustCompile(`^label_values\(\s*([^,]+),\s*(\w+)\s*\)$`)

// TestDashboardSelectsExportedMetrics fails when a panel or a variable of
// the dashboard selects a metric cairn does not export, or matches on a
// label it does not have: the panel would stay empty.
func TestDashboardSelectsExportedMetrics(t *testing.T) {
	exp := exportedMetrics(t)
	d, panels := loadDashboard(t)
	n := 0
	for _, p := range panels {
		for _, tg := range p.Targets {
			n++
			for _, problem := range checkExpr(tg.Expr, exp, nil) {
				t.Errorf("panel %q, query %s: %s", p.Title, tg.RefID, problem)
			}
		}
	}
	if n == 0 {
		t.Fatal("the dashboard has no queries")
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		m := labelValues.FindStringSubmatch(v.Definition)
		if m == nil {
			t.Errorf("variable %s: query %q is not label_values(metric, label)", v.Name, v.Definition)
			continue
		}
		for _, problem := range checkExpr(m[1]+"{"+m[2]+`!=""}`, exp, nil) {
			t.Errorf("variable %s: %s", v.Name, problem)
		}
	}
}

// TestDashboardIsPortable checks what makes the dashboard importable into
// any Grafana: every query goes to the Prometheus data source chosen in
// the datasource variable, never to a data source of the machine it was
// drawn on; panel ids are unique; every panel has a place and says what
// it shows, and docs/operations.md explains it.
func TestDashboardIsPortable(t *testing.T) {
	d, panels := loadDashboard(t)
	doc, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("dashboard uid %q, title %q: want both", d.UID, d.Title)
	}
	hasDS := false
	for _, v := range d.Templating.List {
		if v.Name == "datasource" && v.Type == "datasource" && string(v.Query) == `"prometheus"` {
			hasDS = true
		}
		if v.Type == "query" && v.Datasource["uid"] != "${datasource}" {
			t.Errorf("variable %s: data source %v; want uid ${datasource}", v.Name, v.Datasource)
		}
	}
	if !hasDS {
		t.Error(`no variable {"name": "datasource", "type": "datasource", "query": "prometheus"}`)
	}
	ids := map[int]string{}
	for _, p := range panels {
		if prev, ok := ids[p.ID]; ok || p.ID == 0 {
			t.Errorf("panel %q: id %d (also %q); want unique, non-zero ids", p.Title, p.ID, prev)
		}
		ids[p.ID] = p.Title
		if p.GridPos == nil || (p.Type != "row" && (p.GridPos.W == 0 || p.GridPos.H == 0)) {
			t.Errorf("panel %q has no gridPos", p.Title)
		}
		if p.Type == "row" {
			continue
		}
		if p.Description == "" {
			t.Errorf("panel %q has no description", p.Title)
		}
		if !strings.Contains(string(doc), "**"+p.Title+"**") {
			t.Errorf("docs/operations.md does not explain panel **%s**", p.Title)
		}
		if p.Datasource["uid"] != "${datasource}" {
			t.Errorf("panel %q: data source %v; want uid ${datasource}", p.Title, p.Datasource)
		}
		for _, tg := range p.Targets {
			if tg.Datasource["uid"] != "${datasource}" {
				t.Errorf("panel %q, query %s: data source %v; want uid ${datasource}", p.Title, tg.RefID, tg.Datasource)
			}
		}
	}
}

// TestDashboardShowsWhatOperatorsWatch checks the dashboard has the panels
// docs/operations.md promises: store requests, errors, throttles and
// latency quantiles, cache hit and Bloom short-circuit ratios per
// namespace, request racing, writer lag per partition, Kafka drops and
// dead letters.
func TestDashboardShowsWhatOperatorsWatch(t *testing.T) {
	_, panels := loadDashboard(t)
	selected := map[string]string{} // series name -> all its panels' queries
	for _, p := range panels {
		for _, tg := range p.Targets {
			sels, err := selectors(tg.Expr)
			if err != nil {
				t.Errorf("panel %q: %v", p.Title, err)
			}
			for _, s := range sels {
				selected[s.name] += tg.Expr + "\n"
			}
		}
	}
	for _, want := range []struct{ series, in string }{
		{"cairn_dynamo_requests_total", `outcome=~"error|throttled"`},
		{"cairn_redis_requests_total", `outcome="error"`},
		{"cairn_dynamo_throttles_total", ""},
		{"cairn_dynamo_request_duration_seconds_bucket", "histogram_quantile(0.5,"},
		{"cairn_dynamo_request_duration_seconds_bucket", "histogram_quantile(0.95,"},
		{"cairn_dynamo_request_duration_seconds_bucket", "histogram_quantile(0.99,"},
		{"cairn_redis_request_duration_seconds_bucket", "histogram_quantile(0.99,"},
		{"cairn_cache_hits_total", "by (namespace)"},
		{"cairn_bloom_reads_skipped_total", "by (namespace)"},
		{"cairn_hedge_started_total", ""},
		{"cairn_writer_lag_records", "by (partition)"},
		{"cairn_queue_produced_records_total", `outcome!="ok"`},
		{"cairn_writer_records_total", `outcome="dead_lettered"`},
	} {
		if !strings.Contains(selected[want.series], want.in) {
			t.Errorf("no panel selects %s with %s", want.series, want.in)
		}
	}
}
