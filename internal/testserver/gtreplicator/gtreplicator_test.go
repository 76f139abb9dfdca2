package gtreplicator

import (
	"context"
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

const table = "features"

type pair struct {
	rep        *Replicator
	a, b       *dynamodb.Client
	motoA      *testserver.MotoProcess
	stop       func()
	regA, regB string
}

// start stands up two regions, each a moto_server of its own, and runs a
// replicator between them.
func start(t *testing.T, lag time.Duration) *pair {
	t.Helper()
	ma, mb := testserver.StartMotoProcess(t), testserver.StartMotoProcess(t)
	p := &pair{motoA: ma, regA: "us-east-1", regB: "eu-west-1"}
	p.rep = New(Region{Name: p.regA, Endpoint: ma.Endpoint()}, Region{Name: p.regB, Endpoint: mb.Endpoint()},
		Options{Table: table, Lag: lag, Poll: 20 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	if err := p.rep.Prepare(ctx); err != nil {
		t.Fatal(err)
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

func put(t *testing.T, c *dynamodb.Client, pk, value string) {
	t.Helper()
	_, err := c.PutItem(context.Background(), &dynamodb.PutItemInput{TableName: aws.String(table), Item: map[string]ddb.AttributeValue{
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
func get(t *testing.T, c *dynamodb.Client, pk string) string {
	t.Helper()
	out, err := c.GetItem(context.Background(), &dynamodb.GetItemInput{TableName: aws.String(table), ConsistentRead: aws.Bool(true),
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

// A write in A reaches B no earlier than the lag after it; a write in B
// reaches A; a REMOVE replicates; and nothing is copied back to where it
// came from.
func TestReplicatesBothWaysAfterLagWithoutEcho(t *testing.T) {
	t.Parallel()
	const lag = 600 * time.Millisecond
	p := start(t, lag)

	written := time.Now()
	put(t, p.a, "f1", "from-a")
	eventually(t, "f1 in B", func() bool { return get(t, p.b, "f1") == "from-a" })
	if d := time.Since(written); d < lag-20*time.Millisecond { // creation times are at millisecond precision
		t.Errorf("f1 reached B %v after the write; want no earlier than the lag %v", d, lag)
	}

	put(t, p.b, "f2", "from-b")
	eventually(t, "f2 in A", func() bool { return get(t, p.a, "f2") == "from-b" })

	if _, err := p.a.DeleteItem(context.Background(), &dynamodb.DeleteItemInput{TableName: aws.String(table),
		Key: map[string]ddb.AttributeValue{"pk": &ddb.AttributeValueMemberS{Value: "f1"}, "sk": &ddb.AttributeValueMemberS{Value: "v"}}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "f1 removed from B", func() bool { return get(t, p.b, "f1") == "" })

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
func TestConcurrentWritesConvergeOnTheLater(t *testing.T) {
	t.Parallel()
	p := start(t, 400*time.Millisecond)
	put(t, p.a, "f", "first-in-a")
	time.Sleep(5 * time.Millisecond) // distinct creation times
	put(t, p.b, "f", "second-in-b")
	put(t, p.b, "g", "first-in-b")
	time.Sleep(5 * time.Millisecond)
	put(t, p.a, "g", "second-in-a")

	p.quiet(t, 6)
	for _, c := range []struct{ pk, want string }{{"f", "second-in-b"}, {"g", "second-in-a"}} {
		if a, b := get(t, p.a, c.pk), get(t, p.b, c.pk); a != c.want || b != c.want {
			t.Errorf("%s: A holds %q, B %q; want %q in both", c.pk, a, b, c.want)
		}
	}
	if da, db := p.rep.Dropped(p.regA), p.rep.Dropped(p.regB); da != 1 || db != 1 {
		t.Errorf("dropped A→B %d, B→A %d; want 1 each", da, db)
	}
}

// A region that hangs (its moto paused) holds replication to it up, not
// the reads of the other; once resumed, both regions converge.
func TestConvergesAfterARegionHangs(t *testing.T) {
	t.Parallel()
	p := start(t, 100*time.Millisecond)
	put(t, p.a, "before", "1")
	eventually(t, "before in B", func() bool { return get(t, p.b, "before") == "1" })

	p.motoA.Pause()
	put(t, p.b, "during", "2")
	eventually(t, "B's write read", func() bool { return p.rep.Position(p.regB).Read >= 2 })
	time.Sleep(300 * time.Millisecond)
	if n := p.rep.Applied(p.regB); n != 0 {
		t.Errorf("applied %d records to a paused region", n)
	}
	p.motoA.Resume()
	eventually(t, "during in A", func() bool { return get(t, p.a, "during") == "2" })
	put(t, p.a, "after", "3")
	eventually(t, "after in B", func() bool { return get(t, p.b, "after") == "3" })
	p.quiet(t, 6)
}
