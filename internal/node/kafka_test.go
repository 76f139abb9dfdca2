package node

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/cairnfs/cairn/internal/config"
)

// The Kafka TLS and SASL files are read by Load: a missing or bad file is
// a start-up error naming its knob and path, reported once, and a good
// password file reaches the queue settings.
func TestKafkaSecurityFiles(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing-ca.pem")
	env := config.FromMap(map[string]string{
		"CAIRN_KAFKA_TLS":                    "true",
		"CAIRN_KAFKA_TLS_CA_FILE":            missing,
		"CAIRN_KAFKA_SASL_USERNAME":          "cairn",
		"CAIRN_KAFKA_SASL_PASSWORD":          "in-env",
		"CAIRN_KAFKA_SASL_PASSWORD_FILE":     filepath.Join(dir, "missing-password"),
		"CAIRN_KAFKA_SASL_PLAIN_WITHOUT_TLS": "false",
	})
	_, err := Load(Write, env, flagsFor("redis://127.0.0.1:6379/0"))
	checkOnce(t, err, "CAIRN_KAFKA_TLS_CA_FILE", missing, "CAIRN_KAFKA_SASL_PASSWORD_FILE", "missing-password", "both set")

	_, err = Load(Serve, config.FromMap(map[string]string{
		"CAIRN_KAFKA_SASL_MECHANISM": "plain",
		"CAIRN_KAFKA_SASL_USERNAME":  "cairn",
		"CAIRN_KAFKA_SASL_PASSWORD":  "p",
	}), flagsFor("redis://127.0.0.1:6379/0"))
	checkOnce(t, err, "PLAIN without TLS")

	pw := filepath.Join(dir, "password")
	if err := os.WriteFile(pw, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(Write, config.FromMap(map[string]string{
		"CAIRN_KAFKA_SASL_USERNAME":      "cairn",
		"CAIRN_KAFKA_SASL_PASSWORD_FILE": pw,
	}), flagsFor("redis://127.0.0.1:6379/0"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Queue.SASLPasswordFile != pw || len(c.Queue.ClientOpts()) != 3 {
		t.Errorf("queue settings %+v: want the password file and SASL among the client options", c.Queue)
	}
}
