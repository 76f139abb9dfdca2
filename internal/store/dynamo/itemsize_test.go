package dynamo

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/store"
)

// EntityItemSize is what capacity planning starts from: it must be the size
// of the item a Write really stores, counted from the item read back raw.
func TestEntityItemSize(t *testing.T) {
	reg, err := feature.Parse("test", []byte(`
namespaces:
  - name: shop
    primary_key: id
    max_staleness: 1d
    features:
      id: int
      name: string
      visits: int
      rating: float
      open: bool
      logo: bytes
      since: datetime
      tags: list[string]
      embedding: vector[16]
      extra: json
`))
	if err != nil {
		t.Fatal(err)
	}
	ns, _ := reg.Namespace("shop")
	vals := map[string]any{
		"shop.name":      "Corner Bakery",
		"shop.visits":    int64(12345678),
		"shop.rating":    0.30000000000000004,
		"shop.open":      true,
		"shop.logo":      make([]byte, 40),
		"shop.since":     time.Date(2024, 1, 2, 3, 4, 5, 6000, time.UTC),
		"shop.tags":      []any{"a", "bb", "ccc"},
		"shop.embedding": make([]float32, 16),
		"shop.extra":     map[string]any{"k": "v", "n": "12"},
	}
	w := store.EntityWrite{Namespace: ns, Key: "1234"}
	var fqns []string
	for _, f := range ns.Features[1:] {
		fqns = append(fqns, f.FQN)
		w.Values = append(w.Values, store.Value{Feature: f, Value: vals[f.FQN], ObservedAt: time.Now()})
	}

	cfg := testConfig(t, tableName("itemsize"))
	s := open(t, cfg)
	if err := s.Write(context.Background(), []store.EntityWrite{w}); err != nil {
		t.Fatal(err)
	}
	c := rawClient(t)
	ids := mappingItems(t, c, cfg.Table)
	out, err := c.GetItem(context.Background(), &dynamodb.GetItemInput{
		TableName: aws.String(cfg.Table),
		Key: map[string]types.AttributeValue{
			"pk": &types.AttributeValueMemberS{Value: "shop#1234"},
			"sk": &types.AttributeValueMemberS{Value: "e"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := out.Item[ttlAttr]; !ok {
		t.Fatalf("stored item has no %s attribute; the namespace's staleness should set one", ttlAttr)
	}
	got, err := EntityItemSize(w, ids)
	if err != nil {
		t.Fatal(err)
	}
	if want := ItemSize(out.Item); got != want {
		t.Errorf("EntityItemSize = %d, want %d, the size of the stored item %v", got, want, out.Item)
	}

	// A fresh table hands out the same ids, whatever their order.
	fresh := ShortIDs(fqns)
	var gotIDs, wantIDs []string
	for _, fqn := range fqns {
		gotIDs, wantIDs = append(gotIDs, fresh[fqn]), append(wantIDs, ids[fqn])
	}
	slices.Sort(gotIDs)
	slices.Sort(wantIDs)
	if !slices.Equal(gotIDs, wantIDs) {
		t.Errorf("ShortIDs gave %v, the table %v", gotIDs, wantIDs)
	}

	if _, err := EntityItemSize(w, map[string]string{}); err == nil {
		t.Error("EntityItemSize without short ids: no error")
	}
}

func TestShortIDsSkipKeyNames(t *testing.T) {
	fqns := make([]string, 40*36)
	for i := range fqns {
		fqns[i] = "n.f" + string(rune('a'+i%26)) + time.Duration(i).String()
	}
	ids := ShortIDs(fqns)
	seen := map[string]bool{}
	for _, fqn := range fqns {
		id := ids[fqn]
		if !validID(id) || seen[id] {
			t.Fatalf("%s got id %q: invalid or repeated", fqn, id)
		}
		seen[id] = true
	}
	if seen["pk"] || seen["sk"] || ids[fqns[0]] != "1" {
		t.Errorf("ids: first %q, pk %v, sk %v; want 1 and neither key name", ids[fqns[0]], seen["pk"], seen["sk"])
	}
}

// The unit rules, at their boundaries.
func TestUnits(t *testing.T) {
	for _, tc := range []struct {
		size       int
		consistent bool
		want       float64
	}{
		{1, false, 0.5}, {4096, false, 0.5}, {4097, false, 1}, {4096, true, 1}, {8193, true, 3},
	} {
		if got := ReadUnits(tc.size, tc.consistent); got != tc.want {
			t.Errorf("ReadUnits(%d, %v) = %v, want %v", tc.size, tc.consistent, got, tc.want)
		}
	}
	for _, tc := range []struct {
		size int
		tx   bool
		want int
	}{
		{0, false, 1}, {1024, false, 1}, {1025, false, 2}, {1025, true, 4},
	} {
		if got := WriteUnits(tc.size, tc.tx); got != tc.want {
			t.Errorf("WriteUnits(%d, %v) = %v, want %v", tc.size, tc.tx, got, tc.want)
		}
	}
}
