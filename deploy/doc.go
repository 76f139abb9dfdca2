// Package deploy holds what an operator installs next to cairn: the
// Prometheus recording rules and alerts of deploy/prometheus and the Grafana
// dashboard deploy/grafana/cairn.json (docs/operations.md explains them).
//
// It has no code of its own. Its tests check those files against the code:
// every metric a rule, alert or panel names must be one cairn exports, with
// the labels it has; the rule files must pass `promtool check rules`; and
// the promtool unit tests of deploy/prometheus/tests must pass, showing each
// alert firing on a failing series and silent on a healthy one.
package deploy
