package main

import (
	"crypto/tls"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairnfs/cairn/internal/config"
	"github.com/cairnfs/cairn/internal/tlscert/tlscerttest"
	"github.com/twmb/franz-go/pkg/kfake"
)

// `cairn dev` with a certificate serves its API over TLS only, and a
// certificate renewed on disk is served to new connections after SIGHUP:
// a query before the rotation and one after both answer, the second on the
// new certificate.
func TestDevTLSRotation(t *testing.T) {
	ca := tlscerttest.NewCA(t)
	certFile, keyFile := tlscerttest.Files(t)
	ca.Issue(t, 1001, certFile, keyFile)
	// The test binary must survive its own SIGHUP whatever the state of
	// the process's handlers.
	hold := make(chan os.Signal, 1)
	signal.Notify(hold, syscall.SIGHUP)
	defer signal.Stop(hold)

	base, stop := devEnv(t, t.TempDir(), map[string]string{"CAIRN_TLS_CERT_FILE": certFile, "CAIRN_TLS_KEY_FILE": keyFile})
	defer stop()
	if !strings.HasPrefix(base, "https://") {
		t.Fatalf("cairn dev announces %s, want an https URL", base)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool}}, Timeout: 10 * time.Second}
	query := func() string {
		t.Helper()
		resp, err := client.Post(base+"/v1/query/online", "application/json", strings.NewReader(`{"inputs": {"user.id": "u1"}, "outputs": ["user.age"]}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if b, _ := io.ReadAll(resp.Body); resp.StatusCode != 200 {
			t.Fatalf("query: %d %s", resp.StatusCode, b)
		}
		return resp.TLS.PeerCertificates[0].SerialNumber.String()
	}
	if got := query(); got != "1001" {
		t.Fatalf("serial %s, want 1001", got)
	}
	// Plain HTTP on the TLS port never reaches the API.
	plainRefused(t, "http://"+strings.TrimPrefix(base, "https://")+"/healthz")

	ca.Issue(t, 1002, certFile, keyFile)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		client.CloseIdleConnections()
		got := query()
		if got == "1002" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after SIGHUP new connections see serial %s, want 1002", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A start with half a pair, or a pair that does not load, fails before
// anything listens, naming the knob or the file.
func TestDevTLSBadPair(t *testing.T) {
	ca := tlscerttest.NewCA(t)
	certFile, keyFile := tlscerttest.Files(t)
	ca.Issue(t, 1, certFile, keyFile)
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"CAIRN_TLS_CERT_FILE": certFile}, "CAIRN_TLS_KEY_FILE"},
		{map[string]string{"CAIRN_TLS_CERT_FILE": keyFile, "CAIRN_TLS_KEY_FILE": keyFile}, keyFile},
	} {
		err := run(t.Context(), []string{"dev", "--data-dir", t.TempDir(), "--addr", "127.0.0.1:0", "--features", "../../examples/features.yaml"},
			config.FromMap(tc.env), io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one naming %s", tc.env, err, tc.want)
		}
	}
}

// `cairn write` serves its /healthz and /metrics behind the same
// certificate.
func TestWriteTLS(t *testing.T) {
	ca := tlscerttest.NewCA(t)
	certFile, keyFile := tlscerttest.Files(t)
	ca.Issue(t, 3003, certFile, keyFile)
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "cairn.persist", "cairn.metrics", "cairn.persist.dlq"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	p := startInProcess(t, []string{"write", "--features", "../../examples/features.yaml", "--brokers", strings.Join(cluster.ListenAddrs(), ","),
		"--store", "embedded://" + t.TempDir(), "--addr", "127.0.0.1:0"},
		map[string]string{"CAIRN_TLS_CERT_FILE": certFile, "CAIRN_TLS_KEY_FILE": keyFile, "CAIRN_WRITER_INSTANCE_ID": ""})
	host := p.Addr
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool}}, Timeout: 10 * time.Second}
	resp, err := client.Get("https://" + host + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS == nil || resp.TLS.PeerCertificates[0].SerialNumber.String() != "3003" {
		t.Errorf("GET /metrics over TLS: status %d, TLS %v", resp.StatusCode, resp.TLS != nil)
	}
	plainRefused(t, "http://"+host+"/metrics")
	p.stop(t)
}

// plainRefused checks that a plain HTTP request to a TLS listener gets Go's
// 400 "Client sent an HTTP request to an HTTPS server", not an answer.
func plainRefused(t *testing.T, url string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("plain HTTP to the TLS listener: %v, want a 400", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "HTTPS server") {
		t.Errorf("plain HTTP to the TLS listener: %d %q, want 400 naming HTTPS", resp.StatusCode, b)
	}
}
