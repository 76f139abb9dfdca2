package queue

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl"

	"github.com/cairnfs/cairn/internal/tlscert/tlscerttest"
)

// serverTLS is a broker's TLS configuration with a certificate from ca.
func serverTLS(t *testing.T, ca *tlscerttest.CA) *tls.Config {
	t.Helper()
	c, k := ca.IssuePEM(t, time.Now().UnixNano(), x509.ExtKeyUsageServerAuth)
	cert, err := tls.X509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

func writeFile(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// secureCluster starts kfake with SASL users (alice: SCRAM-SHA-512, bob:
// SCRAM-SHA-256, carol: PLAIN) on a TLS listener whose certificate ca signs (nil ca:
// plaintext), requiring client certificates signed by ca if mutual.
func secureCluster(t *testing.T, ca *tlscerttest.CA, mutual ...bool) []string {
	t.Helper()
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.EnableSASL(),
		kfake.Superuser(MechanismScramSHA512, "alice", "alice-secret"),
		kfake.Superuser(MechanismScramSHA256, "bob", "bob-secret"),
		kfake.Superuser(MechanismPlain, "carol", "carol-secret"),
	}
	if ca != nil {
		tc := serverTLS(t, ca)
		if len(mutual) > 0 && mutual[0] {
			tc.ClientAuth = tls.RequireAndVerifyClientCert
			tc.ClientCAs = ca.Pool
		}
		opts = append(opts, kfake.TLS(tc))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

// clientConfig is a client of brokers over TLS trusting ca, read and
// validated.
func clientConfig(t *testing.T, brokers []string, ca *tlscerttest.CA, user, pass, mechanism string) Config {
	t.Helper()
	cfg := Config{Brokers: brokers, TLS: true, SASLUser: user, SASLPassword: pass, SASLMechanism: mechanism}
	if ca != nil {
		cfg.TLSCAFile = writeFile(t, "ca.pem", ca.PEM())
	}
	cfg.EnsureDefaults()
	if err := cfg.ReadFiles(); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestProbeCauses(t *testing.T) {
	t.Parallel()
	ca := tlscerttest.NewCA(t)
	tlsBrokers := secureCluster(t, ca)
	plainBrokers := secureCluster(t, nil)
	for _, tc := range []struct {
		name string
		cfg  func(t *testing.T) Config
		want Cause // CauseUnknown: success
	}{
		{"right credentials", func(t *testing.T) Config {
			return clientConfig(t, tlsBrokers, ca, "alice", "alice-secret", "")
		}, CauseUnknown},
		{"right credentials SCRAM-SHA-256", func(t *testing.T) Config {
			return clientConfig(t, tlsBrokers, ca, "bob", "bob-secret", MechanismScramSHA256)
		}, CauseUnknown},
		{"right credentials PLAIN over TLS", func(t *testing.T) Config {
			return clientConfig(t, tlsBrokers, ca, "carol", "carol-secret", MechanismPlain)
		}, CauseUnknown},
		{"wrong password", func(t *testing.T) Config {
			return clientConfig(t, tlsBrokers, ca, "alice", "wrong", "")
		}, CauseCredentials},
		{"wrong password PLAIN over TLS", func(t *testing.T) Config {
			return clientConfig(t, tlsBrokers, ca, "carol", "wrong", MechanismPlain)
		}, CauseCredentials},
		{"wrong mechanism", func(t *testing.T) Config {
			return clientConfig(t, tlsBrokers, ca, "bob", "bob-secret", MechanismScramSHA512)
		}, CauseCredentials},
		{"untrusted CA", func(t *testing.T) Config {
			return clientConfig(t, tlsBrokers, tlscerttest.NewCA(t), "alice", "alice-secret", "")
		}, CauseUntrustedCertificate},
		{"mechanism not enabled", func(t *testing.T) Config {
			// kfake offers PLAIN and SCRAM only.
			return clientConfig(t, tlsBrokers, ca, "", "", MechanismMSKIAM)
		}, CauseMechanism},
		{"system roots", func(t *testing.T) Config {
			return clientConfig(t, tlsBrokers, nil, "alice", "alice-secret", "")
		}, CauseUntrustedCertificate},
		{"TLS against plaintext", func(t *testing.T) Config {
			return clientConfig(t, plainBrokers, ca, "alice", "alice-secret", "")
		}, CauseTLSToPlaintext},
		{"plaintext against TLS", func(t *testing.T) Config {
			cfg := clientConfig(t, tlsBrokers, nil, "alice", "alice-secret", "")
			cfg.TLS = false
			return cfg
		}, CausePlaintextToTLS},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := tc.cfg(t)
			start := time.Now()
			err := Probe(context.Background(), cfg)
			took := time.Since(start)
			t.Logf("%v after %v", err, took)
			// A TLS handshake with a plaintext listener gets no answer
			// (the listener waits for the rest of a "request"): it ends at
			// the handshake deadline. Every other cause is known at the
			// first answer and must not be retried.
			within := 3 * time.Second
			if tc.want == CauseTLSToPlaintext {
				within = probeHandshakeTimeout + 2*time.Second
			}
			if took > within {
				t.Errorf("Probe took %v; want at most %v", took, within)
			}
			if tc.want == CauseUnknown {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var ce *ConnectError
			if !errors.As(err, &ce) || ce.Cause != tc.want {
				t.Fatalf("Probe: %v; want a ConnectError with cause %q", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want.String()) {
				t.Errorf("message %q does not name the cause %q", err, tc.want)
			}
		})
	}
}

// The production path: SCRAM-SHA-512 over TLS with a private CA, the
// password from a mounted file, a client certificate: topics are created,
// an upload is acknowledged and can be read back with the same settings.
func TestPersistOverSCRAMAndTLS(t *testing.T) {
	t.Parallel()
	ca := tlscerttest.NewCA(t)
	brokers := secureCluster(t, ca, true)
	certPEM, keyPEM := ca.IssuePEM(t, time.Now().UnixNano(), x509.ExtKeyUsageClientAuth)
	cfg := Config{
		Brokers:          brokers,
		TLS:              true,
		TLSCAFile:        writeFile(t, "ca.pem", ca.PEM()),
		TLSCertFile:      writeFile(t, "client.pem", certPEM),
		TLSKeyFile:       writeFile(t, "client.key", keyPEM),
		SASLUser:         "alice",
		SASLPasswordFile: writeFile(t, "password", []byte("alice-secret\n")),
		ProduceTimeout:   testTimeout,
	}
	cfg.EnsureDefaults()
	if err := cfg.ReadFiles(); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	noCert := clientConfig(t, brokers, ca, "alice", "alice-secret", "")
	var ce *ConnectError
	if err := Probe(context.Background(), noCert); !errors.As(err, &ce) || ce.Cause != CauseTLSRejected {
		t.Fatalf("Probe without the client certificate: %v; want %q", err, CauseTLSRejected)
	}
	createTopics(t, cfg)
	p := newProducer(t, cfg, prometheus.NewRegistry(), nil)
	if _, err := persistTimed(p, 1); err != nil {
		t.Fatalf("Persist over SCRAM and TLS: %v", err)
	}
	cl, err := kgo.NewClient(append(cfg.ClientOpts(), kgo.ConsumeTopics(cfg.PersistTopic))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fs := cl.PollFetches(ctx)
	if err := fs.Err0(); err != nil {
		t.Fatal(err)
	}
	if n := fs.NumRecords(); n != 1 {
		t.Fatalf("read back %d records; want 1", n)
	}
}

// `cairn topics create` with wrong settings must end within 10s naming
// the cause, with the default timeout of 15s.
func TestCreateTopicsCauses(t *testing.T) {
	t.Parallel()
	ca := tlscerttest.NewCA(t)
	tlsBrokers := secureCluster(t, ca)
	plainBrokers := secureCluster(t, nil)
	for _, tc := range []struct {
		name string
		cfg  func(t *testing.T) Config
		want Cause // CauseUnknown: success
	}{
		{"right credentials PLAIN over TLS", func(t *testing.T) Config {
			return clientConfig(t, tlsBrokers, ca, "carol", "carol-secret", MechanismPlain)
		}, CauseUnknown},
		{"wrong password", func(t *testing.T) Config {
			return clientConfig(t, tlsBrokers, ca, "alice", "wrong", "")
		}, CauseCredentials},
		{"wrong password PLAIN over TLS", func(t *testing.T) Config {
			return clientConfig(t, tlsBrokers, ca, "carol", "wrong", MechanismPlain)
		}, CauseCredentials},
		{"wrong mechanism", func(t *testing.T) Config {
			return clientConfig(t, tlsBrokers, ca, "bob", "bob-secret", "")
		}, CauseCredentials},
		{"untrusted CA", func(t *testing.T) Config {
			return clientConfig(t, tlsBrokers, tlscerttest.NewCA(t), "alice", "alice-secret", "")
		}, CauseUntrustedCertificate},
		{"TLS against plaintext", func(t *testing.T) Config {
			return clientConfig(t, plainBrokers, ca, "alice", "alice-secret", "")
		}, CauseTLSToPlaintext},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			_, err := CreateTopics(context.Background(), tc.cfg(t), TopicSpec{Partitions: 1, ReplicationFactor: 1, MinInsyncReplicas: 1})
			if took := time.Since(start); took > 10*time.Second {
				t.Errorf("CreateTopics took %v; want at most 10s", took)
			}
			if tc.want == CauseUnknown {
				if err != nil {
					t.Fatalf("CreateTopics: %v", err)
				}
				return
			}
			var ce *ConnectError
			if !errors.As(err, &ce) || ce.Cause != tc.want || !strings.Contains(err.Error(), tc.want.String()) {
				t.Fatalf("CreateTopics: %v; want an error naming %q", err, tc.want)
			}
		})
	}
}

func TestValidateSecurity(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  Config
		want string // "" for valid
	}{
		{"PLAIN without TLS", Config{SASLMechanism: "PLAIN", SASLUser: "u", SASLPassword: "p"}, "PLAIN without TLS"},
		{"PLAIN without TLS allowed", Config{SASLMechanism: "PLAIN", SASLUser: "u", SASLPassword: "p", SASLPlainWithoutTLS: true}, ""},
		{"PLAIN over TLS", Config{SASLMechanism: "PLAIN", SASLUser: "u", SASLPassword: "p", TLS: true}, ""},
		{"SCRAM without TLS", Config{SASLUser: "u", SASLPassword: "p"}, ""},
		{"password twice", Config{SASLUser: "u", SASLPassword: "p", SASLPasswordFile: "/x"}, "both set"},
		{"no password", Config{SASLUser: "u"}, "without a password"},
		{"unknown mechanism", Config{SASLMechanism: "GSSAPI", SASLUser: "u", SASLPassword: "p"}, `"GSSAPI"`},
		{"CA without TLS", Config{TLSCAFile: "/x"}, "CAIRN_KAFKA_TLS_CA_FILE is set but CAIRN_KAFKA_TLS is false"},
		{"cert without key", Config{TLS: true, TLSCertFile: "/x"}, "set both or neither"},
		{"IAM", Config{SASLMechanism: "AWS_MSK_IAM", TLS: true}, ""},
		{"IAM with a user", Config{SASLMechanism: "AWS_MSK_IAM", TLS: true, SASLUser: "u"}, "takes its credentials from the AWS SDK"},
		{"IAM without TLS", Config{SASLMechanism: "AWS_MSK_IAM"}, "needs CAIRN_KAFKA_TLS=true"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Brokers = []string{"127.0.0.1:9092"}
			cfg.EnsureDefaults()
			err := cfg.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Validate: %v; want an error containing %q", err, tc.want)
			}
		})
	}
}

