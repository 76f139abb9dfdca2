// Package gtreplicator copies the items of a DynamoDB table between two
// regions from their streams, after a lag, resolving conflicts per item
// with last writer wins, as DynamoDB Global Tables do. It is a test
// fixture: moto has no replicas (UpdateTable's ReplicaUpdates is ignored),
// so the failover drill stands up one moto_server per region, creates the
// table in each, and runs a Replicator between them.
//
// What it does, and how:
//
//   - Each region's table must have a stream of NEW_AND_OLD_IMAGES. [Replicator.Run]
//     waits for the table to exist and turns its stream on with
//     UpdateTable when it is off; records written before that are not on
//     the stream and are never copied. [Replicator.Prepare] creates the
//     table with cairn's key schema (pk and sk, strings) and the stream,
//     so that a test can call it before cairn starts: cairn then finds the
//     table and uses it as it is (DYNAMODB_CREATE_TABLES_IF_NOT_EXISTS).
//
//   - Every record of a region's stream is applied whole to the other
//     region, no earlier than Options.Lag after its
//     ApproximateCreationDateTime, in stream order: a PutItem of its
//     NewImage, or a DeleteItem of its keys for a REMOVE.
//
//   - Last writer wins per item. For each region and item the replicator
//     keeps the version the region holds: the creation time of the record
//     and the region it was first written in (the tie-break: the greater
//     region name wins a tie), learnt from the region's own stream and
//     from the versions it applied there. A record is applied only if its
//     version is newer than the one the target holds; otherwise it is
//     dropped and counted ([Replicator.Dropped]).
//
//   - No echo. The replicator's own writes appear on the target's stream;
//     it remembers, per item, the images it wrote and skips a record
//     carrying one of them ([Replicator.Echoes]), so nothing ping-pongs.
//
//   - A region that does not answer (the drill pauses its moto) is retried
//     every Options.Poll with a bounded wait per request, and the other
//     direction carries on reading. A region whose stream is gone (its
//     moto restarted, losing every table) is looked up again once its
//     table exists again ([Replicator.Prepare] or cairn makes it), and
//     copied to from the records read after that.
//
//   - Every write is conditional on the target still holding what the
//     replicator last saw there (attribute_not_exists of the key, or every
//     attribute equal), so a local write to the target that landed after
//     the replicator read the target's stream is never overwritten by an
//     older version: the write fails, the stream is read again and the
//     decision made again, as Global Tables decide atomically. An item
//     that was in the table before its stream was on is read with GetItem
//     and taken as older than any write.
//
// For a test: [Replicator.Lagging] is zero when every record read is
// copied or dropped; [Replicator.Position] says how many records of a
// region were read and up to which creation time its writes are copied
// (Position.Copied), which bounds what a failover at that moment loses.
//
// Known differences from Global Tables: a local write identical to an
// image the replicator wrote and has not yet seen back may be taken for
// the echo and not copied, which is harmless since the other region holds
// that image already; and moto, unlike DynamoDB, puts a record on the
// stream for a PutItem that changes nothing, which the echo count relies
// on.
//
// Region.Name is the AWS region the requests are signed with: moto keeps
// one set of tables per region, so it must be the region cairn's processes
// of that side use.
package gtreplicator

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	st "github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
)

// Region names one side of the pair.
type Region struct {
	// Name is the AWS region requests are signed with, such as
	// us-east-1. The two regions' names must differ.
	Name string
	// Endpoint is the URL of the region's DynamoDB API, such as
	// http://127.0.0.1:41234; DynamoDB Streams is served there too.
	Endpoint string
}

// Options configure a Replicator.
type Options struct {
	// Table is the table's name, the same in both regions. Required.
	Table string
	// Lag is how long after its creation time a record is applied to the
	// other region. Default 0.
	Lag time.Duration
	// Poll is the time between two reads of the streams, and between two
	// attempts at a region that does not answer. Default 50ms.
	Poll time.Duration
	// RequestTimeout bounds each request, so that a hung region holds the
	// other direction up no longer than that. Default 1s.
	RequestTimeout time.Duration
}

// Position is how far the replicator has read a region's stream.
type Position struct {
	// Read is the number of records read from the stream.
	Read int64
	// Newest is the creation time of the newest record read; zero before
	// the first.
	Newest time.Time
	// Pending is the number of records read whose copy to the other
	// region is neither applied nor dropped yet.
	Pending int
	// Copied is the creation time of the newest record applied or
	// dropped: every earlier local write of the region is in the other
	// region, or lost to a newer version there. Zero before the first.
	Copied time.Time
}

