package dynamo

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// table is the client of the one table, shared by the Store and its
// feature-name mapping.
type table struct {
	name   string
	client *dynamodb.Client
	m      *metrics
	// maxStalled bounds the BatchGetItem rounds in a row that make no
	// progress (Config.MaxRetries).
	maxStalled int
	// retryBase is the unit of the backoff between rounds of unprocessed
	// keys (Config.RetryScaleFactor milliseconds).
	retryBase time.Duration
}

// itemKey returns the primary key of an item.
func itemKey(pk, sk string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		"pk": &types.AttributeValueMemberS{Value: pk},
		"sk": &types.AttributeValueMemberS{Value: sk},
	}
}

// batchGet reads up to batchGetMaxKeys items in one BatchGetItem, retrying
// the keys DynamoDB leaves unprocessed (under throttling) with the backoff
// of throttled requests (backoffDelay, base Config.RetryScaleFactor ms). An
// unprocessed key is never reported absent: if MaxRetries rounds in a row
// make no progress, batchGet fails. Absent items are missing from the
// result.
func (t *table) batchGet(ctx context.Context, keys []map[string]types.AttributeValue, proj *projection, c consistency) ([]map[string]types.AttributeValue, error) {
	var items []map[string]types.AttributeValue
	stalled := 0
	for {
		ka := types.KeysAndAttributes{Keys: keys, ConsistentRead: aws.Bool(c != eventual)}
		if proj != nil {
			ka.ProjectionExpression = aws.String(proj.expr)
			ka.ExpressionAttributeNames = proj.names
		}
		out, err := t.client.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{
			RequestItems: map[string]types.KeysAndAttributes{t.name: ka},
		})
		t.m.request(opBatchGetItem, err)
		if err != nil {
			return nil, fmt.Errorf("batch get %d keys: %w", len(keys), err)
		}
		got := out.Responses[t.name]
		items = append(items, got...)
		for _, item := range got {
			t.m.readItem(item, c)
		}
		left := out.UnprocessedKeys[t.name].Keys
		// Keys neither returned nor left unprocessed are absent, which
		// costs the minimum read.
		for range len(keys) - len(got) - len(left) {
			t.m.readItem(nil, c)
		}
		if len(left) == 0 {
			return items, nil
		}
		t.m.unprocessed.Add(float64(len(left)))
		t.m.throttles.WithLabelValues(opBatchGetItem).Inc()
		if len(left) < len(keys) {
			stalled = 0
		} else if stalled++; stalled > t.maxStalled {
			return nil, fmt.Errorf("batch get: %d keys still unprocessed after %d rounds without progress", len(left), stalled)
		}
		keys = left
		if err := sleep(ctx, jitteredBackoff(t.retryBase, max(1, stalled))); err != nil {
			return nil, fmt.Errorf("batch get: %d keys unprocessed: %w", len(left), err)
		}
	}
}
