package dynamo

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/store"
)

// A created table has Time to Live on, and items of a namespace whose
// values all go stale carry their expiry; others never expire.
func TestItemTTL(t *testing.T) {
	reg, err := feature.Parse("ttl.yaml", []byte(`
namespaces:
  - name: session
    primary_key: id
    max_staleness: 1h
    features: {id: string, clicks: int, last: {type: datetime, max_staleness: 2h}}
  - name: user
    primary_key: id
    max_staleness: 1h
    features: {id: string, age: int, name: {type: string, max_staleness: infinity}}
`))
	if err != nil {
		t.Fatal(err)
	}
	s := open(t, testConfig(t, tableName("ttl")))
	ctx := context.Background()
	ttl, err := s.tbl.client.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(s.cfg.Table)})
	if err != nil {
		t.Fatal(err)
	}
	if d := ttl.TimeToLiveDescription; d == nil || aws.ToString(d.AttributeName) != ttlAttr || d.TimeToLiveStatus != types.TimeToLiveStatusEnabled {
		t.Errorf("time to live: %+v, want enabled on %s", d, ttlAttr)
	}

	session, _ := reg.Namespace("session")
	user, _ := reg.Namespace("user")
	clicks, _ := reg.Lookup("session.clicks")
	age, _ := reg.Lookup("user.age")
	before := time.Now()
	err = s.Write(ctx, []store.EntityWrite{
		{Namespace: session, Key: "s1", Values: []store.Value{{Feature: clicks, Value: int64(3), ObservedAt: before}}},
		{Namespace: user, Key: "u1", Values: []store.Value{{Feature: age, Value: int64(30), ObservedAt: before}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	raw := func(pk string) map[string]types.AttributeValue {
		out, err := s.tbl.client.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(s.cfg.Table), Key: itemKey(pk, entitySK)})
		if err != nil {
			t.Fatal(err)
		}
		return out.Item
	}
	n, ok := raw("session#s1")[ttlAttr].(*types.AttributeValueMemberN)
	if !ok {
		t.Fatalf("session item has no %s attribute", ttlAttr)
	}
	exp, _ := strconv.ParseInt(n.Value, 10, 64)
	// The longest staleness of the namespace's features: 2h.
	if lo, hi := before.Add(2*time.Hour).Unix(), time.Now().Add(2*time.Hour).Unix(); exp < lo || exp > hi {
		t.Errorf("session expiry %d, want between %d and %d (write time + 2h)", exp, lo, hi)
	}
	if _, has := raw("user#u1")[ttlAttr]; has {
		t.Errorf("user item expires although user.name never goes stale")
	}
	// The expiry does not disturb reads.
	rows, err := s.Read(ctx, session, []string{"s1"}, []*feature.Feature{clicks})
	if err != nil || !rows[0].Found || rows[0].Cells[0].Value != int64(3) {
		t.Fatalf("read back %+v, %v", rows, err)
	}
}
