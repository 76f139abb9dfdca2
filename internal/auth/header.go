package auth

import (
	"errors"
	"fmt"
	"strings"
)

// MaxHeaderBytes bounds the Authorization header ParseBearer accepts; a
// token from NewKey is 49 bytes.
const MaxHeaderBytes = 1024

// ErrUnknownToken is returned for a well-formed token no key has.
var ErrUnknownToken = errors.New("the bearer token is not a known API key")

// HeaderError is an Authorization header that presents no token: missing,
// repeated, oversized or malformed. Reason says which, for the client.
type HeaderError struct {
	Reason string
}

func (e *HeaderError) Error() string { return "authorization header: " + e.Reason }

// ParseBearer returns the token of the Authorization header values (all of
// the request's, as http.Header.Values returns them): exactly one header,
// "Bearer" followed by one or more spaces and a token of RFC 6750's
// b64token characters (letters, digits, - . _ ~ + / and trailing =). The
// scheme is matched without regard to case, as RFC 7235 section 2.1 says
// of every authentication scheme, so "bearer" is accepted.
func ParseBearer(values []string) (string, error) {
	switch len(values) {
	case 0:
		return "", &HeaderError{Reason: `missing: want "Authorization: Bearer <token>"`}
	case 1:
	default:
		return "", &HeaderError{Reason: fmt.Sprintf("given %d times: want exactly one", len(values))}
	}
	v := values[0]
	if len(v) > MaxHeaderBytes {
		return "", &HeaderError{Reason: fmt.Sprintf("%d bytes: want at most %d", len(v), MaxHeaderBytes)}
	}
	scheme, rest, _ := strings.Cut(v, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", &HeaderError{Reason: `not a bearer token: want "Authorization: Bearer <token>"`}
	}
	token := strings.TrimLeft(rest, " ")
	if token == "" {
		return "", &HeaderError{Reason: "no token after Bearer"}
	}
	if !b64token(token) {
		return "", &HeaderError{Reason: "malformed token: want letters, digits and - . _ ~ + / only, no spaces"}
	}
	return token, nil
}

// b64token reports whether s is an RFC 6750 b64token:
// 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func b64token(s string) bool {
	i := 0
	for ; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/') {
			break
		}
	}
	if i == 0 {
		return false
	}
	for ; i < len(s); i++ {
		if s[i] != '=' {
			return false
		}
	}
	return true
}
