package redis

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/cairnfs/cairn/internal/lograte"
)

// clientLogInterval is the least time between two of go-redis's own log
// lines: with the server down it logs every failed dial, one per request.
const clientLogInterval = 10 * time.Second

// clientLogger sends go-redis's log lines to the store's logger, one per
// interval, with the count of those held back.
type clientLogger struct {
	log   *slog.Logger
	limit lograte.Limiter
}

func (l *clientLogger) Printf(_ context.Context, format string, v ...any) {
	ok, suppressed := l.limit.Allow(time.Now())
	if !ok {
		return
	}
	l.log.Warn("redis: client", "msg", strings.TrimSpace(fmt.Sprintf(format, v...)), "suppressed", suppressed)
}

// setClientLogger routes go-redis's logging, which is process-wide, to log.
func setClientLogger(log *slog.Logger) {
	goredis.SetLogger(&clientLogger{log: log, limit: lograte.Limiter{Interval: clientLogInterval}})
}
