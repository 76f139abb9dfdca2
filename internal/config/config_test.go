package config

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"
)

func TestDefaultsAndOverrides(t *testing.T) {
	e := FromMap(map[string]string{"CAIRN_TOPIC_PARTITIONS": "24", "CAIRN_KAFKA_BROKERS": "a:9092, b:9092,"})
	if got := e.Int("CAIRN_TOPIC_PARTITIONS"); got != 24 {
		t.Errorf("partitions = %d", got)
	}
	if got := e.Duration("CAIRN_TOPIC_RETENTION"); got != 168*time.Hour {
		t.Errorf("retention = %v", got)
	}
	if got := e.List("CAIRN_KAFKA_BROKERS"); len(got) != 2 || got[1] != "b:9092" {
		t.Errorf("brokers = %q", got)
	}
	if !e.Bool("DYNAMODB_WARMUP_FQN_MAPPING") || e.Int("DYNAMODB_MAX_RETRIES") != 12 {
		t.Error("DynamoDB defaults differ from the documented ones")
	}
	if err := e.Err(); err != nil {
		t.Fatal(err)
	}
}

func TestEveryBadValueReported(t *testing.T) {
	e := FromMap(map[string]string{"CAIRN_TOPIC_PARTITIONS": "many", "CAIRN_KAFKA_TLS": "yes please", "CAIRN_TOPIC_RETENTION": "7"})
	e.Int("CAIRN_TOPIC_PARTITIONS")
	e.Bool("CAIRN_KAFKA_TLS")
	e.Duration("CAIRN_TOPIC_RETENTION")
	err := e.Err()
	for _, name := range []string{"CAIRN_TOPIC_PARTITIONS", "CAIRN_KAFKA_TLS", "CAIRN_TOPIC_RETENTION"} {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("error %v does not name %s", err, name)
		}
	}
}

func TestPrintRedactsSecrets(t *testing.T) {
	var buf bytes.Buffer
	if err := FromMap(map[string]string{"CAIRN_KAFKA_SASL_PASSWORD": "hunter2", "CAIRN_TOPIC_PARTITIONS": "6"}).Print(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if strings.Contains(out, "hunter2") || !strings.Contains(out, "<redacted>") {
		t.Errorf("secret not redacted:\n%s", out)
	}
	for _, k := range Knobs {
		if !strings.Contains(out, k.Name) {
			t.Errorf("%s not printed", k.Name)
		}
	}
	if !hasRow(out, "CAIRN_TOPIC_PARTITIONS", "6", "environment") {
		t.Errorf("override not shown with its source:\n%s", out)
	}
}

// hasRow reports whether a printed row starts with the given fields.
func hasRow(out string, fields ...string) bool {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= len(fields) && f[0] == fields[0] && f[1] == fields[1] && f[2] == fields[2] {
			return true
		}
	}
	return false
}

// docs/configuration.md is what operators read: it must list every knob
// with its default.
func TestDocsListEveryKnob(t *testing.T) {
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range Knobs {
		d := k.Default
		if d == "" {
			d = "(unset)"
		}
		row := "| `" + k.Name + "` | `" + d + "` |"
		if !strings.Contains(string(doc), row) {
			t.Errorf("docs/configuration.md lacks the row %q", row)
		}
	}
}
