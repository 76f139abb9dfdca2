// Package tlscert is the certificate of cairn's HTTP listener: a PEM
// certificate chain and private key loaded at start, served over TLS 1.2 or
// later, and loaded again on request (SIGHUP) so that a renewed certificate
// is used without a restart. A reload that fails keeps the certificate in
// use.
//
// A connection keeps the certificate of its handshake: after a reload, new
// connections see the new certificate, and keep-alive connections opened
// before it keep the old one until they close.
package tlscert

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"time"
)

// Config names the certificate files. Both empty serves plain HTTP.
type Config struct {
	// CertFile is the PEM certificate chain, leaf first
	// (CAIRN_TLS_CERT_FILE). Default: empty, no TLS.
	CertFile string
	// KeyFile is the PEM private key of the leaf (CAIRN_TLS_KEY_FILE).
	// Default: empty, no TLS.
	KeyFile string
}

// Enabled reports whether TLS is configured.
func (c Config) Enabled() bool { return c.CertFile != "" || c.KeyFile != "" }

// Validate reports a certificate without its key or a key without its
// certificate. That the files load is checked by [Load].
func (c Config) Validate() error {
	switch {
	case c.CertFile != "" && c.KeyFile == "":
		return errors.New("tls: CAIRN_TLS_CERT_FILE is set without CAIRN_TLS_KEY_FILE: set both or neither")
	case c.CertFile == "" && c.KeyFile != "":
		return errors.New("tls: CAIRN_TLS_KEY_FILE is set without CAIRN_TLS_CERT_FILE: set both or neither")
	}
	return nil
}

// Cert is the listener's current certificate. Its methods are safe for
// concurrent use.
type Cert struct {
	cfg Config
	log *slog.Logger
	cur atomic.Pointer[tls.Certificate]
}

// Load reads the certificate and key cfg names, and fails if they do not
// form a pair.
func Load(cfg Config, log *slog.Logger) (*Cert, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if !cfg.Enabled() {
		return nil, errors.New("tls: no certificate configured")
	}
	c := &Cert{cfg: cfg, log: log}
	if err := c.Reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// Reload reads the files again and, if they form a pair, serves the new
// certificate to new connections. On error the certificate in use is kept.
func (c *Cert) Reload() error {
	pair, err := tls.LoadX509KeyPair(c.cfg.CertFile, c.cfg.KeyFile)
	if err != nil {
		return fmt.Errorf("tls: load certificate %s and key %s: %w", c.cfg.CertFile, c.cfg.KeyFile, err)
	}
	// LoadX509KeyPair has parsed the leaf (Go 1.23 and later).
	if pair.Leaf == nil {
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return fmt.Errorf("tls: parse certificate %s: %w", c.cfg.CertFile, err)
		}
	}
	c.cur.Store(&pair)
	return nil
}

// Leaf returns the certificate served to new connections.
func (c *Cert) Leaf() *x509.Certificate { return c.cur.Load().Leaf }

// TLSConfig returns the server configuration: TLS 1.2 or later, the
// current certificate on every handshake.
func (c *Cert) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return c.cur.Load(), nil
		},
	}
}

// Listener returns ln serving TLS with the current certificate. Handshakes
// happen on each connection's first read or write, in the server's
// goroutine for that connection, not in Accept.
func (c *Cert) Listener(ln net.Listener) net.Listener { return tls.NewListener(ln, c.TLSConfig()) }

// Refresh reloads the certificate and logs the outcome: on failure, the
// cause, and the certificate in use is kept.
func (c *Cert) Refresh() {
	if err := c.Reload(); err != nil {
		c.log.Error("tls: certificate reload failed, keeping the certificate in use",
			"err", err, "serial", c.Leaf().SerialNumber.String(), "not_after", c.Leaf().NotAfter.Format(time.RFC3339))
		return
	}
	c.log.Info("tls: certificate reloaded", "file", c.cfg.CertFile,
		"serial", c.Leaf().SerialNumber.String(), "not_after", c.Leaf().NotAfter.Format(time.RFC3339))
}
