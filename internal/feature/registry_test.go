package feature

import (
	"strings"
	"testing"
	"time"
)

func TestLoadExample(t *testing.T) {
	r, err := Load("../../examples/features.yaml")
	if err != nil {
		t.Fatal(err)
	}
	user, ok := r.Namespace("user")
	if !ok || user.PrimaryKey.FQN != "user.id" || user.MaxStaleness != Infinite {
		t.Fatalf("user namespace: %+v", user)
	}
	merchant, _ := r.Namespace("merchant")
	if merchant.PrimaryKey.Type.Kind != KindInt {
		t.Fatalf("merchant pk type %s", merchant.PrimaryKey.Type)
	}
	if got := merchant.PrimaryKey.Staleness(); got != 24*time.Hour {
		t.Fatalf("merchant staleness %v", got)
	}
	ll, _ := r.Lookup("user.last_login")
	if ll.Staleness() != 30*24*time.Hour || ll.Type.Kind != KindDatetime {
		t.Fatalf("user.last_login %+v", ll)
	}
	if age, _ := r.Lookup("user.age"); age.Staleness() != 0 {
		t.Fatalf("user.age should never go stale")
	}
	kinds := map[Kind]bool{}
	for _, ns := range r.Namespaces() {
		for _, f := range ns.Features {
			kinds[f.Type.Kind] = true
		}
	}
	for k := KindInt; k <= KindJSON; k++ {
		if !kinds[k] {
			t.Errorf("examples/features.yaml lacks a feature of kind %d", k)
		}
	}
}

func TestParseErrorsNameFileNamespaceFeature(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"unknown type", `
namespaces:
  - name: user
    primary_key: id
    features: {id: string, age: integer}`,
			[]string{`features.yaml: namespace "user": feature "age": unknown type "integer"`}},
		{"every problem at once", `
namespaces:
  - name: user
    primary_key: id
    features:
      id: float
      v: vector[0]
      l: list[nope]
  - name: merchant
    primary_key: missing
    max_staleness: soon
    features: {x: int}`,
			[]string{
				`namespace "user": primary_key "id" has type float, want string or int`,
				`namespace "user": feature "v": vector dimension "0"`,
				`namespace "user": feature "l": unknown type "nope"`,
				`namespace "merchant": max_staleness: invalid duration "soon"`,
				`namespace "merchant": primary_key "missing" is not one of its features`,
			}},
		{"duplicate namespace", `
namespaces:
  - {name: user, primary_key: id, features: {id: string}}
  - {name: user, primary_key: id, features: {id: string}}`,
			[]string{`namespace "user": declared twice`}},
		{"bad names", `
namespaces:
  - {name: User, primary_key: id, features: {id: string}}
  - {name: ok, primary_key: id, features: {id: string, "Bad-Name": int}}`,
			[]string{`namespace #1: invalid name "User"`, `namespace "ok": feature "Bad-Name": invalid name`}},
		{"unknown field", `
namespaces:
  - {name: user, primary_key: id, featurez: {id: string}}`,
			[]string{`features.yaml: yaml: unmarshal errors`}},
		{"no namespaces", `namespaces: []`, []string{`features.yaml: no namespaces declared`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("features.yaml", []byte(tt.yaml))
			if err == nil {
				t.Fatal("want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
		})
	}
}

func TestParseType(t *testing.T) {
	for _, s := range []string{"int", "float", "string", "bool", "bytes", "datetime", "json",
		"list[int]", "list[list[string]]", "vector[768]"} {
		ty, err := ParseType(s)
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		if ty.String() != s {
			t.Errorf("ParseType(%q).String() = %q", s, ty.String())
		}
	}
	for _, s := range []string{"", "integer", "list[]", "list[int", "vector[x]", "vector[-1]", "vector[99999]",
		"list[list[list[list[list[list[list[list[list[int]]]]]]]]]"} {
		if _, err := ParseType(s); err == nil {
			t.Errorf("ParseType(%q) succeeded", s)
		}
	}
}

func TestParseStaleness(t *testing.T) {
	for s, want := range map[string]Staleness{
		"infinity": Infinite, "90s": Staleness(90 * time.Second), "10m": Staleness(10 * time.Minute),
		"1h": Staleness(time.Hour), "1d": Staleness(24 * time.Hour), "1.5d": Staleness(36 * time.Hour),
		"0s": Recompute, "0": Recompute, "0ms": Recompute, "0d": Recompute,
	} {
		got, err := ParseStaleness(s)
		if err != nil || got != want {
			t.Errorf("ParseStaleness(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	for _, s := range []string{"", "-0s", "-1h", "1y", "xd", "-0d"} {
		if _, err := ParseStaleness(s); err == nil {
			t.Errorf("ParseStaleness(%q) succeeded", s)
		}
	}
}
