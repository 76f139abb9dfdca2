package dynamo

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Keys and attributes of the items holding the feature-name mapping. Entity
// partition keys start with a namespace name, which never starts with "_",
// so these cannot collide with an entity.
const (
	// mappingPK is the partition of the mapping: one item per feature,
	// sort key the FQN, attribute idAttr its short id.
	mappingPK = "__meta#fqn"
	idAttr    = "id"
	// counterPK/counterSK is the item whose counterAttr is the last number
	// handed out as a short id.
	counterPK   = "__meta#counter"
	counterSK   = "fqn"
	counterAttr = "n"
)

// tsSuffix turns a feature's short id into the name of the attribute holding
// its observed-at. Short ids are base 36 (digits and lowercase letters), so
// the two never collide.
const tsSuffix = "@"

// maxForeign bounds the set of attribute names seen in entity items that are
// not short ids (see names.noteForeign).
const maxForeign = 1024

// names is the FQN → short id mapping, cached from the table.
//
// Short ids are the base-36 text of numbers drawn from a counter item that
// is only ever incremented, so an id is never handed out twice. A mapping
// item is written only if none exists for the FQN, so two processes never
// assign different ids to one FQN: the one that loses the race reads the
// winner's id, and its own number is simply never used.
//
// That holds in one region only: under DynamoDB Global Tables conditions
// are evaluated by each region alone, so two regions could give one FQN two
// ids, or one id to two FQNs. With a lock file (lock set) ids come from it
// alone and are never allocated; the table's mapping items are then only
// written for the record (with the lock file's ids) and checked against it.
type names struct {
	tbl *table
	// lock, when set, is the only source of ids (Config.FeatureIDs).
	lock *LockFile
	// counterRaised is set once the counter item was raised past the lock
	// file's ids; loadMu guards it.
	counterRaised bool

	// loadMu serializes loading and assigning, both rare.
	loadMu sync.Mutex

	mu struct {
		sync.RWMutex
		loaded  bool
		byFQN   map[string]string
		byID    map[string]string
		foreign map[string]bool
		// inTable holds, with a lock file, the FQNs whose mapping item is
		// known to be in the table.
		inTable map[string]bool
	}
}

func newNames(tbl *table, lock *LockFile) *names {
	n := &names{tbl: tbl, lock: lock}
	n.mu.byFQN = map[string]string{}
	n.mu.byID = map[string]string{}
	n.mu.foreign = map[string]bool{}
	n.mu.inTable = map[string]bool{}
	if lock != nil {
		for fqn, id := range lock.IDs {
			n.mu.byFQN[fqn], n.mu.byID[id] = id, fqn
		}
	}
	return n
}

// ensureLoaded loads the mapping unless it was loaded already.
func (n *names) ensureLoaded(ctx context.Context) error {
	n.mu.RLock()
	loaded := n.mu.loaded
	n.mu.RUnlock()
	if loaded {
		return nil
	}
	n.loadMu.Lock()
	defer n.loadMu.Unlock()
	n.mu.RLock()
	loaded = n.mu.loaded
	n.mu.RUnlock()
	if loaded {
		return nil
	}
	return n.loadLocked(ctx)
}

// resolve makes sure that the short ids among attrs (attribute names seen
// in entity items) are known, reloading the mapping if one is not. Names
// still unknown after the reload were not written by cairn (a mapping item
// is always written before any entity attribute using its id): they are
// remembered as foreign and never cause another reload.
func (n *names) resolve(ctx context.Context, attrs []string) error {
	n.loadMu.Lock()
	defer n.loadMu.Unlock()
	if len(n.unknownOf(attrs)) == 0 {
		return nil // a concurrent reload, started after attrs were read, found them
	}
	if err := n.loadLocked(ctx); err != nil {
		return err
	}
	n.noteForeign(n.unknownOf(attrs))
	return nil
}

// loadLocked reads the whole mapping with a strongly consistent Query.
// loadMu must be held.
func (n *names) loadLocked(ctx context.Context) error {
	byFQN, err := n.readMapping(ctx)
	if err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.lock != nil {
		if err := n.checkAgainstLock(byFQN); err != nil {
			return err
		}
		for fqn := range byFQN {
			n.mu.inTable[fqn] = true
		}
		n.mu.loaded = true
		return nil
	}
	for fqn, id := range byFQN {
		if err := n.rememberLocked(fqn, id); err != nil {
			return err
		}
	}
	n.mu.loaded = true
	return nil
}

