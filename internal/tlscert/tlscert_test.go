package tlscert

import (
	"bytes"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairnfs/cairn/internal/tlscert/tlscerttest"
)

// syncBuffer is a log sink read while the server writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// serve runs an HTTP server on 127.0.0.1 behind c's listener and returns
// its URL.
func serve(t *testing.T, c *Cert) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }),
		ReadHeaderTimeout: 5 * time.Second,
	}
	go srv.Serve(c.Listener(ln))
	t.Cleanup(func() { srv.Close() })
	return "https://" + ln.Addr().String()
}

// get makes a request and returns the serial of the certificate the
// server presented.
func get(t *testing.T, client *http.Client, url string) string {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if b, _ := io.ReadAll(resp.Body); resp.StatusCode != 200 || string(b) != "ok" {
		t.Fatalf("GET %s: %d %q", url, resp.StatusCode, b)
	}
	if resp.TLS == nil {
		t.Fatal("answered without TLS")
	}
	return resp.TLS.PeerCertificates[0].SerialNumber.String()
}

// A renewed certificate is served after SIGHUP without a restart: a
// request before the rotation and one after both succeed, the second on
// the new certificate, and a keep-alive connection opened before it goes
// on working.
func TestRotation(t *testing.T) {
	t.Parallel()
	a := tlscerttest.NewCA(t)
	certFile, keyFile := tlscerttest.Files(t)
	a.Issue(t, 100, certFile, keyFile)
	logs := &syncBuffer{}
	c, err := Load(Config{CertFile: certFile, KeyFile: keyFile}, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	url := serve(t, c)

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: a.Pool}}, Timeout: 5 * time.Second}
	if got := get(t, client, url); got != "100" {
		t.Fatalf("before the rotation: serial %s, want 100", got)
	}

	a.Issue(t, 200, certFile, keyFile)
	c.Refresh() // what the process does on SIGHUP
	// The connection opened before the rotation still answers.
	if got := get(t, client, url); got != "100" && got != "200" {
		t.Fatalf("kept-alive connection: serial %s", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		client.CloseIdleConnections() // a new connection, a new handshake
		got := get(t, client, url)
		if got == "200" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the rotation new connections still see serial %s, want 200", got)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "certificate reloaded") {
		t.Errorf("the reload was not logged:\n%s", logs)
	}
}

// A reload of files that do not load (a key half written, a key of another
// certificate) keeps serving the certificate in use, and says why.
func TestFailedReloadKeepsCertificate(t *testing.T) {
	t.Parallel()
	a := tlscerttest.NewCA(t)
	certFile, keyFile := tlscerttest.Files(t)
	a.Issue(t, 7, certFile, keyFile)
	logs := &syncBuffer{}
	c, err := Load(Config{CertFile: certFile, KeyFile: keyFile}, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	url := serve(t, c)

	// The certificate of another pair with the old key: a mismatch.
	otherCert, otherKey := tlscerttest.Files(t)
	a.Issue(t, 8, otherCert, otherKey)
	cert, err := os.ReadFile(otherCert)
	if err != nil {
		t.Fatal(err)
	}
	tlscerttest.Replace(t, certFile, cert)
	if err := c.Reload(); err == nil {
		t.Fatal("a certificate with the key of another one reloaded")
	}
	tlscerttest.Replace(t, keyFile, []byte("-----BEGIN PRIVATE KEY-----\ntrunc"))
	c.Refresh()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "keeping the certificate in use") {
		if time.Now().After(deadline) {
			t.Fatalf("a failed reload was not logged:\n%s", logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: a.Pool}, DisableKeepAlives: true}, Timeout: 5 * time.Second}
	if got := get(t, client, url); got != "7" {
		t.Errorf("after failed reloads: serial %s, want 7 (the certificate in use)", got)
	}
	if !strings.Contains(logs.String(), keyFile) {
		t.Errorf("the failure does not name the file:\n%s", logs)
	}
}

// Clients older than TLS 1.2 are refused.
func TestRefusesTLS11(t *testing.T) {
	t.Parallel()
	a := tlscerttest.NewCA(t)
	certFile, keyFile := tlscerttest.Files(t)
	a.Issue(t, 1, certFile, keyFile)
	c, err := Load(Config{CertFile: certFile, KeyFile: keyFile}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	url := serve(t, c)
	old := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: a.Pool, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}}, Timeout: 5 * time.Second}
	if resp, err := old.Get(url); err == nil {
		resp.Body.Close()
		t.Fatal("a TLS 1.1 client was served")
	}
	cur := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: a.Pool, MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12}}, Timeout: 5 * time.Second}
	get(t, cur, url)
}

// The start fails, naming the problem, when the pair is incomplete or does
// not load.
func TestLoadErrors(t *testing.T) {
	t.Parallel()
	a := tlscerttest.NewCA(t)
	certFile, keyFile := tlscerttest.Files(t)
	a.Issue(t, 1, certFile, keyFile)
	missing := filepath.Join(t.TempDir(), "absent.pem")
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"cert without key", Config{CertFile: certFile}, "CAIRN_TLS_KEY_FILE"},
		{"key without cert", Config{KeyFile: keyFile}, "CAIRN_TLS_CERT_FILE"},
		{"missing file", Config{CertFile: missing, KeyFile: keyFile}, missing},
		{"swapped", Config{CertFile: keyFile, KeyFile: certFile}, "tls: load certificate"},
		{"none", Config{}, "no certificate"},
	} {
		_, err := Load(tc.cfg, slog.New(slog.DiscardHandler))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
}
