package cache_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairnfs/cairn/internal/cache"
)

func TestParseNamespaces(t *testing.T) {
	tests := []struct {
		in   string
		want []cache.NamespaceConfig
		errs []string // substrings of the error; nil: no error
	}{
		{in: "", want: nil},
		{in: "  ", want: nil},
		{in: "[]", want: []cache.NamespaceConfig{}},
		{
			in:   `[{"namespace": "user", "ttl_seconds": 86400, "max_lru_size": 10000}]`,
			want: []cache.NamespaceConfig{{Namespace: "user", TTL: 24 * time.Hour, MaxEntries: 10000}},
		},
		{
			in: `[{"namespace": "user", "ttl_seconds": 60}, {"ttl_seconds": 1, "namespace": "merchant", "max_lru_size": 1}]`,
			want: []cache.NamespaceConfig{
				{Namespace: "user", TTL: time.Minute},
				{Namespace: "merchant", TTL: time.Second, MaxEntries: 1},
			},
		},
		{in: `{"namespace": "user"}`, errs: []string{"want a JSON list"}},
		{in: `[{"namespace": "user", "ttl_seconds": 60}`, errs: []string{"want a JSON list"}},
		{in: `[] []`, errs: []string{"unexpected data"}},
		{in: `[{"namespace": "user", "ttl_seconds": 60, "max_size": 5}]`, errs: []string{`entry #1`, `unknown field "max_size"`}},
		{in: `[{"namespace": "user", "ttl_seconds": 1.5}]`, errs: []string{"entry #1", "ttl_seconds"}},
		{in: `[{"namespace": "user", "ttl_seconds": "60"}]`, errs: []string{"entry #1", "ttl_seconds"}},
		{
			in: `[{"namespace": "user", "ttl_seconds": 60}, {"namespace": "user", "ttl_seconds": 0},
			      {"namespace": "m", "ttl_seconds": -5, "max_lru_size": 0}, {"ttl_seconds": 1}, {"namespace": "", "ttl_seconds": 1},
			      {"namespace": "x", "max_lru_size": -1}, null]`,
			errs: []string{
				`entry #2 ("user"): namespace is already listed by entry #1`,
				`entry #2 ("user"): ttl_seconds 0: want 1 to`,
				`entry #3 ("m"): ttl_seconds -5`,
				`entry #3 ("m"): max_lru_size 0: want 1 to 2147483647, or leave it out to bound`,
				`entry #4 (""): namespace is required`,
				`entry #5 (""): namespace is empty`,
				`entry #6 ("x"): ttl_seconds is required`,
				`entry #6 ("x"): max_lru_size -1`,
				`entry #7 (""): namespace is required`,
			},
		},
		{in: `[{"namespace": "user", "ttl_seconds": 9999999999999}]`, errs: []string{"ttl_seconds 9999999999999: want 1 to 3153600000"}},
	}
	for _, tt := range tests {
		got, err := cache.ParseNamespaces(tt.in)
		if tt.errs == nil {
			if err != nil {
				t.Errorf("ParseNamespaces(%s): %v", tt.in, err)
			} else if !slices.Equal(got, tt.want) || (got == nil) != (tt.want == nil) {
				t.Errorf("ParseNamespaces(%s) = %+v, want %+v", tt.in, got, tt.want)
			}
			continue
		}
		if err == nil {
			t.Errorf("ParseNamespaces(%s) = %+v, want an error", tt.in, got)
			continue
		}
		for _, want := range tt.errs {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("ParseNamespaces(%s): error %q does not mention %q", tt.in, err, want)
			}
		}
	}
}

func TestValidate(t *testing.T) {
	good := cache.DefaultConfig()
	good.Namespaces = []cache.NamespaceConfig{{Namespace: "user", TTL: time.Second}, {Namespace: "m", TTL: cache.MaxTTL, MaxEntries: 5}}
	if err := good.Validate(); err != nil {
		t.Errorf("valid config: %v", err)
	}
	if !cache.DefaultConfig().CacheMisses {
		t.Error("CacheMisses defaults to false, want true")
	}
	if got := cache.DefaultConfig().MaxBytes; got != 256<<20 {
		t.Errorf("MaxBytes defaults to %d, want 256 MiB", got)
	}
	bad := cache.Config{Namespaces: []cache.NamespaceConfig{{TTL: cache.MaxTTL + 1}}}
	err := bad.Validate()
	for _, want := range []string{"#1: no namespace name", "#1: TTL", "max bytes 0"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %q", err, want)
		}
	}
}