// A bad file is a start-up error naming its knob and its path.
func TestReadFilesErrors(t *testing.T) {
	t.Parallel()
	ca := tlscerttest.NewCA(t)
	certPEM, keyPEM := ca.IssuePEM(t, time.Now().UnixNano(), x509.ExtKeyUsageClientAuth)
	missing := filepath.Join(t.TempDir(), "missing.pem")
	notPEM := writeFile(t, "not.pem", []byte("hello"))
	for _, tc := range []struct {
		name string
		cfg  Config
		want []string
	}{
		{"missing CA", Config{TLS: true, TLSCAFile: missing}, []string{"CAIRN_KAFKA_TLS_CA_FILE", missing}},
		{"CA not PEM", Config{TLS: true, TLSCAFile: notPEM}, []string{"CAIRN_KAFKA_TLS_CA_FILE", notPEM, "no PEM certificate"}},
		{"key not matching", Config{TLS: true, TLSCertFile: writeFile(t, "c.pem", certPEM), TLSKeyFile: notPEM},
			[]string{"CAIRN_KAFKA_TLS_KEY_FILE", notPEM}},
		{"missing password file", Config{SASLUser: "u", SASLPasswordFile: missing}, []string{"CAIRN_KAFKA_SASL_PASSWORD_FILE", missing}},
		{"empty password file", Config{SASLUser: "u", SASLPasswordFile: writeFile(t, "empty", []byte("\n"))}, []string{"CAIRN_KAFKA_SASL_PASSWORD_FILE", "empty"}},
		{"good", Config{TLS: true, TLSCAFile: writeFile(t, "ca.pem", ca.PEM()), TLSCertFile: writeFile(t, "c.pem", certPEM), TLSKeyFile: writeFile(t, "k.pem", keyPEM)}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			err := cfg.ReadFiles()
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("ReadFiles: %v; want it to name %q", err, w)
				}
			}
		})
	}
}

