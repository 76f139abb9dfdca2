package dynamo

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/cairnfs/cairn/internal/feature"
)

const opScan = "Scan"

// scanSegments is how many segments of a parallel key scan run at once;
// each holds at most one request slot at a time.
const scanSegments = 4

// ScanKeys calls fn with the key of every entity of ns, from a parallel,
// strongly consistent Scan projected to the partition key: an entity
// written before the scan starts is listed. It reads the whole table (about
// one read unit per 4 KiB of keys scanned, whatever the filter), so it is
// for building Bloom filters at start, not for queries. fn is called from
// one goroutine at a time; the scan stops at the first error it returns.
func (s *Store) ScanKeys(ctx context.Context, ns *feature.Namespace, fn func(key string) error) error {
	if s.closed.Load() {
		return errClosed
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	prefix := entityPK(ns.Name, "")
	var (
		mu   sync.Mutex // serializes fn
		errs = make([]error, scanSegments)
		wg   sync.WaitGroup
	)
	for seg := range scanSegments {
		wg.Go(func() {
			var start map[string]types.AttributeValue
			for {
				out, err := s.tbl.client.Scan(ctx, &dynamodb.ScanInput{
					TableName:                 aws.String(s.tbl.name),
					Segment:                   aws.Int32(int32(seg)),
					TotalSegments:             aws.Int32(scanSegments),
					ConsistentRead:            aws.Bool(true),
					ProjectionExpression:      aws.String("pk"),
					FilterExpression:          aws.String("begins_with(pk, :p) AND sk = :e"),
					ExpressionAttributeValues: map[string]types.AttributeValue{":p": &types.AttributeValueMemberS{Value: prefix}, ":e": &types.AttributeValueMemberS{Value: entitySK}},
					ExclusiveStartKey:         start,
				})
				s.tbl.m.request(opScan, err)
				if err != nil {
					errs[seg] = fmt.Errorf("dynamo: scan %s keys (segment %d): %w", ns.Name, seg, err)
					cancel()
					return
				}
				mu.Lock()
				for _, item := range out.Items {
					pk, ok := item["pk"].(*types.AttributeValueMemberS)
					if !ok || !strings.HasPrefix(pk.Value, prefix) {
						continue
					}
					if err := fn(pk.Value[len(prefix):]); err != nil {
						mu.Unlock()
						errs[seg] = err
						cancel()
						return
					}
				}
				mu.Unlock()
				if len(out.LastEvaluatedKey) == 0 {
					return
				}
				start = out.LastEvaluatedKey
			}
		})
	}
	wg.Wait()
	// Report what the caller's fn returned in preference to the
	// cancellations it caused in other segments.
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
	}
	return errors.Join(errs...)
}
