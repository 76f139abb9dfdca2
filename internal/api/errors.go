package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
)

// Error codes. Chalk's codes are used where one fits; the others name the
// problem exactly, so that a client can branch on them.
const (
	// CodeParseFailed: the body is not JSON of the expected shape.
	CodeParseFailed = "PARSE_FAILED"
	// CodeRequestTooLarge: the body exceeds the configured limit.
	CodeRequestTooLarge = "REQUEST_TOO_LARGE"
	// CodeUnknownNamespace: a name's namespace is not in the registry.
	CodeUnknownNamespace = "UNKNOWN_NAMESPACE"
	// CodeUnknownFeature: a name is not a feature of its namespace.
	CodeUnknownFeature = "UNKNOWN_FEATURE"
	// CodeMissingPrimaryKey: a namespace is used without its primary key.
	CodeMissingPrimaryKey = "MISSING_PRIMARY_KEY"
	// CodeRaggedColumns: the columns of an upload differ in length.
	CodeRaggedColumns = "RAGGED_COLUMNS"
	// CodeValidationFailed: a value does not fit its feature's type, or the
	// request is otherwise invalid.
	CodeValidationFailed = "VALIDATION_FAILED"
	// CodeUpstreamFailed: Kafka or the online store failed.
	CodeUpstreamFailed = "UPSTREAM_FAILED"
	// CodeDeadlineExceeded: a query's deadline passed before the feature
	// could be read (CAIRN_QUERY_TIMEOUT).
	CodeDeadlineExceeded = "DEADLINE_EXCEEDED"
	// CodeRequestTimeout: the body was not received within the read
	// timeout.
	CodeRequestTimeout = "REQUEST_TIMEOUT"
	// CodeNotFound: no route has the request's path.
	CodeNotFound = "NOT_FOUND"
	// CodeMethodNotAllowed: the path is served, but not for the request's
	// method.
	CodeMethodNotAllowed = "METHOD_NOT_ALLOWED"
	// CodeUnauthenticated: the request presents no known API key (the
	// Authorization header is missing, malformed, repeated, or its token
	// is not a key's). Chalk's code.
	CodeUnauthenticated = "UNAUTHENTICATED"
	// CodeUnauthorized: the request's API key lacks the route's scope.
	// Chalk's code.
	CodeUnauthorized = "UNAUTHORIZED"
	// CodeResolverFailed: the feature's resolver could not compute it
	// (its service failed or answered what it should not, or an input
	// failed). Chalk's code.
	CodeResolverFailed = "RESOLVER_FAILED"
	// CodeResolverTimedOut: the feature's resolver did not answer within
	// its timeout or the query's deadline. Chalk's code.
	CodeResolverTimedOut = "RESOLVER_TIMED_OUT"
	// CodeHeadersTooLarge: the request line and headers exceed 16 KiB.
	CodeHeadersTooLarge = "HEADERS_TOO_LARGE"
	// CodeMalformedRequest: the request is not HTTP/1.1 the server can
	// read (a bad request line, header or framing).
	CodeMalformedRequest = "MALFORMED_REQUEST"
	// CodeInternal: a bug.
	CodeInternal = "INTERNAL_SERVER_ERROR"
)

// Error categories.
const (
	CategoryRequest = "REQUEST"
	CategoryField   = "FIELD"
	CategoryNetwork = "NETWORK"
)

// ChalkError is one error in a response.
type ChalkError struct {
	Code     string `json:"code"`
	Category string `json:"category"`
	Message  string `json:"message"`
	// Feature is the fully-qualified name at fault, when there is one.
	Feature string `json:"feature,omitempty"`
	// Resolver is the resolver at fault (namespace.name), when there is
	// one.
	Resolver string `json:"resolver,omitempty"`
}

type errorList []ChalkError

func (l *errorList) add(code, fqn, format string, args ...any) {
	*l = append(*l, ChalkError{Code: code, Category: CategoryRequest, Message: fmt.Sprintf(format, args...), Feature: fqn})
}

func writeErrors(w http.ResponseWriter, status int, errs errorList) {
	writeJSON(w, status, map[string]any{"errors": errs})
}

// decodeBody decodes one JSON object from the request body into v, bounded
// by the configured size. It answers the error itself and returns false on
// failure.
func (s *Server) decodeBody(w http.ResponseWriter, r *http.Request, v any, strict bool) bool {
	body := http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
	dec := json.NewDecoder(body)
	if strict {
		dec.DisallowUnknownFields()
	}
	err := dec.Decode(v)
	if err == nil {
		if _, extra := dec.Token(); extra != io.EOF {
			err = errors.New("unexpected data after the JSON object")
		}
	}
	if err == nil {
		return true
	}
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		writeErrors(w, http.StatusRequestEntityTooLarge, errorList{{Code: CodeRequestTooLarge, Category: CategoryRequest,
			Message: fmt.Sprintf("request body is larger than the limit of %d bytes (CAIRN_MAX_BODY_BYTES); split the request", tooLarge.Limit)}})
		return false
	}
	if netErr, ok := errors.AsType[net.Error](err); ok && netErr.Timeout() {
		// The read deadline (CAIRN_HTTP_READ_TIMEOUT) passed: the body
		// came too slowly, and was not malformed.
		writeErrors(w, http.StatusRequestTimeout, errorList{{Code: CodeRequestTimeout, Category: CategoryNetwork,
			Message: fmt.Sprintf("the request body was not received within the read timeout of %v (CAIRN_HTTP_READ_TIMEOUT)", s.cfg.ReadTimeout)}})
		return false
	}
	msg := err.Error()
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &typeErr) && typeErr.Field != "":
		msg = fmt.Sprintf("field %q: want %s, got JSON %s", typeErr.Field, typeErr.Type, typeErr.Value)
	case errors.As(err, &typeErr):
		msg = fmt.Sprintf("want a JSON object, got JSON %s", typeErr.Value)
	case strings.HasPrefix(msg, "json: unknown field "):
		msg = "unknown field " + strings.TrimPrefix(msg, "json: unknown field ")
	case errors.Is(err, io.EOF):
		msg = "empty body: want a JSON object"
	default:
		msg = "malformed JSON: " + strings.TrimPrefix(msg, "json: ")
	}
	writeErrors(w, http.StatusBadRequest, errorList{{Code: CodeParseFailed, Category: CategoryRequest, Message: msg}})
	return false
}

// splitFQN resolves a fully-qualified name, recording why it cannot be.
func (s *Server) splitFQN(fqn string, errs *errorList) (featureRef, bool) {
	nsName, _, ok := strings.Cut(fqn, ".")
	if !ok {
		errs.add(CodeUnknownFeature, fqn, "%q is not a fully-qualified feature name (want namespace.feature)", fqn)
		return featureRef{}, false
	}
	ns, ok := s.reg.Namespace(nsName)
	if !ok {
		errs.add(CodeUnknownNamespace, fqn, "unknown namespace %q in %q", nsName, fqn)
		return featureRef{}, false
	}
	f, ok := s.reg.Lookup(fqn)
	if !ok {
		errs.add(CodeUnknownFeature, fqn, "namespace %q has no feature %q", nsName, strings.TrimPrefix(fqn, nsName+"."))
		return featureRef{}, false
	}
	return featureRef{ns: ns, f: f}, true
}
