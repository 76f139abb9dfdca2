package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"time"

	"github.com/cairnfs/cairn/internal/auth"
	"github.com/cairnfs/cairn/internal/queue"
)

// KafkaActivePath is the admin route that reads (GET) and switches (POST)
// the active Kafka cluster of a process.
const KafkaActivePath = "/v1/admin/kafka/active"

// SwitchTimeout bounds a switch asked through KafkaActivePath: the
// producer's grace and the writer's batch, seeding and group leave fit in
// it, under the HTTP write timeout's default of 30s.
const SwitchTimeout = 20 * time.Second

// KafkaActive is the body of KafkaActivePath's answers, and Cluster alone
// that of a POST.
type KafkaActive struct {
	// Cluster is the active cluster: primary or secondary.
	Cluster string `json:"cluster"`
	// Clients maps each Kafka client of the process (producer, writer) to
	// the cluster it uses; all equal Cluster once a switch has finished.
	Clients map[string]string `json:"clients,omitempty"`
	// Secondary reports whether a secondary cluster is configured.
	Secondary bool `json:"secondary"`
}

// KafkaActiveHandler serves KafkaActivePath for f without authentication
// (wrap it with RequireScope): GET answers the active cluster; POST with
// {"cluster": "primary"|"secondary"} switches every client of the process
// and answers once they have, 200 with the cluster now active, or 503
// UPSTREAM_FAILED naming the clients that did not switch (they stay where
// they were; asking again retries them). A body that does not parse
// answers 400 PARSE_FAILED; an unknown cluster, or the secondary when none
// is configured, 400 VALIDATION_FAILED naming the field "cluster".
func KafkaActiveHandler(f *queue.Failover, maxBody int64) http.Handler {
	answer := func(w http.ResponseWriter) {
		writeJSON(w, http.StatusOK, KafkaActive{Cluster: f.Active(), Clients: f.Clusters(), Secondary: f.Settings().HasSecondary()})
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			answer(w)
			return
		}
		var req struct {
			Cluster *string `json:"cluster"`
		}
		if !decodeAdminBody(w, r, maxBody, `{"cluster": "primary" or "secondary"}`, &req) {
			return
		}
		if req.Cluster == nil {
			writeErrors(w, http.StatusBadRequest, errorList{{Code: CodeValidationFailed, Category: CategoryField,
				Message: `field "cluster" is missing: want "primary" or "secondary"`}})
			return
		}
		if _, ok := f.Config(*req.Cluster); !ok {
			msg := fmt.Sprintf(`field "cluster": %q: want "primary" or "secondary"`, *req.Cluster)
			if *req.Cluster == queue.Secondary {
				msg = `field "cluster": "secondary": this process has no secondary cluster (CAIRN_KAFKA_SECONDARY_BROKERS)`
			}
			writeErrors(w, http.StatusBadRequest, errorList{{Code: CodeValidationFailed, Category: CategoryField, Message: msg}})
			return
		}
		// The switch goes on if the client goes away: half a switch
		// helps nobody.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), SwitchTimeout)
		defer cancel()
		if err := f.Switch(ctx, *req.Cluster); err != nil {
			var serr *queue.SwitchError
			if !errors.As(err, &serr) {
				writeErrors(w, http.StatusServiceUnavailable, errorList{{Code: CodeUpstreamFailed, Category: CategoryNetwork, Message: err.Error()}})
				return
			}
			names := make([]string, 0, len(serr.Failed))
			for n := range serr.Failed {
				names = append(names, n)
			}
			sort.Strings(names)
			var errs errorList
			for _, n := range names {
				errs = append(errs, ChalkError{Code: CodeUpstreamFailed, Category: CategoryNetwork,
					Message: fmt.Sprintf("%s did not switch to %s: %v", n, serr.To, serr.Failed[n])})
			}
			writeErrors(w, http.StatusServiceUnavailable, errs)
			return
		}
		answer(w)
	})
}

