package node

import (
	"strings"
	"testing"
	"time"

	"github.com/cairnfs/cairn/internal/config"
	"github.com/cairnfs/cairn/internal/queue"
)

// The secondary cluster inherits the primary's security settings it does
// not set, prefixes its topics and keeps the group names.
func TestFailoverConfigInherits(t *testing.T) {
	env := config.FromMap(map[string]string{
		"CAIRN_API_AUTH":                      "none",
		"CAIRN_KAFKA_SASL_MECHANISM":          "SCRAM-SHA-256",
		"CAIRN_KAFKA_SASL_USERNAME":           "primary-user",
		"CAIRN_KAFKA_SASL_PASSWORD":           "primary-pass",
		"CAIRN_KAFKA_SASL_PLAIN_WITHOUT_TLS":  "true",
		"CAIRN_KAFKA_SECONDARY_BROKERS":       "b1:9096, b2:9096",
		"CAIRN_KAFKA_SECONDARY_TOPIC_PREFIX":  "primary-alias.",
		"CAIRN_KAFKA_SECONDARY_SASL_USERNAME": "secondary-user",
		"CAIRN_KAFKA_SECONDARY_SASL_PASSWORD": "secondary-pass",
		"CAIRN_KAFKA_ACTIVE":                  "secondary",
		"CAIRN_KAFKA_FAILOVER_REWIND":         "2m",
	})
	cfg, err := Load(Serve, env, flagsFor("redis://127.0.0.1:1/0"))
	if err != nil {
		t.Fatal(err)
	}
	fo := cfg.Failover
	s := fo.Secondary
	if fo.Active != queue.Secondary || fo.Rewind != 2*time.Minute || fo.AutoAfter != 0 {
		t.Errorf("active %q rewind %v auto %v", fo.Active, fo.Rewind, fo.AutoAfter)
	}
	if strings.Join(s.Brokers, ",") != "b1:9096,b2:9096" {
		t.Errorf("brokers %v", s.Brokers)
	}
	if s.SASLMechanism != "SCRAM-SHA-256" || s.SASLUser != "secondary-user" || s.SASLPassword != "secondary-pass" {
		t.Errorf("SASL %q %q %q: want the primary's mechanism, the secondary's user and password", s.SASLMechanism, s.SASLUser, s.SASLPassword)
	}
	if s.PersistTopic != "primary-alias.cairn.persist" || s.MetricsTopic != "primary-alias.cairn.metrics" || s.DeadLetterTopic != "primary-alias.cairn.persist.dlq" {
		t.Errorf("topics %q %q %q", s.PersistTopic, s.MetricsTopic, s.DeadLetterTopic)
	}
	if s.WriterGroup != cfg.Queue.WriterGroup {
		t.Errorf("group %q: want the primary's %q (the replicator keeps group names)", s.WriterGroup, cfg.Queue.WriterGroup)
	}
	if cfg.Queue.PersistTopic != "cairn.persist" || cfg.Queue.SASLUser != "primary-user" {
		t.Errorf("the primary changed: %q %q", cfg.Queue.PersistTopic, cfg.Queue.SASLUser)
	}
}

// Bad failover knobs are reported by name.
func TestFailoverConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"CAIRN_KAFKA_ACTIVE": "secondary"}, "CAIRN_KAFKA_ACTIVE=secondary needs CAIRN_KAFKA_SECONDARY_BROKERS"},
		{map[string]string{"CAIRN_KAFKA_ACTIVE": "tertiary"}, `CAIRN_KAFKA_ACTIVE="tertiary"`},
		{map[string]string{"CAIRN_KAFKA_FAILOVER_REWIND": "10ms"}, "CAIRN_KAFKA_FAILOVER_REWIND"},
		{map[string]string{"CAIRN_KAFKA_AUTO_FAILOVER_AFTER": "1m"}, "CAIRN_KAFKA_AUTO_FAILOVER_AFTER needs CAIRN_KAFKA_SECONDARY_BROKERS"},
		{map[string]string{"CAIRN_KAFKA_SECONDARY_BROKERS": "127.0.0.1:1"}, "names the primary's brokers"},
		{map[string]string{"CAIRN_KAFKA_SECONDARY_BROKERS": "b:1", "CAIRN_KAFKA_SECONDARY_TLS_CA_FILE": "/nonexistent"},
			"secondary Kafka cluster"},
	} {
		tc.env["CAIRN_API_AUTH"] = "none"
		_, err := Load(Serve, config.FromMap(tc.env), flagsFor("redis://127.0.0.1:1/0"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want an error containing %q", tc.env, err, tc.want)
		}
	}
}