// checkAgainstLock reports every way the table's mapping byFQN disagrees
// with the lock file: a feature with another id, an id of another feature,
// a feature the lock file lacks. Values are stored under the table's ids, so
// starting anyway would hide them or mix two features' values.
func (n *names) checkAgainstLock(byFQN map[string]string) error {
	byID := make(map[string]string, len(n.lock.IDs))
	for fqn, id := range n.lock.IDs {
		byID[id] = fqn
	}
	var errs []error
	for fqn, id := range byFQN {
		lockID, ok := n.lock.IDs[fqn]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("feature %q has id %q in table %q but none in the lock file "+
				"(run `cairn features lock --from-store` to add the table's mapping)", fqn, id, n.tbl.name))
		case lockID != id:
			errs = append(errs, fmt.Errorf("feature %q has id %q in the lock file but %q in table %q, where its values are",
				fqn, lockID, id, n.tbl.name))
		}
		if owner, ok := byID[id]; ok && owner != fqn {
			errs = append(errs, fmt.Errorf("id %q belongs to %q in the lock file but to %q in table %q", id, owner, fqn, n.tbl.name))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("dynamo: feature lock file (CAIRN_FEATURES_LOCK) and the mapping in table %q disagree:\n%w",
			n.tbl.name, errors.Join(sortErrs(errs)...))
	}
	return nil
}

// readMapping reads the table's whole mapping with a strongly consistent
// Query.
func (n *names) readMapping(ctx context.Context) (map[string]string, error) {
	byFQN := map[string]string{}
	in := &dynamodb.QueryInput{
		TableName:                 aws.String(n.tbl.name),
		KeyConditionExpression:    aws.String("pk = :pk"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": &types.AttributeValueMemberS{Value: mappingPK}},
		ConsistentRead:            aws.Bool(true),
	}
	for {
		out, err := n.tbl.client.Query(ctx, in)
		n.tbl.m.request(opQuery, err)
		if err != nil {
			return nil, fmt.Errorf("dynamo: load feature-name mapping from table %q: %w", n.tbl.name, err)
		}
		size := 0
		for _, item := range out.Items {
			size += ItemSize(item)
			fqn, id, err := parseMapping(item)
			if err != nil {
				return nil, fmt.Errorf("dynamo: feature-name mapping in table %q: %w", n.tbl.name, err)
			}
			byFQN[fqn] = id
		}
		n.tbl.m.readQuery(size, strong)
		if len(out.LastEvaluatedKey) == 0 {
			break
		}
		in.ExclusiveStartKey = out.LastEvaluatedKey
	}
	return byFQN, nil
}

// parseMapping reads one mapping item.
func parseMapping(item map[string]types.AttributeValue) (fqn, id string, err error) {
	sk, ok := item["sk"].(*types.AttributeValueMemberS)
	if !ok || sk.Value == "" {
		return "", "", errors.New("mapping item without a string sort key")
	}
	v, ok := item[idAttr].(*types.AttributeValueMemberS)
	if !ok || !validID(v.Value) {
		return "", "", fmt.Errorf("mapping item for %q has no valid %q attribute", sk.Value, idAttr)
	}
	return sk.Value, v.Value, nil
}

// validID reports whether s can be a short id: base 36, and not the name of
// a key attribute.
func validID(s string) bool {
	if s == "" || s == "pk" || s == "sk" {
		return false
	}
	return strings.Trim(s, "0123456789abcdefghijklmnopqrstuvwxyz") == ""
}

// lookup returns the short id of each FQN, "" for those with none yet.
func (n *names) lookup(fqns []string) []string {
	ids := make([]string, len(fqns))
	n.mu.RLock()
	defer n.mu.RUnlock()
	for i, fqn := range fqns {
		ids[i] = n.mu.byFQN[fqn]
	}
	return ids
}

// unknownAttrs appends to dst the attribute names of item that may be short
// ids this process does not know yet: not keys, not observed-at attributes,
// not known ids, not known to be foreign.
func (n *names) unknownAttrs(dst []string, item map[string]types.AttributeValue) []string {
	n.mu.RLock()
	defer n.mu.RUnlock()
	for name := range item {
		if name == "pk" || name == "sk" || name == ttlAttr || strings.HasSuffix(name, tsSuffix) {
			continue
		}
		if _, known := n.mu.byID[name]; !known && !n.mu.foreign[name] {
			dst = append(dst, name)
		}
	}
	return dst
}

// unknownOf returns the names among attrs that are neither known ids nor
// known to be foreign.
func (n *names) unknownOf(attrs []string) []string {
	var out []string
	n.mu.RLock()
	defer n.mu.RUnlock()
	for _, a := range attrs {
		if _, known := n.mu.byID[a]; !known && !n.mu.foreign[a] {
			out = append(out, a)
		}
	}
	return out
}

// noteForeign remembers attribute names that are still unknown after a
// reload: they were not written by cairn (a mapping item is always written
// before any entity attribute using its id), so they never need another
// reload.
func (n *names) noteForeign(attrs []string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, a := range attrs {
		if _, known := n.mu.byID[a]; !known && len(n.mu.foreign) < maxForeign {
			n.mu.foreign[a] = true
		}
	}
}

// size returns the number of FQNs with an id.
func (n *names) size() int {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return len(n.mu.byFQN)
}

// assign returns the short ids of fqns, giving new ids to those without one.
func (n *names) assign(ctx context.Context, fqns []string) (map[string]string, error) {
	if n.lock != nil {
		return n.assignFromLock(ctx, fqns)
	}
	out := make(map[string]string, len(fqns))
	missing := n.known(fqns, out)
	if len(missing) == 0 {
		return out, nil
	}

	n.loadMu.Lock()
	defer n.loadMu.Unlock()
	if missing = n.known(missing, out); len(missing) == 0 {
		return out, nil
	}
	// Other processes may have assigned some since the mapping was loaded.
	if err := n.readIDs(ctx, missing); err != nil {
		return nil, err
	}
	if missing = n.known(missing, out); len(missing) == 0 {
		return out, nil
	}
	ids, err := n.reserve(ctx, len(missing))
	if err != nil {
		return nil, err
	}
	for i, fqn := range missing {
		id, err := n.put(ctx, fqn, ids[i])
		if err != nil {
			return nil, err
		}
		if err := n.remember(fqn, id); err != nil {
			return nil, err
		}
		out[fqn] = id
	}
	return out, nil
}

// known adds the cached ids of fqns to out and returns the FQNs without one.
func (n *names) known(fqns []string, out map[string]string) (missing []string) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	for _, fqn := range fqns {
		if id, ok := n.mu.byFQN[fqn]; ok {
			out[fqn] = id
		} else {
			missing = append(missing, fqn)
		}
	}
	return missing
}

