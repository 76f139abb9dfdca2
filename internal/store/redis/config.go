package redis

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Config configures a [Store]. Start from [DefaultConfig] (or [ParseURI],
// which does); a field's zero value means what it says (zero retries), not
// "the default", and Validate refuses the zero values that mean nothing.
type Config struct {
	// Addr is the server's host:port; with Clustered, any node of the
	// cluster, from which the others are discovered. Required.
	Addr string

	// Username and Password authenticate the connection (AUTH); an empty
	// Username with a Password is the default user. Default: empty (no
	// authentication).
	Username string
	Password string

	// DB is the database number selected after connecting. Redis Cluster
	// has only database 0. Default: 0.
	DB int

	// TLS connects over TLS, verifying the server's certificate against the
	// system's roots and its name against Addr's host (rediss:// and
	// valkeys:// URIs). Default: false.
	TLS bool

	// Clustered talks to a Redis Cluster (or cluster-mode Valkey):
	// commands are routed to the node owning each key's slot, following
	// MOVED and ASK redirections. Default: false.
	Clustered bool

	// KeyPrefix starts every key the store uses, so that several
	// environments (or tests) can share one server. It must not contain
	// { or }, which would change the keys' hash slots. Default: "cairn:".
	KeyPrefix string

	// PoolSize is the most connections open to one server node at once,
	// each carrying one request (one pipeline) at a time; a call that finds
	// them all busy waits for one, up to the read timeout plus a second. A
	// single server has as many again for reads (readconn.go).
	// Environment: CAIRN_REDIS_POOL_SIZE. Default: 10 per CPU (10 ×
	// GOMAXPROCS).
	PoolSize int

	// DialTimeout bounds establishing one connection, TLS handshake
	// included. Environment: CAIRN_REDIS_DIAL_TIMEOUT. Default: 1s.
	DialTimeout time.Duration

	// ReadTimeout bounds waiting for a reply (the replies of a whole
	// pipeline). A shorter deadline in a call's context wins. Environment:
	// CAIRN_REDIS_READ_TIMEOUT. Default: 1s.
	ReadTimeout time.Duration

	// WriteTimeout bounds sending a command (a whole pipeline).
	// Environment: CAIRN_REDIS_WRITE_TIMEOUT. Default: 1s.
	WriteTimeout time.Duration

	// MaxRetries is how many times a round trip failing with a network
	// error, a timeout, or a server that is loading, read-only or down is
	// retried, with jittered exponential backoff from 8ms to 512ms, before
	// the error is returned. Every request the store sends is safe to
	// repeat. Environment: CAIRN_REDIS_MAX_RETRIES. Default: 2.
	MaxRetries int
}

// Defaults of the Config fields (see each field).
const (
	DefaultKeyPrefix    = "cairn:"
	DefaultDialTimeout  = time.Second
	DefaultReadTimeout  = time.Second
	DefaultWriteTimeout = time.Second
	DefaultMaxRetries   = 2
	// DefaultPoolSizePerCPU times GOMAXPROCS is the default PoolSize.
	DefaultPoolSizePerCPU = 10
	// DefaultPort is the port of a URI that names none.
	DefaultPort = "6379"
)

// Bounds checked by Validate.
const (
	maxPoolSize     = 10000
	maxTimeout      = time.Minute
	maxMaxRetries   = 100
	maxKeyPrefixLen = 256
)

// DefaultConfig returns a Config with every default filled in and no
// address.
func DefaultConfig() Config {
	return Config{
		KeyPrefix:    DefaultKeyPrefix,
		PoolSize:     DefaultPoolSizePerCPU * runtime.GOMAXPROCS(0),
		DialTimeout:  DefaultDialTimeout,
		ReadTimeout:  DefaultReadTimeout,
		WriteTimeout: DefaultWriteTimeout,
		MaxRetries:   DefaultMaxRetries,
	}
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	if c.Addr == "" {
		errs = append(errs, errors.New("redis: address is required"))
	} else if err := checkAddr(c.Addr); err != nil {
		errs = append(errs, fmt.Errorf("redis: address %q: %w", c.Addr, err))
	}
	if c.DB < 0 {
		errs = append(errs, fmt.Errorf("redis: database %d: want 0 or more", c.DB))
	}
	if c.Clustered && c.DB != 0 {
		errs = append(errs, fmt.Errorf("redis: database %d: a cluster has only database 0", c.DB))
	}
	if c.Password == "" && c.Username != "" {
		errs = append(errs, fmt.Errorf("redis: user %q has no password", c.Username))
	}
	if strings.ContainsAny(c.KeyPrefix, "{}") || len(c.KeyPrefix) > maxKeyPrefixLen {
		errs = append(errs, fmt.Errorf("redis: key prefix %q: want at most %d bytes without { or }", c.KeyPrefix, maxKeyPrefixLen))
	}
	if c.PoolSize < 1 || c.PoolSize > maxPoolSize {
		errs = append(errs, fmt.Errorf("redis: pool size %d: want 1 to %d", c.PoolSize, maxPoolSize))
	}
	for _, t := range []struct {
		name string
		d    time.Duration
	}{{"dial", c.DialTimeout}, {"read", c.ReadTimeout}, {"write", c.WriteTimeout}} {
		if t.d <= 0 || t.d > maxTimeout {
			errs = append(errs, fmt.Errorf("redis: %s timeout %v: want more than 0 and at most %v", t.name, t.d, maxTimeout))
		}
	}
	if c.MaxRetries < 0 || c.MaxRetries > maxMaxRetries {
		errs = append(errs, fmt.Errorf("redis: max retries %d: want 0 to %d", c.MaxRetries, maxMaxRetries))
	}
	return errors.Join(errs...)
}

// checkAddr reports whether addr is a usable host:port.
func checkAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New("want host:port")
	}
	if host == "" {
		return errors.New("no host")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q: want a number from 1 to 65535", port)
	}
	return nil
}

