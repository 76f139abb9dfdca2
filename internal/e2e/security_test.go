package e2e

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairnfs/cairn/internal/testserver"
	"github.com/cairnfs/cairn/internal/tlscert/tlscerttest"
)

// The SASL credentials of the secured broker.
const (
	scramUser     = "alice"
	scramPassword = "s3cret-Scram-pa55word"
	wrongPassword = "not-the-Right-pa55word"
)

// failFast bounds how long a cairn command given bad Kafka settings may take
// to exit.
const failFast = 10 * time.Second

// secureCluster is a broker that requires SCRAM-SHA-512 over TLS, a store,
// and the files a cairn process needs to reach them.
type secureCluster struct {
	t        *testing.T
	bin      string
	kafka    *testserver.Kafka
	redis    *testserver.RedisProcess
	features string
	caFile   string // PEM of the CA that signs the broker's certificate
	goodPass string // file holding the right password
	badPass  string // file holding a wrong password
	procs    []*testserver.Process
}

func startSecureCluster(t *testing.T) *secureCluster {
	t.Helper()
	ca := tlscerttest.NewCA(t)
	certFile, keyFile := tlscerttest.Files(t)
	ca.Issue(t, 2, certFile, keyFile)
	dir := t.TempDir()
	c := &secureCluster{
		t:        t,
		bin:      testserver.BuildCairn(t),
		redis:    testserver.StartRedisProcess(t),
		features: filepath.Join(dir, "features.yaml"),
		caFile:   filepath.Join(dir, "ca.pem"),
		goodPass: filepath.Join(dir, "password"),
		badPass:  filepath.Join(dir, "wrong-password"),
	}
	writeFile(t, c.caFile, ca.PEM())
	writeFile(t, c.goodPass, []byte(scramPassword+"\n"))
	writeFile(t, c.badPass, []byte(wrongPassword+"\n"))
	writeFile(t, c.features, []byte(featuresYAML))
	c.kafka = testserver.StartKafka(t, testserver.KafkaOptions{
		Partitions:  4,
		SCRAMUsers:  map[string]string{scramUser: scramPassword},
		TLSCertFile: certFile,
		TLSKeyFile:  keyFile,
	})
	t.Cleanup(c.checkNoPassword)
	return c
}

