package dynamo

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// DynamoDB's limits on one TransactWriteItems request.
const (
	// maxTransactItems is the most actions (here, distinct items).
	maxTransactItems = 100
	// maxTransactBytes is the most bytes of items, 4 MB.
	maxTransactBytes = 4 << 20
)

// Reasons of DynamoDB's for cancelling one action of a transaction.
const (
	cancelNone        = "None"
	cancelCondition   = "ConditionalCheckFailed"
	cancelConflict    = "TransactionConflict"
	cancelValidation  = "ValidationError"
	cancelThroughput  = "ProvisionedThroughputExceeded"
	cancelThrottling  = "ThrottlingError"
	cancelRequestRate = "RequestLimitExceeded"
)

// action is one Update of a transaction: some features of one entity.
type action struct {
	e     *entity
	index int // of e among the entities written
	feats []featureWrite
	size  int   // ItemSize of the attributes written
	err   error // the outcome, once final
}

// writeTransactions writes entities (more than one) with TransactWriteItems
// requests guarded per feature, and returns one error per entity.
//
// Every entity is one Update action, conditional on no written feature
// having a newer stored observed-at, exactly as the single-entity path.
// Actions are packed into transactions of at most 100 items and 4 MB, run
// concurrently. An entity with more than 64 features takes one action per
// 64 in successive rounds, so that no transaction holds two actions on one
// item and no two transactions in flight touch one item. Each transaction
// is retried until done (see transact): a cancellation never drops a value
// that is not stale.
//
// Transactional writes cost twice the write units of plain ones; that is
// the price of checking observed-at on the bulk path (see
// Config.CheckTSForBulkWrites).
func (s *Store) writeTransactions(ctx context.Context, entities []*entity) []error {
	errs := make([]error, len(entities))
	for round := 0; ; round++ {
		var acts []*action
		for i, e := range entities {
			lo := round * maxFeaturesPerUpdate
			if errs[i] != nil || lo >= len(e.feats) {
				continue
			}
			feats := e.feats[lo:min(len(e.feats), lo+maxFeaturesPerUpdate)]
			acts = append(acts, &action{e: e, index: i, feats: feats, size: ItemSize(e.item(feats))})
		}
		if len(acts) == 0 {
			return errs
		}
		groups := packTransactions(acts)
		parallel(len(groups), s.cfg.NumClientThreads, func(g int) { s.transact(ctx, groups[g]) })
		for _, a := range acts {
			if a.err != nil {
				errs[a.index] = a.err
			}
		}
	}
}

// packTransactions splits acts, in order, into transactions within
// DynamoDB's limits of items and bytes.
func packTransactions(acts []*action) [][]*action {
	var groups [][]*action
	var cur []*action
	bytes := 0
	for _, a := range acts {
		if len(cur) == maxTransactItems || len(cur) > 0 && bytes+a.size > maxTransactBytes {
			groups = append(groups, cur)
			cur, bytes = nil, 0
		}
		cur = append(cur, a)
		bytes += a.size
	}
	return append(groups, cur)
}

