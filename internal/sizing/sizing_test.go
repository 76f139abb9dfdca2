package sizing

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/metrics"
	"github.com/cairnfs/cairn/internal/queue"
	"github.com/cairnfs/cairn/internal/store/dynamo"
)

const testRegistry = `
namespaces:
  - name: small
    primary_key: id
    features:
      id: int
      n: int
  - name: big
    primary_key: id
    max_staleness: 1d
    features:
      id: string
      name: string
      note: string
      score: float
      seen: datetime
      tags: list[string]
      blob: bytes
      extra: json
      embedding: vector[256]
`

func registry(t testing.TB) *feature.Registry {
	t.Helper()
	reg, err := feature.Parse("test", []byte(testRegistry))
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

func opts(mod func(*Options)) Options {
	o := DefaultOptions()
	o.Features = "test.yaml"
	o.QPS = 100
	o.EntitiesPerQuery = 10
	if mod != nil {
		mod(&o)
	}
	return o
}

func TestValidateNamesTheFlag(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		flag string
		mod  func(*Options)
	}{
		{"--qps", func(o *Options) { o.QPS = -1 }},
		{"--qps", func(o *Options) { o.QPS = math.NaN() }},
		{"--qps", func(o *Options) { o.QPS, o.UploadsPerSecond = 0, 0 }},
		{"--peak-qps", func(o *Options) { o.PeakQPS = 50 }},
		{"--entities-per-query", func(o *Options) { o.EntitiesPerQuery = 2e6 }},
		{"--persist-fraction", func(o *Options) { o.PersistFraction = 1.5 }},
		{"--entities-per-persisted-query", func(o *Options) { o.EntitiesPerPersistedQuery = -3 }},
		{"--uploads-per-second", func(o *Options) { o.UploadsPerSecond = math.Inf(1) }},
		{"--entities-per-upload", func(o *Options) { o.EntitiesPerUpload = -1 }},
		{"--retention", func(o *Options) { o.Retention = 90 * time.Minute }},
		{"--retention", func(o *Options) { o.Retention = 0 }},
		{"--replication-factor", func(o *Options) { o.ReplicationFactor = 4 }},
		{"--replication-factor", func(o *Options) { o.ReplicationFactor = 0 }},
		{"--brokers-count", func(o *Options) { o.BrokersCount = 0 }},
		{"--brokers-count", func(o *Options) { o.BrokersCount = 2 }},
		{"--features", func(o *Options) { o.Features = "" }},
		{"--key-bytes", func(o *Options) { o.KeyBytes = 0 }},
		{"--string-bytes", func(o *Options) { o.StringBytes = -1 }},
		{"--bytes-bytes", func(o *Options) { o.BytesBytes = 1 << 30 }},
		{"--list-length", func(o *Options) { o.ListLength = -1 }},
		{"--record-size", func(o *Options) { o.RecordSize = -1 }},
		{"--query-servers", func(o *Options) { o.QueryServers = 0 }},
		{"--namespaces", func(o *Options) { o.Namespaces = -1 }},
		{"--metrics-interval", func(o *Options) { o.MetricsInterval = 7 * time.Second }},
		{"--metrics-interval", func(o *Options) { o.MetricsInterval = 0 }},
		{"--headroom", func(o *Options) { o.Headroom = 0.5 }},
	} {
		o := opts(tc.mod)
		err := o.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.flag+":") {
			t.Errorf("%s: Validate() = %v, want an error naming %s", tc.flag, err, tc.flag)
		}
	}
	good := opts(nil)
	if err := good.Validate(); err != nil {
		t.Errorf("defaults with --qps and --features: %v", err)
	}
	// Every problem at once.
	bad := opts(func(o *Options) { o.QPS, o.Headroom = -1, 0 })
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "--qps") || !strings.Contains(err.Error(), "--headroom") {
		t.Errorf("two problems: %v, want both named", err)
	}
}