// The password file's one trailing newline is not part of the password;
// other whitespace is.
func TestPasswordFileNewline(t *testing.T) {
	t.Parallel()
	for content, want := range map[string]string{
		"s3cret\n":   "s3cret",
		"s3cret\r\n": "s3cret",
		"s3cret":     "s3cret",
		" s3cret \n": " s3cret ",
	} {
		cfg := Config{SASLUser: "u", SASLPasswordFile: writeFile(t, "p", []byte(content))}
		if err := cfg.ReadFiles(); err != nil {
			t.Fatal(err)
		}
		if got := cfg.password(); got != want {
			t.Errorf("file %q: password %q; want %q", content, got, want)
		}
	}
}

// AWS_MSK_IAM: the client offers the AWS_MSK_IAM mechanism, whose
// credentials come from the AWS SDK's default chain (here the
// environment) at each authentication.
func TestMSKIAMWiring(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDCAIRNTEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	cfg := Config{Brokers: []string{"b-1.example.kafka.us-east-1.amazonaws.com:9098"}, TLS: true, SASLMechanism: "aws_msk_iam"}
	cfg.EnsureDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(cfg.ClientOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	mechs, _ := cl.OptValue(kgo.SASL).([]sasl.Mechanism)
	if len(mechs) != 1 || mechs[0].Name() != "AWS_MSK_IAM" {
		t.Fatalf("SASL mechanisms %v; want AWS_MSK_IAM", mechs)
	}
	_, first, err := mechs[0].Authenticate(context.Background(), "b-1.example.kafka.us-east-1.amazonaws.com:9098")
	if err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	var msg map[string]string
	if err := json.Unmarshal(first, &msg); err != nil {
		t.Fatalf("first message %q: %v", first, err)
	}
	if c := msg["x-amz-credential"]; !strings.HasPrefix(c, "AKIDCAIRNTEST/") || !strings.Contains(c, "/us-east-1/kafka-cluster/") {
		t.Errorf("x-amz-credential %q; want the environment's access key, signing for us-east-1", c)
	}
}

// ReadFiles decodes whatever the mounted files hold: it must never panic,
// and the password is the file less at most one line ending.
func FuzzReadFiles(f *testing.F) {
	f.Add([]byte("s3cret\n"), []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"))
	f.Add([]byte("\r\n"), []byte(""))
	f.Fuzz(func(t *testing.T, password, bundle []byte) {
		dir := t.TempDir()
		pw, ca := filepath.Join(dir, "password"), filepath.Join(dir, "ca.pem")
		if err := os.WriteFile(pw, password, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(ca, bundle, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg := Config{TLS: true, TLSCAFile: ca, SASLUser: "u", SASLPasswordFile: pw}
		if err := cfg.ReadFiles(); err != nil {
			return
		}
		got := cfg.password()
		if got == "" || !strings.HasPrefix(string(password), got) || len(password)-len(got) > 2 {
			t.Fatalf("file %q: password %q", password, got)
		}
	})
}

// A long-lived client keeps retrying wrong credentials; its BrokerWatch
// says why, so that a query server can answer uploads with the cause.
func TestBrokerWatch(t *testing.T) {
	t.Parallel()
	ca := tlscerttest.NewCA(t)
	brokers := secureCluster(t, ca)
	for _, tc := range []struct {
		name, pass string
		want       Cause // CauseUnknown: no error
	}{
		{"wrong password", "wrong", CauseCredentials},
		{"right password", "alice-secret", CauseUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := clientConfig(t, brokers, ca, "alice", tc.pass, "")
			var w BrokerWatch
			cl, err := kgo.NewClient(append(cfg.ClientOpts(), kgo.WithHooks(&w))...)
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_, reqErr := kmsg.NewPtrMetadataRequest().RequestWith(ctx, cl)
			got := w.Err()
			switch {
			case tc.want == CauseUnknown && (reqErr != nil || got != nil):
				t.Fatalf("request: %v; watch: %v; want both nil", reqErr, got)
			case tc.want != CauseUnknown && (got == nil || got.Cause != tc.want):
				t.Fatalf("watch: %v; want cause %q", got, tc.want)
			}
		})
	}
}

// A successful request clears the watch; a successful connection set-up
// (the start of every failed authentication) does not.
func TestBrokerWatchClears(t *testing.T) {
	t.Parallel()
	var w BrokerWatch
	meta := kgo.BrokerMetadata{Host: "127.0.0.1", Port: 9092}
	w.OnBrokerE2E(meta, int16(kmsg.SASLAuthenticate), kgo.BrokerE2E{ReadErr: io.EOF})
	w.OnBrokerE2E(meta, int16(kmsg.ApiVersions), kgo.BrokerE2E{})
	if err := w.Err(); err == nil || err.Cause != CauseCredentials {
		t.Fatalf("after a failed authentication and a new connection: %v; want %q", err, CauseCredentials)
	}
	w.OnBrokerE2E(meta, int16(kmsg.Metadata), kgo.BrokerE2E{})
	if err := w.Err(); err != nil {
		t.Fatalf("after a successful request: %v; want nil", err)
	}
}

// The shapes in which Kafka brokers and crypto/tls report each cause,
// including those kfake does not produce (a broker that closes a TLS
// handshake on a plaintext port, SASL_AUTHENTICATION_FAILED).
func TestClassify(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want Cause
	}{
		{fmt.Errorf("sasl: %w", kerr.SaslAuthenticationFailed), CauseCredentials},
		{kerr.UnsupportedSaslMechanism, CauseMechanism},
		{fmt.Errorf("unable to dial: %w", x509.UnknownAuthorityError{}), CauseUntrustedCertificate},
		{x509.HostnameError{Host: "b-1"}, CauseUntrustedCertificate},
		{&tls.CertificateVerificationError{Err: errors.New("expired")}, CauseUntrustedCertificate},
		{tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, CauseTLSToPlaintext},
		{&kgo.ErrFirstReadEOF{}, CauseTLSToPlaintext},
		{&net.OpError{Op: "remote error", Err: errors.New("tls: certificate required")}, CauseTLSRejected},
		{&net.OpError{Op: "dial", Err: errors.New("connection refused")}, CauseUnreachable},
		{io.EOF, CauseUnknown},
		{nil, CauseUnknown},
	} {
		if got := Classify(tc.err); got != tc.want {
			t.Errorf("Classify(%v) = %q; want %q", tc.err, got, tc.want)
		}
	}
}

// A query server whose Kafka credentials are wrong keeps its producer (kgo
// retries), and each upload is answered within the produce timeout with
// the cause named, so that the 503 tells the operator what to fix.
func TestPersistNamesBadCredentials(t *testing.T) {
	t.Parallel()
	ca := tlscerttest.NewCA(t)
	brokers := secureCluster(t, ca)
	cfg := clientConfig(t, brokers, ca, "alice", "wrong-password", "")
	cfg.ProduceTimeout = testTimeout
	p := newProducer(t, cfg, prometheus.NewRegistry(), nil)
	took, err := persistTimed(p, 1)
	if err == nil {
		t.Fatal("Persist with a wrong password succeeded")
	}
	if took > testTimeout+time.Second {
		t.Errorf("Persist answered after %v; want at most %v", took, testTimeout+time.Second)
	}
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), CauseCredentials.String()) {
		t.Errorf("Persist() = %v; want a timeout naming %q", err, CauseCredentials)
	}
	if h := p.Health(); h == nil || !strings.Contains(h.Error(), CauseCredentials.String()) {
		t.Errorf("Health() = %v; want it to name the credentials", h)
	}
	// Once the cause is known, an upload is answered at once, not at the
	// timeout: waiting cannot cure wrong credentials.
	took, err = persistTimed(p, 2)
	if err == nil || !strings.Contains(err.Error(), CauseCredentials.String()) {
		t.Errorf("second Persist() = %v; want it to name the credentials", err)
	}
	if took > testTimeout/2 {
		t.Errorf("second Persist answered after %v; want at once", took)
	}
}

