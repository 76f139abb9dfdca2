package auth

import (
	"errors"
	"fmt"
)

// Modes of Config.Mode.
const (
	// ModeKeys: requests need an API key from the keys file.
	ModeKeys = "keys"
	// ModeNone: no authentication, set explicitly.
	ModeNone = "none"
)

// Config is how the HTTP API authenticates requests.
type Config struct {
	// KeysFile is the keys file; empty, there are no keys
	// (CAIRN_API_KEYS_FILE).
	KeysFile string
	// Mode is ModeKeys or ModeNone. Default ModeKeys (CAIRN_API_AUTH).
	Mode string
	// MetricsRequireAuth makes /metrics need the admin scope. Default
	// false (CAIRN_METRICS_REQUIRE_AUTH).
	MetricsRequireAuth bool
}

// EnsureDefaults fills zero fields with their defaults.
func (c *Config) EnsureDefaults() {
	if c.Mode == "" {
		c.Mode = ModeKeys
	}
}

// Validate reports every problem with c, the keys file's included (it is
// read, and not kept). A missing keys file in ModeKeys is left to the
// caller, which knows whether its role needs one.
func (c *Config) Validate() error {
	var errs []error
	switch c.Mode {
	case ModeKeys:
	case ModeNone:
		if c.KeysFile != "" {
			errs = append(errs, fmt.Errorf("CAIRN_API_AUTH=none with CAIRN_API_KEYS_FILE=%s: want one or the other", c.KeysFile))
		}
	default:
		errs = append(errs, fmt.Errorf("CAIRN_API_AUTH=%q: want %s or %s", c.Mode, ModeKeys, ModeNone))
	}
	if c.KeysFile != "" {
		if _, err := ReadFile(c.KeysFile); err != nil {
			errs = append(errs, fmt.Errorf("CAIRN_API_KEYS_FILE: %w", err))
		}
	}
	if c.MetricsRequireAuth && c.KeysFile == "" {
		errs = append(errs, errors.New("CAIRN_METRICS_REQUIRE_AUTH=true needs API keys (CAIRN_API_KEYS_FILE)"))
	}
	return errors.Join(errs...)
}