// The item sized is the largest, and its size follows the representative
// values: each string feature grows by exactly the bytes --string-bytes
// adds.
func TestItemFollowsRepresentativeValues(t *testing.T) {
	t.Parallel()
	reg := registry(t)
	p1, err := Compute(opts(nil), reg)
	if err != nil {
		t.Fatal(err)
	}
	if p1.Item.Namespace != "big" || len(p1.Items) != 2 {
		t.Fatalf("sized %s of %d items, want big of 2", p1.Item.Namespace, len(p1.Items))
	}
	p2, err := Compute(opts(func(o *Options) { o.StringBytes += 100 }), reg)
	if err != nil {
		t.Fatal(err)
	}
	// name, note, 4 list elements, 4 JSON fields.
	if got, want := p2.Item.Bytes-p1.Item.Bytes, 10*100; got != want {
		t.Errorf("item grew by %d bytes with 100 more per string, want %d", got, want)
	}
	ps, err := Compute(opts(func(o *Options) { o.Namespace = "small" }), reg)
	if err != nil {
		t.Fatal(err)
	}
	// pk "small#12345678" (2+14), sk "e" (2+1), id "1" of an 8-digit number
	// (1+5), its observed-at (2+7).
	if ps.Item.Bytes != 16+3+6+9 {
		t.Errorf("small item: %d bytes, want %d", ps.Item.Bytes, 16+3+6+9)
	}
	if _, err := Compute(opts(func(o *Options) { o.Namespace = "nope" }), reg); err == nil || !strings.Contains(err.Error(), "--namespace") {
		t.Errorf("unknown namespace: %v, want an error naming --namespace", err)
	}
}

// Units follow DynamoDB's rules: 4 KB read units rounded up per item and
// halved for eventual consistency, 1 KB write units doubled in
// transactions.
func TestUnits(t *testing.T) {
	t.Parallel()
	reg := registry(t)
	base, err := Compute(opts(nil), reg)
	if err != nil {
		t.Fatal(err)
	}
	size := base.Item.Bytes // over 1 KB: the 256-float vector alone is
	if size <= 1024 || size > 4096 {
		t.Fatalf("test item is %d bytes; the cases need 1 KB < size ≤ 4 KB", size)
	}
	wu := (size + 1023) / 1024
	for _, tc := range []struct {
		name       string
		mod        func(*Options)
		read       float64
		write      int
		rSteady    int
		wSteady    int
		wPeakExtra int
	}{
		{"eventual, transactional", func(o *Options) { o.PersistFraction = 0.5 }, 0.5, 2 * wu, 500, 100 * 0.5 * 10 * 2 * wu, 0},
		{"strong, plain", func(o *Options) { o.PersistFraction = 0.5; o.StrongReads = true; o.BulkTransactions = false }, 1, wu, 1000, 100 * 0.5 * 10 * wu, 0},
		{"uploads", func(o *Options) { o.UploadsPerSecond = 3; o.EntitiesPerUpload = 7; o.BulkTransactions = false }, 0.5, wu, 500, 21 * wu, 0},
	} {
		p, err := Compute(opts(tc.mod), reg)
		if err != nil {
			t.Fatal(err)
		}
		if p.ReadUnitsPerItem != tc.read || p.WriteUnitsPerItem != tc.write {
			t.Errorf("%s: per item %v RCU, %d WCU; want %v, %d", tc.name, p.ReadUnitsPerItem, p.WriteUnitsPerItem, tc.read, tc.write)
		}
		if p.ReadUnits.Steady != tc.rSteady || p.WriteUnits.Steady != tc.wSteady {
			t.Errorf("%s: steady %d RCU, %d WCU; want %d, %d", tc.name, p.ReadUnits.Steady, p.WriteUnits.Steady, tc.rSteady, tc.wSteady)
		}
	}
	// Half units round up: 3 queries × 1 entity × 0.5.
	p, err := Compute(opts(func(o *Options) { o.QPS, o.EntitiesPerQuery = 3, 1 }), reg)
	if err != nil {
		t.Fatal(err)
	}
	if p.ReadUnits.Steady != 2 {
		t.Errorf("1.5 read units rounded to %d, want 2", p.ReadUnits.Steady)
	}
}

