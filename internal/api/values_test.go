package api

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// errorOf returns the first error of a 400 answer, failing the test on any
// other answer.
func errorOf(t *testing.T, code int, out map[string]any) map[string]any {
	t.Helper()
	if code != http.StatusBadRequest {
		t.Fatalf("status %d, want 400: %v", code, out)
	}
	errs, _ := out["errors"].([]any)
	if len(errs) == 0 {
		t.Fatalf("no errors in %v", out)
	}
	return errs[0].(map[string]any)
}

// Regressions, in uploads: a vector's null elements were stored as 0, and
// text that is not Unicode (raw bytes, or an escape of half a UTF-16
// surrogate pair) was replaced by U+FFFD, so that two keys a client told
// apart became one entity. Both are refused with 400, naming the feature
// (and the row and element), and nothing reaches Kafka.
func TestUploadRefusesNullVectorElementsAndInvalidText(t *testing.T) {
	s := newStack(t, false)
	tests := []struct {
		name, body, feature, msg string
	}{
		{"null vector element", `{"inputs": {"user.id": "u1", "user.embedding": [1,2,3,null,5,6,7,8]}}`,
			"user.embedding", "element 3: null is not allowed in a vector"},
		{"null vector element in a column", `{"inputs": {"merchant.id": [1, 2], "merchant.embedding": [[1,2,3,4], [1,null,3,4]]}}`,
			"merchant.embedding", "row 1: element 1: null"},
		{"key not UTF-8", "{\"inputs\": {\"user.id\": \"u\xff\", \"user.age\": 1}}", "user.id", "not valid UTF-8"},
		{"keys differing only in bytes that are not UTF-8", "{\"inputs\": {\"user.id\": [\"a\xff\", \"a\xfe\"], \"user.age\": [1, 2]}}",
			"user.id", "row 0: text is not valid UTF-8"},
		{"key with a lone surrogate escape", `{"inputs": {"user.id": "u\ud800", "user.age": 1}}`, "user.id", `surrogate escape \ud800`},
		{"key with a low surrogate first", `{"inputs": {"user.id": "u\udc00\ud800", "user.age": 1}}`, "user.id", "surrogate"},
		{"string not UTF-8", "{\"inputs\": {\"user.id\": \"u1\", \"user.name\": \"n\xc0\xaf\"}}", "user.name", "not valid UTF-8"},
		{"string with a lone surrogate escape", `{"inputs": {"user.id": "u1", "user.name": "\udbff!"}}`, "user.name", "surrogate"},
		{"list element with a lone surrogate escape", `{"inputs": {"user.id": "u1", "user.tags": ["a", "\ud83d"]}}`, "user.tags", "surrogate"},
		{"json value with a lone surrogate escape", `{"inputs": {"user.id": "u1", "user.profile": {"k": "\udfff"}}}`, "user.profile", "surrogate"},
		{"json key not UTF-8", "{\"inputs\": {\"user.id\": \"u1\", \"user.profile\": {\"\xff\": 1}}}", "user.profile", "not valid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out := s.post("/v1/upload_features", tt.body)
			e := errorOf(t, code, out)
			if e["code"] != CodeValidationFailed || e["category"] != CategoryRequest {
				t.Errorf("code %v category %v, want %s REQUEST (%v)", e["code"], e["category"], CodeValidationFailed, e)
			}
			if fmt.Sprint(e["feature"]) != tt.feature {
				t.Errorf("feature %v, want %q", e["feature"], tt.feature)
			}
			if !strings.Contains(fmt.Sprint(e["message"]), tt.msg) {
				t.Errorf("message %q lacks %q", e["message"], tt.msg)
			}
		})
	}
	if n := s.persisted(); n != 0 {
		t.Errorf("%d records reached the persistence topic from refused uploads", n)
	}
	// Escaped text that is Unicode is accepted: a surrogate pair, and an
	// escaped backslash before "ud800".
	if code, out := s.post("/v1/upload_features", `{"inputs": {"user.id": "\ud83d\ude00", "user.name": "\\ud800"}}`); code != http.StatusAccepted {
		t.Errorf("valid escapes: %d %v, want 202", code, out)
	}
}

// Regression, in queries: a key that is not Unicode was replaced by U+FFFD
// and read as another entity's. Both the hand-written reader (escapes) and
// encoding/json (raw bytes, which the reader leaves to it) refuse it.
func TestQueryRefusesInvalidKeys(t *testing.T) {
	s := newStack(t, false)
	for _, body := range []string{
		`{"inputs": {"user.id": "u\ud800"}, "outputs": ["user.age"]}`,
		`{"inputs":{"user.id":["ok","\udc00"]},"outputs":["user.age"]}`,
		"{\"inputs\": {\"user.id\": \"u\xff\"}, \"outputs\": [\"user.age\"]}",
	} {
		code, out := s.post("/v1/query/online", body)
		e := errorOf(t, code, out)
		if e["code"] != CodeValidationFailed || e["feature"] != "user.id" {
			t.Errorf("%q: got %v, want %s naming user.id", body, e, CodeValidationFailed)
		}
	}
}
