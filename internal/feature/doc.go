// Package feature defines namespaces, features, their types and values, and
// the YAML registry that declares them.
//
// A feature value is held in memory as one of a small set of canonical Go
// types, chosen by the feature's [Kind]:
//
//	int       int64
//	float     float64
//	string    string
//	bool      bool
//	bytes     []byte
//	datetime  time.Time, in UTC, truncated to the microsecond
//	list[T]   []any, each element canonical for T (never nil)
//	vector[N] []float32 of length N
//	json      map[string]any as decoded by encoding/json with UseNumber
//
// A nil value means "absent". Values cross process boundaries in the compact
// binary encoding of codec.go and reach clients as JSON (json.go).
package feature
