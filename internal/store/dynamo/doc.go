// Package dynamo is the DynamoDB online store: one table per environment,
// one item per entity, values in DynamoDB's native types under short
// feature ids, written newest-wins per feature with conditional updates.
//
// # Table
//
// The table has a string hash key pk and a string range key sk, nothing
// else (no indexes). Open checks this, and creates the table with
// on-demand capacity when CreateTableIfNotExists is set.
//
// # Entity items
//
// An entity (namespace user, key u1) is the item
//
//	pk = "user#u1"   sk = "e"
//
// holding every plain feature of the entity. Feature f with short id ID is
// two attributes:
//
//	ID     the value, in the native type below
//	ID@    its observed-at: microseconds since the Unix epoch plus 2^55,
//	       7 bytes big-endian, a binary (byte order is time order, so
//	       conditions compare it directly; see observed.go)
//
// Values by feature type:
//
//	int        N  decimal
//	float      N  shortest decimal that reads back exactly; a float
//	              DynamoDB cannot hold (magnitude over 1E+126 or under
//	              1E-130, or -0) is B, its 8 IEEE 754 bytes little-endian
//	string     S
//	bool       BOOL
//	bytes      B
//	datetime   N  microseconds since the Unix epoch (UTC)
//	list[T]    L  of elements encoded as T
//	vector[N]  B  N float32s, 4 bytes each, little-endian
//	json       M  numbers N, strings S, booleans BOOL, null NULL, arrays L,
//	              objects M; an object key that is empty or starts with ~
//	              is stored with one more ~ in front (DynamoDB map keys
//	              cannot be empty); a number DynamoDB cannot hold exactly (over 38
//	              significant digits, or out of its range) makes the write
//	              rejected; numbers read back in DynamoDB's canonical form
//	              (1.50 as 1.5), equal in value
//	any, null  NULL (an explicit null, with its observed-at)
//
// A stored value that does not decode as its feature's current type (the
// type was changed, or the item was edited by hand) is answered as not
// found and counted in cairn_dynamo_undecodable_values_total.
//
// # Short feature ids
//
// Feature names are stored as short ids, the base-36 text of a number (1,
// 2, ..., z, 10, ...), never pk or sk. The mapping lives in the table:
//
//	pk = "__meta#fqn"      sk = "user.age"  id = "7"    one item per feature
//	pk = "__meta#counter"  sk = "fqn"       n  = 12     the last number used
//
// A writer meeting features without ids reads their mapping items
// (strongly consistent: another process may have assigned them), reserves
// as many numbers as it still needs by adding to the counter (UpdateItem
// ADD), and writes each mapping item on condition that none exists; if
// another process won that race, it reads and uses the winner's id, and its
// own number is never used. So one FQN never has two ids, and an id is
// never reused. The mapping is loaded whole (one Query) at Open, or on first
// use without WarmupFQNMapping. Readers never assign ids: a feature without
// one has never been written, unless another process assigned it since the
// load; the entity items tell (they then hold an attribute with an unknown
// id), and the mapping is reloaded.
//
// Namespace names never start with "_", so mapping items cannot collide with
// entities.
//
// # Reading an item by hand
//
//	aws dynamodb query --table-name TABLE \
//	    --key-condition-expression 'pk = :p' \
//	    --expression-attribute-values '{":p":{"S":"__meta#fqn"}}'
//	aws dynamodb get-item --table-name TABLE \
//	    --key '{"pk":{"S":"user#u1"},"sk":{"S":"e"}}'
//
// The first lists the feature ids; in the second, attribute "7" is then the
// value of user.age and "7@" when it was observed.
//
// # Reads and writes
//
// Reads are eventually consistent BatchGetItem requests, projected to the
// requested attributes, split into sub-batches of at most 100 keys (see
// subBatches), several in flight at once, raced when EnableRequestRacing
// is set (package hedge); keys DynamoDB leaves unprocessed are retried with
// backoff and never answered as absent. An entity read costs half a 4 KiB
// read unit as long as its item stays under 4 KiB.
//
// A write of one entity is one UpdateItem setting every written feature's
// value and observed-at, on condition (OnlyWriteNewerValues) that none of
// those features has a newer stored observed-at. When the condition fails,
// DynamoDB returns the stored item; the features it holds newer values of
// are dropped and the rest written again. A write of several entities (the
// bulk path) is TransactWriteItems requests of up to 100 entities with the
// same guard (CheckTSForBulkWrites), cancellations being retried without
// the stale features (see writeTransactions). The result is newest-wins per
// feature, atomic per entity (per 64 features for larger writes). An item
// over 400 KB is rejected before any request.
//
// # Buckets
//
// Windowed features keep their buckets (store.BucketStore) as items of
// their own under the entity's partition key, with sort key
// b#<feature short id>#<start, Unix seconds, 12 digits>, the state (st),
// a version (ver), the writing put's token (tok) and _ttl. GetBucket is a
// strongly consistent GetItem, PutBucket a PutItem conditioned on the
// version (a failed condition is ok false, not an error, unless the item
// holds the put's own token: a retry of an applied attempt),
// ReadBuckets one eventually consistent Query of
// a sort-key range. Entity reads and ScanKeys ask for sort key "e" only, so
// they never meet bucket items. See bucket.go and docs/dynamodb.md.
//
// # Client
//
// Requests go through the AWS SDK with cairn's transport (NumClientConnections),
// a bound on the attempts in flight (NumClientThreads), a per-attempt timeout
// (RequestTimeout), and retries of throttling, 5xx answers, timeouts and
// dropped connections with capped, jittered exponential backoff
// (MaxRetries, RetryScaleFactor; see retryReason and backoffDelay). Items
// are encoded and decoded on a separate pool (NumSerdeThreads). The formulas
// are written out in docs/dynamodb.md.
//
// # IAM
//
// The client needs dynamodb:DescribeTable, Query, GetItem, BatchGetItem,
// PutItem, UpdateItem, TransactWriteItems and Scan (ScanKeys) on the table,
// and CreateTable and UpdateTimeToLive when it may create it.
//
// # Expiry
//
// Items of a namespace whose features all have a finite maximum staleness
// carry _ttl, in seconds since the Unix epoch, which DynamoDB's Time to
// Live deletes them after: when the newest value written goes stale, its
// observed-at (or the write time, if later) plus the longest staleness
// (itemTTL, itemExpiry). A value observed in the future, up to the year
// 2999, keeps its item until it goes stale. The expiry is only raised: an
// update sets _ttl on condition that the stored one is not later, and
// when that fails, writes again leaving it alone. An item of a namespace
// whose values never go stale has its _ttl removed.
package dynamo