// transact writes acts as one transaction, setting each action's err.
//
// When DynamoDB cancels the transaction, each action's cancellation reason
// decides what is sent again:
//
//   - ConditionalCheckFailed: some written features are older than the
//     stored ones, or the stored expiry is later than the one the action
//     sets. The stored item comes with the reason (the update asks for it
//     with ReturnValuesOnConditionCheckFailure ALL_OLD; it is read when an
//     endpoint leaves it out); those features are dropped, the stored
//     expiry kept, and the rest sent again at once. An action left with
//     nothing is done.
//   - TransactionConflict: another transaction holds the item; sent again
//     after the conflict backoff, at most TransactionWriteConflictMaxRetries
//     times, then the error is returned.
//   - ProvisionedThroughputExceeded, ThrottlingError, RequestLimitExceeded:
//     sent again after the throttling backoff, at most MaxRetries times.
//   - ValidationError: that entity is rejected; the others are sent again.
//   - None: the action was fine; sent again with the others.
//
// A transaction DynamoDB refuses as a whole as invalid (such as items
// adding up to over 4 MB once stored) is split into single-entity
// conditional updates, so that only an entity at fault is rejected.
func (s *Store) transact(ctx context.Context, acts []*action) {
	pending := acts
	maxStaleRounds := 8
	for _, a := range acts {
		maxStaleRounds += len(a.feats)
	}
	var conflicts, throttles, staleRounds int
	fail := func(err error) {
		for _, a := range pending {
			a.err = err
		}
	}
	for len(pending) > 0 {
		items := make([]types.TransactWriteItem, len(pending))
		for i, a := range pending {
			x := newUpdateExpr(a.feats, true, a.e.expires)
			items[i] = types.TransactWriteItem{Update: &types.Update{
				TableName:                           aws.String(s.cfg.Table),
				Key:                                 itemKey(a.e.pk, entitySK),
				UpdateExpression:                    aws.String(x.set),
				ConditionExpression:                 aws.String(x.cond),
				ExpressionAttributeNames:            x.names,
				ExpressionAttributeValues:           x.values,
				ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
			}}
		}
		_, err := s.tbl.client.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: items})
		s.m.request(opTransactWriteItems, err)
		// DynamoDB does not document what a cancelled transaction costs;
		// it is counted as if it had committed, an upper bound.
		for _, a := range pending {
			s.m.writeItem(a.e.item(a.feats), true)
		}
		if err == nil {
			return
		}
		var tce *types.TransactionCanceledException
		if !errors.As(err, &tce) || len(tce.CancellationReasons) != len(pending) {
			if isValidation(err) {
				s.log.Debug("transaction refused as invalid; writing its entities one by one", "entities", len(pending), "err", err)
				parallel(len(pending), s.cfg.NumClientThreads, func(i int) {
					a := pending[i]
					a.err = s.writeChunk(ctx, a.e, a.feats, true)
				})
				return
			}
			fail(fmt.Errorf("dynamo: transaction of %d entities: %w", len(pending), err))
			return
		}

		var conflict, throttled, dropped bool
		keep := make([]*action, 0, len(pending))
		for i, a := range pending {
			r := tce.CancellationReasons[i]
			switch code := aws.ToString(r.Code); code {
			case cancelNone, "":
				keep = append(keep, a)
			case cancelCondition:
				old := r.Item
				if old == nil {
					if old, a.err = s.readTimestamps(ctx, a.e, a.feats); a.err != nil {
						continue
					}
				}
				dropped = true
				a.e.keepLaterExpiry(old)
				if a.feats = s.dropStale(a.e, a.feats, old); len(a.feats) > 0 {
					a.size = ItemSize(a.e.item(a.feats))
					keep = append(keep, a)
				}
			case cancelConflict:
				conflict = true
				keep = append(keep, a)
			case cancelThroughput, cancelThrottling, cancelRequestRate:
				throttled = true
				keep = append(keep, a)
			case cancelValidation:
				a.err = a.e.rejectf("transaction: %s", aws.ToString(r.Message))
			default:
				a.err = fmt.Errorf("dynamo: entity %s: transaction cancelled: %s: %s", a.e, code, aws.ToString(r.Message))
			}
		}
		pending = keep
		switch {
		case len(pending) == 0:
		case conflict:
			if err := s.afterConflict(ctx, opTransactWriteItems, &conflicts, err); err != nil {
				fail(fmt.Errorf("dynamo: transaction of %d entities: %w", len(pending), err))
				return
			}
		case throttled:
			s.m.throttles.WithLabelValues(opTransactWriteItems).Inc()
			if throttles >= s.cfg.MaxRetries {
				fail(fmt.Errorf("dynamo: transaction of %d entities: still throttled after %d retries (DYNAMODB_MAX_RETRIES): %w",
					len(pending), throttles, err))
				return
			}
			throttles++
			s.m.retries.WithLabelValues(opTransactWriteItems, reasonThrottle).Inc()
			if err := sleep(ctx, jitteredBackoff(s.tbl.retryBase, throttles)); err != nil {
				fail(fmt.Errorf("dynamo: transaction of %d entities: backing off after throttling: %w", len(pending), err))
				return
			}
		case dropped:
			if staleRounds++; staleRounds > maxStaleRounds {
				fail(fmt.Errorf("dynamo: transaction of %d entities: still conflicting after %d conditional attempts", len(pending), staleRounds))
				return
			}
			s.m.retries.WithLabelValues(opTransactWriteItems, reasonStaleValues).Inc()
		default:
			// Cancelled for a reason that named no action still pending
			// (only rejected entities, or none at all): send the rest again,
			// within the bound of conditional rounds.
			if staleRounds++; staleRounds > maxStaleRounds {
				fail(fmt.Errorf("dynamo: transaction of %d entities: %w", len(pending), err))
				return
			}
		}
	}
}