// URI schemes of the store: redis and valkey are plain TCP, rediss and
// valkeys TLS. Valkey speaks the Redis protocol; the names are synonyms.
var (
	plainSchemes = []string{"redis", "valkey"}
	tlsSchemes   = []string{"rediss", "valkeys"}
)

// IsURIScheme reports whether scheme names this store.
func IsURIScheme(scheme string) bool {
	return slices.Contains(plainSchemes, scheme) || slices.Contains(tlsSchemes, scheme)
}

// ParseURI parses a store URI of the form
//
//	redis://[[user]:password@]host[:port][/db][?clustered=true][&prefix=P]
//
// (also rediss://, for TLS, and the synonyms valkey:// and valkeys://) into
// DefaultConfig with the URI's parts set. The port defaults to 6379 and the
// database to 0. clustered=true talks to a Redis Cluster, whose database
// must be 0; prefix replaces the key prefix "cairn:". Errors name the part
// of the URI that is wrong, with the password masked. The result is
// validated.
func ParseURI(uri string) (Config, error) {
	shown := redactURI(uri)
	bad := func(format string, args ...any) (Config, error) {
		return Config{}, fmt.Errorf("redis: store URI %q: %s", shown, fmt.Sprintf(format, args...))
	}
	u, err := url.Parse(uri)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // its message repeats the unredacted URI
		}
		return bad("%v", err)
	}
	c := DefaultConfig()
	switch {
	case slices.Contains(plainSchemes, u.Scheme):
	case slices.Contains(tlsSchemes, u.Scheme):
		c.TLS = true
	default:
		return bad("scheme %q, want redis, rediss, valkey or valkeys", u.Scheme)
	}
	if u.Opaque != "" {
		return bad("want %s://host:port/db", u.Scheme)
	}
	if u.Fragment != "" {
		return bad("unexpected fragment #%s", u.Fragment)
	}

	host := u.Hostname()
	if host == "" {
		return bad("no host; want %s://host:port/db", u.Scheme)
	}
	port := u.Port()
	if port == "" {
		port = DefaultPort
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return bad("port %q: want a number from 1 to 65535", port)
	}
	c.Addr = net.JoinHostPort(host, port)

	if u.User != nil {
		c.Username = u.User.Username()
		c.Password, _ = u.User.Password()
		if c.Password == "" {
			return bad("user %q has no password; want user:password@ or :password@", c.Username)
		}
	}

	switch db := strings.TrimPrefix(u.Path, "/"); {
	case db == "":
	case strings.Contains(db, "/"):
		return bad("path %q: want /db, a database number", u.Path)
	default:
		n, err := strconv.Atoi(db)
		if err != nil || n < 0 {
			return bad("database %q: want a number, 0 or more", db)
		}
		c.DB = n
	}

	query, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return bad("query: %v", err)
	}
	var unknown []string
	for name, vals := range query {
		if len(vals) != 1 {
			return bad("parameter %q given %d times", name, len(vals))
		}
		switch v := vals[0]; name {
		case "clustered":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return bad("clustered=%q: want true or false", v)
			}
			c.Clustered = b
		case "prefix":
			c.KeyPrefix = v
		default:
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return bad("unknown parameter(s) %s (known: clustered, prefix)", strings.Join(unknown, ", "))
	}
	if c.Clustered && c.DB != 0 {
		return bad("database %d: a cluster (clustered=true) has only database 0", c.DB)
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("redis: store URI %q: %w", shown, err)
	}
	return c, nil
}

// userinfoRE matches the user information of a URI, up to the last @ before
// the path.
var userinfoRE = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9+.-]*://)([^/?#]*)@`)

// redactURI masks the password in uri, even when uri does not parse.
func redactURI(uri string) string {
	m := userinfoRE.FindStringSubmatchIndex(uri)
	if m == nil {
		return uri
	}
	userinfo := uri[m[4]:m[5]]
	user, _, hasPassword := strings.Cut(userinfo, ":")
	if !hasPassword {
		return uri
	}
	return uri[:m[4]] + user + ":xxxxx" + uri[m[5]:]
}

// address describes where the store connects, for messages and logs.
func (c Config) address() string {
	s := c.Addr
	if c.Clustered {
		s = "cluster via " + s
	}
	if c.DB != 0 {
		s += fmt.Sprintf(" db %d", c.DB)
	}
	return s
}
