package queue

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ProbeTimeout bounds Probe.
const ProbeTimeout = 10 * time.Second

// probeHandshakeTimeout bounds the TLS handshake of Probe's connection. A
// plaintext Kafka listener reads the ClientHello's first four bytes as the
// size of a request (about 369 MB) and waits for the rest without
// answering, so a handshake with it ends only at a deadline. A TLS broker
// answers a ClientHello within a round trip, a few milliseconds, or one
// slow signature on a loaded machine: three seconds leave ample margin
// and let Probe name the cause well within ProbeTimeout. A handshake that
// times out against a real TLS listener is only retried.
const probeHandshakeTimeout = 3 * time.Second

// errTLSToPlaintext is the dial error of Probe's connection when its TLS
// handshake got no answer from an address that answers Kafka requests in
// plaintext.
var errTLSToPlaintext = errors.New("the TLS handshake got no answer, and the same address answers Kafka requests in plaintext")

// Cause is why a client could not talk to the brokers.
type Cause int

// Causes of a ConnectError.
const (
	// CauseUnknown is any other error.
	CauseUnknown Cause = iota
	// CauseUnreachable: no broker accepted a connection or answered.
	CauseUnreachable
	// CauseCredentials: the brokers refused the SASL credentials: a wrong
	// user or password, or a user that exists only for another SCRAM
	// mechanism (brokers do not say which).
	CauseCredentials
	// CauseMechanism: the brokers do not enable the SASL mechanism.
	CauseMechanism
	// CauseUntrustedCertificate: the brokers' certificate does not verify
	// against the system roots or CAIRN_KAFKA_TLS_CA_FILE, or does not name
	// the broker's host.
	CauseUntrustedCertificate
	// CauseTLSToPlaintext: the client speaks TLS to a plaintext listener.
	CauseTLSToPlaintext
	// CausePlaintextToTLS: the brokers closed the connection at the first
	// request, as a TLS listener does to a plaintext client (or a SASL
	// listener to a client without SASL).
	CausePlaintextToTLS
	// CauseTLSRejected: the TLS handshake failed otherwise, for example
	// the brokers require a client certificate.
	CauseTLSRejected
)

var causeText = [...]string{
	CauseUnknown:              "unknown",
	CauseUnreachable:          "brokers unreachable",
	CauseCredentials:          "SASL authentication failed: wrong user, password or SCRAM mechanism",
	CauseMechanism:            "SASL mechanism not enabled on the brokers",
	CauseUntrustedCertificate: "brokers' TLS certificate not trusted: set CAIRN_KAFKA_TLS_CA_FILE to the CA that signs it",
	CauseTLSToPlaintext:       "TLS to a plaintext listener: the brokers at this address do not speak TLS (wrong port, or CAIRN_KAFKA_TLS should be false)",
	CausePlaintextToTLS:       "brokers closed the connection at once: the listener probably requires TLS (CAIRN_KAFKA_TLS=true) or SASL",
	CauseTLSRejected:          "TLS handshake refused by the brokers: do they require a client certificate (CAIRN_KAFKA_TLS_CERT_FILE) from another CA?",
}

// String describes c to an operator.
func (c Cause) String() string {
	if c < 0 || int(c) >= len(causeText) {
		return causeText[CauseUnknown]
	}
	return causeText[c]
}

// ConnectError is a failure to reach or authenticate to the brokers, with
// its classified Cause.
type ConnectError struct {
	Cause   Cause
	Brokers []string
	// Err is the error the client saw.
	Err error
}

func (e *ConnectError) Error() string {
	if len(e.Brokers) == 0 {
		return fmt.Sprintf("kafka: %v: %v", e.Cause, e.Err)
	}
	return fmt.Sprintf("kafka %v: %v: %v", e.Brokers, e.Cause, e.Err)
}

func (e *ConnectError) Unwrap() error { return e.Err }

