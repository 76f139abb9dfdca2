package queue

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/aws"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// SASL mechanisms of Config.SASLMechanism.
const (
	MechanismScramSHA512 = "SCRAM-SHA-512"
	MechanismScramSHA256 = "SCRAM-SHA-256"
	MechanismPlain       = "PLAIN"
	MechanismMSKIAM      = "AWS_MSK_IAM"
)

// files is what ReadFiles read from the files a Config names.
type files struct {
	password string // from SASLPasswordFile; "" when unset
	roots    *x509.CertPool
	certs    []tls.Certificate
}

// ReadFiles reads and checks the files c names: the SASL password file, the
// CA bundle, and the client certificate and key. A bad file is an error
// naming its knob and path, so that it stops the process at start-up rather
// than at the first connection. Call it after EnsureDefaults and before
// Validate (node.Load does); ClientOpts uses what it read.
func (c *Config) ReadFiles() error {
	f := &files{}
	var errs []error
	if c.SASLPasswordFile != "" {
		b, err := os.ReadFile(c.SASLPasswordFile)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("queue: CAIRN_KAFKA_SASL_PASSWORD_FILE: %w", err))
		default:
			f.password = strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
			if f.password == "" {
				errs = append(errs, fmt.Errorf("queue: CAIRN_KAFKA_SASL_PASSWORD_FILE %s is empty", c.SASLPasswordFile))
			}
		}
	}
	if c.TLSCAFile != "" {
		b, err := os.ReadFile(c.TLSCAFile)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("queue: CAIRN_KAFKA_TLS_CA_FILE: %w", err))
		default:
			f.roots = x509.NewCertPool()
			if !f.roots.AppendCertsFromPEM(b) {
				errs = append(errs, fmt.Errorf("queue: CAIRN_KAFKA_TLS_CA_FILE %s holds no PEM certificate", c.TLSCAFile))
			}
		}
	}
	if c.TLSCertFile != "" && c.TLSKeyFile != "" {
		cert, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("queue: CAIRN_KAFKA_TLS_CERT_FILE %s and CAIRN_KAFKA_TLS_KEY_FILE %s: %w", c.TLSCertFile, c.TLSKeyFile, err))
		} else {
			f.certs = []tls.Certificate{cert}
		}
	}
	// Keep what was read even on error: Validate then reports only what
	// is wrong with the settings, not that the files were not read.
	c.files = f
	return errors.Join(errs...)
}

// validateSecurity reports every problem with the TLS and SASL settings.
func (c *Config) validateSecurity() []error {
	var errs []error
	if (c.TLSCAFile != "" || c.TLSCertFile != "" || c.SASLPasswordFile != "") && c.files == nil {
		errs = append(errs, errors.New("queue: TLS or password files named but not read (ReadFiles)"))
	}
	if !c.TLS {
		for knob, v := range map[string]string{
			"CAIRN_KAFKA_TLS_CA_FILE":   c.TLSCAFile,
			"CAIRN_KAFKA_TLS_CERT_FILE": c.TLSCertFile,
			"CAIRN_KAFKA_TLS_KEY_FILE":  c.TLSKeyFile,
		} {
			if v != "" {
				errs = append(errs, fmt.Errorf("queue: %s is set but CAIRN_KAFKA_TLS is false", knob))
			}
		}
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		errs = append(errs, errors.New("queue: CAIRN_KAFKA_TLS_CERT_FILE and CAIRN_KAFKA_TLS_KEY_FILE go together: set both or neither"))
	}
	if c.SASLPassword != "" && c.SASLPasswordFile != "" {
		errs = append(errs, errors.New("queue: CAIRN_KAFKA_SASL_PASSWORD and CAIRN_KAFKA_SASL_PASSWORD_FILE are both set: choose one"))
	}
	switch strings.ToUpper(c.SASLMechanism) {
	case MechanismScramSHA512, MechanismScramSHA256:
	case MechanismPlain:
		if c.SASLUser != "" && !c.TLS && !c.SASLPlainWithoutTLS {
			errs = append(errs, errors.New("queue: SASL PLAIN without TLS sends the password in the clear: set CAIRN_KAFKA_TLS=true, or CAIRN_KAFKA_SASL_PLAIN_WITHOUT_TLS=true for development"))
		}
	case MechanismMSKIAM:
		if c.SASLUser != "" || c.SASLPassword != "" || c.SASLPasswordFile != "" {
			errs = append(errs, errors.New("queue: SASL AWS_MSK_IAM takes its credentials from the AWS SDK: unset CAIRN_KAFKA_SASL_USERNAME and the password"))
		}
		if !c.TLS {
			errs = append(errs, errors.New("queue: SASL AWS_MSK_IAM needs CAIRN_KAFKA_TLS=true (MSK's IAM listener is TLS only)"))
		}
		return errs
	default:
		errs = append(errs, fmt.Errorf("queue: SASL mechanism %q: want SCRAM-SHA-512, SCRAM-SHA-256, PLAIN or AWS_MSK_IAM", c.SASLMechanism))
	}
	if c.SASLUser != "" && c.password() == "" && c.SASLPasswordFile == "" {
		errs = append(errs, errors.New("queue: SASL user set without a password (CAIRN_KAFKA_SASL_PASSWORD or CAIRN_KAFKA_SASL_PASSWORD_FILE)"))
	}
	return errs
}

