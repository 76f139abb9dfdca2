package dynamo

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/store"
	"github.com/cairnfs/cairn/internal/testserver"
	"github.com/cairnfs/cairn/internal/testserver/faultproxy"
)

// The benchmarks of BENCHMARKS.md. Each runs against moto's server, in one
// command:
//
//	go test ./internal/store/dynamo -run '^$' -bench BenchmarkItemSize -benchtime 1x -v
//	go test ./internal/store/dynamo -run '^$' -bench BenchmarkRequestsPerQuery -benchtime 1x -v
//	go test ./internal/store/dynamo -run '^$' -bench BenchmarkRacing -benchtime 1x -timeout 30m -v

// featureMix is how many features of each type an entity has.
type featureMix struct {
	ints, floats, strings, bools, datetimes, lists, vectors, jsons int
}

func (m featureMix) total() int {
	return m.ints + m.floats + m.strings + m.bools + m.datetimes + m.lists + m.vectors + m.jsons
}

// referenceMixes are the entities of the item-size benchmark: the
// reference entity of 40 features, and the same proportions at 10 and 100.
var referenceMixes = []featureMix{
	{ints: 3, floats: 3, strings: 2, bools: 1, datetimes: 1},
	{ints: 10, floats: 10, strings: 8, bools: 4, datetimes: 4, lists: 2, vectors: 1, jsons: 1},
	{ints: 25, floats: 25, strings: 20, bools: 10, datetimes: 10, lists: 5, vectors: 3, jsons: 2},
}

// referenceNamespace returns the namespace "user" with the features of m,
// named as a feature pipeline would (user.txn_count_03), and the features
// in order.
func referenceNamespace(tb testing.TB, m featureMix) (*feature.Namespace, []*feature.Feature) {
	tb.Helper()
	var b strings.Builder
	b.WriteString("namespaces:\n  - name: user\n    primary_key: id\n    features:\n      id: string\n")
	add := func(n int, base, typ string) {
		for i := range n {
			fmt.Fprintf(&b, "      %s_%02d: %q\n", base, i, typ)
		}
	}
	add(m.ints, "txn_count", "int")
	add(m.floats, "avg_amount", "float")
	add(m.strings, "device_name", "string")
	add(m.bools, "is_flagged", "bool")
	add(m.datetimes, "last_seen_at", "datetime")
	add(m.lists, "recent_merchants", "list[string]")
	add(m.vectors, "embedding", "vector[32]")
	add(m.jsons, "profile", "json")
	reg, err := feature.Parse("reference", []byte(b.String()))
	if err != nil {
		tb.Fatal(err)
	}
	ns, _ := reg.Namespace("user")
	return ns, slices.Clone(ns.Features[1:])
}

// referenceObservedAt is the observed-at of the reference values.
var referenceObservedAt = time.Date(2026, 3, 14, 15, 9, 26, 535897000, time.UTC)

// referenceValues returns a value for each feature, drawn from rng: ints
// under 100,000, floats with full float64 precision (as computed
// aggregates have), strings of 16 letters, datetimes in the last year at
// microsecond precision, lists of 3 strings of 8 letters, vectors of 32
// float32s, and a small JSON object.
func referenceValues(rng *rand.Rand, feats []*feature.Feature) []any {
	word := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte('a' + rng.IntN(26))
		}
		return string(b)
	}
	out := make([]any, len(feats))
	for i, f := range feats {
		switch f.Type.Kind {
		case feature.KindInt:
			out[i] = rng.Int64N(100_000)
		case feature.KindFloat:
			out[i] = rng.Float64() * 1000
		case feature.KindString:
			out[i] = word(16)
		case feature.KindBool:
			out[i] = rng.IntN(2) == 1
		case feature.KindDatetime:
			out[i] = feature.CanonicalTime(referenceObservedAt.Add(-time.Duration(rng.Int64N(int64(365 * 24 * time.Hour)))))
		case feature.KindList:
			out[i] = []any{word(8), word(8), word(8)}
		case feature.KindVector:
			v := make([]float32, f.Type.Dim)
			for j := range v {
				v[j] = rng.Float32()*2 - 1
			}
			out[i] = v
		case feature.KindJSON:
			out[i] = map[string]any{"tier": "gold", "score": json.Number("42"), "tags": []any{"a", "b"}}
		}
	}
	return out
}

