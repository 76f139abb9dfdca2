package gtreplicator

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/cairnfs/cairn/internal/testserver"
)

func TestMain(m *testing.M) { os.Exit(testserver.Run(m)) }

type pair struct {
	rep        *Replicator
	table      string
	a, b       *dynamodb.Client
	motoA      *testserver.MotoProcess
	motoB      *testserver.MotoProcess
	stop       func()
	regA, regB string
}

// regions stands up two regions, each a moto_server of its own.
func regions(t *testing.T) (a, b *testserver.MotoProcess) {
	return testserver.StartMotoProcess(t), testserver.StartMotoProcess(t)
}

// start runs a replicator of table between the regions served by ma and
// mb, after creating the table in both when prepare is set.
func start(t *testing.T, ma, mb *testserver.MotoProcess, table string, lag time.Duration, prepare bool) *pair {
	t.Helper()
	p := &pair{motoA: ma, table: table, regA: "us-east-1", regB: "eu-west-1"}
	p.rep = New(Region{Name: p.regA, Endpoint: ma.Endpoint()}, Region{Name: p.regB, Endpoint: mb.Endpoint()},
		Options{Table: table, Lag: lag, Poll: 20 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	if prepare {
		if err := p.rep.Prepare(ctx); err != nil {
			t.Fatal(err)
		}
	}
	p.a, p.b = client(ma.Endpoint(), p.regA), client(mb.Endpoint(), p.regB)
	done := make(chan error, 1)
	go func() { done <- p.rep.Run(ctx) }()
	p.stop = func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
	t.Cleanup(p.stop)
	return p
}

func client(endpoint, region string) *dynamodb.Client {
	return dynamodb.New(dynamodb.Options{Region: region, BaseEndpoint: aws.String(endpoint),
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", "")})
}

func (p *pair) put(t *testing.T, c *dynamodb.Client, pk, value string) {
	t.Helper()
	_, err := c.PutItem(context.Background(), &dynamodb.PutItemInput{TableName: aws.String(p.table), Item: map[string]ddb.AttributeValue{
		"pk": &ddb.AttributeValueMemberS{Value: pk}, "sk": &ddb.AttributeValueMemberS{Value: "v"},
		"value": &ddb.AttributeValueMemberS{Value: value},
		"tags":  &ddb.AttributeValueMemberSS{Value: []string{"x", "y", value}},
		"n":     &ddb.AttributeValueMemberM{Value: map[string]ddb.AttributeValue{"at": &ddb.AttributeValueMemberN{Value: "1.5"}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
}

// get returns the item's value attribute, "" when the item is absent.
func (p *pair) get(t *testing.T, c *dynamodb.Client, pk string) string {
	t.Helper()
	out, err := c.GetItem(context.Background(), &dynamodb.GetItemInput{TableName: aws.String(p.table), ConsistentRead: aws.Bool(true),
		Key: map[string]ddb.AttributeValue{"pk": &ddb.AttributeValueMemberS{Value: pk}, "sk": &ddb.AttributeValueMemberS{Value: "v"}}})
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := out.Item["value"].(*ddb.AttributeValueMemberS); ok {
		return v.Value
	}
	return ""
}

// eventually waits for cond, failing t after a few seconds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// quiet waits until the replicator has read at least reads records from
// both streams together and has nothing left to copy.
func (p *pair) quiet(t *testing.T, reads int64) {
	t.Helper()
	eventually(t, "quiescence", func() bool {
		pa, pb := p.rep.Position(p.regA), p.rep.Position(p.regB)
		return pa.Read+pb.Read >= reads && p.rep.Lagging() == 0
	})
}

// TestReplicator runs, each with a table of its own, the tests that can
// share a pair of regions.
func TestReplicator(t *testing.T) {
	t.Parallel()
	ma, mb := regions(t)
	for name, test := range map[string]func(*testing.T, *testserver.MotoProcess, *testserver.MotoProcess){
		"BothWaysAfterLagWithoutEcho":  testBothWaysAfterLagWithoutEcho,
		"ConcurrentWritesConverge":     testConcurrentWritesConvergeOnTheLater,
		"StreamTurnedOnAndItemsBefore": testStreamTurnedOnAndItemsBefore,
		"WriteDoesNotOverwriteUnseen":  testWriteDoesNotOverwriteUnseen,
		"UpdateAndTransactWrites":      testUpdateAndTransactWrites,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			test(t, ma, mb)
		})
	}
}

// A write in A reaches B no earlier than the lag after it; a write in B
// reaches A; a REMOVE replicates; and nothing is copied back to where it
// came from.
func testBothWaysAfterLagWithoutEcho(t *testing.T, ma, mb *testserver.MotoProcess) {
	const lag = 600 * time.Millisecond
	p := start(t, ma, mb, "both-ways", lag, true)

	written := time.Now()
	p.put(t, p.a, "f1", "from-a")
	eventually(t, "f1 in B", func() bool { return p.get(t, p.b, "f1") == "from-a" })
	if d := time.Since(written); d < lag-20*time.Millisecond { // creation times are at millisecond precision
		t.Errorf("f1 reached B %v after the write; want no earlier than the lag %v", d, lag)
	}

	p.put(t, p.b, "f2", "from-b")
	eventually(t, "f2 in A", func() bool { return p.get(t, p.a, "f2") == "from-b" })
	if c := p.rep.Position(p.regA).Copied; c.Before(written.Truncate(time.Millisecond)) || c.After(time.Now()) {
		t.Errorf("A copied up to %v; want the creation time of f1, written at %v", c, written)
	}

	if _, err := p.a.DeleteItem(context.Background(), &dynamodb.DeleteItemInput{TableName: aws.String(p.table),
		Key: map[string]ddb.AttributeValue{"pk": &ddb.AttributeValueMemberS{Value: "f1"}, "sk": &ddb.AttributeValueMemberS{Value: "v"}}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "f1 removed from B", func() bool { return p.get(t, p.b, "f1") == "" })

	// 3 local writes, 3 echoes.
	p.quiet(t, 6)
	time.Sleep(lag + 100*time.Millisecond) // an echo copied back would be due by now
	p.quiet(t, 6)
	if a, b := p.rep.Applied(p.regA), p.rep.Applied(p.regB); a != 2 || b != 1 {
		t.Errorf("applied A→B %d, B→A %d; want 2 (put, remove) and 1", a, b)
	}
	if ea, eb := p.rep.Echoes(p.regA), p.rep.Echoes(p.regB); ea != 1 || eb != 2 {
		t.Errorf("echoes skipped on A %d, on B %d; want 1 and 2", ea, eb)
	}
	if r := p.rep.Position(p.regA).Read + p.rep.Position(p.regB).Read; r != 6 {
		t.Errorf("read %d records; want 6: an echo was copied back", r)
	}
}

// One item written in both regions before either write is copied ends up
// the same in both, holding the later write; the earlier is dropped.
func testConcurrentWritesConvergeOnTheLater(t *testing.T, ma, mb *testserver.MotoProcess) {
	p := start(t, ma, mb, "concurrent", 400*time.Millisecond, true)
	p.put(t, p.a, "f", "first-in-a")
	time.Sleep(5 * time.Millisecond) // distinct creation times
	p.put(t, p.b, "f", "second-in-b")
	p.put(t, p.b, "g", "first-in-b")
	time.Sleep(5 * time.Millisecond)
	p.put(t, p.a, "g", "second-in-a")

	p.quiet(t, 6)
	for _, c := range []struct{ pk, want string }{{"f", "second-in-b"}, {"g", "second-in-a"}} {
		if a, b := p.get(t, p.a, c.pk), p.get(t, p.b, c.pk); a != c.want || b != c.want {
			t.Errorf("%s: A holds %q, B %q; want %q in both", c.pk, a, b, c.want)
		}
	}
	if da, db := p.rep.Dropped(p.regA), p.rep.Dropped(p.regB); da != 1 || db != 1 {
		t.Errorf("dropped A→B %d, B→A %d; want 1 each", da, db)
	}
}

// A region that hangs (its moto paused) holds replication to it up, not
// the reads of the other; once resumed, both regions converge. A region
// lost whole and made again is found again.
func TestConvergesAfterARegionHangsOrIsLost(t *testing.T) {
	t.Parallel()
	ma, mb := regions(t)
	p := start(t, ma, mb, "hang", 100*time.Millisecond, true)
	p.motoB = mb
	p.put(t, p.a, "before", "1")
	eventually(t, "before in B", func() bool { return p.get(t, p.b, "before") == "1" })

	p.motoA.Pause()
	p.put(t, p.b, "during", "2")
	eventually(t, "B's write read", func() bool { return p.rep.Position(p.regB).Read >= 2 })
	time.Sleep(300 * time.Millisecond)
	if n := p.rep.Applied(p.regB); n != 0 {
		t.Errorf("applied %d records to a paused region", n)
	}
	p.motoA.Resume()
	eventually(t, "during in A", func() bool { return p.get(t, p.a, "during") == "2" })
	p.put(t, p.a, "after", "3")
	eventually(t, "after in B", func() bool { return p.get(t, p.b, "after") == "3" })
	p.quiet(t, 6)

	// A region lost whole (moto restarted without its tables, its table
	// made again): replication finds the new stream and goes on.
	p.motoB.Restart()
	if err := p.rep.Prepare(context.Background()); err != nil {
		t.Fatal(err)
	}
	p.put(t, p.a, "after", "4")
	eventually(t, "a write after B's loss in B", func() bool { return p.get(t, p.b, "after") == "4" })
	p.put(t, p.b, "reborn", "5")
	eventually(t, "a write in the new B in A", func() bool { return p.get(t, p.a, "reborn") == "5" })
}

// A table created without a stream, as cairn creates it, gets one from
// Run; an item that was in a region before, and so is on no stream, is
// overwritten by a newer write from the other region (the conditional
// write finds it and reads it), and the regions converge.
func testStreamTurnedOnAndItemsBefore(t *testing.T, ma, mb *testserver.MotoProcess) {
	p := start(t, ma, mb, "no-stream", 0, false)
	ctx := context.Background()
	for _, c := range []*dynamodb.Client{p.a, p.b} {
		if _, err := c.CreateTable(ctx, &dynamodb.CreateTableInput{
			TableName: aws.String(p.table),
			KeySchema: []ddb.KeySchemaElement{
				{AttributeName: aws.String("pk"), KeyType: ddb.KeyTypeHash},
				{AttributeName: aws.String("sk"), KeyType: ddb.KeyTypeRange},
			},
			AttributeDefinitions: []ddb.AttributeDefinition{
				{AttributeName: aws.String("pk"), AttributeType: ddb.ScalarAttributeTypeS},
				{AttributeName: aws.String("sk"), AttributeType: ddb.ScalarAttributeTypeS},
			},
			BillingMode: ddb.BillingModePayPerRequest,
		}); err != nil {
			t.Fatal(err)
		}
	}
	p.put(t, p.b, "old", "before-the-stream")
	eventually(t, "streams on", func() bool {
		for _, c := range []*dynamodb.Client{p.a, p.b} {
			out, err := c.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(p.table)})
			if err != nil || out.Table.StreamSpecification == nil || !aws.ToBool(out.Table.StreamSpecification.StreamEnabled) {
				return false
			}
		}
		return true
	})
	time.Sleep(100 * time.Millisecond) // the replicator has the streams' shards
	p.put(t, p.a, "old", "newer-from-a")
	eventually(t, "old overwritten in B", func() bool { return p.get(t, p.b, "old") == "newer-from-a" })
	p.quiet(t, 2)
	if n := p.rep.Applied(p.regB); n != 0 {
		t.Errorf("applied %d records from B; want 0: the item B held before its stream is on no stream", n)
	}
}

// The write of a version is conditional on the target holding what the
// replicator last saw there: a local write it has not read yet (the
// window between its read of the target and its write) is not
// overwritten.
func testWriteDoesNotOverwriteUnseen(t *testing.T, ma, mb *testserver.MotoProcess) {
	p := start(t, ma, mb, "unseen", time.Hour, true)
	p.put(t, p.b, "f", "seen")
	eventually(t, "B's write read", func() bool { return p.rep.Position(p.regB).Read == 1 })
	p.rep.mu.Lock()
	b := p.rep.side(p.regB)
	seen := b.held[`{"pk":S"f","sk":S"v",}`]
	p.rep.mu.Unlock()
	if seen.image == nil {
		t.Fatalf("no version held for f in B")
	}
	p.put(t, p.b, "f", "unseen-local-write")
	keys := map[string]ddb.AttributeValue{"pk": &ddb.AttributeValueMemberS{Value: "f"}, "sk": &ddb.AttributeValueMemberS{Value: "v"}}
	older := change{key: canonical(keys), keys: keys, image: map[string]ddb.AttributeValue{
		"pk": keys["pk"], "sk": keys["sk"], "value": &ddb.AttributeValueMemberS{Value: "replicated"}}}
	var changed *ddb.ConditionalCheckFailedException
	if err := p.rep.write(context.Background(), b, older, seen); !errors.As(err, &changed) {
		t.Fatalf("write over an unseen local write: %v; want a conditional check failure", err)
	}
	if got := p.get(t, p.b, "f"); got != "unseen-local-write" {
		t.Errorf("B holds %q; want the local write kept", got)
	}
	if err := p.rep.write(context.Background(), b, older, holding{image: older.image}); !errors.As(err, &changed) {
		t.Fatalf("write expecting a wrong image: %v; want a conditional check failure", err)
	}
	now := holding{image: map[string]ddb.AttributeValue{}}
	for k, v := range seen.image {
		now.image[k] = v
	}
	now.image["value"] = &ddb.AttributeValueMemberS{Value: "unseen-local-write"}
	now.image["tags"] = &ddb.AttributeValueMemberSS{Value: []string{"unseen-local-write", "y", "x"}} // a set, in another order
	if err := p.rep.write(context.Background(), b, older, now); err != nil {
		t.Fatalf("write expecting what B holds: %v", err)
	}
	if got := p.get(t, p.b, "f"); got != "replicated" {
		t.Errorf("B holds %q; want the replicated version", got)
	}
}

// cairn writes with UpdateItem and TransactWriteItems as well as PutItem:
// moto puts those on the stream too, and the replicator copies the whole
// item they leave.
func testUpdateAndTransactWrites(t *testing.T, ma, mb *testserver.MotoProcess) {
	p := start(t, ma, mb, "update-transact", 0, true)
	ctx := context.Background()
	key := func(pk string) map[string]ddb.AttributeValue {
		return map[string]ddb.AttributeValue{"pk": &ddb.AttributeValueMemberS{Value: pk}, "sk": &ddb.AttributeValueMemberS{Value: "v"}}
	}
	p.put(t, p.a, "u", "put")
	if _, err := p.a.UpdateItem(ctx, &dynamodb.UpdateItemInput{TableName: aws.String(p.table), Key: key("u"),
		UpdateExpression:          aws.String("SET #v = :v"),
		ExpressionAttributeNames:  map[string]string{"#v": "value"},
		ExpressionAttributeValues: map[string]ddb.AttributeValue{":v": &ddb.AttributeValueMemberS{Value: "updated"}},
	}); err != nil {
		t.Fatal(err)
	}
	item := key("x")
	item["value"] = &ddb.AttributeValueMemberS{Value: "transacted"}
	if _, err := p.b.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: []ddb.TransactWriteItem{
		{Put: &ddb.Put{TableName: aws.String(p.table), Item: item}},
	}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the update in B", func() bool { return p.get(t, p.b, "u") == "updated" })
	eventually(t, "the transaction in A", func() bool { return p.get(t, p.a, "x") == "transacted" })
	out, err := p.b.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(p.table), Key: key("u"), ConsistentRead: aws.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := out.Item["tags"]; !ok {
		t.Errorf("B holds %v; want the whole item, tags included", out.Item)
	}
}
