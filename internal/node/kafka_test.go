package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/cairnfs/cairn/internal/config"
	"github.com/cairnfs/cairn/internal/queue"
	"github.com/cairnfs/cairn/internal/tlscert/tlscerttest"
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
	plain := c.Queue
	plain.SASLUser = ""
	if c.Queue.SASLPasswordFile != pw || len(c.Queue.ClientOpts()) != len(plain.ClientOpts())+1 {
		t.Errorf("queue settings %+v: want the password file and SASL among the client options", c.Queue)
	}
}

// The client certificate named by CAIRN_KAFKA_TLS_CERT_FILE and
// CAIRN_KAFKA_TLS_KEY_FILE is what Load hands to the Kafka clients: against
// brokers requiring a client certificate signed by their CA, the same
// settings without it are refused at the handshake, and with it connect.
// A missing or unreadable file is a start-up error naming its knob.
func TestKafkaClientCertificate(t *testing.T) {
	t.Parallel()
	ca := tlscerttest.NewCA(t)
	srvCert, srvKey := ca.IssuePEM(t, 1, x509.ExtKeyUsageServerAuth)
	pair, err := tls.X509KeyPair(srvCert, srvKey)
	if err != nil {
		t.Fatal(err)
	}
	cluster, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.EnableSASL(),
		kfake.Superuser(queue.MechanismScramSHA512, "cairn", "pw"),
		kfake.TLS(&tls.Config{
			Certificates: []tls.Certificate{pair},
			MinVersion:   tls.VersionTLS12,
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    ca.Pool,
		}),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)

	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	certPEM, keyPEM := ca.IssuePEM(t, 2, x509.ExtKeyUsageClientAuth)
	certFile, keyFile := write("client.pem", certPEM), write("client.key", keyPEM)
	base := map[string]string{
		"CAIRN_KAFKA_TLS":                "true",
		"CAIRN_KAFKA_TLS_CA_FILE":        write("ca.pem", ca.PEM()),
		"CAIRN_KAFKA_SASL_USERNAME":      "cairn",
		"CAIRN_KAFKA_SASL_PASSWORD_FILE": write("password", []byte("pw\n")),
	}
	load := func(extra map[string]string) (*Config, error) {
		env := map[string]string{}
		for k, v := range base {
			env[k] = v
		}
		for k, v := range extra {
			env[k] = v
		}
		f := flagsFor("redis://127.0.0.1:6379/0")
		f.Brokers = cluster.ListenAddrs()[0]
		return Load(Write, config.FromMap(env), f)
	}
	ctx := context.Background()

	noCert, err := load(nil)
	if err != nil {
		t.Fatal(err)
	}
	var ce *queue.ConnectError
	if err := queue.Probe(ctx, noCert.Queue); !errors.As(err, &ce) || ce.Cause != queue.CauseTLSRejected {
		t.Fatalf("Probe without a client certificate: %v; want %q", err, queue.CauseTLSRejected)
	}

	withCert, err := load(map[string]string{"CAIRN_KAFKA_TLS_CERT_FILE": certFile, "CAIRN_KAFKA_TLS_KEY_FILE": keyFile})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := queue.Probe(ctx, withCert.Queue); err != nil {
		t.Fatalf("Probe with the client certificate of the knobs: %v", err)
	}
	t.Logf("connected with the client certificate in %v", time.Since(start))

	missing := filepath.Join(dir, "missing.pem")
	_, err = load(map[string]string{"CAIRN_KAFKA_TLS_CERT_FILE": missing, "CAIRN_KAFKA_TLS_KEY_FILE": keyFile})
	checkOnce(t, err, "CAIRN_KAFKA_TLS_CERT_FILE", missing)
	garbage := write("garbage.key", []byte("not a key"))
	_, err = load(map[string]string{"CAIRN_KAFKA_TLS_CERT_FILE": certFile, "CAIRN_KAFKA_TLS_KEY_FILE": garbage})
	checkOnce(t, err, "CAIRN_KAFKA_TLS_KEY_FILE", garbage)
}