// version is the version of an item a region holds.
type version struct {
	at     time.Time
	origin string
}

// newer reports whether v wins over w under last writer wins.
func (v version) newer(w version) bool {
	if !v.at.Equal(w.at) {
		return v.at.After(w.at)
	}
	return v.origin > w.origin
}

// holding is what the replicator knows a region holds of an item.
type holding struct {
	ver version
	// image is the item, nil when the region does not hold it.
	image map[string]ddb.AttributeValue
}

// change is one record of a stream, to be copied to the other region.
type change struct {
	key  string
	keys map[string]ddb.AttributeValue
	// image is the new image, nil for a REMOVE.
	image map[string]ddb.AttributeValue
	ver   version
}

// side is one region with its clients and what is known of it.
type side struct {
	Region
	db     *dynamodb.Client
	stream *dynamodbstreams.Client

	// Used by Run's goroutine alone.
	arn       string
	iterators map[string]*string // by shard id; nil after the shard closed

	// Guarded by Replicator.mu.
	held    map[string]holding                       // by item key: the version this region holds
	echoes  map[string]int                           // by item key and image: writes not yet seen back
	keys    map[string]map[string]ddb.AttributeValue // by item key: its key attributes
	queue   []change                                 // records to copy to the other region, in order
	read    int64
	newest  time.Time
	applied int64
	dropped int64
	skipped int64
	retryAt time.Time
	copied  time.Time
}

// Replicator copies a table between two regions both ways.
type Replicator struct {
	opts  Options
	sides [2]*side

	mu sync.Mutex
}

// New returns a replicator between the regions a and b.
func New(a, b Region, opts Options) *Replicator {
	if opts.Poll == 0 {
		opts.Poll = 50 * time.Millisecond
	}
	if opts.RequestTimeout == 0 {
		opts.RequestTimeout = time.Second
	}
	r := &Replicator{opts: opts}
	for i, reg := range []Region{a, b} {
		creds := credentials.NewStaticCredentialsProvider("test", "test", "")
		r.sides[i] = &side{
			Region: reg,
			db: dynamodb.New(dynamodb.Options{Region: reg.Name, BaseEndpoint: aws.String(reg.Endpoint),
				Credentials: creds, RetryMaxAttempts: 1}),
			stream: dynamodbstreams.New(dynamodbstreams.Options{Region: reg.Name, BaseEndpoint: aws.String(reg.Endpoint),
				Credentials: creds, RetryMaxAttempts: 1}),
			iterators: map[string]*string{},
			held:      map[string]holding{},
			echoes:    map[string]int{},
			keys:      map[string]map[string]ddb.AttributeValue{},
		}
	}
	return r
}

func (r *Replicator) side(name string) *side {
	for _, s := range r.sides {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// Applied returns how many records of region from's stream were applied
// to the other region.
func (r *Replicator) Applied(from string) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s := r.side(from); s != nil {
		return s.applied
	}
	return 0
}

// Dropped returns how many records of region from's stream were not
// applied to the other region because it held a newer version of the item.
func (r *Replicator) Dropped(from string) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s := r.side(from); s != nil {
		return s.dropped
	}
	return 0
}

// Echoes returns how many records of region's stream were the
// replicator's own writes, and so were not copied back.
func (r *Replicator) Echoes(region string) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s := r.side(region); s != nil {
		return s.skipped
	}
	return 0
}

// Lagging returns the number of records read from either stream and not
// yet applied or dropped. With no writes in flight, a test waits for it
// to be zero, after a position past its last write ([Replicator.Position]).
func (r *Replicator) Lagging() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.sides[0].queue) + len(r.sides[1].queue)
}

// Position returns how far region's stream has been read.
func (r *Replicator) Position(region string) Position {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.side(region)
	if s == nil {
		return Position{}
	}
	return Position{Read: s.read, Newest: s.newest, Pending: len(s.queue), Copied: s.copied}
}

