package metrics

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cairnfs/cairn/internal/feature"
)

// StoreNamespace is the reserved namespace holding the rollups in the
// online store: entity key "<minute, Unix seconds>/<metrics-topic
// partition>", one bytes feature "rollup". A feature registry must not
// declare a namespace of this name.
const StoreNamespace = "cairn_metrics"

// rollupSpace is StoreNamespace with its features, for a retention.
type rollupSpace struct {
	ns     *feature.Namespace
	rollup *feature.Feature
}

// newRollupSpace declares StoreNamespace with a maximum staleness of
// retention, so that DynamoDB's Time to Live and Redis's expiry delete
// the items after it.
func newRollupSpace(retention time.Duration) (rollupSpace, error) {
	reg, err := feature.Parse("metrics rollups", []byte(fmt.Sprintf(`
namespaces:
  - name: %s
    primary_key: slot
    max_staleness: %s
    features: {slot: string, rollup: bytes}
`, StoreNamespace, retention)))
	if err != nil {
		return rollupSpace{}, err
	}
	ns, _ := reg.Namespace(StoreNamespace)
	f, _ := ns.Feature("rollup")
	return rollupSpace{ns: ns, rollup: f}, nil
}

func itemKey(minute time.Time, partition int32) string {
	return strconv.FormatInt(minute.Unix(), 10) + "/" + strconv.Itoa(int(partition))
}

// parseItemKey is the inverse of itemKey.
func parseItemKey(key string) (slot, bool) {
	m, p, ok := strings.Cut(key, "/")
	if !ok {
		return slot{}, false
	}
	sec, err1 := strconv.ParseInt(m, 10, 64)
	part, err2 := strconv.ParseInt(p, 10, 32)
	if err1 != nil || err2 != nil {
		return slot{}, false
	}
	return slot{minute: time.Unix(sec, 0).UTC(), partition: int32(part)}, true
}

// item is the rollup of the records of one minute read from one
// partition: their sum, and the hashes of their (source, interval start)
// pairs, sorted, so that a record merged once is never merged again.
//
// Encoding: version byte 1, the uvarint count of hashes, each 8 bytes
// big-endian, then the sum as a Record body (see Record) with an empty
// source, the minute as start and a minute as interval.
type item struct {
	hashes []uint64
	sum    Record
}

// recordHash identifies a record by its source and interval start.
func recordHash(r *Record) uint64 {
	h := fnv.New64a()
	h.Write([]byte(r.Source))
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(r.Start.UnixMicro()))
	h.Write(b[:])
	return h.Sum64()
}

// merge adds r to it, unless it holds r already; it reports whether it
// added it.
func (it *item) merge(r *Record) bool {
	h := recordHash(r)
	i, found := slices.BinarySearch(it.hashes, h)
	if found {
		return false
	}
	it.hashes = slices.Insert(it.hashes, i, h)
	it.sum.Fleet.add(r.Fleet)
	for _, n := range r.Namespaces {
		s := it.sum.namespace(n.Name)
		s.Queries += n.Queries
		s.CacheHits += n.CacheHits
		s.CacheMisses += n.CacheMisses
		s.BloomSkipped += n.BloomSkipped
		s.BloomLookups += n.BloomLookups
		s.Errors = mergeCodes(s.Errors, n.Errors)
		s.Latency = mergeBuckets(s.Latency, n.Latency)
	}
	it.sum.sort()
	return true
}

func mergeCodes(a, b []CodeCount) []CodeCount {
	for _, e := range b {
		i := slices.IndexFunc(a, func(c CodeCount) bool { return c.Code == e.Code })
		if i < 0 {
			a = append(a, e)
			continue
		}
		a[i].Count += e.Count
	}
	slices.SortFunc(a, func(x, y CodeCount) int {
		switch {
		case x.Code < y.Code:
			return -1
		case x.Code > y.Code:
			return 1
		}
		return 0
	})
	return a
}

func (it *item) append(b []byte) []byte {
	b = append(b, Version)
	b = binary.AppendUvarint(b, uint64(len(it.hashes)))
	for _, h := range it.hashes {
		b = binary.BigEndian.AppendUint64(b, h)
	}
	return it.sum.appendBody(b)
}

func decodeItem(b []byte) (*item, error) {
	if len(b) == 0 || b[0] != Version {
		return nil, fmt.Errorf("%w: rollup item of %d bytes without version %d", ErrCorrupt, len(b), Version)
	}
	d := decoder{b: b[1:]}
	n := d.count("hashes", 8)
	it := &item{hashes: make([]uint64, n)}
	for i := range it.hashes {
		it.hashes[i] = binary.BigEndian.Uint64(d.b)
		d.b = d.b[8:]
		if i > 0 && it.hashes[i] <= it.hashes[i-1] {
			d.fail("hashes not sorted")
			break
		}
	}
	r := d.body()
	if d.err == nil && len(d.b) > 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
	if d.err != nil {
		return nil, d.err
	}
	it.sum = *r
	return it, nil
}