// The capacity-mode rule, at its boundaries.
func TestCapacityMode(t *testing.T) {
	t.Parallel()
	reg := registry(t)
	for _, tc := range []struct {
		qps, peak float64
		uploads   float64
		want      string
	}{
		{100, 0, 0, Provisioned},
		{100, 142, 0, Provisioned},
		{100, 143, 0, Autoscaled},
		{100, 490, 0, Autoscaled},
		{100, 491, 0, OnDemand},
		{0, 0, 5, Provisioned}, // uploads only: flat
		{0, 10, 5, OnDemand},   // reads with a peak and no steady load
		{100, 300, 0, Autoscaled},
	} {
		p, err := Compute(opts(func(o *Options) { o.QPS, o.PeakQPS, o.UploadsPerSecond = tc.qps, tc.peak, tc.uploads }), reg)
		if err != nil {
			t.Fatal(err)
		}
		if p.CapacityMode != tc.want || p.TFVars.CapacityMode != tc.want {
			t.Errorf("qps %v peak %v uploads %v: %s (swing %v), want %s", tc.qps, tc.peak, tc.uploads, p.CapacityMode, p.Swing, tc.want)
		}
		a := p.Autoscaling
		if a.Read.Min < 1 || a.Read.Max < a.Read.Min || a.Write.Min < 1 || a.Write.Max < a.Write.Min {
			t.Errorf("qps %v peak %v: bounds %+v out of order", tc.qps, tc.peak, a)
		}
		wantRead := a.Read.Max
		if tc.want == Autoscaled {
			wantRead = a.Read.Min
		}
		if p.TFVars.ReadCapacity != wantRead {
			t.Errorf("%s: read_capacity %d, want %d", tc.want, p.TFVars.ReadCapacity, wantRead)
		}
	}
}

// The record sizes are cairn's encoding: fixed + n × entity bytes is the
// record of n entities, plus the framing.
func TestRecordBytes(t *testing.T) {
	t.Parallel()
	reg := registry(t)
	o := opts(nil)
	p, err := Compute(o, reg)
	if err != nil {
		t.Fatal(err)
	}
	ns, _ := reg.Namespace("big")
	r := &queue.Record{Kind: queue.KindQueryResult}
	for i := range 10 {
		w := o.write(ns, i)
		e := queue.Entity{Namespace: "big", Key: w.Key}
		for _, v := range w.Values {
			e.Values = append(e.Values, queue.Value{FQN: v.Feature.FQN, Value: v.Value, ObservedAt: v.ObservedAt})
		}
		r.Entities = append(r.Entities, e)
	}
	b, err := queue.AppendRecord(nil, r)
	if err != nil {
		t.Fatal(err)
	}
	got := p.Item.RecordFixedBytes + 10*p.Item.RecordEntityBytes
	if want := len(b) + KafkaRecordOverhead + o.KeyBytes; got != want {
		t.Errorf("record of 10 entities: plan says %d bytes, encoding %d + framing = %d", got, len(b), want)
	}
	// The item is cairn's own: the same as dynamo's count for that write.
	size, err := dynamo.EntityItemSize(o.write(ns, 0), dynamo.ShortIDs([]string{"small.n", "big.name", "big.note", "big.score", "big.seen", "big.tags", "big.blob", "big.extra", "big.embedding"}))
	if err != nil || size != p.Item.Bytes {
		t.Errorf("item: plan %d bytes, dynamo %d (%v)", p.Item.Bytes, size, err)
	}
}

