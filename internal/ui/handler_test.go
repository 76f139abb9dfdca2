package ui

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fixed is a source of given points, standing for the fleet's rollups.
type fixed struct {
	name   string
	points []Point
	err    error
}

func (f fixed) Name() string { return f.name }

func (f fixed) Points(_ context.Context, since time.Time) ([]Point, error) {
	var out []Point
	for _, p := range f.points {
		if p.At.After(since) {
			out = append(out, p)
		}
	}
	return out, f.err
}

func getData(t *testing.T, h *Handler, query string) (int, wireData) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.Data().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/ui/data"+query, nil))
	var d wireData
	if rec.Code == http.StatusOK {
		if err := json.Unmarshal(rec.Body.Bytes(), &d); err != nil {
			t.Fatalf("body %q: %v", rec.Body, err)
		}
	}
	return rec.Code, d
}

func TestDataPrefersFirstSourceWithPoints(t *testing.T) {
	t.Parallel()
	t0 := time.UnixMilli(1_700_000_000_000)
	proc := fixed{name: "this process", points: []Point{
		{At: t0, Span: 5 * time.Second, StoreThrottlesPerSec: 2, LatencyP99: math.NaN(),
			Namespaces: map[string]NamespacePoint{"user": {QueriesPerSec: 1, CacheHitRatio: math.NaN(), BloomShortCircuitRatio: 0.5}},
			WriterLag:  map[int32]int64{7: 3}},
		{At: t0.Add(5 * time.Second), Span: 5 * time.Second, StoreThrottlesPerSec: 4},
	}}
	empty := fixed{name: "fleet, from rollups"}
	failing := fixed{name: "broken", err: errors.New("store down")}
	h, err := NewHandler(nil, failing, empty, proc)
	if err != nil {
		t.Fatal(err)
	}

	code, d := getData(t, h, "")
	if code != http.StatusOK || d.Source != "this process" || len(d.Points) != 2 {
		t.Fatalf("GET /ui/data: %d %+v, want both points of this process", code, d)
	}
	p := d.Points[0]
	if p.At != t0.UnixMilli() || p.Span != 5 || p.StoreThrottles != 2 || p.LatencyP99 != nil || p.WriterLag["7"] != 3 {
		t.Errorf("first point %+v", p)
	}
	if ns := p.Namespaces["user"]; ns.CacheHitRatio != nil || ns.BloomShortCircuitRatio == nil || *ns.BloomShortCircuitRatio != 0.5 {
		t.Errorf("namespace user: %+v, want no cache hit ratio and a Bloom ratio of 0.5", ns)
	}

	// Nothing new: the shown source answers no points, not another's.
	_, d = getData(t, h, "?source=this+process&since=1700000005000")
	if d.Source != "this process" || len(d.Points) != 0 {
		t.Fatalf("nothing new: %+v", d)
	}

	// Once the rollups have points, they win, all of them.
	fleet := fixed{name: "fleet, from rollups", points: []Point{{At: t0.Add(-time.Hour)}, {At: t0.Add(-time.Minute)}}}
	h, _ = NewHandler(nil, fleet, proc)
	_, d = getData(t, h, "?source=this+process&since=1700000005000")
	if d.Source != "fleet, from rollups" || len(d.Points) != 2 {
		t.Fatalf("rollups arrived: %+v, want both rollup points", d)
	}
}

// TestDataSinceIsTheWiresMillisecond: the page asks for the points after
// the last one it holds, by that point's "at" in milliseconds; a point
// taken within that millisecond is the one it holds, never a new one.
func TestDataSinceIsTheWiresMillisecond(t *testing.T) {
	t.Parallel()
	t0 := time.UnixMilli(1_700_000_000_000).Add(345 * time.Microsecond)
	proc := fixed{name: "this process", points: []Point{
		{At: t0, Span: time.Second, StoreThrottlesPerSec: 7},
		{At: t0.Add(time.Second), Span: time.Second, StoreThrottlesPerSec: 3},
	}}
	h, _ := NewHandler(nil, proc)
	_, d := getData(t, h, "")
	if len(d.Points) != 2 {
		t.Fatalf("all points: %+v", d)
	}
	seen := 0.0
	for _, p := range d.Points {
		seen += p.StoreThrottles * p.Span
	}
	// Poll again from the last point held, as the page does, twice.
	last := d.Points[len(d.Points)-1].At
	for range 2 {
		_, d = getData(t, h, "?source=this+process&since="+strconv.FormatInt(last, 10))
		for _, p := range d.Points {
			seen += p.StoreThrottles * p.Span
		}
		if len(d.Points) != 0 {
			t.Errorf("since the last point held: %d points answered again, want none", len(d.Points))
			break
		}
	}
	if seen != 10 {
		t.Errorf("throttles totalled over the polls: %v, want 10", seen)
	}
}

func TestDataRejectsBadSince(t *testing.T) {
	t.Parallel()
	h, _ := NewHandler(nil, fixed{name: "x"})
	for _, q := range []string{"?since=-1", "?since=yesterday", "?since=1e3"} {
		if code, _ := getData(t, h, q); code != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", q, code)
		}
	}
}

func TestPageIsSelfContained(t *testing.T) {
	t.Parallel()
	h, _ := NewHandler(nil, fixed{name: "x"})
	rec := httptest.NewRecorder()
	h.Page().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/ui", nil))
	body := rec.Body.String()
	if rec.Code != http.StatusOK || !strings.Contains(body, "<canvas>") {
		t.Fatalf("GET /ui: %d", rec.Code)
	}
	// Viewing the page fetches nothing from another host.
	for _, s := range []string{"http://", "https://", "//cdn", "<link", "src="} {
		if strings.Contains(body, s) {
			t.Errorf("the page contains %q", s)
		}
	}
	if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
}

func FuzzParseSince(f *testing.F) {
	for _, s := range []string{"", "0", "1700000000000", "-1", "9223372036854775807", "1e3", " 1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		at, err := parseSince(s)
		if err != nil || s == "" {
			if s == "" && (err != nil || !at.IsZero()) {
				t.Fatalf("parseSince(\"\") = %v, %v; want the zero time", at, err)
			}
			return
		}
		ms, perr := strconv.ParseInt(s, 10, 64)
		if perr != nil || ms < 0 {
			t.Fatalf("parseSince(%q) accepted what is not Unix milliseconds from 0", s)
		}
		if at.IsZero() != (ms == 0) || (ms > 0 && at.UnixMilli() != ms) {
			t.Fatalf("parseSince(%q) = %v, want %d ms", s, at, ms)
		}
	})
}