// readIDs reads the mapping items of fqns with strongly consistent
// BatchGetItem requests and caches the ids found.
func (n *names) readIDs(ctx context.Context, fqns []string) error {
	for len(fqns) > 0 {
		batch := fqns[:min(len(fqns), batchGetMaxKeys)]
		fqns = fqns[len(batch):]
		keys := make([]map[string]types.AttributeValue, len(batch))
		for i, fqn := range batch {
			keys[i] = itemKey(mappingPK, fqn)
		}
		items, err := n.tbl.batchGet(ctx, keys, nil, strong)
		if err != nil {
			return fmt.Errorf("dynamo: read feature-name mapping: %w", err)
		}
		for _, item := range items {
			fqn, id, err := parseMapping(item)
			if err != nil {
				return fmt.Errorf("dynamo: feature-name mapping in table %q: %w", n.tbl.name, err)
			}
			if err := n.remember(fqn, id); err != nil {
				return err
			}
		}
	}
	return nil
}

// reserve draws k new short ids from the counter item, with as few
// increments as possible. Numbers whose base-36 text is not a valid id (pk,
// sk) are skipped.
func (n *names) reserve(ctx context.Context, k int) ([]string, error) {
	ids := make([]string, 0, k)
	for len(ids) < k {
		want := k - len(ids)
		last, err := n.addToCounter(ctx, want)
		if err != nil {
			return nil, err
		}
		for num := last - int64(want) + 1; num <= last; num++ {
			if id := strconv.FormatInt(num, 36); validID(id) {
				ids = append(ids, id)
			}
		}
	}
	return ids, nil
}

// put writes the mapping fqn → id unless fqn has one already, and returns
// the id fqn ends up with: id, or the one another process wrote first (its
// own number is then never used).
func (n *names) put(ctx context.Context, fqn, id string) (string, error) {
	_, err := n.tbl.client.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: aws.String(n.tbl.name),
		Item: map[string]types.AttributeValue{
			"pk":   &types.AttributeValueMemberS{Value: mappingPK},
			"sk":   &types.AttributeValueMemberS{Value: fqn},
			idAttr: &types.AttributeValueMemberS{Value: id},
		},
		ConditionExpression: aws.String("attribute_not_exists(pk)"),
	})
	n.tbl.m.request(opPutItem, err)
	n.tbl.m.writeUnitsN(1)
	var lost *types.ConditionalCheckFailedException
	switch {
	case errors.As(err, &lost):
		winner, err := n.readID(ctx, fqn)
		if err != nil {
			return "", err
		}
		if winner == "" {
			return "", fmt.Errorf("dynamo: feature %q: mapping item exists but has no id in table %q", fqn, n.tbl.name)
		}
		return winner, nil
	case err != nil:
		return "", fmt.Errorf("dynamo: feature %q: write id mapping: %w", fqn, err)
	}
	return id, nil
}

