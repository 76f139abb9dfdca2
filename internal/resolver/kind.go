package resolver

import (
	"context"

	"github.com/cairnfs/cairn/internal/feature"
)

// kind is one resolver's way of computing its outputs: an HTTP service, a
// PostgreSQL query or an expression. A Set wraps it with batching, bounded
// concurrency, shared calls, timeouts and metrics; a kind sees one batch at
// a time, of at most the declaration's BatchSize keys.
type kind interface {
	// call computes the declaration's Outputs for keys. It returns one Row
	// per key, in keys' order. inputs is nil except for a kind with
	// inputs (an expression): then inputs[i] holds key i's values of
	// inputs(), in that order, nil where the value is absent.
	//
	// An error fails the whole batch (the service answered 500, malformed
	// JSON, a value of the wrong type, the query failed); it names what
	// went wrong, not the resolver, which the caller adds.
	call(ctx context.Context, keys []string, inputs [][]any) ([]Row, error)
	// inputs returns the features of the same entity the kind reads, nil
	// when it reads none (http, sql).
	inputs() []*feature.Feature
	// close releases what the kind holds (connections).
	close()
}

// Row is one key's answer from a kind.
type Row struct {
	// Values holds one canonical value (see feature.Check) per output of
	// the declaration, in its order; nil where the output has no value.
	// A nil Values means the key has no values at all.
	Values []any
	// Err fails this key alone (an expression that could not be
	// evaluated for it); Values is then nil.
	Err error
}
