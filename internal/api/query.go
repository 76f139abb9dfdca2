package api

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/metrics"
	"github.com/cairnfs/cairn/internal/query"
	"github.com/cairnfs/cairn/internal/resolver"
)

// queryRequest is an online query. Fields of Chalk's request that cairn does
// not use (query_name, context, ...) are accepted and ignored.
type queryRequest struct {
	Inputs      map[string]json.RawMessage `json:"inputs"`
	Outputs     []string                   `json:"outputs"`
	Staleness   map[string]string          `json:"staleness"`
	IncludeMeta bool                       `json:"include_meta"`
	// Format is the JSON answer's form: "rows" (or "") or "columnar".
	Format string `json:"format"`
}

func (s *Server) query(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	// The deadline covers the whole request, decoding included.
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.QueryTimeout)
	defer cancel()
	var req queryRequest
	body := bodyBuffers.Get().(*[]byte)
	defer putBody(body)
	if !s.decodeQuery(w, r, &req, body) {
		return
	}
	qr, errs := s.parseQuery(&req)
	form := answerForm(r, &req, qr, &errs)
	if len(errs) > 0 {
		writeErrors(w, http.StatusBadRequest, errs)
		if m := s.cfg.QueryMetrics; m != nil {
			m.Observe(metrics.RejectedNamespace, time.Since(start), errs[0].Code)
		}
		return
	}
	res := s.engine.Answer(ctx, qr)
	defer res.Release()

	ans := &answer{res: res, includeMeta: req.IncludeMeta, errors: errorList{}}
	var failed map[*feature.Feature]bool
	storeFailed := false
	eachFailure(res, func(f *query.Field) {
		if failed[f.Feature] {
			return
		}
		if failed == nil {
			failed = map[*feature.Feature]bool{}
		}
		failed[f.Feature] = true
		if re, ok := errors.AsType[*resolver.Error](f.Err); ok {
			ans.errors = append(ans.errors, resolverError(f.Feature, re))
			return
		}
		storeFailed = true
		if _, ok := errors.AsType[*query.DeadlineError](f.Err); ok {
			ans.errors = append(ans.errors, ChalkError{Code: CodeDeadlineExceeded, Category: CategoryField, Feature: f.Feature.FQN,
				Message: fmt.Sprintf("not read within the query deadline of %v (CAIRN_QUERY_TIMEOUT): %v", s.cfg.QueryTimeout, f.Err)})
		} else {
			ans.errors = append(ans.errors, ChalkError{Code: CodeUpstreamFailed, Category: CategoryField,
				Feature: f.Feature.FQN, Message: "the online store could not be read: " + f.Err.Error()})
		}
	})
	if storeFailed {
		markDegraded(w)
		s.logFailedReads(res, failed)
	}
	id := rand.Text()
	took := time.Since(start)
	ans.queryID, ans.took = id, took
	switch form {
	case formColumnar:
		s.writeColumnar(w, ans, qr)
	case formArrow:
		s.writeArrow(w, ans, qr)
	default:
		s.writeAnswer(w, ans)
	}
	// What resolvers computed goes to persistence and the cache once the
	// answer is written; handing it over never waits for Kafka.
	s.engine.Publish(qr)

	if m := s.cfg.QueryMetrics; m != nil {
		observe(m, res, took)
	}
}

// eachFailure calls fn with each failed field of res, in order. Groups
// whose fields cannot fail are not looked at.
func eachFailure(res *query.Answer, fn func(f *query.Field)) {
	for gi := range res.Groups {
		g := &res.Groups[gi]
		if !g.MayFail() {
			continue
		}
		for i := range g.Keys {
			for o := range g.Outs {
				if f := g.Field(i, o); f.Err != nil {
					fn(&f)
				}
			}
		}
	}
}

// observe counts the query once per namespace it read, failed when one of
// that namespace's fields failed. It does not allocate.
func observe(m *metrics.Aggregator, res *query.Answer, took time.Duration) {
	for gi := range res.Groups {
		g := &res.Groups[gi]
		if len(g.Keys) == 0 {
			continue // a namespace named by outputs only is not read
		}
		code := ""
		if g.MayFail() {
		fields:
			for i := range g.Keys {
				for o := range g.Outs {
					f := g.Field(i, o)
					if f.Err == nil {
						continue
					}
					code = CodeUpstreamFailed
					if _, ok := errors.AsType[*query.DeadlineError](f.Err); ok {
						code = CodeDeadlineExceeded
					} else if re, ok := errors.AsType[*resolver.Error](f.Err); ok {
						code = resolverCode(re)
					}
					break fields
				}
			}
		}
		m.Observe(g.NS.Name, took, code)
	}
}

// resolverError is the answer's error for a feature its resolver did not
// compute: Chalk's code, naming the feature and the resolver.
func resolverError(f *feature.Feature, re *resolver.Error) ChalkError {
	return ChalkError{Code: resolverCode(re), Category: CategoryField, Feature: f.FQN, Resolver: re.Resolver.FQN,
		Message: fmt.Sprintf("%s not computed: %v", f.FQN, re)}
}

