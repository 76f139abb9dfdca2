package ui_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairnfs/cairn/internal/ui"
)

// A query server samples its own metrics and serves the page from them;
// a source of fleet rollups, when there is one, goes first.
func ExampleNewHandler() {
	reg := prometheus.NewRegistry() // the process's registry, as /metrics serves it
	self, err := ui.NewProcessSource(ui.ProcessConfig{}, reg, slog.Default())
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go self.Run(ctx) // a component of the process's run group in cairn

	h, err := ui.NewHandler(slog.Default(), self)
	if err != nil {
		fmt.Println(err)
		return
	}
	mux := http.NewServeMux()
	mux.Handle("GET /ui", h.Page())
	mux.Handle("GET /ui/data", h.Data())
}
