package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cairnfs/cairn/internal/feature"
)

func TestCheckAnswer(t *testing.T) {
	arrow := append([]byte{0xff, 0xff, 0xff, 0xff, 0x10, 0, 0, 0}, make([]byte, 16)...)
	for _, tc := range []struct {
		name, contentType string
		status            int
		body              []byte
		want              string // in the error; empty: no error
	}{
		{"row JSON", "application/json", 200, []byte(`{"data":[],"errors":[]}`), ""},
		{"JSON with a charset", "application/json; charset=utf-8", 200, []byte(`{"columns":{},"errors":[]}`), ""},
		{"Arrow stream", ArrowStreamType, 200, arrow, ""},
		{"truncated JSON", "application/json", 200, []byte(`{"data":[],"errors":[]`), "is not JSON"},
		{"JSON with errors", "application/json", 200, []byte(`{"data":[],"errors":[{"code":"x"}]}`), "query answered errors"},
		{"Arrow without the marker", ArrowStreamType, 200, []byte{0x10, 0, 0, 0, 0xff}, "continuation marker"},
		{"empty Arrow", ArrowStreamType, 200, nil, "continuation marker"},
		{"JSON labelled Arrow", ArrowStreamType, 200, []byte(`{"errors":[]}`), "continuation marker"},
		{"other type", "text/plain", 200, []byte(`{"errors":[]}`), `Content-Type "text/plain"`},
		{"no type", "", 200, []byte(`{"errors":[]}`), `Content-Type ""`},
		{"status", "application/json", 400, []byte(`{"error":"bad"}`), "HTTP 400"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkAnswer(tc.status, tc.contentType, tc.body)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("checkAnswer: %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("checkAnswer: %v, want an error with %q", err, tc.want)
			}
		})
	}
}

// FuzzCheckAnswer: any answer is judged without a panic, and the verdict
// is the one its Content-Type calls for.
func FuzzCheckAnswer(f *testing.F) {
	f.Add("application/json", []byte(`{"data":[],"errors":[]}`))
	f.Add(ArrowStreamType, []byte{0xff, 0xff, 0xff, 0xff, 0})
	f.Add("text/plain; charset=", []byte("x"))
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		err := checkAnswer(http.StatusOK, contentType, body)
		mt, _, perr := mime.ParseMediaType(contentType)
		switch {
		case perr != nil:
			if err == nil {
				t.Fatalf("Content-Type %q does not parse, yet the answer passed", contentType)
			}
		case mt == ArrowStreamType:
			if (err == nil) != bytes.HasPrefix(body, arrowContinuation) {
				t.Fatalf("Arrow answer % x: %v", body[:min(len(body), 8)], err)
			}
		case mt == jsonType:
			if (err == nil) != (json.Valid(body) && bytes.Contains(body, errorsNone)) {
				t.Fatalf("JSON answer %q: %v", body, err)
			}
		default:
			if err == nil {
				t.Fatalf("Content-Type %q passed", contentType)
			}
		}
	})
}

// The columnar bodies are the row bodies with "format": "columnar", the
// same inputs and outputs; no format leaves them as they are.
func TestWithFormat(t *testing.T) {
	feats := []*feature.Feature{{FQN: "bench.f000"}, {FQN: "bench.f001"}}
	for _, n := range []int{1, 3} {
		sets := requests([]string{"e0", "e1", "e2", "e3"}, n, feats)
		if got := withFormat(sets, ""); &got[0] != &sets[0] {
			t.Errorf("no format: the sets were copied")
		}
		col := withFormat(sets, "columnar")
		if len(col) != len(sets) {
			t.Fatalf("%d sets, want %d", len(col), len(sets))
		}
		for i := range sets {
			var row, c map[string]any
			if err := json.Unmarshal(sets[i].body, &row); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(col[i].body, &c); err != nil {
				t.Fatalf("columnar body %s: %v", col[i].body, err)
			}
			if c["format"] != "columnar" {
				t.Errorf("columnar body %s: format %v", col[i].body, c["format"])
			}
			delete(c, "format")
			a, _ := json.Marshal(row)
			b, _ := json.Marshal(c)
			if !bytes.Equal(a, b) {
				t.Errorf("columnar body %s, want the row body %s with a format", col[i].body, sets[i].body)
			}
			if strings.Join(col[i].keys, ",") != strings.Join(sets[i].keys, ",") {
				t.Errorf("keys %q, want %q", col[i].keys, sets[i].keys)
			}
		}
	}
}

