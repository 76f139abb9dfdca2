package store

import (
	"testing"
	"time"

	"github.com/cairnfs/cairn/internal/feature"
)

func TestCoalesce(t *testing.T) {
	reg, err := feature.Parse("t.yaml", []byte(`
namespaces:
  - {name: user, primary_key: id, features: {id: string, a: int, b: int}}
  - {name: shop, primary_key: id, features: {id: string, a: int}}`))
	if err != nil {
		t.Fatal(err)
	}
	user, _ := reg.Namespace("user")
	shop, _ := reg.Namespace("shop")
	a, _ := reg.Lookup("user.a")
	b, _ := reg.Lookup("user.b")
	sa, _ := reg.Lookup("shop.a")
	t1, t2 := time.Unix(1, 0), time.Unix(2, 0)
	got := Coalesce([]EntityWrite{
		{Namespace: user, Key: "k", Values: []Value{{Feature: a, Value: int64(2), ObservedAt: t2}, {Feature: b, Value: int64(1), ObservedAt: t1}}},
		{Namespace: shop, Key: "k", Values: []Value{{Feature: sa, Value: int64(9), ObservedAt: t1}}},
		{Namespace: user, Key: "k", Values: []Value{{Feature: a, Value: int64(1), ObservedAt: t1}, {Feature: b, Value: int64(2), ObservedAt: t2}}},
		{Namespace: user, Key: "k", Values: []Value{{Feature: b, Value: int64(3), ObservedAt: t2}}}, // tie: later wins
	})
	if len(got) != 2 || got[0].Namespace != user || got[1].Namespace != shop {
		t.Fatalf("want user/k then shop/k, got %+v", got)
	}
	vals := map[*feature.Feature]any{}
	for _, v := range got[0].Values {
		vals[v.Feature] = v.Value
	}
	if len(got[0].Values) != 2 || vals[a] != int64(2) || vals[b] != int64(3) {
		t.Errorf("user/k coalesced to %+v; want a=2 (newest), b=3 (newest, later on a tie)", got[0].Values)
	}
}