// readID reads the id of fqn from the table; "" when it has none.
func (n *names) readID(ctx context.Context, fqn string) (string, error) {
	out, err := n.tbl.client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(n.tbl.name),
		Key:            itemKey(mappingPK, fqn),
		ConsistentRead: aws.Bool(true),
	})
	n.tbl.m.request(opGetItem, err)
	if err != nil {
		return "", fmt.Errorf("dynamo: feature %q: read id mapping: %w", fqn, err)
	}
	n.tbl.m.readItem(out.Item, strong)
	if out.Item == nil {
		return "", nil
	}
	_, id, err := parseMapping(out.Item)
	if err != nil {
		return "", fmt.Errorf("dynamo: feature-name mapping in table %q: %w", n.tbl.name, err)
	}
	return id, nil
}

// addToCounter atomically adds k to the counter item and returns its new
// value: the numbers up to it from value-k+1 are this caller's alone.
func (n *names) addToCounter(ctx context.Context, k int) (int64, error) {
	out, err := n.tbl.client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 aws.String(n.tbl.name),
		Key:                       itemKey(counterPK, counterSK),
		UpdateExpression:          aws.String("ADD #n :k"),
		ExpressionAttributeNames:  map[string]string{"#n": counterAttr},
		ExpressionAttributeValues: map[string]types.AttributeValue{":k": &types.AttributeValueMemberN{Value: strconv.Itoa(k)}},
		ReturnValues:              types.ReturnValueUpdatedNew,
	})
	n.tbl.m.request(opUpdateItem, err)
	if err != nil {
		return 0, fmt.Errorf("dynamo: increment feature id counter: %w", err)
	}
	n.tbl.m.writeUnitsN(1)
	v, ok := out.Attributes[counterAttr].(*types.AttributeValueMemberN)
	if !ok {
		return 0, fmt.Errorf("dynamo: feature id counter in table %q is not a number", n.tbl.name)
	}
	num, err := strconv.ParseInt(v.Value, 10, 64)
	if err != nil || num < int64(k) {
		return 0, fmt.Errorf("dynamo: feature id counter in table %q holds %q after adding %d", n.tbl.name, v.Value, k)
	}
	return num, nil
}

// remember adds fqn → id to the cache.
func (n *names) remember(fqn, id string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.rememberLocked(fqn, id)
}

// rememberLocked adds fqn → id to the cache; n.mu must be held for writing.
func (n *names) rememberLocked(fqn, id string) error {
	if known, ok := n.mu.byFQN[fqn]; ok && known != id {
		return fmt.Errorf("dynamo: feature-name mapping in table %q changed the id of %q from %q to %q; ids must never change",
			n.tbl.name, fqn, known, id)
	}
	if other, taken := n.mu.byID[id]; taken && other != fqn {
		return fmt.Errorf("dynamo: feature-name mapping in table %q gives id %q to both %q and %q; fix the table before using it",
			n.tbl.name, id, other, fqn)
	}
	n.mu.byFQN[fqn] = id
	n.mu.byID[id] = fqn
	delete(n.mu.foreign, id)
	return nil
}

