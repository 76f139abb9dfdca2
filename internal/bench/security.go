package bench

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/cairnfs/cairn/internal/auth"
)

// With Options.Security the measurement starts three query server
// processes on the same store and drives them side by side with the
// floor, so that what authentication and TLS cost is measured under the
// same machine load as the plain server:
//
//	(a) plain HTTP, no authentication (as without --security);
//	(c) plain HTTP, every request carrying an API key (the key checked
//	    against a keys file of one key, as `cairn serve` checks it);
//	(d) HTTPS over keep-alive connections, no authentication: TLS 1.3
//	    with an ECDSA P-256 certificate made for the run.
//
// Each server gets the knobs of its variant and only those: the ones the
// parent's environment may set (a keys file, a certificate) are cleared
// for the others, since a later entry of an environment wins.

// serverVariant is one query server of a measurement.
type serverVariant struct {
	name, label string
	// env is added to the server process's environment, after
	// Options.ServerEnv.
	env []string
	// token is sent as a bearer token on every request, if set.
	token string
	// tls, if set, makes the path speak HTTPS with it.
	tls *tls.Config
	// args are added to the server process's arguments.
	args []string
	// format, if set, is sent as the request body's "format"; accept, if
	// set, as the request's Accept header (formats.go).
	format, accept string
}

// plainEnv clears the knobs that change how a query server accepts
// requests.
var plainEnv = []string{"CAIRN_API_KEYS_FILE=", "CAIRN_METRICS_REQUIRE_AUTH=", "CAIRN_TLS_CERT_FILE=", "CAIRN_TLS_KEY_FILE="}

// plainVariant is the query server of every measurement.
func plainVariant() serverVariant {
	return serverVariant{name: "(a)", label: "(a) HTTP: POST /v1/query/online", env: plainEnv}
}

// securityVariants writes a keys file and a certificate under dir and
// returns the variants (c) and (d).
func securityVariants(dir string) ([]serverVariant, error) {
	token, entry, err := auth.NewKey("bench", []auth.Scope{auth.Query})
	if err != nil {
		return nil, err
	}
	keysFile := filepath.Join(dir, "keys.yaml")
	if err := os.WriteFile(keysFile, []byte("keys:\n"+entry.YAML()), 0o600); err != nil {
		return nil, fmt.Errorf("bench: write the keys file: %w", err)
	}
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	pool, err := selfSigned(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	return []serverVariant{
		{name: "(c)", label: "(c) HTTP with an API key",
			env: append(plainEnv[:len(plainEnv):len(plainEnv)], "CAIRN_API_KEYS_FILE="+keysFile), token: token},
		{name: "(d)", label: "(d) HTTPS (TLS 1.3, keep-alive)",
			env: append(plainEnv[:len(plainEnv):len(plainEnv)], "CAIRN_TLS_CERT_FILE="+certFile, "CAIRN_TLS_KEY_FILE="+keyFile),
			tls: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}},
	}, nil
}

// selfSigned writes a self-signed certificate for 127.0.0.1 and its key,
// and returns a pool trusting it.
func selfSigned(certFile, keyFile string) (*x509.CertPool, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: "cairn bench"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("bench: make a certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return nil, fmt.Errorf("bench: write the certificate: %w", err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return nil, fmt.Errorf("bench: write the certificate's key: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool, nil
}
