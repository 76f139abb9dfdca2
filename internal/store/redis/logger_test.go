package redis

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// Regression: with the server down, go-redis logged every failed dial to
// standard error, one line per request. Its lines now go to the store's
// logger, one per interval, with the count held back.
func TestClientLoggerIsRateLimited(t *testing.T) {
	var buf bytes.Buffer
	l := &clientLogger{log: slog.New(slog.NewTextHandler(&buf, nil))}
	l.limit.Interval = time.Hour
	for range 100 {
		l.Printf(context.Background(), "redis: connection pool: failed to dial after %d attempts: %s", 1, "connection refused")
	}
	if n := strings.Count(buf.String(), "\n"); n != 1 {
		t.Fatalf("100 failures logged %d lines, want 1:\n%s", n, buf.String())
	}
	if !strings.Contains(buf.String(), "connection refused") {
		t.Errorf("the line lost its cause: %s", buf.String())
	}
	l.limit.Interval = 0
	l.Printf(context.Background(), "again")
	if !strings.Contains(buf.String(), "suppressed=99") {
		t.Errorf("the next line does not count the 99 held back:\n%s", buf.String())
	}
}
