package api

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairnfs/cairn/internal/auth"
	"github.com/cairnfs/cairn/internal/store/embedded"
	"github.com/cairnfs/cairn/internal/ui"
)

// uiStack is the whole path serving /ui, with keys when given.
func uiStack(t *testing.T, keys *auth.Keys, metricsAuth bool) *stack {
	t.Helper()
	st, err := embedded.Open(t.TempDir(), embedded.Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	src, err := ui.NewProcessSource(ui.ProcessConfig{}, prometheus.NewRegistry(), quiet())
	if err != nil {
		t.Fatal(err)
	}
	h, err := ui.NewHandler(quiet(), src)
	if err != nil {
		t.Fatal(err)
	}
	return newStackOn(t, st, stackOptions{api: &Config{Keys: keys, MetricsRequireAuth: metricsAuth, UI: h}})
}

func TestUIFiguresGuardedLikeMetrics(t *testing.T) {
	keys, err := auth.Open(keysFile(t), quiet())
	if err != nil {
		t.Fatal(err)
	}
	s := uiStack(t, keys, true)
	// The page holds no figures: a browser loads it, then is asked for a key.
	if status, _, _ := send(t, "GET", s.url+"/ui", ""); status != 200 {
		t.Errorf("GET /ui without a key: %d, want 200", status)
	}
	for _, tc := range []struct {
		auth   []string
		status int
		code   string
	}{
		{nil, 401, CodeUnauthenticated},
		{[]string{"Bearer " + rankerToken}, 403, CodeUnauthorized},
		{[]string{"Bearer " + adminToken}, 200, ""},
	} {
		status, _, code := send(t, "GET", s.url+"/ui/data", "", tc.auth...)
		if status != tc.status || code != tc.code {
			t.Errorf("GET /ui/data with %q: %d %q, want %d %q", tc.auth, status, code, tc.status, tc.code)
		}
	}

	// With keys but an open /metrics, the figures are open too.
	s = uiStack(t, keys, false)
	if status, _, _ := send(t, "GET", s.url+"/ui/data", ""); status != 200 {
		t.Errorf("GET /ui/data with /metrics open: %d, want 200", status)
	}
	if status, _, code := send(t, "POST", s.url+"/ui/data", ""); status != 405 || code != CodeMethodNotAllowed {
		t.Errorf("POST /ui/data: %d %q, want 405 %s", status, code, CodeMethodNotAllowed)
	}
}