// decodeAdminBody decodes the body of an admin request, one JSON object of
// the fields of dst and no others, at most maxBody bytes; when it cannot,
// it answers 400 PARSE_FAILED saying what it wants and returns false.
func decodeAdminBody(w http.ResponseWriter, r *http.Request, maxBody int64, want string, dst any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		writeErrors(w, http.StatusBadRequest, errorList{{Code: CodeParseFailed, Category: CategoryRequest,
			Message: fmt.Sprintf("body: want %s: %v", want, err)}})
		return false
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		writeErrors(w, http.StatusBadRequest, errorList{{Code: CodeParseFailed, Category: CategoryRequest,
			Message: "body: want one JSON object"}})
		return false
	}
	return true
}

// RequireScope answers requests that do not present an API key of keys
// with scope as the query server does (401 UNAUTHENTICATED, 403
// UNAUTHORIZED) and hands the others to h. With keys nil it is h. It is
// for servers other than Server's (the writer's own HTTP address).
func RequireScope(keys *auth.Keys, scope auth.Scope, h http.Handler) http.Handler {
	if keys == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := checkKey(keys, scope, w, r); ok {
			h.ServeHTTP(w, r)
		}
	})
}

// checkKey authenticates r against keys and checks the key has scope; when
// it does not, it answers r itself and returns false.
func checkKey(keys *auth.Keys, scope auth.Scope, w http.ResponseWriter, r *http.Request) (*auth.Key, bool) {
	key, err := keys.Authenticate(r.Header.Values("Authorization"))
	if err != nil {
		if errors.Is(err, auth.ErrUnknownToken) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="cairn", error="invalid_token"`)
		} else {
			w.Header().Set("WWW-Authenticate", `Bearer realm="cairn"`)
		}
		writeErrors(w, http.StatusUnauthorized, errorList{{Code: CodeUnauthenticated, Category: CategoryRequest, Message: err.Error()}})
		return nil, false
	}
	if !key.Allows(scope) {
		writeErrors(w, http.StatusForbidden, errorList{{Code: CodeUnauthorized, Category: CategoryRequest,
			Message: fmt.Sprintf("API key %q does not have the %q scope this route needs", key.Name, scope)}})
		return key, false
	}
	return key, true
}

// StoreWritesPath is the admin route of `cairn write` that reads (GET) and
// switches (POST) whether its writer writes the online store: "active", or
// "standby" in the passive region of a DynamoDB global table
// (CAIRN_WRITER_STORE_WRITES; docs/multi-region.md).
const StoreWritesPath = "/v1/admin/writer/store-writes"

// StoreWrites is the body of StoreWritesPath's answers and requests.
type StoreWrites struct {
	// StoreWrites is "active" or "standby".
	StoreWrites string `json:"store_writes"`
}

// StoreWritesHandler serves StoreWritesPath without authentication (wrap
// it with RequireScope): GET answers the state; POST with
// {"store_writes": "active"|"standby"} switches it through set and
// answers the state now. standbyAllowed says why standby may not be asked
// for (a store other than a global table keeps its writers active), or is
// nil. A body that does not parse answers 400 PARSE_FAILED; another value,
// or standby where it is not allowed, 400 VALIDATION_FAILED naming the
// field "store_writes".
func StoreWritesHandler(active func() bool, set func(bool), standbyAllowed error, maxBody int64) http.Handler {
	answer := func(w http.ResponseWriter) {
		state := "active"
		if !active() {
			state = "standby"
		}
		writeJSON(w, http.StatusOK, StoreWrites{StoreWrites: state})
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			answer(w)
			return
		}
		var req struct {
			StoreWrites *string `json:"store_writes"`
		}
		if !decodeAdminBody(w, r, maxBody, `{"store_writes": "active" or "standby"}`, &req) {
			return
		}
		var msg string
		switch {
		case req.StoreWrites == nil:
			msg = `field "store_writes" is missing: want "active" or "standby"`
		case *req.StoreWrites == "active":
			set(true)
		case *req.StoreWrites == "standby" && standbyAllowed != nil:
			msg = fmt.Sprintf(`field "store_writes": "standby": %v`, standbyAllowed)
		case *req.StoreWrites == "standby":
			set(false)
		default:
			msg = fmt.Sprintf(`field "store_writes": %q: want "active" or "standby"`, *req.StoreWrites)
		}
		if msg != "" {
			writeErrors(w, http.StatusBadRequest, errorList{{Code: CodeValidationFailed, Category: CategoryField, Message: msg}})
			return
		}
		answer(w)
	})
}