func TestAnswerStats(t *testing.T) {
	var s answerStats
	if size, n := s.medianSize(); size != 0 || n != 0 {
		t.Errorf("empty: median %d of %d", size, n)
	}
	if got := s.typesText(); got != "none" {
		t.Errorf("empty: types %q", got)
	}
	for _, size := range []int{50, 10, 40, 30} {
		s.add("application/json", size)
	}
	if size, n := s.medianSize(); size != 35 || n != 4 {
		t.Errorf("median %d of %d, want 35 of 4", size, n)
	}
	if got := s.typesText(); got != "`application/json`" {
		t.Errorf("types %q", got)
	}
	s.add(ArrowStreamType, 20)
	if size, _ := s.medianSize(); size != 30 {
		t.Errorf("median %d, want 30", size)
	}
	if got, want := s.typesText(), "`application/json` ×4, `"+ArrowStreamType+"` ×1"; got != want {
		t.Errorf("types %q, want %q", got, want)
	}
}

// Slices whose samples failed are left out, ticks and queries alike.
func TestSliceCPU(t *testing.T) {
	var c sliceCPU
	if _, ok := c.perQuery(); ok {
		t.Error("no slices: a CPU per query")
	}
	c.add(100, 110, true, true, 50)
	c.add(200, 900, false, true, 50)
	c.add(300, 310, true, true, 150)
	secs, ok := c.perQuery()
	if !ok || c.ticks != 20 || c.queries != 200 {
		t.Fatalf("ticks %v, queries %d, ok %v; want 20, 200, true", c.ticks, c.queries, ok)
	}
	if want := 20.0 / userHZ / 200; secs != want {
		t.Errorf("per query %v s, want %v", secs, want)
	}
}

// formServer answers as a query server that knows the forms would: Arrow
// for the Accept header, columnar JSON for the body's format, row JSON
// otherwise; with badArrow, an Arrow answer without its marker.
func formServer(t *testing.T, badArrow bool) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Format string `json:"format"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		switch {
		case r.Header.Get("Accept") == ArrowStreamType:
			w.Header().Set("Content-Type", ArrowStreamType)
			if badArrow {
				w.Write([]byte{0x10, 0, 0, 0, 0, 0, 0, 0})
				return
			}
			w.Write([]byte{0xff, 0xff, 0xff, 0xff, 0x10, 0, 0, 0, 0, 0, 0, 0})
		case req.Format == "columnar":
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"columns":{"bench.id":["e0"]},"errors":[]}`))
		default:
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"data":[{"key":"e0","value":1}],"errors":[]}`))
		}
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// Each form's path asks for its form (the body's format, the Accept
// header), and records the size and Content-Type of what came back.
func TestFormatPathsAskForTheirForm(t *testing.T) {
	addr := formServer(t, false)
	sets := requests([]string{"e0", "e1"}, 1, []*feature.Feature{{FQN: "bench.f000"}})
	want := map[string]struct {
		size int
		typ  string
	}{
		"(a)": {len(`{"data":[{"key":"e0","value":1}],"errors":[]}`), "`application/json`"},
		"(g)": {len(`{"columns":{"bench.id":["e0"]},"errors":[]}`), "`application/json`"},
		"(h)": {12, "`" + ArrowStreamType + "`"},
	}
	for _, v := range append([]serverVariant{plainVariant()}, formatVariants()...) {
		h := newHTTPPath(addr, v, sets, 4)
		h.answers = &answerStats{}
		res, err := Run(t.Context(), Load{Rate: 400, Duration: 50 * time.Millisecond}, h.call)
		h.close()
		if err != nil {
			t.Fatal(err)
		}
		if res.Errors != 0 {
			t.Errorf("%s: %d errors, the first: %v", v.name, res.Errors, res.FirstError)
		}
		size, n := h.answers.medianSize()
		if n != res.Count || size != want[v.name].size || h.answers.typesText() != want[v.name].typ {
			t.Errorf("%s: %d answers of median size %d, %s; want %d of %d, %s", v.name, n, size, h.answers.typesText(), res.Count, want[v.name].size, want[v.name].typ)
		}
	}
}

// An Arrow answer without its marker counts as an error, every one.
func TestFormatPathCountsMalformedAnswers(t *testing.T) {
	addr := formServer(t, true)
	sets := requests([]string{"e0"}, 1, []*feature.Feature{{FQN: "bench.f000"}})
	h := newHTTPPath(addr, formatVariants()[1], sets, 4)
	defer h.close()
	h.answers = &answerStats{}
	res, err := Run(t.Context(), Load{Rate: 400, Duration: 50 * time.Millisecond}, h.call)
	if err != nil {
		t.Fatal(err)
	}
	if res.Count == 0 || res.Errors != res.Count || !strings.Contains(fmt.Sprint(res.FirstError), "continuation marker") {
		t.Errorf("%d errors of %d, the first: %v; want all, for the missing marker", res.Errors, res.Count, res.FirstError)
	}
}
