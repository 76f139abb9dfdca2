package api

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/query"
	"github.com/cairnfs/cairn/internal/store"
	"github.com/cairnfs/cairn/internal/store/embedded"
)

// The answer formats a field's key and observed-at once for a run of
// fields that share them: across entities, namespaces and features
// observed at different times, every field still carries its own.
func TestQueryAnswersEachFieldsKeyAndTime(t *testing.T) {
	reg, err := feature.Load("../../examples/features.yaml")
	if err != nil {
		t.Fatal(err)
	}
	st, err := embedded.Open(t.TempDir(), embedded.Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	user, _ := reg.Namespace("user")
	merchant, _ := reg.Namespace("merchant")
	f := func(fqn string) *feature.Feature {
		ft, ok := reg.Lookup(fqn)
		if !ok {
			t.Fatalf("no feature %s", fqn)
		}
		return ft
	}
	t1 := time.Now().UTC().Add(-2 * time.Hour).Truncate(time.Second)
	t2 := t1.Add(time.Hour)
	err = st.Write(context.Background(), []store.EntityWrite{
		{Namespace: user, Key: "u1", Values: []store.Value{{Feature: f("user.age"), Value: int64(1), ObservedAt: t1}, {Feature: f("user.name"), Value: "Al", ObservedAt: t2}}},
		{Namespace: user, Key: "u2", Values: []store.Value{{Feature: f("user.age"), Value: int64(2), ObservedAt: t1}}},
		{Namespace: merchant, Key: "7", Values: []store.Value{{Feature: f("merchant.name"), Value: "shop", ObservedAt: t1}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{}, reg, query.NewEngine(st, nil, nil), nil, nil, nil, quiet())
	if err != nil {
		t.Fatal(err)
	}
	s := &stack{t: t, url: serveTest(t, srv).URL}
	code, out := s.post("/v1/query/online", `{"inputs": {"user.id": ["u1", "u2"], "merchant.id": [7, 8]},
		"outputs": ["user.age", "merchant.name", "user.name"]}`)
	if code != 200 {
		t.Fatalf("query: %d %v", code, out)
	}
	var got []string
	for _, d := range out["data"].([]any) {
		m := d.(map[string]any)
		got = append(got, fmt.Sprintf("%v %v=%v %v", m["pkey"], m["field"], m["value"], m["ts"]))
	}
	ts1, ts2 := t1.Format(time.RFC3339), t2.Format(time.RFC3339)
	want := []string{
		"u1 user.age=1 " + ts1, "u1 user.name=Al " + ts2,
		"u2 user.age=2 " + ts1, "u2 user.name=<nil> <nil>",
		"7 merchant.name=shop " + ts1,
		"8 merchant.name=<nil> <nil>",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("answer:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
