package dynamo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/store"
	"github.com/cairnfs/cairn/internal/store/storetest"
	"github.com/cairnfs/cairn/internal/testserver"
)

func TestMain(m *testing.M) { os.Exit(testserver.Run(m)) }

// runID keeps this run's tables apart from other runs' on a shared server.
var runID = func() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}()

// tables counts the tables named, so that each call of tableName (each
// run of a test under -count) gets a table of its own.
var tables atomic.Int64

// tableName returns a table name unique to this call, with label in it.
func tableName(label string) string {
	return fmt.Sprintf("cairn-dt-%s-%d-%s", runID, tables.Add(1), label)
}

// testConfig returns a Config for table on the test server, creating it.
func testConfig(t testing.TB, table string) Config {
	cfg := DefaultConfig()
	cfg.Table = table
	cfg.Region = "us-east-1"
	cfg.Endpoint = testserver.Moto(t)
	cfg.MaxRetries = 3
	cfg.CreateTableIfNotExists = true
	return cfg
}

// open opens a Store on cfg with a metrics registry of its own, closed when
// the test ends.
func open(t testing.TB, cfg Config) *Store {
	t.Helper()
	reg := prometheus.NewRegistry()
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s, err := Open(context.Background(), cfg, reg, log)
	if err != nil {
		t.Fatalf("open table %q: %v", cfg.Table, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// testWriter sends log lines to the test's log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// rawClient returns a plain SDK client of the test server.
func rawClient(t testing.TB) *dynamodb.Client {
	return dynamodb.New(dynamodb.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(testserver.Moto(t)),
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
	})
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, name string) storetest.Store {
		s := open(t, testConfig(t, name))
		return s
	})
}

const testRegistry = `
namespaces:
  - name: user
    primary_key: id
    features:
      id: string
      age: int
      score: float
      name: string
      active: bool
      blob: bytes
      seen: datetime
      tags: list[string]
      embedding: vector[2]
      profile: json
`

func registry(t testing.TB) (*feature.Registry, *feature.Namespace) {
	t.Helper()
	reg, err := feature.Parse("test", []byte(testRegistry))
	if err != nil {
		t.Fatal(err)
	}
	ns, _ := reg.Namespace("user")
	return reg, ns
}

func feat(t testing.TB, reg *feature.Registry, fqn string) *feature.Feature {
	t.Helper()
	f, ok := reg.Lookup(fqn)
	if !ok {
		t.Fatalf("no feature %s", fqn)
	}
	return f
}

var t0 = time.Date(2024, 5, 6, 7, 8, 9, 123456000, time.UTC)