// Prepare creates the table in both regions with cairn's key schema (pk
// hash, sk range, both strings), on-demand capacity and a stream of
// NEW_AND_OLD_IMAGES, and turns the stream on where the table exists
// without one. It returns the first region's error.
func (r *Replicator) Prepare(ctx context.Context) error {
	for _, s := range r.sides {
		_, err := s.db.CreateTable(ctx, &dynamodb.CreateTableInput{
			TableName: aws.String(r.opts.Table),
			KeySchema: []ddb.KeySchemaElement{
				{AttributeName: aws.String("pk"), KeyType: ddb.KeyTypeHash},
				{AttributeName: aws.String("sk"), KeyType: ddb.KeyTypeRange},
			},
			AttributeDefinitions: []ddb.AttributeDefinition{
				{AttributeName: aws.String("pk"), AttributeType: ddb.ScalarAttributeTypeS},
				{AttributeName: aws.String("sk"), AttributeType: ddb.ScalarAttributeTypeS},
			},
			BillingMode: ddb.BillingModePayPerRequest,
			StreamSpecification: &ddb.StreamSpecification{StreamEnabled: aws.Bool(true),
				StreamViewType: ddb.StreamViewTypeNewAndOldImages},
		})
		var inUse *ddb.ResourceInUseException
		if err != nil && !errors.As(err, &inUse) {
			return fmt.Errorf("gtreplicator: create table %q in %s: %w", r.opts.Table, s.Name, err)
		}
		if _, err := r.streamARN(ctx, s); err != nil {
			return err
		}
	}
	return nil
}

// streamARN returns the table's latest stream in s, turning the stream on
// if it is off.
func (r *Replicator) streamARN(ctx context.Context, s *side) (string, error) {
	out, err := s.db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(r.opts.Table)})
	if err != nil {
		return "", fmt.Errorf("gtreplicator: describe table %q in %s: %w", r.opts.Table, s.Name, err)
	}
	if arn := aws.ToString(out.Table.LatestStreamArn); arn != "" && out.Table.StreamSpecification != nil &&
		aws.ToBool(out.Table.StreamSpecification.StreamEnabled) {
		if v := out.Table.StreamSpecification.StreamViewType; v != ddb.StreamViewTypeNewAndOldImages && v != ddb.StreamViewTypeNewImage {
			return "", fmt.Errorf("gtreplicator: table %q in %s: stream view type %s; want NEW_AND_OLD_IMAGES", r.opts.Table, s.Name, v)
		}
		return arn, nil
	}
	up, err := s.db.UpdateTable(ctx, &dynamodb.UpdateTableInput{TableName: aws.String(r.opts.Table),
		StreamSpecification: &ddb.StreamSpecification{StreamEnabled: aws.Bool(true),
			StreamViewType: ddb.StreamViewTypeNewAndOldImages}})
	if err != nil {
		return "", fmt.Errorf("gtreplicator: turn on the stream of table %q in %s: %w", r.opts.Table, s.Name, err)
	}
	arn := aws.ToString(up.TableDescription.LatestStreamArn)
	if arn == "" {
		return "", fmt.Errorf("gtreplicator: table %q in %s: UpdateTable gave no stream", r.opts.Table, s.Name)
	}
	return arn, nil
}