// Storage scales with retention, replicas and headroom, and over brokers.
func TestKafkaStorage(t *testing.T) {
	t.Parallel()
	reg := registry(t)
	week, err := Compute(opts(func(o *Options) { o.UploadsPerSecond = 10; o.EntitiesPerUpload = 100 }), reg)
	if err != nil {
		t.Fatal(err)
	}
	k := week.Kafka
	if k.RetainedBytes != k.BytesPerSecond*168*3600 {
		t.Errorf("retained %v, want %v B/s × 168 h", k.RetainedBytes, k.BytesPerSecond)
	}
	want := k.RetainedBytes * 3 / 3 * 1.5 / (1 << 30)
	if k.StoragePerBrokerGiB < want || k.StoragePerBrokerGiB > want+0.01 {
		t.Errorf("per broker %v GiB, want %v rounded up to the hundredth", k.StoragePerBrokerGiB, want)
	}
	if k.BrokerVolumeSize != int(math.Ceil(k.StoragePerBrokerGiB)) || week.TFVars.BrokerVolumeSize != k.BrokerVolumeSize {
		t.Errorf("volume %d GiB for %v GiB", k.BrokerVolumeSize, k.StoragePerBrokerGiB)
	}
	day, err := Compute(opts(func(o *Options) {
		o.UploadsPerSecond = 10
		o.EntitiesPerUpload = 100
		o.Retention = 24 * time.Hour
		o.BrokersCount = 6
	}), reg)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := day.Kafka.RetainedBytes*7, k.RetainedBytes; math.Abs(got-want) > 1 {
		t.Errorf("24 h retains %v B, a seventh of the week's %v", day.Kafka.RetainedBytes, want)
	}
	if day.TFVars.LogRetentionHours != 24 || day.TFVars.BrokerCount != 6 || day.TFVars.DefaultReplicationFactor != 3 {
		t.Errorf("tfvars %+v", day.TFVars)
	}
}

// A retention window whose storage does not fit MSK's largest volume per
// broker is refused with the broker count that would hold it, rather than
// printing a broker_volume_size that Terraform and MSK refuse.
func TestKafkaStorageAboveTheVolumeLimit(t *testing.T) {
	t.Parallel()
	reg := registry(t)
	big := func(brokers int) Options {
		return opts(func(o *Options) {
			o.UploadsPerSecond, o.EntitiesPerUpload = 100, 100
			o.Retention = 30 * 24 * time.Hour
			o.BrokersCount = brokers
		})
	}
	_, err := Compute(big(3), reg)
	if err == nil || !strings.Contains(err.Error(), "--brokers-count:") {
		t.Fatalf("3 brokers: %v, want an error naming --brokers-count", err)
	}
	var need int
	if _, err := fmt.Sscanf(err.Error()[strings.Index(err.Error(), "at least "):], "at least %d brokers", &need); err != nil {
		t.Fatalf("%v: no broker count in the error: %v", err, err)
	}
	p, err := Compute(big(need), reg)
	if err != nil {
		t.Fatalf("%d brokers, as the error advised: %v", need, err)
	}
	if v := p.TFVars.BrokerVolumeSize; v > MaxBrokerVolumeGiB {
		t.Errorf("%d brokers: %d GiB each, want at most %d", need, v, MaxBrokerVolumeGiB)
	}
	if _, err := Compute(big(need-1), reg); err == nil {
		t.Errorf("%d brokers are accepted, one fewer than the error advised", need-1)
	}
}

