// Package ui is cairn's store-health page, served at /ui by the query
// server: online store request, error and throttle rates, latency quantiles
// over the last hour, cache hit and Bloom short-circuit ratios per
// namespace, the request racing rate, writer lag per partition, and Kafka
// drops, drawn as charts that refresh every few seconds.
//
// The page is one HTML document embedded in the binary, its script and
// styles inline, its charts drawn on <canvas>: nothing is fetched from
// another host when it is viewed. It polls its data endpoint
// (GET /ui/data?since=<unix milliseconds>), which answers the points of the
// first [Source] with any, in the order the sources were given: the fleet's
// per-minute rollups when a metrics consumer keeps them, else this process's
// own counters ([ProcessSource]). The page says which source it shows.
//
// The page itself holds no figures; only the data endpoint does, so that a
// deployment protecting /metrics protects /ui/data alike (see package api)
// while a browser can still load the page and be asked for a key.
package ui

import (
	"context"
	"time"
)

// Point is one sample of the figures the page draws, averaged over Span
// and ending at At.
type Point struct {
	// At is the end of the sample.
	At time.Time
	// Span is the time the rates and quantiles are computed over: the
	// sample interval of a [ProcessSource], a minute for rollups.
	Span time.Duration

	// StoreRequestsPerSec counts online store requests (reads, writes
	// and health probes), each once after its client's retries.
	StoreRequestsPerSec float64
	// StoreErrorsPerSec counts the store requests that failed after
	// their retries, throttled ones included.
	StoreErrorsPerSec float64
	// StoreThrottlesPerSec counts the times the store throttled cairn:
	// each throttled attempt, retried or not.
	StoreThrottlesPerSec float64
	// RacesPerSec counts requests sent a second time by request racing.
	RacesPerSec float64
	// KafkaDropsPerSec counts records refused by a full producer buffer.
	KafkaDropsPerSec float64

	// LatencyP50, LatencyP95 and LatencyP99 are quantiles of the online
	// store's request latency, in seconds; NaN when nothing was measured.
	LatencyP50, LatencyP95, LatencyP99 float64
	// LatencyOf names what the latency measures, as in "dynamodb
	// requests".
	LatencyOf string

	// Namespaces holds the per-namespace figures, by namespace name.
	Namespaces map[string]NamespacePoint
	// WriterLag is the lag in records of each partition of the
	// persistence topic, by partition; empty without a writer.
	WriterLag map[int32]int64
}

// NamespacePoint is one namespace's figures in a [Point].
type NamespacePoint struct {
	// QueriesPerSec counts queries reading the namespace.
	QueriesPerSec float64
	// CacheHitRatio is the fraction of cells answered from the cache;
	// NaN when the cache was not consulted.
	CacheHitRatio float64
	// BloomShortCircuitRatio is the fraction of Bloom filter lookups
	// that answered absent, sparing a store read; NaN when the filter
	// was not consulted.
	BloomShortCircuitRatio float64
}

// Source provides the points the page draws.
type Source interface {
	// Name says what the points describe, shown on the page: "fleet,
	// from rollups" or "this process".
	Name() string
	// Points returns the points that end after since, oldest first; none
	// when the source has nothing yet.
	Points(ctx context.Context, since time.Time) ([]Point, error)
}