// Classify returns the Cause of err, an error of a Kafka client.
func Classify(err error) Cause {
	var (
		unknownAuthority x509.UnknownAuthorityError
		hostname         x509.HostnameError
		invalid          x509.CertificateInvalidError
		verify           *tls.CertificateVerificationError
		recordHeader     tls.RecordHeaderError
		alert            tls.AlertError
		firstEOF         *kgo.ErrFirstReadEOF
		opErr            *net.OpError
	)
	switch {
	case err == nil:
		return CauseUnknown
	case errors.Is(err, errTLSToPlaintext):
		return CauseTLSToPlaintext
	case errors.Is(err, kerr.SaslAuthenticationFailed):
		return CauseCredentials
	case errors.Is(err, kerr.UnsupportedSaslMechanism):
		return CauseMechanism
	case errors.As(err, &unknownAuthority), errors.As(err, &hostname), errors.As(err, &invalid), errors.As(err, &verify):
		return CauseUntrustedCertificate
	case errors.As(err, &recordHeader):
		// The reply to our ClientHello is not a TLS record.
		return CauseTLSToPlaintext
	case errors.As(err, &alert), errors.As(err, &opErr) && opErr.Op == "remote error":
		// crypto/tls reports an alert from the peer as a *net.OpError
		// "remote error" (tls.AlertError only in QUIC).
		return CauseTLSRejected
	case errors.As(err, &firstEOF):
		// Its kind is unexported; the zero kind, whose message is compared
		// here, is a close right after the dial (the TLS handshake): TLS
		// against plaintext. The others are closes at the first request.
		if firstEOF.Error() == (&kgo.ErrFirstReadEOF{}).Error() {
			return CauseTLSToPlaintext
		}
		return CausePlaintextToTLS
	case errors.As(err, &opErr) && opErr.Op == "dial":
		return CauseUnreachable
	}
	return CauseUnknown
}

// Probe opens one connection to the brokers of cfg, with its TLS and SASL,
// and makes one metadata request, returning within ProbeTimeout (or when
// ctx ends). A failure is a *ConnectError naming its Cause: wrong
// credentials, a mechanism the brokers do not enable, an untrusted
// certificate, TLS against a plaintext listener, unreachable brokers.
// Processes call it at start-up so that such a mistake ends them at once
// with one clear message instead of a retry loop.
func Probe(ctx context.Context, cfg Config) error {
	if err := probe(ctx, cfg, ProbeTimeout); err != nil {
		return err
	}
	return nil
}

// probe is Probe within timeout.
func probe(ctx context.Context, cfg Config, timeout time.Duration) *ConnectError {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// A TLS handshake with a plaintext listener may hang until the dial
	// timeout (the listener waits for the rest of a "request" as long as
	// the ClientHello's first bytes read as a length). Keep time to ask the
	// listener in plaintext.
	var check time.Duration
	if cfg.TLS {
		check = min(2*time.Second, timeout/4)
	}
	reqCtx, stop := context.WithTimeout(ctx, timeout-check)
	defer stop()
	last := lastBrokerError{stop: stop}
	dialTimeout := min(4*time.Second, timeout/2)
	opts := append(cfg.ClientOpts(), kgo.WithHooks(&last), kgo.DialTimeout(dialTimeout))
	if cfg.TLS {
		// The same TLS settings, with a handshake deadline of its own:
		// DialTLSConfig(nil) undoes ClientOpts' DialTLSConfig, which kgo
		// refuses alongside a Dialer.
		opts = append(opts, kgo.DialTLSConfig(nil),
			kgo.Dialer(handshakeDialer(cfg.tlsConfig(), dialTimeout, min(probeHandshakeTimeout, timeout/3))))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return &ConnectError{Brokers: cfg.Brokers, Err: err}
	}
	// Close cannot hang: this client neither produces nor consumes.
	defer cl.Close()
	// kgo's own metadata path may wait out a connection's read timeout
	// (10s) whatever the context: wait for it only as long as reqCtx.
	answer := make(chan error, 1)
	go func() {
		_, err := kmsg.NewPtrMetadataRequest().RequestWith(reqCtx, cl)
		answer <- err
	}()
	select {
	case err = <-answer:
	case <-reqCtx.Done():
		err = reqCtx.Err()
	}
	if err == nil {
		return nil
	}
	ce := connectError(cfg.Brokers, err, &last)
	var ne net.Error
	if ce.Cause == CauseUnreachable && cfg.TLS && errors.As(ce.Err, &ne) && ne.Timeout() && plaintextListener(ctx, cfg.Brokers) {
		ce.Cause = CauseTLSToPlaintext
		ce.Err = fmt.Errorf("%w (%w)", errTLSToPlaintext, ce.Err)
	}
	if ce.Cause == CauseUnreachable && errors.Is(err, context.DeadlineExceeded) {
		ce.Err = fmt.Errorf("no answer within %v: %w", timeout, ce.Err)
	}
	return ce
}

