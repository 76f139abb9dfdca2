package api

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/store/dynamo/dynamotest"
	"github.com/cairnfs/cairn/internal/testserver/faultproxy"
)

// A format other than rows or columnar is a request error naming format,
// answered as JSON whatever the Accept header.
func TestQueryRefusesUnknownFormat(t *testing.T) {
	fs := newFormsServer(t)
	for _, format := range []string{`"arrow"`, `"Columnar"`, `"rows "`} {
		for _, accept := range []string{"", arrowMediaType} {
			code, h, b := postQuery(t, fs.url, accept, `{"inputs":{"user.id":"u0"},"outputs":["user.age"],"format":`+format+`}`)
			var out map[string]any
			_ = json.Unmarshal(b, &out)
			if code != http.StatusBadRequest || h.Get("Content-Type") != "application/json" ||
				firstError(out) != CodeValidationFailed || !strings.Contains(string(b), "format") {
				t.Errorf("format %s, Accept %q: %d %s %s, want 400 %s naming format", format, accept, code, h.Get("Content-Type"), b, CodeValidationFailed)
			}
		}
	}
	for _, format := range []string{`""`, `"rows"`} {
		code, _, b := postQuery(t, fs.url, "", `{"inputs":{"user.id":"u0"},"outputs":["user.age"],"format":`+format+`}`)
		if code != 200 || !strings.HasPrefix(string(b), `{"data":[`) {
			t.Errorf("format %s: %d %s, want the row answer", format, code, b)
		}
	}
}

// A column answer has one row per input position: namespaces given
// different numbers of keys are refused, naming the inputs; the row answer
// takes them.
func TestColumnFormsRefuseUnequalKeyCounts(t *testing.T) {
	fs := newFormsServer(t)
	body := `{"inputs":{"user.id":["u0","u1"],"merchant.id":[0,1,2]},"outputs":["user.age","merchant.name"]}`
	for _, c := range []struct{ body, accept string }{
		{strings.Replace(body, "{", `{"format":"columnar",`, 1), ""},
		{body, arrowMediaType},
	} {
		code, h, b := postQuery(t, fs.url, c.accept, c.body)
		if code != http.StatusBadRequest || h.Get("Content-Type") != "application/json" ||
			!strings.Contains(string(b), "user.id has 2") || !strings.Contains(string(b), "merchant.id has 3") {
			t.Errorf("Accept %q: %d %s, want 400 naming both inputs and their counts", c.accept, code, b)
		}
	}
	if code, _, b := postQuery(t, fs.url, "", body); code != 200 {
		t.Errorf("row answer: %d %s", code, b)
	}
	// An input no output reads does not count.
	code, _, b := postQuery(t, fs.url, arrowMediaType, `{"inputs":{"user.id":["u0","u1"],"merchant.id":[0]},"outputs":["user.age"]}`)
	if code != 200 {
		t.Errorf("input without outputs: %d %s", code, b)
	}
}

// A store read failing answers 200 with null values and the failure in the
// columnar answer's errors and in the Arrow stream's metadata.
func TestColumnFormsCarryFieldErrors(t *testing.T) {
	st, proxy := dynamotest.OpenProxied(t, 0)
	s := newStackOn(t, st, stackOptions{})
	if _, err := proxy.Add(faultproxy.Rule{Fault: faultproxy.InternalServerError}); err != nil {
		t.Fatal(err)
	}
	body := `{"inputs":{"user.id":["u1","u2"]},"outputs":["user.age","user.name"]}`
	code, _, cb := postQuery(t, s.url, "", strings.Replace(body, "{", `{"format":"columnar",`, 1))
	if code != 200 {
		t.Fatalf("columnar: %d %s", code, cb)
	}
	vals, _, errs, meta := columnarGrid(t, cb, []string{"user.id", "user.age", "user.name"})
	if len(errs) != 2 || errs[0].Code != CodeUpstreamFailed || errs[0].Feature != "user.age" || meta["query_id"] == nil {
		t.Errorf("columnar errors %+v meta %v, want %s for user.age and user.name", errs, meta, CodeUpstreamFailed)
	}
	if got := strings.Join(vals["user.age"], ","); got != "null,null" {
		t.Errorf("user.age %s, want nulls", got)
	}
	code, h, ab := postQuery(t, s.url, arrowMediaType, body)
	if code != 200 || h.Get("Content-Type") != arrowMediaType {
		t.Fatalf("arrow: %d %s", code, ab)
	}
	avals, _, schema := arrowGrid(t, ab, func(string) feature.Type { return feature.Type{} })
	eb, ok := schema.Metadata().GetValue(arrowErrorsKey)
	var aerrs []ChalkError
	if err := json.Unmarshal([]byte(eb), &aerrs); !ok || err != nil || len(aerrs) != 2 ||
		aerrs[0].Code != CodeUpstreamFailed || aerrs[1].Feature != "user.name" {
		t.Errorf("arrow errors metadata %q (%v), want %s for user.age and user.name", eb, err, CodeUpstreamFailed)
	}
	if got := strings.Join(avals["user.name"], ","); got != "null,null" || strings.Join(avals["user.id"], ",") != `"u1","u2"` {
		t.Errorf("arrow columns %v, want the keys and null values", avals)
	}
}