func TestDecodeYAML(t *testing.T) {
	t.Parallel()
	o := DefaultOptions()
	o.ListLength = 9 // not in the file: kept
	err := DecodeYAML([]byte(`
qps: 500
peak-qps: 1500
persist-fraction: 0.25
strong-reads: true
bulk-transactions: false
retention: 7d
brokers-count: 6
features: f.yaml
`), &o)
	if err != nil {
		t.Fatal(err)
	}
	if o.QPS != 500 || o.PeakQPS != 1500 || o.PersistFraction != 0.25 || !o.StrongReads || o.BulkTransactions ||
		o.Retention != 168*time.Hour || o.BrokersCount != 6 || o.Features != "f.yaml" || o.ListLength != 9 || o.ReplicationFactor != 3 {
		t.Errorf("decoded %+v", o)
	}
	for _, bad := range []string{"qpss: 1", "retention: 1 week", "qps: [1]", "qps: 1\nqps: 2"} {
		before := o
		if err := DecodeYAML([]byte(bad), &o); err == nil {
			t.Errorf("%q: no error", bad)
		}
		if o != before {
			t.Errorf("%q: options changed on error", bad)
		}
	}
	if err := DecodeYAML(nil, &o); err != nil {
		t.Errorf("empty file: %v", err)
	}
}

func FuzzDecodeYAML(f *testing.F) {
	f.Add([]byte("qps: 500\npeak-qps: 1500\nretention: 24h\n"))
	f.Add([]byte("entities-per-query: 1e300\nheadroom: .nan\n"))
	f.Add([]byte("retention: 99999999d\nbrokers-count: -1\n"))
	f.Add([]byte("features: x\nstring-bytes: 100000000\n"))
	reg := registry(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		o := opts(nil)
		if err := DecodeYAML(data, &o); err != nil {
			return
		}
		o.Features = "test.yaml"
		if o.Validate() != nil {
			return
		}
		// Whatever validates plans without failing (unless its values do
		// not fit in an item), with sane figures.
		p, err := Compute(o, reg)
		if err != nil && strings.Contains(err.Error(), "item limit") {
			return // representative values too large for an item
		}
		if err != nil {
			t.Fatalf("valid options %+v: %v", o, err)
		}
		if p.ReadUnits.Peak < p.ReadUnits.Steady || p.Kafka.StoragePerBrokerGiB < 0 || math.IsNaN(p.Kafka.RetainedBytes) {
			t.Fatalf("options %+v gave %+v", o, p)
		}
	})
}