// Run replicates both ways until ctx ends, and returns nil then. A region
// that does not answer, or whose table does not exist yet, is retried
// every Options.Poll.
func (r *Replicator) Run(ctx context.Context) error {
	if r.opts.Table == "" {
		return errors.New("gtreplicator: Options.Table is empty; want the table's name")
	}
	if r.sides[0].Name == r.sides[1].Name {
		return fmt.Errorf("gtreplicator: both regions are named %q; want two names", r.sides[0].Name)
	}
	t := time.NewTicker(r.opts.Poll)
	defer t.Stop()
	for {
		for i, s := range r.sides {
			other := r.sides[1-i]
			r.read(ctx, s)
			// Read the target just before writing it: the versions it
			// holds decide what is applied.
			r.read(ctx, other)
			r.apply(ctx, s, other)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// down reports whether s is waiting before its next attempt, and records
// a failure of s when err is not nil.
func (r *Replicator) down(s *side, err error) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		s.retryAt = time.Now().Add(r.opts.Poll)
	}
	return time.Now().Before(s.retryAt)
}

// read reads every new record of s's stream.
func (r *Replicator) read(ctx context.Context, s *side) {
	if ctx.Err() != nil || r.down(s, nil) {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, r.opts.RequestTimeout)
	defer cancel()
	if s.arn == "" {
		arn, err := r.streamARN(rctx, s)
		if r.down(s, err) {
			return
		}
		s.arn = arn
	}
	if err := r.discoverShards(rctx, s); r.down(s, err) {
		r.lost(s, err)
		return
	}
	for shard, it := range s.iterators {
		for it != nil {
			out, err := s.stream.GetRecords(rctx, &dynamodbstreams.GetRecordsInput{ShardIterator: it})
			if r.down(s, err) {
				r.lost(s, err)
				return
			}
			for _, rec := range out.Records {
				r.record(s, rec)
			}
			s.iterators[shard] = out.NextShardIterator
			if len(out.Records) == 0 || out.NextShardIterator == nil {
				break
			}
			it = out.NextShardIterator
		}
	}
}

// lost forgets s's stream, and what s was known to hold, when err says
// the stream is gone (a moto restarted without its tables, a table
// deleted): the next read looks the table's stream up again, from its
// first record, and what s holds is learnt again through conditional
// writes and the new stream.
func (r *Replicator) lost(s *side, err error) {
	var gone *st.ResourceNotFoundException
	if !errors.As(err, &gone) {
		return
	}
	s.arn = ""
	s.iterators = map[string]*string{}
	r.mu.Lock()
	defer r.mu.Unlock()
	s.held = map[string]holding{}
	s.echoes = map[string]int{}
}

// discoverShards starts reading, from their first record, the shards of
// s's stream not read yet.
func (r *Replicator) discoverShards(ctx context.Context, s *side) error {
	out, err := s.stream.DescribeStream(ctx, &dynamodbstreams.DescribeStreamInput{StreamArn: aws.String(s.arn)})
	if err != nil {
		return fmt.Errorf("gtreplicator: describe stream in %s: %w", s.Name, err)
	}
	for _, sh := range out.StreamDescription.Shards {
		id := aws.ToString(sh.ShardId)
		if _, ok := s.iterators[id]; ok {
			continue
		}
		it, err := s.stream.GetShardIterator(ctx, &dynamodbstreams.GetShardIteratorInput{StreamArn: aws.String(s.arn),
			ShardId: sh.ShardId, ShardIteratorType: st.ShardIteratorTypeTrimHorizon})
		if err != nil {
			return fmt.Errorf("gtreplicator: shard iterator of %s in %s: %w", id, s.Name, err)
		}
		s.iterators[id] = it.ShardIterator
	}
	return nil
}

// record takes in one record of s's stream: an echo of the replicator's
// own write is skipped; a local write updates the version s holds and is
// queued for the other region.
func (r *Replicator) record(s *side, rec st.Record) {
	if rec.Dynamodb == nil {
		return
	}
	keys := convertItem(rec.Dynamodb.Keys)
	var image map[string]ddb.AttributeValue
	if rec.EventName != st.OperationTypeRemove {
		image = convertItem(rec.Dynamodb.NewImage)
	}
	c := change{key: canonical(keys), keys: keys, image: image,
		ver: version{at: aws.ToTime(rec.Dynamodb.ApproximateCreationDateTime), origin: s.Name}}
	r.mu.Lock()
	defer r.mu.Unlock()
	s.read++
	s.keys[c.key] = keys
	if c.ver.at.After(s.newest) {
		s.newest = c.ver.at
	}
	echo := c.key + "\x00" + canonical(image)
	if s.echoes[echo] > 0 {
		if s.echoes[echo]--; s.echoes[echo] == 0 {
			delete(s.echoes, echo)
		}
		s.skipped++
		return
	}
	s.held[c.key] = holding{ver: c.ver, image: image}
	s.queue = append(s.queue, c)
}

// apply copies to the records of from's stream that are due, in order,
// stopping at the first that to does not take.
func (r *Replicator) apply(ctx context.Context, from, to *side) {
	for ctx.Err() == nil && !r.down(to, nil) {
		r.mu.Lock()
		if len(from.queue) == 0 {
			r.mu.Unlock()
			return
		}
		c := from.queue[0]
		if time.Now().Before(c.ver.at.Add(r.opts.Lag)) {
			r.mu.Unlock()
			return
		}
		held := to.held[c.key]
		if !c.ver.newer(held.ver) {
			from.queue = from.queue[1:]
			from.dropped++
			from.copied = c.ver.at
			r.mu.Unlock()
			continue
		}
		// Expected back on to's stream: counted before the write, whose
		// answer may be lost while the write lands.
		echo := c.key + "\x00" + canonical(c.image)
		to.echoes[echo]++
		to.keys[c.key] = c.keys
		r.mu.Unlock()

		err := r.write(ctx, to, c, held)

		r.mu.Lock()
		var changed *ddb.ConditionalCheckFailedException
		if errors.As(err, &changed) {
			// Not written: the target changed since it was read.
			if to.echoes[echo]--; to.echoes[echo] <= 0 {
				delete(to.echoes, echo)
			}
		}
		if errors.Is(err, errNothingDeleted) {
			// No REMOVE record will come back.
			if to.echoes[echo]--; to.echoes[echo] <= 0 {
				delete(to.echoes, echo)
			}
			err = nil
		}
		if err == nil {
			to.held[c.key] = holding{ver: c.ver, image: c.image}
			from.queue = from.queue[1:]
			from.applied++
			from.copied = c.ver.at
		}
		r.mu.Unlock()
		if changed != nil {
			if err := r.changed(ctx, to, c.key, held.ver); err != nil {
				r.down(to, err)
				return
			}
			continue
		}
		if r.down(to, err) {
			return
		}
	}
}

// changed learns what to holds of the item key after a conditional write
// found it changed since the version held was read: the change is on
// to's stream, unless the item was there before the stream was turned on,
// in which case it is read and taken as older than any write.
func (r *Replicator) changed(ctx context.Context, to *side, key string, held version) error {
	r.read(ctx, to)
	r.mu.Lock()
	now := to.held[key]
	r.mu.Unlock()
	if now.ver != held {
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, r.opts.RequestTimeout)
	defer cancel()
	r.mu.Lock()
	keys := to.keys[key]
	r.mu.Unlock()
	out, err := to.db.GetItem(rctx, &dynamodb.GetItemInput{TableName: aws.String(r.opts.Table), Key: keys, ConsistentRead: aws.Bool(true)})
	if err != nil {
		return fmt.Errorf("gtreplicator: get item %s in %s: %w", key, to.Name, err)
	}
	r.mu.Lock()
	if to.held[key].ver == held {
		to.held[key] = holding{image: out.Item}
	}
	r.mu.Unlock()
	return nil
}

// errNothingDeleted is returned by write for a REMOVE of an item the
// target does not hold.
var errNothingDeleted = errors.New("gtreplicator: nothing deleted")

// write puts c's image to s, or deletes its item, on condition that s
// still holds the item as held; a *ddb.ConditionalCheckFailedException
// says it does not.
func (r *Replicator) write(ctx context.Context, s *side, c change, held holding) error {
	ctx, cancel := context.WithTimeout(ctx, r.opts.RequestTimeout)
	defer cancel()
	cond, names, values := condition(c.keys, held.image)
	if c.image != nil {
		_, err := s.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(r.opts.Table), Item: c.image,
			ConditionExpression: cond, ExpressionAttributeNames: names, ExpressionAttributeValues: values})
		if err != nil {
			return fmt.Errorf("gtreplicator: put item %s in %s: %w", c.key, s.Name, err)
		}
		return nil
	}
	out, err := s.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: aws.String(r.opts.Table), Key: c.keys,
		ReturnValues:        ddb.ReturnValueAllOld,
		ConditionExpression: cond, ExpressionAttributeNames: names, ExpressionAttributeValues: values})
	if err != nil {
		return fmt.Errorf("gtreplicator: delete item %s in %s: %w", c.key, s.Name, err)
	}
	if len(out.Attributes) == 0 {
		return errNothingDeleted
	}
	return nil
}

// condition returns the condition that an item with the given keys is
// absent (image nil) or has every attribute of image with its value.
func condition(keys, image map[string]ddb.AttributeValue) (*string, map[string]string, map[string]ddb.AttributeValue) {
	names := map[string]string{}
	if image == nil {
		for k := range keys {
			names["#k"] = k
			break
		}
		return aws.String("attribute_not_exists(#k)"), names, nil
	}
	values := map[string]ddb.AttributeValue{}
	attrs := make([]string, 0, len(image))
	for a := range image {
		attrs = append(attrs, a)
	}
	slices.Sort(attrs)
	terms := make([]string, len(attrs))
	for i, a := range attrs {
		n, v := fmt.Sprintf("#a%d", i), fmt.Sprintf(":v%d", i)
		names[n], values[v] = a, image[a]
		terms[i] = n + " = " + v
	}
	return aws.String(strings.Join(terms, " AND ")), names, values
}