// handshakeDialer dials with TLS configuration tc like kgo's own TLS
// dialer, but ends the handshake after handshakeTimeout. A handshake that
// times out against an address answering Kafka requests in plaintext fails
// with errTLSToPlaintext, a fatal cause that ends the probe at once.
func handshakeDialer(tc *tls.Config, dialTimeout, handshakeTimeout time.Duration) func(ctx context.Context, network, host string) (net.Conn, error) {
	d := &net.Dialer{Timeout: dialTimeout}
	return func(ctx context.Context, network, host string) (net.Conn, error) {
		c := tc.Clone()
		if c.ServerName == "" {
			server, _, err := net.SplitHostPort(host)
			if err != nil {
				return nil, fmt.Errorf("split host:port %q for dialing: %w", host, err)
			}
			c.ServerName = server
		}
		raw, err := d.DialContext(ctx, network, host)
		if err != nil {
			return nil, err
		}
		hctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
		defer cancel()
		conn := tls.Client(raw, c)
		err = conn.HandshakeContext(hctx)
		if err == nil {
			return conn, nil
		}
		raw.Close()
		if ctx.Err() != nil || hctx.Err() == nil {
			return nil, err
		}
		cctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
		defer cancel()
		if plaintextListener(cctx, []string{host}) {
			return nil, fmt.Errorf("%w (no answer within %v)", errTLSToPlaintext, handshakeTimeout)
		}
		return nil, fmt.Errorf("TLS handshake: no answer within %v: %w", handshakeTimeout, err)
	}
}

// plaintextListener reports whether a broker of brokers answers a Kafka
// request in plaintext.
func plaintextListener(ctx context.Context, brokers []string) bool {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ClientID("cairn"))
	if err != nil {
		return false
	}
	defer cl.Close()
	_, err = kmsg.NewPtrApiVersionsRequest().RequestWith(ctx, cl)
	return err == nil
}

// connectError classifies err, the error of a request, with the help of
// the last broker error seen when err is only the end of its context.
func connectError(brokers []string, err error, last *lastBrokerError) *ConnectError {
	// A fatal cause seen by the hook ended the request: err is then only
	// the cancellation.
	lastCause, lastErr := last.get()
	if lastCause.fatal() {
		return &ConnectError{Cause: lastCause, Brokers: brokers, Err: lastErr}
	}
	if c := Classify(err); c != CauseUnknown {
		return &ConnectError{Cause: c, Brokers: brokers, Err: err}
	}
	c := CauseUnknown
	if errors.Is(err, context.DeadlineExceeded) {
		c = CauseUnreachable
	}
	if lastErr != nil {
		err = fmt.Errorf("%w (last error: %w)", err, lastErr)
	}
	return &ConnectError{Cause: c, Brokers: brokers, Err: err}
}