// Representative values too large for an item are refused before they are
// built: list[list[string]] of 10,000 × 10,000 strings would not fit in
// memory.
func TestOversizeRepresentative(t *testing.T) {
	t.Parallel()
	reg, err := feature.Parse("test", []byte("namespaces:\n  - name: n\n    primary_key: id\n    features:\n      id: int\n      l: list[list[string]]\n"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Compute(opts(func(o *Options) { o.ListLength = 10000 }), reg)
	if err == nil || !strings.Contains(err.Error(), "--list-length") {
		t.Errorf("Compute = %v, want an error naming --list-length", err)
	}
}

// The metrics topic's record size is the real encoding's: the bytes of the
// representative record as metrics.Record.Append writes it, which
// metrics.Decode reads back, and the topic's rate follows the servers,
// the interval and the namespaces.
func TestMetricsRecordIsMeasured(t *testing.T) {
	t.Parallel()
	reg := registry(t)
	o := opts(func(o *Options) { o.QPS, o.PeakQPS = 300, 300 })
	p, err := Compute(o, reg)
	if err != nil {
		t.Fatal(err)
	}
	m := p.Kafka.Metrics
	r := o.MetricsRecord(reg, 2)
	b := r.Append(nil)
	if m.RecordBytes != len(b) {
		t.Errorf("plan's record is %d bytes, Append writes %d", m.RecordBytes, len(b))
	}
	back, err := metrics.Decode(b)
	if err != nil {
		t.Fatalf("the representative record does not decode: %v", err)
	}
	// 300 queries/s × 10 s / 3 servers.
	if m.Namespaces != 2 || m.QueriesPerInterval != 1000 || len(back.Namespaces) != 2 || back.Namespaces[0].Queries != 1000 {
		t.Errorf("record of %d namespaces, %d queries; want 2 namespaces (the registry's) of 1000", m.Namespaces, m.QueriesPerInterval)
	}
	if got := len(back.Namespaces[0].Latency); got != m.LatencyBuckets || got < 100 {
		t.Errorf("%d latency buckets, plan says %d; want the 2–20 ms range's, over 100", got, m.LatencyBuckets)
	}
	if want := 3 * float64(len(b)+KafkaRecordOverhead) / 10; m.BytesPerSecond != want {
		t.Errorf("metrics %v B/s, want 3 servers × (%d + %d) / 10 s = %v", m.BytesPerSecond, len(b), KafkaRecordOverhead, want)
	}
	if p.Kafka.BytesPerSecond != round6(o.persistBytes(p)+m.BytesPerSecond) {
		t.Errorf("Kafka total %v B/s leaves out the metrics' %v", p.Kafka.BytesPerSecond, m.BytesPerSecond)
	}

	// More servers, namespaces or a shorter interval send more; each
	// namespace adds the same bytes.
	more, err := Compute(opts(func(o *Options) {
		o.QPS, o.PeakQPS, o.QueryServers, o.Namespaces, o.MetricsInterval = 300, 300, 6, 4, 5*time.Second
	}), reg)
	if err != nil {
		t.Fatal(err)
	}
	mm := more.Kafka.Metrics
	// 300 × 5 / 6 = 250 queries: as many buckets as the range holds.
	perNS := len(o.MetricsRecord(reg, 3).Append(nil)) - len(b)
	if mm.Namespaces != 4 || mm.QueriesPerInterval != 250 || perNS <= 0 {
		t.Fatalf("4 namespaces of 250 queries: got %d of %d, %d bytes per namespace", mm.Namespaces, mm.QueriesPerInterval, perNS)
	}
	if want := 6 * float64(mm.RecordBytes+KafkaRecordOverhead) / 5; mm.BytesPerSecond != want {
		t.Errorf("metrics %v B/s, want 6 servers × (%d + %d) / 5 s = %v", mm.BytesPerSecond, mm.RecordBytes, KafkaRecordOverhead, want)
	}

	// No queries, no records.
	none, err := Compute(opts(func(o *Options) { o.QPS, o.UploadsPerSecond = 0, 5 }), reg)
	if err != nil {
		t.Fatal(err)
	}
	if none.Kafka.Metrics.BytesPerSecond != 0 || none.Kafka.Metrics.RecordBytes != 0 {
		t.Errorf("uploads only: metrics %+v, want none", none.Kafka.Metrics)
	}
}

// A few queries per interval fill as many buckets as there are queries.
func TestLatencyBucketsFewQueries(t *testing.T) {
	t.Parallel()
	for _, q := range []uint64{0, 1, 7, 116, 117, 100000} {
		bs := latencyBuckets(q)
		var sum uint64
		for i, b := range bs {
			sum += b.Count
			if i > 0 && b.Index != bs[i-1].Index+1 {
				t.Errorf("q=%d: bucket %d index %d after %d, want consecutive", q, i, b.Index, bs[i-1].Index)
			}
		}
		if sum != q || len(bs) > int(q) || len(bs) > 116 {
			t.Errorf("q=%d: %d buckets holding %d", q, len(bs), sum)
		}
	}
}

// The metrics inputs read from a --from file as from their flags.
func TestDecodeYAMLMetricsInputs(t *testing.T) {
	t.Parallel()
	o := DefaultOptions()
	if err := DecodeYAML([]byte("metrics-interval: 5s\nquery-servers: 4\nnamespaces: 7\n"), &o); err != nil {
		t.Fatal(err)
	}
	if o.MetricsInterval != 5*time.Second || o.QueryServers != 4 || o.Namespaces != 7 {
		t.Errorf("decoded interval %v, %d servers, %d namespaces; want 5s, 4, 7", o.MetricsInterval, o.QueryServers, o.Namespaces)
	}
	if err := DecodeYAML([]byte("metrics-bytes-per-query: 200\n"), &o); err == nil {
		t.Error("the removed metrics-bytes-per-query was accepted")
	}
}
