package redis

import (
	"strings"
	"testing"
	"time"
)

func TestParseURI(t *testing.T) {
	def := DefaultConfig()
	with := func(f func(*Config)) Config {
		c := def
		f(&c)
		return c
	}
	tests := []struct {
		uri  string
		want Config
		err  string // a part of the error, when one is expected
	}{
		{uri: "redis://localhost", want: with(func(c *Config) { c.Addr = "localhost:6379" })},
		{uri: "redis://cache.internal:6380/2", want: with(func(c *Config) { c.Addr = "cache.internal:6380"; c.DB = 2 })},
		{uri: "redis://h:1/", want: with(func(c *Config) { c.Addr = "h:1" })},
		{uri: "valkey://h", want: with(func(c *Config) { c.Addr = "h:6379" })},
		{uri: "rediss://h:6380", want: with(func(c *Config) { c.Addr = "h:6380"; c.TLS = true })},
		{uri: "valkeys://h", want: with(func(c *Config) { c.Addr = "h:6379"; c.TLS = true })},
		{uri: "redis://[::1]:7000/1", want: with(func(c *Config) { c.Addr = "[::1]:7000"; c.DB = 1 })},
		{uri: "redis://:s3cret@h", want: with(func(c *Config) { c.Addr = "h:6379"; c.Password = "s3cret" })},
		{uri: "redis://app:p%40ss@h:1/3", want: with(func(c *Config) { c.Addr = "h:1"; c.Username = "app"; c.Password = "p@ss"; c.DB = 3 })},
		{uri: "redis://h?clustered=true", want: with(func(c *Config) { c.Addr = "h:6379"; c.Clustered = true })},
		{uri: "rediss://h/0?clustered=1&prefix=prod:", want: with(func(c *Config) {
			c.Addr = "h:6379"
			c.TLS = true
			c.Clustered = true
			c.KeyPrefix = "prod:"
		})},
		{uri: "redis://h?prefix=", want: with(func(c *Config) { c.Addr = "h:6379"; c.KeyPrefix = "" })},

		{uri: "http://h", err: `scheme "http"`},
		{uri: "redis://", err: "no host"},
		{uri: "redis:///0", err: "no host"},
		{uri: "redis:h", err: "want redis://host:port/db"},
		{uri: "redis://h:0", err: `port "0"`},
		{uri: "redis://h:99999", err: `port "99999"`},
		{uri: "redis://h:abc", err: "port"},
		{uri: "redis://h/x", err: `database "x"`},
		{uri: "redis://h/-1", err: `database "-1"`},
		{uri: "redis://h/1/2", err: `path "/1/2"`},
		{uri: "redis://h/1?clustered=true", err: "database 1: a cluster"},
		{uri: "redis://h?clustered=yes", err: `clustered="yes"`},
		{uri: "redis://h?clustered=true&clustered=false", err: `"clustered" given 2 times`},
		{uri: "redis://h?pool=3&db=1", err: "unknown parameter(s) db, pool"},
		{uri: "redis://h#frag", err: "fragment"},
		{uri: "redis://user@h", err: `user "user" has no password`},
		{uri: "redis://h?prefix=a{b}", err: "key prefix"},
	}
	for _, tc := range tests {
		got, err := ParseURI(tc.uri)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseURI(%q) = %v, want an error containing %q", tc.uri, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseURI(%q): %v", tc.uri, err)
			continue
		}
		if got != tc.want {
			t.Errorf("ParseURI(%q) =\n  %+v\nwant\n  %+v", tc.uri, got, tc.want)
		}
	}
}

// Errors never show the password.
func TestParseURIRedactsPassword(t *testing.T) {
	for _, uri := range []string{
		"redis://app:hunter2@h:abc/0",
		"redis://:hunter2@h/x",
		"redis://app:hunter2@h/0?clustered=maybe",
		"rediss://app:hunter2@h:1/0?prefix={",
	} {
		_, err := ParseURI(uri)
		if err == nil {
			t.Errorf("ParseURI(%q): no error", uri)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("ParseURI(%q) error shows the password: %v", uri, err)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	err := Config{DB: -1, Username: "u", KeyPrefix: "{", ReadTimeout: 2 * time.Minute, MaxRetries: -1}.Validate()
	if err == nil {
		t.Fatal("want an error")
	}
	for _, want := range []string{"address is required", "database -1", `user "u" has no password`, "key prefix",
		"pool size 0", "dial timeout 0s", "read timeout 2m0s", "write timeout 0s", "max retries -1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	c := DefaultConfig()
	c.Addr = "h:6379"
	if err := c.Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
	c.Clustered, c.DB = true, 1
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "only database 0") {
		t.Errorf("clustered with db 1: %v", err)
	}
	c = DefaultConfig()
	c.Addr = "nohost"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "host:port") {
		t.Errorf("address without port: %v", err)
	}
}

func TestGenerations(t *testing.T) {
	tests := []struct {
		a, b  string
		newer bool
	}{
		{"b", "a", true}, {"a", "b", false}, {"a", "a", false},
		{"10", "z", true}, {"a", "", true}, {"", "a", false},
		{"a", "A!", true}, {"A!", "a", false},
	}
	for _, tc := range tests {
		if got := newerGen(tc.a, tc.b); got != tc.newer {
			t.Errorf("newerGen(%q, %q) = %v", tc.a, tc.b, got)
		}
	}
	for s, ok := range map[string]bool{"1": true, "z": true, "10": true, "0": false, "": false, "01": false, "A": false, "-1": false} {
		if validID(s) != ok {
			t.Errorf("validID(%q) = %v", s, !ok)
		}
	}
}
