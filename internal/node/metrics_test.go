package node

import (
	"strings"
	"testing"
	"time"

	"github.com/cairnfs/cairn/internal/config"
)

// The metrics knobs reach their fields; `cairn write --metrics=false` runs
// no consumer, `cairn serve` never does.
func TestMetricsConfig(t *testing.T) {
	env := config.FromMap(map[string]string{"CAIRN_METRICS_INTERVAL": "30s", "CAIRN_METRICS_RETENTION": "48h",
		"CAIRN_METRICS_GROUP": "rollups", "CAIRN_TOPIC_PARTITIONS": "6", "CAIRN_API_AUTH": "none"})
	cfg, err := Load(Write, env, flagsFor("redis://127.0.0.1:1/0"))
	if err != nil {
		t.Fatal(err)
	}
	m := cfg.Metrics
	if !m.Consume || m.Aggregator.Interval != 30*time.Second || m.Consumer.Retention != 48*time.Hour ||
		m.Consumer.Group != "rollups" || m.Consumer.Partitions != 6 {
		t.Errorf("write: %+v", m)
	}
	f := flagsFor("redis://127.0.0.1:1/0")
	f.NoMetrics = true
	if cfg, err := Load(Write, env, f); err != nil || cfg.Metrics.Consume {
		t.Errorf("write --metrics=false: consume %v, err %v; want no consumer", cfg.Metrics.Consume, err)
	}
	if cfg, err := Load(Serve, env, flagsFor("redis://127.0.0.1:1/0")); err != nil || cfg.Metrics.Consume {
		t.Errorf("serve: consume %v, err %v; want no consumer", cfg.Metrics.Consume, err)
	}
	bad := config.FromMap(map[string]string{"CAIRN_METRICS_INTERVAL": "7s", "CAIRN_METRICS_RETENTION": "10m"})
	_, err = Load(Write, bad, flagsFor("redis://127.0.0.1:1/0"))
	for _, want := range []string{"CAIRN_METRICS_INTERVAL", "CAIRN_METRICS_RETENTION"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("bad metrics knobs: %v, want it to name %s", err, want)
		}
	}
}
