package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/cairnfs/cairn/internal/feature"
)

// queryBodies are request bodies of the usual shape and of many others.
var queryBodies = []string{
	`{"inputs":{"user.id":"u1"},"outputs":["user.age","user.name"]}`,
	` { "inputs" : { "user.id" : [ "u1" , "u2" ] } , "outputs" : [ "user.age" ] , "include_meta" : true } `,
	`{"inputs":{"user.id":12},"outputs":[],"staleness":{"user.age":"1h"},"include_meta":false}`,
	`{"inputs":{"user.id":-1.5e3,"merchant.id":[1,2,3]},"outputs":["nope.x"],"query_name":"q","context":{"a":[1,{"b":"}]"}],"c":null}}`,
	`{"inputs":{"user.id":{"a":"b"}},"outputs":["user.age"],"meta":"x,y","t":true,"f":false,"n":null,"z":0}`,
	`{"inputs":{"user.id":"a","user.id":"b"},"outputs":["user.age"]}`,
	`{"inputs":{},"outputs":["user.age"]}`,
	`{}`,
	`{"outputs":["user.age","user.age"],"inputs":{"user.id":"x\"y"}}`,
	`{"inputs":{"user.id":["u1","u2"]},"outputs":["user.age"],"format":"columnar"}`,
	// Left to encoding/json:
	``, `null`, `[]`, `"x"`, `{`, `{"inputs":{}}{}`, `{"inputs":{}} x`,
	`{"Inputs":{"user.id":"u1"}}`, `{"OUTPUTS":["user.age"]}`, `{"include_Meta":true}`,
	`{"inputs":{"user.id":"u1"},"inputs":{"user.name":"n"}}`,
	`{"outputs":["a"],"outputs":["b"]}`,
	`{"inputs":null}`, `{"outputs":null}`, `{"staleness":null}`, `{"include_meta":null}`,
	`{"inputs":{"user.id":null}}`, `{"staleness":{"user.age":null}}`, `{"staleness":{"user.age":5}}`,
	`{"outputs":[1]}`, `{"outputs":"user.age"}`, `{"include_meta":"yes"}`, `{"inputs":[]}`,
	`{"outputs":["user.\u0061ge"]}`, `{"inputs":{"user.\u0069d":"u1"}}`, `{"in\u0070uts":{}}`,
	`{"outputs":["\xff"]}`, `{"inputs":{"user.id":"\xff"}}`, "{\"\u017fTALENESS\":{}}",
	`{"outputs":["user.age",]}`, `{"inputs":{"user.id":01}}`,
	`{"format":null}`, `{"format":1}`, `{"format":"rows","Format":"columnar"}`, `{"format":"col\u0075mnar"}`,
}

// A body read by hand decodes to what encoding/json makes of it.
func TestParseQueryRequestAgreesWithEncodingJSON(t *testing.T) {
	reg, err := feature.Load("../../examples/features.yaml")
	if err != nil {
		t.Fatal(err)
	}
	read := 0
	for _, body := range queryBodies {
		if checkQueryRequest(t, reg, []byte(body)) {
			read++
		}
	}
	if read != 10 {
		t.Errorf("%d bodies read by hand, want the 10 of the usual shape", read)
	}
}

func FuzzParseQueryRequest(f *testing.F) {
	reg, err := feature.Load("../../examples/features.yaml")
	if err != nil {
		f.Fatal(err)
	}
	for _, b := range queryBodies {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, body []byte) { checkQueryRequest(t, reg, body) })
}

// checkQueryRequest compares parseQueryRequest with encoding/json on body
// and reports whether the body was read by hand.
func checkQueryRequest(t *testing.T, reg *feature.Registry, body []byte) bool {
	t.Helper()
	var got queryRequest
	if !parseQueryRequest(body, &got, reg) {
		return false
	}
	var want queryRequest
	if err := json.Unmarshal(body, &want); err != nil {
		t.Errorf("%s: read by hand, but encoding/json says %v", body, err)
		return true
	}
	// RawMessage keeps the bytes as written; compare them as such.
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\nby hand       %#v\nencoding/json %#v", body, got, want)
	}
	return true
}

// Bodies the hand reader leaves alone are answered exactly as
// encoding/json's decoding answers them, too large ones included.
func TestDecodeQueryAnswersAsDecodeBody(t *testing.T) {
	reg, err := feature.Load("../../examples/features.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{MaxBodyBytes: 1024}, reg, nil, nil, nil, nil, quiet())
	if err != nil {
		t.Fatal(err)
	}
	big := `{"outputs":["` + strings.Repeat("x", 2000) + `"]}`
	bodies := append([]string{big, `{"outputs":["user.age"]}` + strings.Repeat(" ", 2000), `{"include_meta":1}`}, queryBodies...)
	for _, body := range bodies {
		var viaQuery, viaBody queryRequest
		wq, wb := httptest.NewRecorder(), httptest.NewRecorder()
		okQ := s.decodeQuery(wq, httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body)), &viaQuery, new([]byte))
		okB := s.decodeBody(wb, httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body)), &viaBody, false)
		if okQ != okB || wq.Code != wb.Code || wq.Body.String() != wb.Body.String() {
			t.Errorf("%.60q: decodeQuery %v %d %s, decodeBody %v %d %s", body, okQ, wq.Code, wq.Body, okB, wb.Code, wb.Body)
		}
		if okQ && !reflect.DeepEqual(viaQuery, viaBody) {
			t.Errorf("%.60q: decodeQuery %#v, decodeBody %#v", body, viaQuery, viaBody)
		}
	}
}

// splitScalars splits what it accepts exactly as encoding/json does.
func FuzzSplitScalars(f *testing.F) {
	for _, s := range []string{`[]`, ` [ "a" , 1 ,-2.5e3,true,false,null ] `, `["a\"b\\"]`, `[1,]`, `[[1]]`, `["x"`, `[1 2]`, `[tru]`, "[\"\xff\"]", `[01]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		got, ok := splitScalars(raw)
		if !ok {
			return
		}
		var want []json.RawMessage
		if err := json.Unmarshal(raw, &want); err != nil {
			t.Fatalf("splitScalars(%q) = %q; encoding/json: %v", raw, got, err)
		}
		if len(got) != len(want) {
			t.Fatalf("splitScalars(%q) = %q, encoding/json %q", raw, got, want)
		}
		for i := range got {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("splitScalars(%q)[%d] = %q, encoding/json %q", raw, i, got[i], want[i])
			}
		}
	})
}
