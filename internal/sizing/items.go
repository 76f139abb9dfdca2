package sizing

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/queue"
	"github.com/cairnfs/cairn/internal/store"
	"github.com/cairnfs/cairn/internal/store/dynamo"
)

// Representative values, one per feature type: what a typical value of
// that type costs in an item. Strings, bytes, lists and JSON objects take
// their sizes from Options; vectors have the registry's dimension.
const (
	// RepresentativeInt is an 8-digit integer.
	RepresentativeInt = 12345678
	// RepresentativeFloat has 17 significant digits, the most a float64
	// needs to be written exactly.
	RepresentativeFloat = 0.30000000000000004
)

// RepresentativeTime is the representative datetime and observed-at: a
// microsecond-precision time of 16 digits in microseconds.
var RepresentativeTime = time.Date(2026, 1, 1, 0, 0, 0, 123456000, time.UTC)

// KafkaRecordOverhead is what Kafka adds to each record on disk besides its
// key and value: the 61-byte header of a batch holding that one record, and
// the record's own length, attributes, offset and timestamp deltas and
// header count (9 bytes). Batches of several records spend less.
const KafkaRecordOverhead = 61 + 9

// Representative returns the representative value of type t (see the
// constants), canonical for t.
func (o *Options) Representative(t feature.Type) any {
	switch t.Kind {
	case feature.KindInt:
		return int64(RepresentativeInt)
	case feature.KindFloat:
		return RepresentativeFloat
	case feature.KindString:
		return strings.Repeat("x", o.StringBytes)
	case feature.KindBool:
		return true
	case feature.KindBytes:
		return make([]byte, o.BytesBytes)
	case feature.KindDatetime:
		return RepresentativeTime
	case feature.KindList:
		l := make([]any, o.ListLength)
		for i := range l {
			l[i] = o.Representative(*t.Elem)
		}
		return l
	case feature.KindVector:
		return make([]float32, t.Dim)
	case feature.KindJSON:
		m := make(map[string]any, o.ListLength)
		for i := range o.ListLength {
			m["f"+strconv.Itoa(i)] = strings.Repeat("x", o.StringBytes)
		}
		return m
	}
	return nil
}

// valueBound returns roughly the bytes of the representative value of t,
// without building it.
func (o *Options) valueBound(t feature.Type) float64 {
	switch t.Kind {
	case feature.KindString:
		return float64(o.StringBytes)
	case feature.KindBytes:
		return float64(o.BytesBytes)
	case feature.KindList:
		return float64(o.ListLength) * (1 + o.valueBound(*t.Elem))
	case feature.KindVector:
		return 4 * float64(t.Dim)
	case feature.KindJSON:
		return float64(o.ListLength) * float64(4+o.StringBytes)
	}
	return 16
}

// representativeKey returns a representative primary key of ns, the
// (i+1)th: an 8-digit integer, or a string of KeyBytes bytes.
func (o *Options) representativeKey(ns *feature.Namespace, i int) string {
	if ns.PrimaryKey.Type.Kind == feature.KindInt {
		return strconv.Itoa(RepresentativeInt + i)
	}
	k := []byte(strings.Repeat("k", o.KeyBytes))
	k[len(k)-1] = byte('a' + i%26)
	return string(k)
}

// Item is the representative item of one namespace.
type Item struct {
	// Namespace is the namespace's name.
	Namespace string `json:"namespace"`
	// Features is the number of features written, the primary key aside.
	Features int `json:"features"`
	// Bytes is the item's size as DynamoDB counts it.
	Bytes int `json:"bytes"`
	// RecordFixedBytes is what one persistence record of the namespace
	// costs on Kafka besides its entities: the record's header and name
	// table, the Kafka framing and the key.
	RecordFixedBytes int `json:"record_fixed_bytes"`
	// RecordEntityBytes is what each entity adds to a record.
	RecordEntityBytes int `json:"record_entity_bytes"`
}

// items returns the representative item of every namespace of reg that has
// features besides its primary key, in declaration order.
func (o *Options) items(reg *feature.Registry) ([]Item, error) {
	// Short ids as a fresh table hands them out, features in declaration
	// order.
	var fqns []string
	for _, ns := range reg.Namespaces() {
		for _, f := range ns.Features {
			if f != ns.PrimaryKey {
				fqns = append(fqns, f.FQN)
			}
		}
	}
	ids := dynamo.ShortIDs(fqns)
	var out []Item
	for _, ns := range reg.Namespaces() {
		if len(ns.Features) < 2 {
			continue
		}
		it := Item{Namespace: ns.Name, Features: len(ns.Features) - 1}
		// Values are built only when they fit in an item: nested lists of
		// long lists would not fit in memory either.
		bound := 0.0
		for _, f := range ns.Features {
			bound += o.valueBound(f.Type)
		}
		if bound > dynamo.MaxItemSize {
			return nil, fmt.Errorf("sizing: namespace %s: representative values of about %.0f bytes are over DynamoDB's item limit of %d; lower --string-bytes, --bytes-bytes or --list-length",
				ns.Name, bound, dynamo.MaxItemSize)
		}
		w := o.write(ns, 0)
		size, err := dynamo.EntityItemSize(w, ids)
		if err != nil {
			return nil, fmt.Errorf("sizing: namespace %s: %w", ns.Name, err)
		}
		it.Bytes = size
		one, err := o.recordBytes(ns, 1)
		if err != nil {
			return nil, err
		}
		two, err := o.recordBytes(ns, 2)
		if err != nil {
			return nil, err
		}
		it.RecordEntityBytes = two - one
		it.RecordFixedBytes = one - it.RecordEntityBytes + KafkaRecordOverhead + len(o.representativeKey(ns, 0))
		out = append(out, it)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("sizing: --features: no namespace has a feature besides its primary key")
	}
	return out, nil
}

// write returns the (i+1)th representative entity write of ns: every
// feature but the primary key, with its representative value.
func (o *Options) write(ns *feature.Namespace, i int) store.EntityWrite {
	w := store.EntityWrite{Namespace: ns, Key: o.representativeKey(ns, i)}
	for _, f := range ns.Features {
		if f != ns.PrimaryKey {
			w.Values = append(w.Values, store.Value{Feature: f, Value: o.Representative(f.Type), ObservedAt: RepresentativeTime})
		}
	}
	return w
}

// recordBytes returns the size of cairn's persistence record holding n
// representative entities of ns.
func (o *Options) recordBytes(ns *feature.Namespace, n int) (int, error) {
	r := &queue.Record{Kind: queue.KindUpload}
	for i := range n {
		w := o.write(ns, i)
		e := queue.Entity{Namespace: ns.Name, Key: w.Key}
		for _, v := range w.Values {
			e.Values = append(e.Values, queue.Value{FQN: v.Feature.FQN, Value: v.Value, ObservedAt: v.ObservedAt})
		}
		r.Entities = append(r.Entities, e)
	}
	b, err := queue.AppendRecord(nil, r)
	if err != nil {
		return 0, fmt.Errorf("sizing: namespace %s: %w", ns.Name, err)
	}
	return len(b), nil
}
