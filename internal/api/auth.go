package api

import (
	"net/http"

	"github.com/cairnfs/cairn/internal/auth"
)

// Outcomes of cairn_api_requests_by_key_total besides those of
// cairn_api_requests_total.
const (
	outcomeUnauthenticated = "unauthenticated"
	outcomeUnauthorized    = "unauthorized"
)

// authorize runs h for requests presenting a key with scope, and answers
// the others itself: 401 UNAUTHENTICATED without a known key (missing,
// malformed, repeated or unknown Authorization header), 403 UNAUTHORIZED
// with a key lacking the scope. Without keys configured it is h. It runs
// inside instrument, whose *statusWriter it reads to count the request
// under its key's name (never its token); requests without a known key
// are counted under key "".
func (s *Server) authorize(route string, scope auth.Scope, h http.HandlerFunc) http.HandlerFunc {
	keys := s.cfg.Keys
	if keys == nil {
		return h
	}
	unauthenticated := s.byKey.WithLabelValues("", route, outcomeUnauthenticated)
	return func(w http.ResponseWriter, r *http.Request) {
		key, ok := checkKey(keys, scope, w, r)
		if !ok {
			if key == nil {
				unauthenticated.Inc()
			} else {
				s.byKey.WithLabelValues(key.Name, route, outcomeUnauthorized).Inc()
			}
			return
		}
		h(w, r)
		code, degraded := http.StatusOK, false
		if sw, ok := w.(*statusWriter); ok {
			code, degraded = sw.code, sw.degraded
		}
		s.byKey.WithLabelValues(key.Name, route, outcome(code, degraded)).Inc()
	}
}
