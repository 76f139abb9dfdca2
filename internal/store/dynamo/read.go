package dynamo

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/hedge"
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
// Items are read with eventually consistent BatchGetItem requests,
// projected to the requested features, in sub-batches (see subBatches) run
// concurrently and raced when Config.EnableRequestRacing is set. Each
// sub-batch's items are decoded as they arrive, on the serde pool. A stored
// value that does not decode as its feature's type is answered as not
// found, and counted in cairn_dynamo_undecodable_values_total.
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
	d := &rowDecoder{s: s, rows: rows, rowsOf: rowsOf, feats: feats}

	d.ids = s.names.lookup(fqns)
	if !slices.Contains(d.ids, "") {
		// Decode each sub-batch as it arrives. Sub-batches hold distinct
		// keys, so they fill distinct rows.
		if err := s.readBatches(ctx, pks, newProjection(d.ids), d.decode); err != nil {
			return nil, fmt.Errorf("dynamo: read %d %s keys: %w", len(keys), ns.Name, err)
		}
		return rows, nil
	}

	// A feature without an id was never written by any process that this
	// one has heard of. The items tell whether one has been since: read them
	// whole, and if they hold attributes with ids unknown here, reload the
	// mapping before decoding. Reading whole items costs no more capacity:
	// DynamoDB charges for the item, not for the projection.
	var (
		mu  sync.Mutex
		all [][]map[string]types.AttributeValue
	)
	err := s.readBatches(ctx, pks, nil, func(_ context.Context, items []map[string]types.AttributeValue) error {
		mu.Lock()
		defer mu.Unlock()
		all = append(all, items)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dynamo: read %d %s keys: %w", len(keys), ns.Name, err)
	}
	var unknown []string
	for _, items := range all {
		for _, item := range items {
			unknown = s.names.unknownAttrs(unknown, item)
		}
	}
	if len(unknown) > 0 {
		if err := s.names.resolve(ctx, unknown); err != nil {
			return nil, err
		}
		d.ids = s.names.lookup(fqns)
	}
	for _, items := range all {
		if err := d.decode(ctx, items); err != nil {
			return nil, fmt.Errorf("dynamo: read %d %s keys: %w", len(keys), ns.Name, err)
		}
	}
	return rows, nil
}

// rowDecoder fills the rows of a Read from the items read.
type rowDecoder struct {
	s      *Store
	rows   []store.Row
	rowsOf map[string][]int // partition key → rows
	feats  []*feature.Feature
	ids    []string // short id of each feature, "" for none
}

// decode fills the rows of items, holding a slot of the serde pool.
func (d *rowDecoder) decode(ctx context.Context, items []map[string]types.AttributeValue) error {
	var err error
	poolErr := d.s.serde.do(ctx, func() {
		for _, item := range items {
			pk, ok := item["pk"].(*types.AttributeValueMemberS)
			if !ok {
				err = errors.New("batch get: item without a string pk")
				return
			}
			for _, i := range d.rowsOf[pk.Value] {
				d.s.decodeRow(&d.rows[i], pk.Value, item, d.feats, d.ids)
			}
		}
	})
	if poolErr != nil {
		return poolErr
	}
	return err
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
		ts, ok := observedAt(tsAV)
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

// subBatches returns the sizes of the BatchGetItem sub-batches of a read
// of n distinct keys, given the minimum batch size b and the concurrency c
// (Config.GetItemMinBatchSize and the effective
// GetItemMinBatchConcurrency):
//
//	k     = max(⌈n/100⌉, min(c, ⌊n/b⌋), 1)   sub-batches
//	sizes = ⌈n/k⌉ for the first n mod k, ⌊n/k⌋ for the others
//
// at most c of them in flight at once. So a read is split into as many
// sub-batches as may run at once, but none under b keys (unless n is) and
// none over DynamoDB's 100; a read of over 100 × c keys takes more than c
// sub-batches, queued. The one exception: when b is over 50, the 100-key
// limit can force sub-batches under b (150 keys with b = 90 are two
// batches of 75).
func subBatches(n, b, c int) []int {
	if n <= 0 {
		return nil
	}
	k := max((n+batchGetMaxKeys-1)/batchGetMaxKeys, min(c, n/max(b, 1)), 1)
	sizes := make([]int, k)
	for i := range sizes {
		sizes[i] = n / k
		if i < n%k {
			sizes[i]++
		}
	}
	return sizes
}

// readBatches reads the entity items with the given partition keys in the
// sub-batches of subBatches, at most the effective
// GetItemMinBatchConcurrency at once, and passes each sub-batch's items to
// each as they arrive (concurrently). The first failure cancels the rest.
func (s *Store) readBatches(ctx context.Context, pks []string, proj *projection,
	each func(ctx context.Context, items []map[string]types.AttributeValue) error,
) error {
	concurrency := s.cfg.batchConcurrency()
	var batches [][]string
	for _, n := range subBatches(len(pks), s.cfg.GetItemMinBatchSize, concurrency) {
		batches = append(batches, pks[:n])
		pks = pks[n:]
	}
	run := func(ctx context.Context, pks []string) error {
		items, err := s.getBatch(ctx, pks, proj)
		if err != nil {
			return err
		}
		return each(ctx, items)
	}
	if len(batches) == 1 {
		return run(ctx, batches[0])
	}

	batchCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		failOnce sync.Once
		failure  error
	)
	next := make(chan []string)
	var wg sync.WaitGroup
	for range min(concurrency, len(batches)) {
		wg.Go(func() {
			for b := range next {
				if err := run(batchCtx, b); err != nil {
					// The read fails: keep the first cause, stop the rest.
					failOnce.Do(func() { failure = err; cancel() })
				}
			}
		})
	}
feed:
	for _, b := range batches {
		select {
		case next <- b:
		case <-batchCtx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if failure != nil {
		return failure
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("batch get: %w", err) // some sub-batches may not have run
	}
	return nil
}

// getBatch reads up to batchGetMaxKeys entity items, eventually
// consistent, racing the request when racing is enabled.
func (s *Store) getBatch(ctx context.Context, pks []string, proj *projection) ([]map[string]types.AttributeValue, error) {
	keys := make([]map[string]types.AttributeValue, len(pks))
	for i, pk := range pks {
		keys[i] = itemKey(pk, entitySK)
	}
	get := func(ctx context.Context) ([]map[string]types.AttributeValue, error) {
		return s.tbl.batchGet(ctx, keys, proj, eventual)
	}
	if s.hedger == nil {
		return get(ctx)
	}
	return hedge.Do(ctx, s.hedger, get)
}