// assignFromLock returns the lock file's ids of fqns, first writing the
// mapping items the table lacks (with the lock file's ids, so that every
// region writes the same item and replication cannot make them differ).
// An FQN the lock file lacks is an error: ids are never allocated here.
func (n *names) assignFromLock(ctx context.Context, fqns []string) (map[string]string, error) {
	out := make(map[string]string, len(fqns))
	var missing, unwritten []string
	n.mu.RLock()
	for _, fqn := range fqns {
		id, ok := n.lock.IDs[fqn]
		switch {
		case !ok:
			missing = append(missing, fqn)
		case !n.mu.inTable[fqn]:
			unwritten = append(unwritten, fqn)
		}
		out[fqn] = id
	}
	n.mu.RUnlock()
	if len(missing) > 0 {
		return nil, fmt.Errorf("dynamo: feature(s) %s have no id in the feature lock file (CAIRN_FEATURES_LOCK), "+
			"and ids are not allocated at run time with one: run `cairn features lock`", strings.Join(missing, ", "))
	}
	if len(unwritten) == 0 {
		return out, nil
	}

	n.loadMu.Lock()
	defer n.loadMu.Unlock()
	if !n.counterRaised {
		if err := n.raiseCounter(ctx, n.lock.Next-1); err != nil {
			return nil, err
		}
		n.counterRaised = true
	}
	for _, fqn := range unwritten {
		n.mu.RLock()
		done := n.mu.inTable[fqn]
		n.mu.RUnlock()
		if done {
			continue
		}
		want := n.lock.IDs[fqn]
		got, err := n.put(ctx, fqn, want)
		if err != nil {
			return nil, err
		}
		if got != want {
			return nil, fmt.Errorf("dynamo: feature %q has id %q in the lock file but %q in table %q, where its values are",
				fqn, want, got, n.tbl.name)
		}
		n.mu.Lock()
		n.mu.inTable[fqn] = true
		n.mu.Unlock()
	}
	return out, nil
}

// raiseCounter raises the counter item to at least v, so that a process
// allocating ids at run time (without the lock file) never hands out one
// the lock file gave.
func (n *names) raiseCounter(ctx context.Context, v int64) error {
	if v < 1 {
		return nil
	}
	_, err := n.tbl.client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 aws.String(n.tbl.name),
		Key:                       itemKey(counterPK, counterSK),
		UpdateExpression:          aws.String("SET #n = :v"),
		ConditionExpression:       aws.String("attribute_not_exists(#n) OR #n < :v"),
		ExpressionAttributeNames:  map[string]string{"#n": counterAttr},
		ExpressionAttributeValues: map[string]types.AttributeValue{":v": &types.AttributeValueMemberN{Value: strconv.FormatInt(v, 10)}},
	})
	n.tbl.m.request(opUpdateItem, err)
	var higher *types.ConditionalCheckFailedException
	if err != nil && !errors.As(err, &higher) {
		return fmt.Errorf("dynamo: raise feature id counter past the lock file's ids: %w", err)
	}
	n.tbl.m.writeUnitsN(1)
	return nil
}

// readCounter returns the counter item's value, 0 when there is none.
func (n *names) readCounter(ctx context.Context) (int64, error) {
	out, err := n.tbl.client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(n.tbl.name),
		Key:            itemKey(counterPK, counterSK),
		ConsistentRead: aws.Bool(true),
	})
	n.tbl.m.request(opGetItem, err)
	if err != nil {
		return 0, fmt.Errorf("dynamo: read feature id counter: %w", err)
	}
	n.tbl.m.readItem(out.Item, strong)
	if out.Item == nil {
		return 0, nil
	}
	v, ok := out.Item[counterAttr].(*types.AttributeValueMemberN)
	if !ok {
		return 0, fmt.Errorf("dynamo: feature id counter in table %q is not a number", n.tbl.name)
	}
	num, err := strconv.ParseInt(v.Value, 10, 64)
	if err != nil || num < 0 {
		return 0, fmt.Errorf("dynamo: feature id counter in table %q holds %q", n.tbl.name, v.Value)
	}
	return num, nil
}

// FeatureIDs reads the table's feature-name mapping as a lock file: every
// FQN with its id, and Next above every id and every number the counter
// handed out. `cairn features lock --from-store` merges it into the lock
// file ([LockFile.Merge]) to migrate a table whose ids were allocated at
// run time, without rewriting any value.
func (s *Store) FeatureIDs(ctx context.Context) (*LockFile, error) {
	if s.closed.Load() {
		return nil, errClosed
	}
	byFQN, err := s.names.readMapping(ctx)
	if err != nil {
		return nil, err
	}
	counter, err := s.names.readCounter(ctx)
	if err != nil {
		return nil, err
	}
	l := &LockFile{IDs: byFQN, Next: counter + 1}
	byID := make(map[string]string, len(byFQN))
	for fqn, id := range byFQN {
		if other, dup := byID[id]; dup {
			a, b := min(fqn, other), max(fqn, other)
			return nil, fmt.Errorf("dynamo: feature-name mapping in table %q gives id %q to both %q and %q; fix the table before locking it",
				s.cfg.Table, id, a, b)
		}
		byID[id] = fqn
		num, err := idNumber(id)
		if err != nil {
			return nil, fmt.Errorf("dynamo: feature-name mapping in table %q: feature %q: %w", s.cfg.Table, fqn, err)
		}
		l.Next = max(l.Next, num+1)
	}
	return l, nil
}
