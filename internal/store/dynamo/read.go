package dynamo

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/store"
)

// maxExpressionLen is DynamoDB's limit on the length of one expression.
const maxExpressionLen = 4096

// entitySK is the sort key of an entity's item.
const entitySK = "e"

// entityPK returns the partition key of an entity's item.
func entityPK(ns, key string) string { return ns + "#" + key }

// Read returns one Row per key, aligned with keys, each with one Cell per
// feature of feats, which must all belong to ns.
//
// Items are read with eventually consistent BatchGetItem requests of at most
// 100 keys, several in flight at once, projected to the requested features.
// A stored value that does not decode as its feature's type is answered as
// not found, and counted in cairn_dynamo_undecodable_values_total.
func (s *Store) Read(ctx context.Context, ns *feature.Namespace, keys []string, feats []*feature.Feature) ([]store.Row, error) {
	if s.closed.Load() {
		return nil, errClosed
	}
	rows := make([]store.Row, len(keys))
	for i := range rows {
		rows[i].Cells = make([]store.Cell, len(feats))
	}
	if len(keys) == 0 {
		return rows, nil
	}
	fqns := make([]string, len(feats))
	for i, f := range feats {
		if f.Namespace != ns {
			return nil, fmt.Errorf("dynamo: read %s: feature %s is not in namespace %s", ns.Name, f.FQN, ns.Name)
		}
		fqns[i] = f.FQN
	}
	if err := s.names.ensureLoaded(ctx); err != nil {
		return nil, err
	}

	// One request per distinct key; rows of repeated keys share it.
	rowsOf := make(map[string][]int, len(keys))
	pks := make([]string, 0, len(keys))
	for i, k := range keys {
		pk := entityPK(ns.Name, k)
		if _, seen := rowsOf[pk]; !seen {
			pks = append(pks, pk)
		}
		rowsOf[pk] = append(rowsOf[pk], i)
	}

	ids := s.names.lookup(fqns)
	// A feature without an id was never written by any process that this
	// one has heard of. The items tell whether one has been since: read them
	// whole, and if they hold attributes with ids unknown here, reload the
	// mapping. Reading whole items costs no more capacity: DynamoDB charges
	// for the item, not for the projection.
	complete := !slices.Contains(ids, "")
	var proj *projection
	if complete {
		proj = newProjection(ids)
	}
	items, err := s.batchGet(ctx, pks, proj)
	if err != nil {
		return nil, fmt.Errorf("dynamo: read %d %s keys: %w", len(keys), ns.Name, err)
	}
	if !complete {
		var unknown []string
		for _, item := range items {
			unknown = s.names.unknownAttrs(unknown, item)
		}
		if len(unknown) > 0 {
			if err := s.names.resolve(ctx, unknown); err != nil {
				return nil, err
			}
			ids = s.names.lookup(fqns)
		}
	}

	for pk, item := range items {
		for _, i := range rowsOf[pk] {
			s.decodeRow(&rows[i], pk, item, feats, ids)
		}
	}
	return rows, nil
}

// decodeRow fills row from an entity's item.
func (s *Store) decodeRow(row *store.Row, pk string, item map[string]types.AttributeValue, feats []*feature.Feature, ids []string) {
	row.Found = true
	for j, f := range feats {
		id := ids[j]
		if id == "" {
			continue
		}
		tsAV, hasTS := item[id+tsSuffix]
		av, hasValue := item[id]
		if !hasTS && !hasValue {
			continue
		}
		var ts time.Time
		tsN, ok := tsAV.(*types.AttributeValueMemberN)
		if ok {
			ts, ok = parseMicros(tsN.Value)
		}
		var v any
		if ok && hasValue {
			v, ok = decodeValue(f.Type, av)
		}
		if !ok || !hasValue {
			s.m.undecodable.Inc()
			s.log.Debug("undecodable stored value answered as not found",
				"pk", pk, "feature", f.FQN, "type", f.Type.String(), "attribute", id)
			continue
		}
		row.Cells[j] = store.Cell{Found: true, Value: v, ObservedAt: ts}
	}
}

// projection is a ProjectionExpression with its attribute names.
type projection struct {
	expr  string
	names map[string]string
}

// newProjection projects pk and the value and observed-at attributes of ids
// (each once: DynamoDB refuses overlapping paths). It returns nil (read
// whole items) when the expression would be too long.
func newProjection(ids []string) *projection {
	p := &projection{names: map[string]string{"#k": "pk"}}
	var b strings.Builder
	b.WriteString("#k")
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		if seen[id] {
			continue
		}
		n := strconv.FormatInt(int64(len(seen)), 36)
		seen[id] = true
		fmt.Fprintf(&b, ",#v%s,#t%s", n, n)
		p.names["#v"+n] = id
		p.names["#t"+n] = id + tsSuffix
	}
	if b.Len() > maxExpressionLen {
		return nil
	}
	p.expr = b.String()
	return p
}

// batchGet reads the items with the given partition keys, in sub-batches of
// at most batchGetMaxKeys run concurrently, and returns them by partition
// key. Absent items are absent from the map.
func (s *Store) batchGet(ctx context.Context, pks []string, proj *projection) (map[string]map[string]types.AttributeValue, error) {
	var batches [][]string
	for len(pks) > 0 {
		n := min(len(pks), batchGetMaxKeys)
		batches = append(batches, pks[:n])
		pks = pks[n:]
	}
	results := make([][]map[string]types.AttributeValue, len(batches))

	batchCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		failOnce sync.Once
		failure  error
	)
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(readConcurrency, len(batches)) {
		wg.Go(func() {
			for i := range next {
				var err error
				if results[i], err = s.getBatch(batchCtx, batches[i], proj); err != nil {
					// The read fails: keep the first cause, stop the rest.
					failOnce.Do(func() { failure = err; cancel() })
				}
			}
		})
	}
feed:
	for i := range batches {
		select {
		case next <- i:
		case <-batchCtx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if failure != nil {
		return nil, failure
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("batch get: %w", err) // some sub-batches may not have run
	}

	out := make(map[string]map[string]types.AttributeValue)
	for _, items := range results {
		for _, item := range items {
			pk, ok := item["pk"].(*types.AttributeValueMemberS)
			if !ok {
				return nil, errors.New("batch get: item without a string pk")
			}
			out[pk.Value] = item
		}
	}
	return out, nil
}

// getBatch reads up to batchGetMaxKeys entity items, eventually
// consistent.
func (s *Store) getBatch(ctx context.Context, pks []string, proj *projection) ([]map[string]types.AttributeValue, error) {
	keys := make([]map[string]types.AttributeValue, len(pks))
	for i, pk := range pks {
		keys[i] = itemKey(pk, entitySK)
	}
	return s.tbl.batchGet(ctx, keys, proj, false)
}

// backoff returns a full-jitter exponential delay for the given attempt
// (0 for the first retry), capped at max.
func backoff(attempt int, min, max time.Duration) time.Duration {
	d := max
	if attempt < 30 {
		d = min << attempt
	}
	if d > max || d <= 0 {
		d = max
	}
	return rand.N(d) + 1
}

// sleep waits for d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