// referenceWrite returns the write of one reference entity, every value
// observed at at.
func referenceWrite(ns *feature.Namespace, feats []*feature.Feature, key string, vals []any, at time.Time) store.EntityWrite {
	w := store.EntityWrite{Namespace: ns, Key: key}
	for i, f := range feats {
		w.Values = append(w.Values, store.Value{Feature: f, Value: vals[i], ObservedAt: at})
	}
	return w
}

// naiveItem is the item a naive encoding would store: the same keys, and
// one string attribute holding a JSON object of full feature names, each
// with its value and its observed-at (at) in ISO 8601.
func naiveItem(pk string, feats []*feature.Feature, vals []any, at time.Time) (map[string]types.AttributeValue, error) {
	type entry struct {
		Value      any    `json:"value"`
		ObservedAt string `json:"observed_at"`
	}
	doc := make(map[string]entry, len(feats))
	for i, f := range feats {
		doc[f.FQN] = entry{Value: feature.ToJSON(vals[i]), ObservedAt: at.Format(feature.TimeLayout)}
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	return map[string]types.AttributeValue{
		"pk":   &types.AttributeValueMemberS{Value: pk},
		"sk":   &types.AttributeValueMemberS{Value: entitySK},
		"data": &types.AttributeValueMemberS{Value: string(b)},
	}, nil
}

// sizeParts splits an item's size into keys, values (with their short
// names) and per-feature observed-at attributes.
func sizeParts(item map[string]types.AttributeValue) (keys, values, observedAts int) {
	for name, v := range item {
		n := ItemSize(map[string]types.AttributeValue{name: v})
		switch {
		case name == "pk" || name == "sk":
			keys += n
		case strings.HasSuffix(name, tsSuffix):
			observedAts += n
		default:
			values += n
		}
	}
	return keys, values, observedAts
}

// oneObservedAt returns item with its per-feature observed-at attributes
// replaced by one attribute "@" holding their common value: the layout that
// stores an observed-at once per item when every feature shares it.
func oneObservedAt(item map[string]types.AttributeValue) map[string]types.AttributeValue {
	out := map[string]types.AttributeValue{}
	for name, v := range item {
		if strings.HasSuffix(name, tsSuffix) {
			out[tsSuffix] = v
			continue
		}
		out[name] = v
	}
	return out
}

func wcuOf(size int) int { return max(1, (size+writeUnitBytes-1)/writeUnitBytes) }

func rcuOf(size int) float64 { return float64(max(1, (size+readUnitBytes-1)/readUnitBytes)) / 2 }

// BenchmarkItemSize writes the reference entity (and its 10- and
// 100-feature variants) through the store, reads the stored item back raw
// from the server, and reports its size as DynamoDB counts it, next to the
// naive encoding's, with observed-at times at microsecond precision
// (observed=us) and at whole seconds (observed=s), which only the naive
// encoding's size depends on. It also sizes a variant of the layout built
// from the stored item: one observed-at per item.
func BenchmarkItemSize(b *testing.B) {
	for _, mix := range referenceMixes {
		for _, prec := range []struct {
			name  string
			round time.Duration
		}{{"us", time.Microsecond}, {"s", time.Second}} {
			b.Run(fmt.Sprintf("features=%d/observed=%s", mix.total(), prec.name), func(b *testing.B) {
				benchItemSize(b, mix, referenceObservedAt.Truncate(prec.round))
			})
		}
	}
}

func benchItemSize(b *testing.B, mix featureMix, at time.Time) {
	ns, feats := referenceNamespace(b, mix)
	cfg := testConfig(b, tableName(fmt.Sprintf("size%d-%d", mix.total(), at.Nanosecond())))
	s := open(b, cfg)
	vals := referenceValues(rand.New(rand.NewPCG(1, uint64(mix.total()))), feats)
	ctx := context.Background()
	var item map[string]types.AttributeValue
	for range b.N {
		if err := s.Write(ctx, []store.EntityWrite{referenceWrite(ns, feats, "e0", vals, at)}); err != nil {
			b.Fatal(err)
		}
		out, err := rawClient(b).GetItem(ctx, &dynamodb.GetItemInput{
			TableName: aws.String(cfg.Table),
			Key:       itemKey(entityPK(ns.Name, "e0"), entitySK),
		})
		if err != nil {
			b.Fatal(err)
		}
		item = out.Item
	}
	naive, err := naiveItem(entityPK(ns.Name, "e0"), feats, vals, at)
	if err != nil {
		b.Fatal(err)
	}
	size, naiveSize := ItemSize(item), ItemSize(naive)
	oneTS := ItemSize(oneObservedAt(item))
	keys, values, tss := sizeParts(item)
	b.ReportMetric(float64(size), "cairn-B")
	b.ReportMetric(float64(naiveSize), "naive-B")
	b.ReportMetric(float64(naiveSize)/float64(size), "naive/cairn")
	b.ReportMetric(float64(oneTS), "one-ts-B")
	b.Logf("%d features, observed at %s: cairn %d B (keys %d, values %d, observed-ats %d; %d WCU, %.1f RCU eventually consistent); "+
		"naive %d B (%d WCU, %.1f RCU); naive/cairn %.2f×",
		mix.total(), at.Format(feature.TimeLayout), size, keys, values, tss, wcuOf(size), rcuOf(size),
		naiveSize, wcuOf(naiveSize), rcuOf(naiveSize), float64(naiveSize)/float64(size))
	b.Logf("variant: one observed-at per item %d B (%d WCU, naive/that %.2f×)",
		oneTS, wcuOf(oneTS), float64(naiveSize)/float64(oneTS))
}

// BenchmarkRequestsPerQuery reads 1, 10, 100 and 1,000 entities with the
// default knobs through the fault proxy (with no rules: it only counts), and
// reports the BatchGetItem requests each read takes. The entities have two
// features: the count depends only on the number of keys, and moto takes
// about 5 ms per projected feature per 10-key batch (and longer still to
// write wide items), which would make 1,000 reference entities take minutes
// to write and read.
func BenchmarkRequestsPerQuery(b *testing.B) {
	ns, feats := referenceNamespace(b, featureMix{ints: 2})
	s := openProxied(b, "reqs", DefaultMaxRetries)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	const stored = 1000
	keys := make([]string, stored)
	for i := range keys {
		keys[i] = fmt.Sprintf("e%04d", i)
	}
	for chunk := range slices.Chunk(keys, 100) {
		ws := make([]store.EntityWrite, len(chunk))
		for i, k := range chunk {
			ws[i] = referenceWrite(ns, feats, k, referenceValues(rng, feats), referenceObservedAt)
		}
		if err := s.Write(ctx, ws); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("defaults: GetItemMinBatchSize %d, GetItemMinBatchConcurrency %d (NumClientThreads %d, GOMAXPROCS-derived)",
		s.cfg.GetItemMinBatchSize, s.cfg.batchConcurrency(), s.cfg.NumClientThreads)
	for _, n := range []int{1, 10, 100, 1000} {
		b.Run(fmt.Sprintf("entities=%d", n), func(b *testing.B) {
			before := s.proxy.Count("BatchGetItem").Requests
			for range b.N {
				rows, err := s.Read(ctx, ns, keys[:n], feats)
				if err != nil {
					b.Fatal(err)
				}
				for i, r := range rows {
					if !r.Found {
						b.Fatalf("%s not found", keys[i])
					}
				}
			}
			reqs := float64(s.proxy.Count("BatchGetItem").Requests-before) / float64(b.N)
			b.ReportMetric(reqs, "requests/query")
			b.ReportMetric(float64(n)/reqs, "keys/request")
		})
	}
}

// latencies is a sample of durations.
type latencies []time.Duration

// quantile returns the q-quantile by nearest rank.
func (l latencies) quantile(q float64) time.Duration {
	s := slices.Clone(l)
	slices.Sort(s)
	i := int(float64(len(s))*q+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// summary renders the usual quantiles.
func (l latencies) summary() string {
	return fmt.Sprintf("p50 %v  p90 %v  p95 %v  p99 %v  p99.9 %v  max %v",
		ms(l.quantile(0.5)), ms(l.quantile(0.9)), ms(l.quantile(0.95)), ms(l.quantile(0.99)), ms(l.quantile(0.999)), ms(l.quantile(1)))
}

// histogram counts the sample in latency buckets.
func (l latencies) histogram() []int {
	counts := make([]int, len(histogramBounds)+1)
	for _, d := range l {
		i, _ := slices.BinarySearch(histogramBounds, d)
		counts[i]++
	}
	return counts
}

var histogramBounds = []time.Duration{
	2 * time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 200 * time.Millisecond, 500 * time.Millisecond, time.Second,
}

func histogramLabels() []string {
	var out []string
	lo := "0"
	for _, b := range histogramBounds {
		out = append(out, fmt.Sprintf("%s–%v", lo, b))
		lo = b.String()
	}
	return append(out, ">"+lo)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)) }

// BenchmarkRacing measures the latency of read sub-batches (reads of 10
// reference entities projected to one feature: one BatchGetItem each with
// the default knobs) through the fault proxy, one at a time.
//
// moto serves one request at a time, and keeps working on a request its
// client gave up on, where DynamoDB serves each request in parallel with
// the others: a raced duplicate, or the cancelled loser of a race, delays
// nothing else there, but at moto it delays whatever comes next. So each
// read starts only once both proxies have nothing in flight (the proxy
// counts a forwarded request until moto answers it, client gone or not),
// and sees an idle server, as a read would see DynamoDB. Within a read the
// duplicate still queues behind the original at moto, which only makes
// racing look worse than it would be. moto also takes about 5 ms more per
// projected feature per 10-key batch, where DynamoDB's latency barely
// depends on it; one feature keeps moto's latency near DynamoDB's few
// milliseconds.
//
// The runs are:
//
//  1. without stragglers, to find the p95 of a sub-batch;
//  2. with 2% of BatchGetItem requests delayed by 500 ms, racing off and
//     racing on (wait = that p95), the kinds of read alternating so that
//     all see the same server, each through its own proxy so that the
//     requests of each are counted apart; a third kind, without
//     stragglers and without racing, shows whether the server's own
//     latency drifted from the first run's (on a shared machine it can,
//     and then the wait is no longer its p95).
//
// It reports the p99 of both, their ratio, and the extra requests racing
// sends.
func BenchmarkRacing(b *testing.B) {
	const (
		keysPerRead = 10
		baseline    = 1000 // reads to find the p95
		pairs       = 2000 // reads of each kind in the second run
		straggle    = 500 * time.Millisecond
		fraction    = 0.02
	)
	ns, feats := referenceNamespace(b, referenceMixes[1])
	off := openProxied(b, "racing", DefaultMaxRetries)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(3, 4))
	keys := make([]string, keysPerRead)
	ws := make([]store.EntityWrite, keysPerRead)
	for i := range keys {
		keys[i] = fmt.Sprintf("e%d", i)
		ws[i] = referenceWrite(ns, feats, keys[i], referenceValues(rng, feats), referenceObservedAt)
	}
	if err := off.Write(ctx, ws); err != nil {
		b.Fatal(err)
	}
	var on, plain *proxied
	read := func(s *proxied) time.Duration {
		for _, p := range []*proxied{off, on, plain} {
			if p != nil {
				if err := p.proxy.WaitIdle(ctx); err != nil {
					b.Fatal(err)
				}
			}
		}
		start := time.Now()
		rows, err := s.Read(ctx, ns, keys, feats[:1])
		d := time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		if !rows[0].Found {
			b.Fatal("reference entity not found")
		}
		return d
	}

	for range b.N {
		for range 50 { // warm up connections and the server
			read(off)
		}
		var base latencies
		for range baseline {
			base = append(base, read(off))
		}
		wait := base.quantile(0.95)

		// A second store on the same table, racing, through its own proxy.
		on = &proxied{proxy: faultproxy.Start(b, testserver.Moto(b), 1), reg: prometheus.NewRegistry()}
		cfg := off.cfg
		cfg.Endpoint = on.proxy.URL()
		cfg.EnableRequestRacing = true
		cfg.RequestRacingWaitTime = wait
		var err error
		if on.Store, err = Open(ctx, cfg, on.reg, nil); err != nil {
			b.Fatal(err)
		}
		defer on.Close()
		// A third, neither racing nor delayed.
		plain = &proxied{proxy: faultproxy.Start(b, testserver.Moto(b), 1), reg: prometheus.NewRegistry()}
		cfg = off.cfg
		cfg.Endpoint = plain.proxy.URL()
		if plain.Store, err = Open(ctx, cfg, plain.reg, nil); err != nil {
			b.Fatal(err)
		}
		defer plain.Close()
		for range 50 {
			read(on)
			read(plain)
		}

		straggler := faultproxy.Rule{Operations: []string{"BatchGetItem"}, Delay: straggle, Probability: fraction}
		offRule, onRule := off.rule(b, straggler), on.rule(b, straggler)
		offReqs, onReqs := off.proxy.Count("BatchGetItem").Requests, on.proxy.Count("BatchGetItem").Requests
		var withOff, withOn, during latencies
		for range pairs {
			withOff = append(withOff, read(off))
			withOn = append(withOn, read(on))
			during = append(during, read(plain))
		}
		offReqs = off.proxy.Count("BatchGetItem").Requests - offReqs
		onReqs = on.proxy.Count("BatchGetItem").Requests - onReqs
		off.proxy.Clear()
		on.proxy.Clear()

		p99Off, p99On := withOff.quantile(0.99), withOn.quantile(0.99)
		extra := float64(onReqs-pairs) / pairs
		b.ReportMetric(float64(wait)/1e6, "wait-ms")
		b.ReportMetric(float64(during.quantile(0.95))/1e6, "p95-during-ms")
		b.ReportMetric(float64(p99Off)/1e6, "p99-off-ms")
		b.ReportMetric(float64(p99On)/1e6, "p99-on-ms")
		b.ReportMetric(float64(p99Off)/float64(p99On), "p99-off/on")
		b.ReportMetric(100*extra, "extra-requests-%")

		b.Logf("baseline, no stragglers (%d reads):  %s", len(base), base.summary())
		b.Logf("racing wait = baseline p95 = %v", ms(wait))
		b.Logf("stragglers: %.0f%% of BatchGetItem delayed %v; %d reads of each kind, alternating, each on an idle server", 100*fraction, straggle, pairs)
		b.Logf("no stragglers, alternating with the others: %s", during.summary())
		b.Logf("racing off: %s  (%d requests, %d delayed)", withOff.summary(), offReqs, off.proxy.Fired(offRule))
		b.Logf("racing on:  %s  (%d requests, %d delayed)", withOn.summary(), onReqs, on.proxy.Fired(onRule))
		b.Logf("p99 off/on %.1f×; racing sent %.2f%% extra requests", float64(p99Off)/float64(p99On), 100*extra)
		var rows strings.Builder
		fmt.Fprintf(&rows, "%-14s %9s %9s %9s %9s\n", "latency", "baseline", "during", "off", "on")
		hb, hd, hoff, hon := base.histogram(), during.histogram(), withOff.histogram(), withOn.histogram()
		for i, label := range histogramLabels() {
			fmt.Fprintf(&rows, "%-14s %9d %9d %9d %9d\n", label, hb[i], hd[i], hoff[i], hon[i])
		}
		b.Logf("distribution:\n%s", rows.String())
		for _, name := range []string{"cairn_hedge_started_total", "cairn_hedge_won_total", "cairn_hedge_skipped_total"} {
			b.Logf("racing store: %s = %v", name, on.metric(b, name, nil))
		}
	}
}