// password is SASLPassword, or what ReadFiles read from SASLPasswordFile.
func (c *Config) password() string {
	if c.files != nil && c.files.password != "" {
		return c.files.password
	}
	return c.SASLPassword
}

// tlsConfig is the client TLS configuration: TLS 1.2 or later, the CA
// bundle or the system roots, and the client certificate if any.
func (c *Config) tlsConfig() *tls.Config {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.files != nil {
		tc.RootCAs = c.files.roots // nil: the system roots
		tc.Certificates = c.files.certs
	}
	return tc
}

// mechanism is the SASL mechanism of c, or nil for none.
func (c *Config) mechanism() sasl.Mechanism {
	switch strings.ToUpper(c.SASLMechanism) {
	case MechanismMSKIAM:
		return mskIAM()
	}
	if c.SASLUser == "" {
		return nil
	}
	switch strings.ToUpper(c.SASLMechanism) {
	case MechanismScramSHA256:
		return scram.Auth{User: c.SASLUser, Pass: c.password()}.AsSha256Mechanism()
	case MechanismPlain:
		return plain.Auth{User: c.SASLUser, Pass: c.password()}.AsMechanism()
	default:
		return scram.Auth{User: c.SASLUser, Pass: c.password()}.AsSha512Mechanism()
	}
}

// mskIAM is the AWS_MSK_IAM mechanism with credentials from the AWS SDK's
// default chain (environment, shared files, web identity, container or
// instance role), loaded at the first connection and cached and refreshed
// by the SDK; each connection signs with the current credentials.
func mskIAM() sasl.Mechanism {
	var (
		mu    sync.Mutex
		creds awssdk.CredentialsProvider
	)
	return aws.ManagedStreamingIAM(func(ctx context.Context) (aws.Auth, error) {
		mu.Lock()
		if creds == nil {
			cfg, err := awsconfig.LoadDefaultConfig(ctx)
			if err != nil {
				mu.Unlock()
				return aws.Auth{}, fmt.Errorf("queue: AWS_MSK_IAM: load AWS configuration: %w", err)
			}
			creds = cfg.Credentials
		}
		p := creds
		mu.Unlock()
		if p == nil {
			return aws.Auth{}, errors.New("queue: AWS_MSK_IAM: the AWS SDK found no credentials")
		}
		v, err := p.Retrieve(ctx)
		if err != nil {
			return aws.Auth{}, fmt.Errorf("queue: AWS_MSK_IAM: AWS credentials: %w", err)
		}
		return aws.Auth{AccessKey: v.AccessKeyID, SecretKey: v.SecretAccessKey, SessionToken: v.SessionToken}, nil
	})
}
