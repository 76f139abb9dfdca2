package bench

import (
	"bytes"
	"encoding/json"
	"mime"
	"net/http"
	"strings"
	"testing"

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
