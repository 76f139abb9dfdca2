// Package metrics is cairn's query-metrics pipeline: query servers
// aggregate their queries in memory ([Aggregator]) and send one compact
// record ([Record]) per interval to the metrics topic; a consumer in
// `cairn write` ([Consumer]) rolls the records up per minute and namespace
// into the online store; [Reader] reads the rollups back for /ui and
// `cairn status`.
//
// # Per query
//
// [Aggregator.Observe] counts one query of one namespace: atomic adds to
// counters of that namespace, and one to a latency bucket whose index is
// DDSketch's logarithmic mapping at [RelativeAccuracy]. It neither
// allocates nor takes a lock (a new namespace takes one, once). At each
// interval's end the counters are swapped to zero and the buckets become a
// DDSketch, so the record's latency quantiles are within 1% of the true
// ones (relative error), like any DDSketch of that accuracy, and merge
// exactly across processes and minutes.
//
// Cache hits and misses and Bloom short-circuits are not counted per
// query: they are read, once per interval, as deltas of the process's own
// counters (cairn_cache_hits_total, cairn_cache_misses_total,
// cairn_bloom_reads_skipped_total, by namespace), as are the store's and
// Kafka's counters of the fleet rows. The query path pays nothing for them.
//
// # Replays
//
// A record names its source (host, process start, a random number) and
// its interval's start. The consumer keeps one rollup item per minute and
// metrics-topic partition, holding the hashes of the (source, interval)
// pairs merged into it; a record whose pair is already there is skipped.
// So a replayed record (a consumer restarted before committing, a producer
// retry, a failover to a replicated topic) never counts twice.
package metrics