// mappingItems returns the table's FQN → id mapping as stored.
func mappingItems(t testing.TB, c *dynamodb.Client, table string) map[string]string {
	t.Helper()
	out, err := c.Query(context.Background(), &dynamodb.QueryInput{
		TableName:                 aws.String(table),
		KeyConditionExpression:    aws.String("pk = :pk"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": &types.AttributeValueMemberS{Value: mappingPK}},
		ConsistentRead:            aws.Bool(true),
	})
	if err != nil {
		t.Fatalf("query mapping: %v", err)
	}
	m := map[string]string{}
	for _, item := range out.Items {
		fqn, id, err := parseMapping(item)
		if err != nil {
			t.Fatalf("mapping item: %v", err)
		}
		m[fqn] = id
	}
	return m
}

// Two processes meeting the same new features at once must agree on one id
// per feature, whether they load the mapping at start or on first use.
func TestFeatureIDRace(t *testing.T) {
	for _, warmup := range []bool{true, false} {
		t.Run(fmt.Sprintf("warmup=%v", warmup), func(t *testing.T) {
			testFeatureIDRace(t, warmup)
		})
	}
}

func testFeatureIDRace(t *testing.T, warmup bool) {
	reg, ns := registry(t)
	cfg := testConfig(t, tableName(fmt.Sprintf("idrace-%v", warmup)))
	cfg.WarmupFQNMapping = warmup
	const clients = 4
	stores := make([]*Store, clients)
	for i := range stores {
		stores[i] = open(t, cfg)
	}
	fqns := []string{"user.age", "user.name", "user.score", "user.active"}
	var wg sync.WaitGroup
	errs := make([]error, clients)
	for i, s := range stores {
		wg.Go(func() {
			// Each client meets the features in its own order.
			w := store.EntityWrite{Namespace: ns, Key: fmt.Sprintf("k%d", i)}
			for j := range fqns {
				f := feat(t, reg, fqns[(i+j)%len(fqns)])
				var v any
				switch f.Type.Kind {
				case feature.KindInt:
					v = int64(i)
				case feature.KindFloat:
					v = float64(i)
				case feature.KindString:
					v = "x"
				case feature.KindBool:
					v = true
				}
				w.Values = append(w.Values, store.Value{Feature: f, Value: v, ObservedAt: t0})
			}
			errs[i] = s.Write(context.Background(), []store.EntityWrite{w})
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}

	stored := mappingItems(t, rawClient(t), cfg.Table)
	if len(stored) != len(fqns) {
		t.Fatalf("mapping has %d items, want %d: %v", len(stored), len(fqns), stored)
	}
	ids := map[string]string{}
	for fqn, id := range stored {
		if other, dup := ids[id]; dup {
			t.Errorf("id %q given to both %s and %s", id, other, fqn)
		}
		ids[id] = fqn
	}
	for i, s := range stores {
		for _, fqn := range fqns {
			if got := s.names.lookup([]string{fqn})[0]; got != stored[fqn] {
				t.Errorf("client %d: %s has id %q, table says %q", i, fqn, got, stored[fqn])
			}
		}
	}
	// Every client's entity reads back through any client.
	fs := []*feature.Feature{feat(t, reg, "user.age")}
	rows, err := stores[0].Read(context.Background(), ns, []string{"k0", "k1", "k2", "k3"}, fs)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range rows {
		if !r.Cells[0].Found || r.Cells[0].Value != int64(i) {
			t.Errorf("k%d: age = %+v, want %d", i, r.Cells[0], i)
		}
	}
}

// A reader that loaded the mapping before another process introduced a
// feature still finds that feature's values.
func TestReaderSeesFeatureAssignedLater(t *testing.T) {
	reg, ns := registry(t)
	cfg := testConfig(t, tableName("later"))
	reader := open(t, cfg)
	writer := open(t, cfg)
	age, name := feat(t, reg, "user.age"), feat(t, reg, "user.name")
	fs := []*feature.Feature{age, name}

	// Nothing written: absent, and reading assigns no ids.
	rows, err := reader.Read(context.Background(), ns, []string{"u1"}, fs)
	if err != nil {
		t.Fatal(err)
	}
	if rows[0].Found {
		t.Fatalf("unwritten entity found: %+v", rows[0])
	}
	if m := mappingItems(t, rawClient(t), cfg.Table); len(m) != 0 {
		t.Fatalf("a read assigned ids: %v", m)
	}

	write := func(f *feature.Feature, v any) {
		t.Helper()
		err := writer.Write(context.Background(), []store.EntityWrite{{Namespace: ns, Key: "u1",
			Values: []store.Value{{Feature: f, Value: v, ObservedAt: t0}}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	write(age, int64(7))
	rows, err = reader.Read(context.Background(), ns, []string{"u1"}, fs)
	if err != nil {
		t.Fatal(err)
	}
	if c := rows[0].Cells[0]; !c.Found || c.Value != int64(7) {
		t.Errorf("age after another client wrote it: %+v, want 7", c)
	}
	if c := rows[0].Cells[1]; c.Found {
		t.Errorf("unwritten name: %+v, want not found", c)
	}
	write(name, "Ada")
	rows, err = reader.Read(context.Background(), ns, []string{"u1"}, fs)
	if err != nil {
		t.Fatal(err)
	}
	if c := rows[0].Cells[1]; !c.Found || c.Value != "Ada" {
		t.Errorf("name after another client wrote it: %+v, want Ada", c)
	}
}

func TestLazyMapping(t *testing.T) {
	reg, ns := registry(t)
	cfg := testConfig(t, tableName("lazy"))
	first := open(t, cfg)
	age := feat(t, reg, "user.age")
	err := first.Write(context.Background(), []store.EntityWrite{{Namespace: ns, Key: "u",
		Values: []store.Value{{Feature: age, Value: int64(3), ObservedAt: t0}}}})
	if err != nil {
		t.Fatal(err)
	}
	cfg.WarmupFQNMapping = false
	lazy := open(t, cfg)
	if n := lazy.names.size(); n != 0 {
		t.Fatalf("mapping of %d features loaded at Open without warmup", n)
	}
	rows, err := lazy.Read(context.Background(), ns, []string{"u"}, []*feature.Feature{age})
	if err != nil {
		t.Fatal(err)
	}
	if c := rows[0].Cells[0]; !c.Found || c.Value != int64(3) {
		t.Errorf("age = %+v, want 3", c)
	}
}

func TestMissingTable(t *testing.T) {
	cfg := testConfig(t, tableName("missing"))
	cfg.CreateTableIfNotExists = false
	cfg.Region = "eu-west-3"
	reg := prometheus.NewRegistry()
	_, err := Open(context.Background(), cfg, reg, nil)
	if err == nil {
		t.Fatal("Open of a missing table succeeded")
	}
	for _, want := range []string{cfg.Table, "eu-west-3", "does not exist", "DYNAMODB_CREATE_TABLES_IF_NOT_EXISTS"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}

	// The failed Open left nothing registered: trying again works.
	cfg.CreateTableIfNotExists = true
	s, err := Open(context.Background(), cfg, reg, nil)
	if err != nil {
		t.Fatalf("second Open with table creation: %v", err)
	}
	s.Close()
}

func TestWrongKeySchema(t *testing.T) {
	cfg := testConfig(t, tableName("schema"))
	_, err := rawClient(t).CreateTable(context.Background(), &dynamodb.CreateTableInput{
		TableName:            aws.String(cfg.Table),
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("id"), KeyType: types.KeyTypeHash}},
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("id"), AttributeType: types.ScalarAttributeTypeS}},
		BillingMode:          types.BillingModePayPerRequest,
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open(context.Background(), cfg, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "want hash key pk and range key sk") {
		t.Errorf("Open of a table keyed by id: error %v, want one about the key schema", err)
	}
}

// An entity whose item would exceed 400 KB is rejected before any request,
// without holding back the other entities of the call.
func TestOversizeRejected(t *testing.T) {
	reg, ns := registry(t)
	s := open(t, testConfig(t, tableName("oversize")))
	blob, name := feat(t, reg, "user.blob"), feat(t, reg, "user.name")
	// Assign the ids first, so that only entity writes are left to count.
	ok := store.EntityWrite{Namespace: ns, Key: "fine", Values: []store.Value{
		{Feature: blob, Value: make([]byte, 1000), ObservedAt: t0},
		{Feature: name, Value: "fine", ObservedAt: t0},
	}}
	if err := s.Write(context.Background(), []store.EntityWrite{ok}); err != nil {
		t.Fatal(err)
	}
	updates := func() float64 {
		return counterValue(t, s.m.requests.WithLabelValues(opUpdateItem, "ok"))
	}
	before := updates()

	big := store.EntityWrite{Namespace: ns, Key: "huge", Values: []store.Value{
		{Feature: blob, Value: make([]byte, 300<<10), ObservedAt: t0},
		{Feature: name, Value: strings.Repeat("n", 101<<10), ObservedAt: t0},
	}}
	err := s.Write(context.Background(), []store.EntityWrite{big})
	if !errors.Is(err, store.ErrRejected) {
		t.Fatalf("oversize write: error %v, want one wrapping store.ErrRejected", err)
	}
	if !strings.Contains(err.Error(), `user "huge"`) {
		t.Errorf("error %q does not name the entity", err)
	}
	if n := updates() - before; n != 0 {
		t.Errorf("%v updates sent for a rejected entity", n)
	}

	// With a good entity in the same call: it is written, and the error
	// still says rejected.
	ok.Values[1].Value = "still fine"
	ok.Values[1].ObservedAt = t0.Add(time.Second)
	err = s.Write(context.Background(), []store.EntityWrite{big, ok})
	if !errors.Is(err, store.ErrRejected) {
		t.Fatalf("mixed write: error %v, want one wrapping store.ErrRejected", err)
	}
	rows, err := s.Read(context.Background(), ns, []string{"fine", "huge"}, []*feature.Feature{name})
	if err != nil {
		t.Fatal(err)
	}
	if c := rows[0].Cells[0]; c.Value != "still fine" {
		t.Errorf("good entity beside a rejected one: name = %+v", c)
	}
	if rows[1].Found {
		t.Errorf("rejected entity found")
	}
}

// The stored item uses DynamoDB's native types and short attribute names, so
// that it is small and readable with the AWS CLI.
func TestRawItem(t *testing.T) {
	reg, ns := registry(t)
	cfg := testConfig(t, tableName("raw"))
	s := open(t, cfg)
	vals := map[string]any{
		"user.age":       int64(42),
		"user.score":     0.5,
		"user.name":      "Ada",
		"user.active":    true,
		"user.blob":      []byte{1, 2},
		"user.seen":      time.Date(2024, 1, 2, 3, 4, 5, 6000, time.UTC),
		"user.tags":      []any{"a", "b"},
		"user.embedding": []float32{1, -2},
		"user.profile":   map[string]any{"n": json.Number("1.5"), "s": "x", "l": []any{true, nil}, "m": map[string]any{}},
	}
	w := store.EntityWrite{Namespace: ns, Key: "u1"}
	for fqn, v := range vals {
		w.Values = append(w.Values, store.Value{Feature: feat(t, reg, fqn), Value: v, ObservedAt: t0})
	}
	w.Values = append(w.Values, store.Value{Feature: feat(t, reg, "user.id"), Value: nil, ObservedAt: t0})
	if err := s.Write(context.Background(), []store.EntityWrite{w}); err != nil {
		t.Fatal(err)
	}

	c := rawClient(t)
	ids := mappingItems(t, c, cfg.Table)
	out, err := c.GetItem(context.Background(), &dynamodb.GetItemInput{
		TableName: aws.String(cfg.Table),
		Key: map[string]types.AttributeValue{
			"pk": &types.AttributeValueMemberS{Value: "user#u1"},
			"sk": &types.AttributeValueMemberS{Value: "e"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	item := out.Item
	if len(item) != 2+2*len(w.Values) {
		t.Errorf("item has %d attributes, want %d: %v", len(item), 2+2*len(w.Values), item)
	}
	attr := func(fqn string) types.AttributeValue {
		id := ids[fqn]
		if id == "" || len(id) > 2 {
			t.Fatalf("%s has id %q, want a short one", fqn, id)
		}
		// 1714979289123456 µs plus 2^55, 7 bytes big-endian.
		ts, ok := item[id+"@"].(*types.AttributeValueMemberB)
		if want := "8617c3bb534a80"; !ok || hex.EncodeToString(ts.Value) != want {
			t.Errorf("%s observed-at = %#v, want B %s", fqn, item[id+"@"], want)
		}
		return item[id]
	}
	want := map[string]types.AttributeValue{
		"user.age":       &types.AttributeValueMemberN{Value: "42"},
		"user.score":     &types.AttributeValueMemberN{Value: "0.5"},
		"user.name":      &types.AttributeValueMemberS{Value: "Ada"},
		"user.active":    &types.AttributeValueMemberBOOL{Value: true},
		"user.blob":      &types.AttributeValueMemberB{Value: []byte{1, 2}},
		"user.seen":      &types.AttributeValueMemberN{Value: "1704164645000006"},
		"user.tags":      &types.AttributeValueMemberL{Value: []types.AttributeValue{&types.AttributeValueMemberS{Value: "a"}, &types.AttributeValueMemberS{Value: "b"}}},
		"user.embedding": &types.AttributeValueMemberB{Value: []byte{0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0}},
		"user.profile": &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{
			"n": &types.AttributeValueMemberN{Value: "1.5"},
			"s": &types.AttributeValueMemberS{Value: "x"},
			"l": &types.AttributeValueMemberL{Value: []types.AttributeValue{&types.AttributeValueMemberBOOL{Value: true}, &types.AttributeValueMemberNULL{Value: true}}},
			"m": &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{}},
		}},
		"user.id": &types.AttributeValueMemberNULL{Value: true},
	}
	for fqn, wantAV := range want {
		if got := attr(fqn); !sameAV(got, wantAV) {
			t.Errorf("%s stored as %s, want %s", fqn, showAV(got), showAV(wantAV))
		}
	}
}

// sameAV compares attribute values, treating a nil and an empty binary as
// equal.
func sameAV(a, b types.AttributeValue) bool { return showAV(a) == showAV(b) }

// showAV renders an attribute value with its types, maps sorted.
func showAV(av types.AttributeValue) string {
	switch x := av.(type) {
	case *types.AttributeValueMemberN:
		return "N:" + x.Value
	case *types.AttributeValueMemberS:
		return fmt.Sprintf("S:%q", x.Value)
	case *types.AttributeValueMemberB:
		return fmt.Sprintf("B:%x", x.Value)
	case *types.AttributeValueMemberBOOL:
		return fmt.Sprintf("BOOL:%v", x.Value)
	case *types.AttributeValueMemberNULL:
		return "NULL"
	case *types.AttributeValueMemberL:
		parts := make([]string, len(x.Value))
		for i, e := range x.Value {
			parts[i] = showAV(e)
		}
		return "L[" + strings.Join(parts, " ") + "]"
	case *types.AttributeValueMemberM:
		var parts []string
		for k, e := range x.Value {
			parts = append(parts, fmt.Sprintf("%q:%s", k, showAV(e)))
		}
		slices.Sort(parts)
		return "M{" + strings.Join(parts, " ") + "}"
	case nil:
		return "absent"
	}
	return fmt.Sprintf("%T", av)
}

// A value stored under a feature's id that does not decode as the feature's
// type reads as not found, and is counted.
func TestUndecodableIsNotFound(t *testing.T) {
	reg, ns := registry(t)
	cfg := testConfig(t, tableName("undecodable"))
	s := open(t, cfg)
	age, name := feat(t, reg, "user.age"), feat(t, reg, "user.name")
	err := s.Write(context.Background(), []store.EntityWrite{{Namespace: ns, Key: "u", Values: []store.Value{
		{Feature: age, Value: int64(1), ObservedAt: t0},
		{Feature: name, Value: "ok", ObservedAt: t0},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	ageID := s.names.lookup([]string{"user.age"})[0]
	_, err = rawClient(t).UpdateItem(context.Background(), &dynamodb.UpdateItemInput{
		TableName: aws.String(cfg.Table),
		Key: map[string]types.AttributeValue{
			"pk": &types.AttributeValueMemberS{Value: "user#u"},
			"sk": &types.AttributeValueMemberS{Value: "e"},
		},
		UpdateExpression:          aws.String("SET #a = :v"),
		ExpressionAttributeNames:  map[string]string{"#a": ageID},
		ExpressionAttributeValues: map[string]types.AttributeValue{":v": &types.AttributeValueMemberS{Value: "forty"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	rows, err := s.Read(context.Background(), ns, []string{"u"}, []*feature.Feature{age, name})
	if err != nil {
		t.Fatal(err)
	}
	if c := rows[0].Cells[0]; c.Found {
		t.Errorf("string stored under an int feature read as %+v, want not found", c)
	}
	if c := rows[0].Cells[1]; c.Value != "ok" {
		t.Errorf("name = %+v, want ok", c)
	}
	if n := counterValue(t, s.m.undecodable); n != 1 {
		t.Errorf("undecodable counter = %v, want 1", n)
	}
}

// Reads of many keys go out in sub-batches of at most 100.
func TestReadBatches(t *testing.T) {
	reg, ns := registry(t)
	cfg := testConfig(t, tableName("batches"))
	cfg.GetItemMinBatchConcurrency = 2
	s := open(t, cfg)
	age := feat(t, reg, "user.age")
	var ws []store.EntityWrite
	for i := range 30 {
		ws = append(ws, store.EntityWrite{Namespace: ns, Key: fmt.Sprint(i),
			Values: []store.Value{{Feature: age, Value: int64(i), ObservedAt: t0}}})
	}
	if err := s.Write(context.Background(), ws); err != nil {
		t.Fatal(err)
	}
	keys := make([]string, 250)
	for i := range keys {
		keys[i] = fmt.Sprint(i)
	}
	unitsBefore := counterValue(t, s.m.readUnits)
	batchesBefore := counterValue(t, s.m.requests.WithLabelValues(opBatchGetItem, "ok"))
	rows, err := s.Read(context.Background(), ns, keys, []*feature.Feature{age})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range rows {
		if want := i < 30; r.Found != want || r.Cells[0].Found != want || want && r.Cells[0].Value != int64(i) {
			t.Errorf("key %d: %+v", i, r)
		}
	}
	if n := counterValue(t, s.m.requests.WithLabelValues(opBatchGetItem, "ok")) - batchesBefore; n != 3 {
		t.Errorf("%v BatchGetItem requests for 250 keys at concurrency 2, want 3", n)
	}
	// 30 items under 4 KiB and 220 absent keys, eventually consistent.
	if n := counterValue(t, s.m.readUnits) - unitsBefore; n != 125 {
		t.Errorf("read units = %v, want 125", n)
	}
}

// Closing fails later calls instead of leaving them to a dead client.
func TestClosed(t *testing.T) {
	_, ns := registry(t)
	s := open(t, testConfig(t, tableName("closed")))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Read(context.Background(), ns, []string{"u"}, nil); !errors.Is(err, errClosed) {
		t.Errorf("read after close: %v", err)
	}
	if err := s.Write(context.Background(), []store.EntityWrite{{Namespace: ns, Key: "u"}}); !errors.Is(err, errClosed) {
		t.Errorf("write after close: %v", err)
	}
}

// counterValue returns a counter's current value.
func counterValue(t testing.TB, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// A write older than the stored value is skipped using the item DynamoDB
// returns with the failed condition, without another read.
func TestStaleWriteSkipped(t *testing.T) {
	reg, ns := registry(t)
	s := open(t, testConfig(t, tableName("stale")))
	age, name := feat(t, reg, "user.age"), feat(t, reg, "user.name")
	write := func(at time.Time, a int64, n string) {
		t.Helper()
		err := s.Write(context.Background(), []store.EntityWrite{{Namespace: ns, Key: "u", Values: []store.Value{
			{Feature: age, Value: a, ObservedAt: at},
			{Feature: name, Value: n, ObservedAt: t0},
		}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	write(t0.Add(time.Second), 2, "first")
	gets := counterValue(t, s.m.requests.WithLabelValues(opGetItem, "ok"))
	write(t0, 1, "second") // age older, name equal
	if n := counterValue(t, s.m.staleSkipped); n != 1 {
		t.Errorf("stale values skipped = %v, want 1", n)
	}
	if n := counterValue(t, s.m.requests.WithLabelValues(opGetItem, "ok")) - gets; n != 0 {
		t.Errorf("%v GetItem requests after a failed condition, want 0 (the item comes with the failure)", n)
	}
	if n := counterValue(t, s.m.requests.WithLabelValues(opUpdateItem, "condition_failed")); n != 1 {
		t.Errorf("%v failed conditions, want 1", n)
	}
	rows, err := s.Read(context.Background(), ns, []string{"u"}, []*feature.Feature{age, name})
	if err != nil {
		t.Fatal(err)
	}
	if c := rows[0].Cells; c[0].Value != int64(2) || c[1].Value != "second" {
		t.Errorf("after a half-stale write: age %+v, name %+v; want 2 and second", c[0], c[1])
	}
}

// An entity with more features than one update carries is written in
// several, and reads back whole.
func TestWideEntity(t *testing.T) {
	const n = 150
	var b strings.Builder
	b.WriteString("namespaces:\n  - name: wide\n    primary_key: id\n    features:\n      id: string\n")
	for i := range n {
		fmt.Fprintf(&b, "      f%03d: int\n", i)
	}
	reg, err := feature.Parse("wide", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	ns, _ := reg.Namespace("wide")
	s := open(t, testConfig(t, tableName("wide")))
	w := store.EntityWrite{Namespace: ns, Key: "w"}
	fs := ns.Features[1:]
	for i, f := range fs {
		w.Values = append(w.Values, store.Value{Feature: f, Value: int64(i), ObservedAt: t0})
	}
	if err := s.Write(context.Background(), []store.EntityWrite{w}); err != nil {
		t.Fatal(err)
	}
	rows, err := s.Read(context.Background(), ns, []string{"w"}, fs)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range rows[0].Cells {
		if !c.Found || c.Value != int64(i) {
			t.Errorf("%s = %+v, want %d", fs[i].FQN, c, i)
		}
	}
	if got := counterValue(t, s.m.requests.WithLabelValues(opUpdateItem, "ok")); got < 3 {
		t.Errorf("%v updates, want at least 3 for %d features", got, n)
	}
}

// gaugeValue returns a gauge's current value.
func gaugeValue(t testing.TB, g prometheus.Gauge) float64 {
	t.Helper()
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetGauge().GetValue()
}
