package embedded

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/cockroachdb/pebble"
)

// pebbleLogger passes Pebble's messages to slog.
type pebbleLogger struct{ log *slog.Logger }

// Infof logs an informational message from Pebble.
func (l pebbleLogger) Infof(format string, args ...any) {
	l.log.Info(fmt.Sprintf(format, args...), "component", "pebble")
}

// Fatalf logs an unrecoverable Pebble error. Pebble requires Fatalf not to
// return (it calls it when continuing could damage data, for example when
// the WAL cannot be written), so after logging it hands over to Pebble's
// default logger, which ends the process.
func (l pebbleLogger) Fatalf(format string, args ...any) {
	l.log.Log(context.Background(), slog.LevelError, fmt.Sprintf(format, args...), "component", "pebble", "fatal", true)
	pebble.DefaultLogger.Fatalf(format, args...)
}