func resolverCode(re *resolver.Error) string {
	if re.TimedOut {
		return CodeResolverTimedOut
	}
	return CodeResolverFailed
}

// logFailedReads logs the failed reads of a query: one line per namespace,
// at most one per StoreErrorLogInterval, with the count of lines
// suppressed since the last. The metrics count every failure.
func (s *Server) logFailedReads(res *query.Answer, failed map[*feature.Feature]bool) {
	var logged map[string]bool
	eachFailure(res, func(f *query.Field) {
		s.logFailedRead(f, failed, &logged)
	})
}

// logFailedRead logs f's failure, once per namespace and query (logged
// holds those logged), at most once per StoreErrorLogInterval.
func (s *Server) logFailedRead(f *query.Field, failed map[*feature.Feature]bool, logged *map[string]bool) {
	if !failed[f.Feature] {
		return
	}
	if _, ok := errors.AsType[*resolver.Error](f.Err); ok {
		return // the resolvers log their own failures
	}
	ns := f.Feature.Namespace.Name
	if (*logged)[ns] {
		return
	}
	if *logged == nil {
		*logged = map[string]bool{}
	}
	(*logged)[ns] = true
	ok, suppressed := s.storeLog.Allow(ns, time.Now()) // namespaces come from the registry: a bounded set
	if !ok {
		return
	}
	var feats []string
	for g := range failed {
		if g.Namespace == f.Feature.Namespace {
			feats = append(feats, g.FQN)
		}
	}
	slices.Sort(feats)
	s.log.Warn("api: store read failed", "namespace", ns, "features", feats, "err", f.Err,
		"suppressed", suppressed, "interval", s.cfg.StoreErrorLogInterval)
}

func (s *Server) parseQuery(req *queryRequest) (*query.Request, errorList) {
	var errs errorList
	qr := &query.Request{Keys: map[*feature.Namespace][]string{}, Staleness: map[*feature.Feature]feature.Staleness{},
		Outputs: make([]*feature.Feature, 0, len(req.Outputs))}
	if len(req.Inputs) == 0 {
		errs.add(CodeValidationFailed, "", "inputs is required: the primary key of each namespace queried")
	}
	if len(req.Outputs) == 0 {
		errs.add(CodeValidationFailed, "", "outputs is required: a list of feature names")
	}
	total := 0
	for fqn, raw := range req.Inputs {
		ref, ok := s.splitFQN(fqn, &errs)
		if !ok {
			continue
		}
		if ref.f != ref.ns.PrimaryKey {
			errs.add(CodeValidationFailed, fqn, "only primary keys are accepted as inputs; %q is not the primary key of %q (%s)", fqn, ref.ns.Name, ref.ns.PrimaryKey.FQN)
			continue
		}
		cells := []json.RawMessage{raw}
		if isArray(raw) {
			var ok bool
			if cells, ok = splitScalars(raw); !ok {
				cells = nil
				err := json.Unmarshal(raw, &cells)
				ok = err == nil
			}
			if !ok || len(cells) == 0 {
				errs.add(CodeValidationFailed, fqn, "want a primary key or a non-empty list of them")
				continue
			}
		}
		total += len(cells)
		keys := make([]string, 0, len(cells))
		for i, c := range cells {
			k, err := feature.ParseKey(ref.f.Type, c)
			if err != nil {
				errs.add(CodeValidationFailed, fqn, "%s%v", rowPrefix(len(cells) > 1, i), err)
				continue
			}
			keys = append(keys, k)
		}
		qr.Keys[ref.ns] = keys
	}
	if total > s.cfg.MaxQueryKeys {
		errs.add(CodeValidationFailed, "", "%d entities queried, over the limit of %d", total, s.cfg.MaxQueryKeys)
	}
	for _, fqn := range req.Outputs {
		ref, ok := s.splitFQN(fqn, &errs)
		if !ok {
			continue
		}
		if _, ok := req.Inputs[ref.ns.PrimaryKey.FQN]; !ok {
			errs.add(CodeMissingPrimaryKey, fqn, "output %q needs the primary key %q in inputs", fqn, ref.ns.PrimaryKey.FQN)
			continue
		}
		if ref.f.Windowed() {
			names := make([]string, len(ref.f.Window.Derived))
			for i, d := range ref.f.Window.Derived {
				names[i] = d.FQN
			}
			errs.add(CodeValidationFailed, fqn, "%s is a windowed aggregation: ask for one of its windows: %s", fqn, strings.Join(names, ", "))
			continue
		}
		qr.Outputs = append(qr.Outputs, ref.f)
	}
	for fqn, d := range req.Staleness {
		ref, ok := s.splitFQN(fqn, &errs)
		if !ok {
			continue
		}
		st, err := feature.ParseStaleness(d)
		if err != nil {
			errs.add(CodeValidationFailed, fqn, "staleness: %v", err)
			continue
		}
		qr.Staleness[ref.f] = st
	}
	return qr, errs
}