// BrokerWatch is a kgo hook (add it with kgo.WithHooks) keeping why the
// brokers last failed a long-lived client while kgo retries, such as a query
// server's producer: the cause to give in a 503 or a health check. A
// successful request clears it. Its zero value is ready to use.
type BrokerWatch struct {
	last lastBrokerError
}

var (
	_ kgo.HookBrokerConnect = (*BrokerWatch)(nil)
	_ kgo.HookBrokerE2E     = (*BrokerWatch)(nil)
)

// OnBrokerConnect implements kgo.HookBrokerConnect.
func (w *BrokerWatch) OnBrokerConnect(meta kgo.BrokerMetadata, d time.Duration, c net.Conn, err error) {
	w.last.OnBrokerConnect(meta, d, c, err)
}

// OnBrokerE2E implements kgo.HookBrokerE2E.
func (w *BrokerWatch) OnBrokerE2E(meta kgo.BrokerMetadata, key int16, e2e kgo.BrokerE2E) {
	w.last.OnBrokerE2E(meta, key, e2e)
}

// Err is the last failure since the last successful request, or nil.
func (w *BrokerWatch) Err() *ConnectError {
	cause, err := w.last.get()
	if err == nil {
		return nil
	}
	return &ConnectError{Cause: cause, Err: err}
}

// fatal reports whether retrying cannot cure c: only a change of
// configuration can.
func (c Cause) fatal() bool {
	return c != CauseUnknown && c != CauseUnreachable
}

// lastBrokerError is a kgo hook keeping the last error of a connection or
// request to a broker, and its cause: when a request ends at its deadline,
// the reason the brokers did not answer. On a fatal cause it calls stop (if
// set), ending the request in flight at once: kgo retries a connection
// closed during SASL as it would a network failure.
type lastBrokerError struct {
	stop func()

	mu struct {
		sync.Mutex
		err   error
		cause Cause
	}
}

var (
	_ kgo.HookBrokerConnect = (*lastBrokerError)(nil)
	_ kgo.HookBrokerE2E     = (*lastBrokerError)(nil)
)

// OnBrokerConnect implements kgo.HookBrokerConnect.
func (l *lastBrokerError) OnBrokerConnect(meta kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	l.set(meta, Classify(err), err)
}

// OnBrokerE2E implements kgo.HookBrokerE2E.
func (l *lastBrokerError) OnBrokerE2E(meta kgo.BrokerMetadata, key int16, e2e kgo.BrokerE2E) {
	err := e2e.Err()
	cause := Classify(err)
	if cause == CauseUnknown && key == int16(kmsg.SASLAuthenticate) && err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		// Kafka answers wrong credentials with SASL_AUTHENTICATION_FAILED
		// and closes the connection; some brokers only close it.
		cause = CauseCredentials
		err = fmt.Errorf("connection closed during SASL authentication: %w", err)
	}
	if err == nil {
		switch kmsg.Key(key) {
		case kmsg.ApiVersions, kmsg.SASLHandshake, kmsg.SASLAuthenticate:
			// Connection set-up precedes every authentication failure:
			// its success clears nothing.
		default:
			l.clear()
		}
		return
	}
	l.set(meta, cause, err)
}

func (l *lastBrokerError) clear() {
	l.mu.Lock()
	l.mu.err, l.mu.cause = nil, CauseUnknown
	l.mu.Unlock()
}

func (l *lastBrokerError) set(meta kgo.BrokerMetadata, cause Cause, err error) {
	if err == nil {
		return
	}
	l.mu.Lock()
	// Keep a fatal cause: what follows it is the request ending (dials
	// canceled by stop), not news about the brokers.
	if !l.mu.cause.fatal() || cause.fatal() {
		l.mu.err = fmt.Errorf("broker %s:%d: %w", meta.Host, meta.Port, err)
		l.mu.cause = cause
	}
	l.mu.Unlock()
	if cause.fatal() && l.stop != nil {
		l.stop()
	}
}

func (l *lastBrokerError) get() (Cause, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.mu.cause, l.mu.err
}
