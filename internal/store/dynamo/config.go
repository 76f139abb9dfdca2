package dynamo

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// Config configures a [Store]. Start from [DefaultConfig] (or [ParseURI],
// which does); a field's zero value means what it says (zero retries, no
// warmup), not "the default".
type Config struct {
	// Table is the table holding every namespace's entities and the
	// feature-name mapping. Required.
	Table string

	// Region is the table's AWS region. When empty, the AWS SDK's usual
	// resolution applies (AWS_REGION, then the shared config profile), and
	// Open fails if that finds none: cairn never guesses a region, since a
	// guessed one would read or create a table somewhere unintended.
	// Default: empty.
	Region string

	// Endpoint, when set, replaces the regional DynamoDB endpoint, as in
	// http://127.0.0.1:5055 for moto or DynamoDB Local. If the environment
	// then holds no AWS credentials (no access keys, web identity, container
	// credentials or profile), the static credentials "test"/"test" are used,
	// which local servers accept. Default: empty.
	Endpoint string

	// MaxRetries is how many times a request failing with a retryable error
	// (throttling, 5xx, timeouts) is retried, with capped, jittered,
	// exponential backoff, before the error is returned. It also bounds the
	// rounds of retrying keys that BatchGetItem left unprocessed without
	// progress. Environment: DYNAMODB_MAX_RETRIES. Default: 12.
	MaxRetries int

	// CreateTableIfNotExists makes Open create the table (on-demand
	// capacity, keys pk and sk) when it does not exist. Production tables
	// are better provisioned with the rest of the infrastructure.
	// Environment: DYNAMODB_CREATE_TABLES_IF_NOT_EXISTS. Default: false.
	CreateTableIfNotExists bool

	// WarmupFQNMapping makes Open load the whole feature-name mapping, so
	// the first reads and writes pay nothing for it. When false, it is
	// loaded on first use. Environment: DYNAMODB_WARMUP_FQN_MAPPING.
	// Default: true.
	WarmupFQNMapping bool
}

// DefaultMaxRetries is the default of Config.MaxRetries.
const DefaultMaxRetries = 12

// maxMaxRetries bounds Config.MaxRetries: with backoff capped at 20 seconds,
// more retries than this would hold a request for over half an hour.
const maxMaxRetries = 100

// DefaultConfig returns a Config with every default filled in and no table.
func DefaultConfig() Config {
	return Config{
		MaxRetries:       DefaultMaxRetries,
		WarmupFQNMapping: true,
	}
}

// tableNameRE is DynamoDB's rule for table names.
var tableNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{3,255}$`)

// regionRE accepts the shape of AWS region names (us-east-1, local).
var regionRE = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	switch {
	case c.Table == "":
		errs = append(errs, errors.New("dynamo: table is required"))
	case !tableNameRE.MatchString(c.Table):
		errs = append(errs, fmt.Errorf("dynamo: table %q: want 3 to 255 characters from A-Z a-z 0-9 _ . -", c.Table))
	}
	if c.Region != "" && !regionRE.MatchString(c.Region) {
		errs = append(errs, fmt.Errorf("dynamo: region %q: want a region name such as us-east-1", c.Region))
	}
	if c.Endpoint != "" {
		if err := checkEndpoint(c.Endpoint); err != nil {
			errs = append(errs, fmt.Errorf("dynamo: endpoint %q: %w", c.Endpoint, err))
		}
	}
	if c.MaxRetries < 0 || c.MaxRetries > maxMaxRetries {
		errs = append(errs, fmt.Errorf("dynamo: max retries %d: want 0 to %d", c.MaxRetries, maxMaxRetries))
	}
	return errors.Join(errs...)
}

func checkEndpoint(s string) error {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return errors.New("not a URL")
	case u.Scheme != "http" && u.Scheme != "https":
		return errors.New("want an http:// or https:// URL")
	case u.Host == "":
		return errors.New("no host")
	}
	return nil
}

// URIScheme is the scheme of a DynamoDB store URI.
const URIScheme = "dynamodb"

// ParseURI parses a store URI of the form
//
//	dynamodb:///table-name?region=us-east-1&endpoint=http://127.0.0.1:5055
//
// into DefaultConfig with Table, Region and Endpoint set. The table is
// required; region and endpoint are optional (see Config). Errors name the
// part of the URI that is wrong. The result is validated.
func ParseURI(uri string) (Config, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return Config{}, fmt.Errorf("dynamo: store URI %q: %w", uri, err)
	}
	if u.Scheme != URIScheme {
		return Config{}, fmt.Errorf("dynamo: store URI %q: scheme %q, want %s:///table-name", uri, u.Scheme, URIScheme)
	}
	if u.User != nil || u.Host != "" {
		return Config{}, fmt.Errorf("dynamo: store URI %q: unexpected host %q; the table goes in the path, as in %s:///%s",
			uri, u.Host, URIScheme, u.Host)
	}
	if u.Fragment != "" {
		return Config{}, fmt.Errorf("dynamo: store URI %q: unexpected fragment #%s", uri, u.Fragment)
	}
	c := DefaultConfig()
	c.Table = strings.TrimPrefix(u.Path, "/")
	if c.Table == "" {
		return Config{}, fmt.Errorf("dynamo: store URI %q: no table name; want %s:///table-name", uri, URIScheme)
	}
	if strings.Contains(c.Table, "/") {
		return Config{}, fmt.Errorf("dynamo: store URI %q: table %q contains a slash", uri, c.Table)
	}
	query, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return Config{}, fmt.Errorf("dynamo: store URI %q: query: %w", uri, err)
	}
	var unknown []string
	for name, vals := range query {
		if len(vals) != 1 {
			return Config{}, fmt.Errorf("dynamo: store URI %q: parameter %q given %d times", uri, name, len(vals))
		}
		switch name {
		case "region":
			c.Region = vals[0]
		case "endpoint":
			c.Endpoint = vals[0]
		default:
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return Config{}, fmt.Errorf("dynamo: store URI %q: unknown parameter(s) %s (known: region, endpoint)",
			uri, strings.Join(unknown, ", "))
	}
	if err := c.Validate(); err != nil {
		return Config{}, err // each problem names the part of the URI it concerns
	}
	return c, nil
}