func writeFile(t *testing.T, name string, b []byte) {
	t.Helper()
	if err := os.WriteFile(name, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// kafkaEnv is the Kafka part of a cairn process's environment.
func (c *secureCluster) kafkaEnv(caFile, passwordFile string) []string {
	return []string{
		"CAIRN_KAFKA_TLS=true",
		"CAIRN_KAFKA_TLS_CA_FILE=" + caFile,
		"CAIRN_KAFKA_SASL_USERNAME=" + scramUser,
		"CAIRN_KAFKA_SASL_PASSWORD_FILE=" + passwordFile,
	}
}

// env is the whole environment of a cairn process: the test binary's
// without CAIRN_* variables, then roleEnv, then kafka.
func (c *secureCluster) env(kafka []string) []string {
	env := append(outsideEnv(), roleEnv()...)
	env = append(env, "CAIRN_WRITER_INSTANCE_ID=w1")
	return append(env, kafka...)
}

// topicsCreate starts `cairn topics create` against the secured broker.
func (c *secureCluster) topicsCreate(kafka []string) *testserver.Process {
	c.t.Helper()
	p := testserver.StartProcess(c.t, testserver.Command{
		Name: "cairn-topics",
		Path: c.bin,
		Args: []string{"topics", "create", "--brokers", c.kafka.Addr(),
			"--replication-factor", "1", "--min-insync-replicas", "1", "--partitions", "4"},
		Env: c.env(kafka),
	})
	c.procs = append(c.procs, p)
	return p
}

// roleArgs are the arguments of a cairn role after --addr.
func (c *secureCluster) roleArgs() []string {
	return []string{"--store", c.redis.URI(0), "--brokers", c.kafka.Addr(), "--features", c.features}
}

// startRole starts a role and waits for /readyz.
func (c *secureCluster) startRole(role string, kafka []string) *testserver.Role {
	c.t.Helper()
	env := append(append(roleEnv(), "CAIRN_WRITER_INSTANCE_ID=w1"), kafka...)
	r := testserver.StartRole(c.t, c.bin, role, c.roleArgs(), env)
	c.procs = append(c.procs, r.Process())
	return r
}

// startCommand starts a role without waiting for it to be ready: one that
// should exit.
func (c *secureCluster) startCommand(role string, kafka []string) *testserver.Process {
	c.t.Helper()
	args := append([]string{role, "--addr", "127.0.0.1:0"}, c.roleArgs()...)
	p := testserver.StartProcess(c.t, testserver.Command{Name: "cairn-" + role, Path: c.bin, Args: args, Env: c.env(kafka)})
	c.procs = append(c.procs, p)
	return p
}

// mustSucceed waits at most 30 s for p to exit 0.
func (c *secureCluster) mustSucceed(p *testserver.Process) {
	c.t.Helper()
	if code, err := p.Wait(30 * time.Second); err != nil || code != 0 {
		c.t.Fatalf("%s: status %d, %v; output:\n%s", p.Name(), code, err, p.Output())
	}
}

// mustFail waits for p to exit non-zero within failFast with output naming
// want.
func (c *secureCluster) mustFail(p *testserver.Process, want string) {
	c.t.Helper()
	start := time.Now()
	code, err := p.Wait(failFast)
	switch {
	case err != nil:
		c.t.Errorf("%s: %v; output:\n%s", p.Name(), err, p.Output())
	case code == 0:
		c.t.Errorf("%s exited 0, want a failure naming %q; output:\n%s", p.Name(), want, p.Output())
	case !strings.Contains(p.Output(), want):
		c.t.Errorf("%s exited %d without naming %q; output:\n%s", p.Name(), code, want, p.Output())
	default:
		c.t.Logf("%s exited %d after %v: %s", p.Name(), code, time.Since(start).Round(time.Millisecond), lastLine(p.Output()))
	}
}

// checkNoPassword fails the test if a cairn process wrote a password.
func (c *secureCluster) checkNoPassword() {
	for _, p := range c.procs {
		out := p.Output()
		for _, pw := range []string{scramPassword, wrongPassword} {
			if strings.Contains(out, pw) {
				c.t.Errorf("the output of %s (pid %d) contains a SASL password", p.Name(), p.PID())
			}
		}
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// TestSecuritySCRAMOverTLS: cairn topics create, write and serve reach a
// broker that requires SCRAM-SHA-512 over TLS with a private CA, and an
// upload through serve is readable through serve.
func TestSecuritySCRAMOverTLS(t *testing.T) {
	c := startSecureCluster(t)
	kafka := c.kafkaEnv(c.caFile, c.goodPass)
	c.mustSucceed(c.topicsCreate(kafka))
	c.startRole("write", kafka)
	serve := c.startRole("serve", kafka)

	ctx, cancel := context.WithTimeout(context.Background(), readableWithin+patience)
	defer cancel()
	at := time.Now().Add(-time.Minute)
	code, body, err := uploadAge(ctx, serve.URL(), "k1", 42, at)
	if err != nil || code != http.StatusAccepted {
		t.Fatalf("upload: %d %s %v, want 202", code, body, err)
	}
	deadline := time.Now().Add(readableWithin)
	for {
		_, _, ages, _, err := queryAges(ctx, serve.URL(), []string{"k1"})
		if err == nil && ages["k1"] == 42 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("k1 not readable as 42 within %v: ages %v, %v", readableWithin, ages, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestSecuritySCRAMWrongPassword: with a wrong SASL password, cairn topics
// create and cairn write exit non-zero within 10 s naming the SASL failure;
// cairn serve starts, answers queries, reports the cause in /healthz
// before any upload, and refuses uploads with 503 naming it at once.
func TestSecuritySCRAMWrongPassword(t *testing.T) {
	c := startSecureCluster(t)
	bad := c.kafkaEnv(c.caFile, c.badPass)
	const want = "SASL authentication failed"

	c.mustFail(c.topicsCreate(bad), want)
	c.mustSucceed(c.topicsCreate(c.kafkaEnv(c.caFile, c.goodPass)))
	c.mustFail(c.startCommand("write", bad), want)

	serve := c.startRole("serve", bad)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if code, _, _, _, err := queryAges(ctx, serve.URL(), []string{"k1"}); err != nil || code != http.StatusOK {
		t.Errorf("query: %d %v, want 200", code, err)
	}
	// Before any upload, /healthz names the failure in its kafka check
	// (the query server probes Kafka) and stays 200: Kafka is not
	// critical for a query server.
	deadline := time.Now().Add(healthWithin)
waitHealth:
	for {
		code, body, err := get(ctx, serve.URL()+"/healthz")
		var r struct {
			Checks map[string]struct {
				OK    bool   `json:"ok"`
				Error string `json:"error"`
			} `json:"checks"`
		}
		var last string
		switch {
		case err != nil:
			last = err.Error()
		case code != http.StatusOK:
			t.Fatalf("/healthz: %d %s, want 200", code, body)
		case json.Unmarshal(body, &r) != nil:
			t.Fatalf("/healthz body is not JSON: %s", body)
		default:
			k, ok := r.Checks["kafka"]
			if ok && !k.OK && strings.Contains(k.Error, want) {
				t.Logf("/healthz 200, kafka check: %s", k.Error)
				break waitHealth
			}
			last = string(body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz did not report a kafka check naming %q within %v; last: %s", want, healthWithin, last)
		}
		time.Sleep(200 * time.Millisecond)
	}

	start := time.Now()
	code, body, err := uploadAge(ctx, serve.URL(), "k1", 1, time.Now().Add(-time.Minute))
	took := time.Since(start)
	switch {
	case err != nil:
		t.Errorf("upload: %v", err)
	case code != http.StatusServiceUnavailable:
		t.Errorf("upload: %d %s, want 503", code, body)
	case !strings.Contains(string(body), want):
		t.Errorf("upload: 503 %s, want a body naming %q", body, want)
	default:
		t.Logf("upload answered 503 after %v: %s", took.Round(time.Millisecond), body)
	}
	// The probe found the cause: the upload is answered at once.
	if took > produceTimeout/2 {
		t.Errorf("upload answered after %v, want at once (under %v)", took, produceTimeout/2)
	}
	// Probed every probeInterval, the failure is logged once a minute (a
	// constant, not a knob): once in this test. That it repeats each
	// interval and not per upload is tested in internal/queue
	// (TestProducerProbe) with the interval shortened.
	if n := strings.Count(serve.Process().Output(), "Kafka does not answer the query server's producer"); n != 1 {
		t.Errorf("serve logged the failing Kafka probe %d times, want once:\n%s", n, serve.Process().Tail(40))
	}
}

// TestSecurityCauses: each of a wrong password, a wrong SCRAM mechanism, an
// untrusted CA and TLS against a plaintext listener ends both `cairn topics
// create` and `cairn write` within 10 s (measured from the process's
// start), non-zero, with one message naming the cause. The eight processes
// run at once: each must stay within the bound on a loaded machine.
func TestSecurityCauses(t *testing.T) {
	c := startSecureCluster(t)
	plain := testserver.StartKafka(t, testserver.KafkaOptions{
		Partitions: 4,
		SCRAMUsers: map[string]string{scramUser: scramPassword},
	})
	other := filepath.Join(t.TempDir(), "other-ca.pem")
	writeFile(t, other, tlscerttest.NewCA(t).PEM())
	good := c.kafkaEnv(c.caFile, c.goodPass)

	type run struct {
		p     *testserver.Process
		start time.Time
		want  string
	}
	var runs []run
	for _, tc := range []struct {
		name    string
		brokers string
		kafka   []string
		want    string // the cause's text, as queue.Cause words it
	}{
		{"wrong password", c.kafka.Addr(), c.kafkaEnv(c.caFile, c.badPass),
			"SASL authentication failed"},
		// The broker knows alice for SCRAM-SHA-512 only, and does not say
		// which mechanism a user has.
		{"wrong mechanism", c.kafka.Addr(), append(good, "CAIRN_KAFKA_SASL_MECHANISM=SCRAM-SHA-256"),
			"SASL authentication failed: wrong user, password or SCRAM mechanism"},
		{"untrusted CA", c.kafka.Addr(), c.kafkaEnv(other, c.goodPass),
			"TLS certificate not trusted"},
		{"TLS against plaintext", plain.Addr(), good,
			"TLS to a plaintext listener"},
	} {
		for _, cmd := range []string{"topics", "write"} {
			args := []string{"topics", "create", "--brokers", tc.brokers,
				"--replication-factor", "1", "--min-insync-replicas", "1", "--partitions", "4"}
			if cmd == "write" {
				args = []string{"write", "--addr", "127.0.0.1:0", "--store", c.redis.URI(0),
					"--brokers", tc.brokers, "--features", c.features}
			}
			start := time.Now()
			p := testserver.StartProcess(t, testserver.Command{
				Name: "cairn-" + cmd + " (" + tc.name + ")", Path: c.bin, Args: args, Env: c.env(tc.kafka),
			})
			c.procs = append(c.procs, p)
			runs = append(runs, run{p, start, tc.want})
		}
	}
	for _, r := range runs {
		code, err := r.p.Wait(time.Until(r.start.Add(failFast)))
		took := time.Since(r.start)
		out := r.p.Output()
		switch {
		case err != nil:
			t.Errorf("%s: %v; output:\n%s", r.p.Name(), err, out)
		case code == 0:
			t.Errorf("%s exited 0, want a failure naming %q; output:\n%s", r.p.Name(), r.want, out)
		case took > failFast:
			t.Errorf("%s exited after %v, want within %v", r.p.Name(), took, failFast)
		case strings.Count(out, r.want) != 1:
			t.Errorf("%s exited %d naming %q %d times, want once; output:\n%s", r.p.Name(), code, r.want, strings.Count(out, r.want), out)
		default:
			t.Logf("%s exited %d after %v: %s", r.p.Name(), code, took.Round(time.Millisecond), lastLine(out))
		}
	}
}

// containsSecret returns the first secret found in out, "" if none. Each
// secret is looked for whole; a PEM block line by line (any line of its
// body is a secret).
func containsSecret(out string, secrets []string) string {
	for _, s := range secrets {
		if strings.Contains(s, "-----BEGIN") {
			for _, line := range strings.Split(s, "\n") {
				if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "-----") && strings.Contains(out, line) {
					return line
				}
			}
			continue
		}
		if strings.Contains(out, s) {
			return s
		}
	}
	return ""
}

// TestSecuritySecretsNeverLogged: a full run at debug level, serve with API
// keys and a TLS listener, write with SCRAM over TLS (its password from the
// environment, serve's from a file), an upload carried end to end, a 401, a
// 403, a SIGHUP reload and a SIGTERM: no byte of either process's output,
// nor of `cairn config`, holds the SCRAM password, an API token or a line
// of the listener's private key.
func TestSecuritySecretsNeverLogged(t *testing.T) {
	c := startSecureCluster(t)
	c.mustSucceed(c.topicsCreate(c.kafkaEnv(c.caFile, c.goodPass)))
	dir := t.TempDir()

	token, readOnly := marker("cairn_tok"), marker("cairn_ro")
	keys := filepath.Join(dir, "keys.yaml")
	writeFile(t, keys, []byte(fmt.Sprintf("keys:\n  - {name: loader, sha256: %s, scopes: [query, upload]}\n  - {name: reader, sha256: %s, scopes: [query]}\n",
		sha256Hex(token), sha256Hex(readOnly))))
	listenerCA := tlscerttest.NewCA(t)
	certFile, keyFile := tlscerttest.Files(t)
	listenerCA.Issue(t, 3, certFile, keyFile)
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	secrets := []string{scramPassword, token, readOnly, string(keyPEM)}
	// The grep must be able to fail.
	for _, s := range secrets {
		if containsSecret("log: "+s+"\n", secrets) == "" {
			t.Fatalf("containsSecret misses a secret")
		}
	}

	write := testserver.StartRole(t, c.bin, "write", append(c.roleArgs(), "--log-level", "debug"),
		append(roleEnv(), "CAIRN_WRITER_INSTANCE_ID=w1", "CAIRN_KAFKA_TLS=true", "CAIRN_KAFKA_TLS_CA_FILE="+c.caFile,
			"CAIRN_KAFKA_SASL_USERNAME="+scramUser, "CAIRN_KAFKA_SASL_PASSWORD="+scramPassword))
	serveEnv := []string{"CAIRN_API_KEYS_FILE=" + keys, "CAIRN_TLS_CERT_FILE=" + certFile, "CAIRN_TLS_KEY_FILE=" + keyFile}
	for _, kv := range roleEnv() {
		if !strings.HasPrefix(kv, "CAIRN_API_AUTH=") {
			serveEnv = append(serveEnv, kv)
		}
	}
	serveEnv = append(serveEnv, c.kafkaEnv(c.caFile, c.goodPass)...)
	addr := freeAddr(t)
	env := append(outsideEnv(), serveEnv...)
	serve := testserver.StartProcess(t, testserver.Command{Name: "cairn-serve", Path: c.bin,
		Args: append([]string{"serve", "--addr", addr, "--log-level", "debug"}, c.roleArgs()...), Env: env})
	cfgOut := testserver.StartProcess(t, testserver.Command{Name: "cairn-config", Path: c.bin, Args: []string{"config"}, Env: env})

	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: listenerCA.Pool}}}
	base := "https://" + addr
	do := func(path, auth, body string) (int, string) {
		req, err := http.NewRequest(http.MethodPost, base+path, strings.NewReader(body))
		if path == "/readyz" {
			req, err = http.NewRequest(http.MethodGet, base+path, nil)
		}
		if err != nil {
			t.Fatal(err)
		}
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	deadline := time.Now().Add(30 * time.Second)
	for code, _ := do("/readyz", "", ""); code != http.StatusOK; code, _ = do("/readyz", "", "") {
		if time.Now().After(deadline) {
			t.Fatalf("serve not ready over TLS within 30s:\n%s", serve.Tail(30))
		}
		time.Sleep(200 * time.Millisecond)
	}
	const query = `{"inputs": {"user.id": ["s1"]}, "outputs": ["user.age"]}`
	upload := fmt.Sprintf(`{"inputs": {"user.id": "s1", "user.age": 44}, "observed_at": %q}`, time.Now().Add(-time.Minute).UTC().Format(time.RFC3339Nano))
	for _, r := range []struct {
		path, auth, body string
		want             int
	}{
		{"/v1/upload_features", token, upload, http.StatusAccepted},
		{"/v1/query/online", "", query, http.StatusUnauthorized},
		{"/v1/upload_features", readOnly, upload, http.StatusForbidden},
	} {
		if code, body := do(r.path, r.auth, r.body); code != r.want {
			t.Fatalf("POST %s: %d %s, want %d", r.path, code, body, r.want)
		}
	}
	readable := func() {
		t.Helper()
		deadline := time.Now().Add(readableWithin)
		for {
			code, body := do("/v1/query/online", token, query)
			if code == http.StatusOK && strings.Contains(body, "44") {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the upload was not readable within %v: %d %s", readableWithin, code, body)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	readable()
	if err := serve.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	readable()
	// Plain HTTP to the HTTPS listener: the server logs the failed
	// handshake at debug level, so debug output is searched too.
	if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
		resp.Body.Close()
	}
	for _, p := range []*testserver.Process{serve, write.Process()} {
		if err := p.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []*testserver.Process{serve, write.Process(), cfgOut} {
		if _, err := p.Wait(30 * time.Second); err != nil {
			t.Errorf("%s: %v", p.Name(), err)
		}
		out := p.Output()
		if s := containsSecret(out, secrets); s != "" {
			t.Errorf("the output of %s holds the secret %q", p.Name(), s)
		}
		t.Logf("%s: %d bytes of output searched", p.Name(), len(out))
	}
	if !strings.Contains(serve.Output(), "api: serving") {
		t.Errorf("serve's output was not captured:\n%s", serve.Tail(20))
	}
	if !strings.Contains(serve.Output(), "level=DEBUG") {
		t.Errorf("serve wrote no debug line: the search did not cover debug output:\n%s", serve.Tail(20))
	}
}

// marker is prefix and 16 random hex digits.
func marker(prefix string) string {
	b := make([]byte, 8)
	rand.Read(b)
	return prefix + "_" + hex.EncodeToString(b)
}

func sha256Hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}
