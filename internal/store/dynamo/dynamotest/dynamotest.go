// Package dynamotest opens DynamoDB stores for the tests of other
// packages: each on a table of its own on moto's server (through
// internal/testserver), optionally behind a fault proxy. It is imported only
// by _test files, and not by package dynamo's own tests, which it imports.
package dynamotest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairnfs/cairn/internal/store/dynamo"
	"github.com/cairnfs/cairn/internal/testserver"
	"github.com/cairnfs/cairn/internal/testserver/faultproxy"
)

// Open opens a store on a new table at endpoint (moto, or a proxy in front
// of it) with the default knobs but maxRetries, registering its metrics
// with reg (which may be nil). The store is closed when the test ends.
func Open(t testing.TB, endpoint string, maxRetries int, reg prometheus.Registerer) *dynamo.Store {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	cfg := dynamo.DefaultConfig()
	cfg.Table = "cairn-t-" + hex.EncodeToString(b[:])
	cfg.Region = "us-east-1"
	cfg.Endpoint = endpoint
	cfg.CreateTableIfNotExists = true
	cfg.MaxRetries = maxRetries
	st, err := dynamo.Open(context.Background(), cfg, reg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// OpenProxied opens a store as Open does, behind a new fault proxy in front
// of moto, and returns both.
func OpenProxied(t testing.TB, maxRetries int) (*dynamo.Store, *faultproxy.Proxy) {
	t.Helper()
	p := faultproxy.Start(t, testserver.Moto(t), 1)
	return Open(t, p.URL(), maxRetries, nil), p
}
