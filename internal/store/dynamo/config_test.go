package dynamo

import (
	"strings"
	"testing"
)

func TestParseURI(t *testing.T) {
	tests := []struct {
		uri     string
		want    Config // Table, Region, Endpoint compared
		wantErr string // substring of the error; "" for none
	}{
		{uri: "dynamodb:///features", want: Config{Table: "features"}},
		{uri: "dynamodb:///cairn-prod.v2_x?region=eu-west-1", want: Config{Table: "cairn-prod.v2_x", Region: "eu-west-1"}},
		{
			uri:  "dynamodb:///t12?region=us-east-1&endpoint=http://127.0.0.1:5055",
			want: Config{Table: "t12", Region: "us-east-1", Endpoint: "http://127.0.0.1:5055"},
		},
		{
			uri:  "dynamodb:///t12?endpoint=https%3A%2F%2Fvpce.example.com%2F",
			want: Config{Table: "t12", Endpoint: "https://vpce.example.com/"},
		},
		{uri: "dynamodb:///", wantErr: "no table name"},
		{uri: "dynamodb://", wantErr: "no table name"},
		{uri: "dynamodb://features", wantErr: `unexpected host "features"`},
		{uri: "dynamodb://features/x", wantErr: "the table goes in the path"},
		{uri: "redis:///features", wantErr: `scheme "redis"`},
		{uri: "dynamodb:///a/b", wantErr: "contains a slash"},
		{uri: "dynamodb:///ab", wantErr: `table "ab"`},
		{uri: "dynamodb:///bad$name", wantErr: `table "bad$name"`},
		{uri: "dynamodb:///t12?region=US%20East", wantErr: `region "US East"`},
		{uri: "dynamodb:///t12?endpoint=127.0.0.1:5055", wantErr: `endpoint "127.0.0.1:5055"`},
		{uri: "dynamodb:///t12?endpoint=ftp://x", wantErr: "want an http:// or https:// URL"},
		{uri: "dynamodb:///t12?region=us-east-1&region=us-west-2", wantErr: `parameter "region" given 2 times`},
		{uri: "dynamodb:///t12?regoin=us-east-1&zz=1", wantErr: "unknown parameter(s) regoin, zz"},
		{uri: "dynamodb:///t12#frag", wantErr: "unexpected fragment"},
		{uri: "dynamodb:///t12?%zz", wantErr: "query"},
	}
	for _, tc := range tests {
		t.Run(tc.uri, func(t *testing.T) {
			got, err := ParseURI(tc.uri)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := DefaultConfig()
			want.Table, want.Region, want.Endpoint = tc.want.Table, tc.want.Region, tc.want.Endpoint
			if got != want {
				t.Errorf("got %+v, want %+v", got, want)
			}
		})
	}
}

func TestDefaultConfig(t *testing.T) {
	c := DefaultConfig()
	if c.MaxRetries != 12 || !c.WarmupFQNMapping || c.CreateTableIfNotExists {
		t.Errorf("defaults = %+v, want MaxRetries 12, warmup on, no table creation", c)
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	c := Config{Region: "Nowhere", Endpoint: "nope", MaxRetries: -1}
	err := c.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"table is required", `region "Nowhere"`, `endpoint "nope"`, "max retries -1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}