// TestProducerProbe: a query server's producer with a wrong password used
// to report nothing until the first upload failed; Probe names the cause
// before any upload, within a few seconds, logs it, and from then on an
// upload fails at once. With the right settings Probe succeeds, and with
// no broker listening it names them unreachable by its context's end.
func TestProducerProbe(t *testing.T) {
	t.Parallel()
	ca := tlscerttest.NewCA(t)
	brokers := secureCluster(t, ca)

	t.Run("good", func(t *testing.T) {
		p := newProducer(t, clientConfig(t, brokers, ca, "alice", "alice-secret", ""), prometheus.NewRegistry(), nil)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := p.Probe(ctx); err != nil {
			t.Fatalf("Probe() = %v, want nil", err)
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		cfg := clientConfig(t, brokers, ca, "alice", "wrong-password", "")
		cfg.ProduceTimeout = testTimeout
		var logs syncBuffer
		p := newProducer(t, cfg, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(&logs, nil)))
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		start := time.Now()
		err := p.Probe(ctx)
		var ce *ConnectError
		if !errors.As(err, &ce) || ce.Cause != CauseCredentials {
			t.Fatalf("Probe() = %v, want a ConnectError with cause %q", err, CauseCredentials)
		}
		if took := time.Since(start); took > 4*time.Second {
			t.Errorf("Probe answered after %v, want before its context's end", took)
		}
		if err := p.Probe(ctx); err == nil {
			t.Fatal("second Probe() = nil")
		}
		if n := strings.Count(logs.String(), "does not answer"); n != 1 {
			t.Errorf("two failed probes logged %d lines, want 1 (one per %v):\n%s", n, probeLogInterval, logs.String())
		}
		took, err := persistTimed(p, 1)
		if err == nil || !strings.Contains(err.Error(), CauseCredentials.String()) {
			t.Errorf("Persist() after the probe = %v, want it to name %q", err, CauseCredentials)
		}
		if took > testTimeout/2 {
			t.Errorf("Persist after the probe answered after %v, want at once", took)
		}
	})
	t.Run("wrong password logged once per interval", func(t *testing.T) {
		// A query server probes Kafka every health interval and uploads
		// fail at once: the log gets one line per log interval, whatever
		// the number of probes and uploads. The intervals (a minute and
		// ten seconds) are shortened here to see repeats.
		const interval = 300 * time.Millisecond
		cfg := clientConfig(t, brokers, ca, "alice", "wrong-password", "")
		cfg.ProduceTimeout = testTimeout
		var logs syncBuffer
		p := newProducer(t, cfg, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(&logs, nil)))
		p.probeLog.Interval, p.persistLog.Interval = interval, interval
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		start := time.Now()
		probes, uploads := 0, 0
		for time.Since(start) < 3*interval+interval/2 {
			if err := p.Probe(ctx); err == nil {
				t.Fatal("Probe() = nil with a wrong password")
			}
			probes++
			for range 20 {
				if err := p.Persist(ctx, []byte("k"), upload(uploads)); err == nil {
					t.Fatal("Persist() = nil with a wrong password")
				}
				uploads++
			}
			time.Sleep(interval / 10)
		}
		elapsed := time.Since(start)
		most := int(elapsed/interval) + 1
		n := strings.Count(logs.String(), "does not answer")
		t.Logf("%d probes and %d uploads in %v: %d probe lines", probes, uploads, elapsed.Round(time.Millisecond), n)
		if n < 2 || n > most {
			t.Errorf("%d failed probes over %v logged %d lines, want 2 to %d (one per %v):\n%s", probes, elapsed, n, most, interval, logs.String())
		}
		if n := strings.Count(logs.String(), "not acknowledged"); n > most {
			t.Errorf("%d failed uploads over %v logged %d lines, want at most %d (one per %v)", uploads, elapsed, n, most, interval)
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		p := newProducer(t, clientConfig(t, []string{addr}, ca, "alice", "alice-secret", ""), prometheus.NewRegistry(), nil)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		err = p.Probe(ctx)
		var ce *ConnectError
		if !errors.As(err, &ce) || ce.Cause != CauseUnreachable {
			t.Fatalf("Probe() = %v, want a ConnectError with cause %q", err, CauseUnreachable)
		}
	})
}
