package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/queue"
)

type featureRef struct {
	ns *feature.Namespace
	f  *feature.Feature
}

// Observed-ats are kept within these years, which every store can encode
// compactly (DynamoDB's 7-byte form holds 829 to 3111).
const (
	minObservedYear = 1000
	maxObservedYear = 2999
)

type uploadRequest struct {
	Inputs     map[string]json.RawMessage `json:"inputs"`
	ObservedAt *string                    `json:"observed_at"`
}

// windowedBase returns the windowed feature f is or is derived from (a
// window's wire name), nil for any other feature.
func windowedBase(f *feature.Feature) *feature.Feature {
	switch {
	case f.Windowed():
		return f
	case f.WindowOf != nil:
		return f.WindowOf
	}
	return nil
}

// upload validates the whole request, turns it into one persistence record
// and answers 202 only once Kafka has acknowledged that record: an upload is
// accepted whole or not at all.
func (s *Server) upload(w http.ResponseWriter, r *http.Request) {
	var req uploadRequest
	if !s.decodeBody(w, r, &req, true) {
		return
	}
	rec, rows, errs := s.parseUpload(&req, time.Now())
	if len(errs) > 0 {
		writeErrors(w, http.StatusBadRequest, errs)
		return
	}
	var key []byte
	if len(rec.Entities) == 1 {
		key = queue.EntityKey(rec.Entities[0].Namespace, rec.Entities[0].Key)
	}
	if err := s.producer.Persist(r.Context(), key, rec); err != nil {
		if errors.Is(err, queue.ErrTooLarge) {
			writeErrors(w, http.StatusRequestEntityTooLarge, errorList{{Code: CodeRequestTooLarge, Category: CategoryRequest,
				Message: "the upload encodes to a record larger than the queue accepts; split it: " + err.Error()}})
			return
		}
		// The producer logs Kafka's failures, once per interval: a line
		// here would be one per upload during an outage.
		writeErrors(w, http.StatusServiceUnavailable, errorList{{Code: CodeUpstreamFailed, Category: CategoryNetwork,
			Message: "the persistence queue did not acknowledge the upload; nothing was accepted, retry later (" + err.Error() + ")"}})
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]int{"accepted": rows})
}

// parseUpload checks every input and builds the record. It reports every
// problem it finds, not just the first.
func (s *Server) parseUpload(req *uploadRequest, now time.Time) (*queue.Record, int, errorList) {
	var errs errorList
	if len(req.Inputs) == 0 {
		errs.add(CodeValidationFailed, "", "inputs is required: an object of feature name to value(s)")
		return nil, 0, errs
	}
	observedAt := feature.CanonicalTime(now)
	if req.ObservedAt != nil {
		t, err := feature.ParseTime(*req.ObservedAt)
		switch {
		case err != nil:
			errs.add(CodeValidationFailed, "", "observed_at: %v", err)
		case t.Year() < minObservedYear || t.Year() > maxObservedYear:
			errs.add(CodeValidationFailed, "", "observed_at: %s is outside the years %d to %d", *req.ObservedAt, minObservedYear, maxObservedYear)
		}
		observedAt = t
	}

	// Group inputs by namespace, in a stable order.
	fqns := make([]string, 0, len(req.Inputs))
	for fqn := range req.Inputs {
		fqns = append(fqns, fqn)
	}
	slices.Sort(fqns)
	type column struct {
		f   *feature.Feature
		raw json.RawMessage
	}
	var order []*feature.Namespace
	cols := map[*feature.Namespace][]column{}
	for _, fqn := range fqns {
		ref, ok := s.splitFQN(fqn, &errs)
		if !ok {
			continue
		}
		if base := windowedBase(ref.f); base != nil {
			errs.add(CodeValidationFailed, fqn, "%s is a windowed aggregation of %s, computed by the writers from its uploaded values: upload %s instead",
				fqn, base.Window.Of.FQN, base.Window.Of.FQN)
			continue
		}
		if _, seen := cols[ref.ns]; !seen {
			order = append(order, ref.ns)
		}
		cols[ref.ns] = append(cols[ref.ns], column{f: ref.f, raw: req.Inputs[fqn]})
	}

	rec := &queue.Record{Kind: queue.KindUpload}
	rows := 0
	for _, ns := range order {
		pkFQN := ns.PrimaryKey.FQN
		pkRaw, ok := req.Inputs[pkFQN]
		if !ok {
			errs.add(CodeMissingPrimaryKey, pkFQN, "inputs for namespace %q need its primary key %q", ns.Name, pkFQN)
			continue
		}
		var values []column // the non-key columns
		for _, c := range cols[ns] {
			if c.f != ns.PrimaryKey {
				values = append(values, c)
			}
		}
		if len(values) == 0 {
			errs.add(CodeValidationFailed, pkFQN, "namespace %q: no feature values to upload besides the primary key", ns.Name)
			continue
		}
		// The primary key decides the shape: a list means columns.
		var pkCells []json.RawMessage
		columnar := isArray(pkRaw)
		if columnar {
			if err := json.Unmarshal(pkRaw, &pkCells); err != nil {
				errs.add(CodeParseFailed, pkFQN, "primary key column: %v", err)
				continue
			}
			if len(pkCells) == 0 {
				errs.add(CodeValidationFailed, pkFQN, "primary key column is empty: no rows to upload")
				continue
			}
		} else {
			pkCells = []json.RawMessage{pkRaw}
		}
		n := len(pkCells)
		cells := make([][]json.RawMessage, len(values))
		for i, c := range values {
			if !columnar {
				cells[i] = []json.RawMessage{c.raw}
				continue
			}
			if !isArray(c.raw) || json.Unmarshal(c.raw, &cells[i]) != nil {
				errs.add(CodeRaggedColumns, c.f.FQN, "the primary key %q is a list of %d rows, so %q must be a list of %d values too", pkFQN, n, c.f.FQN, n)
				continue
			}
			if len(cells[i]) != n {
				errs.add(CodeRaggedColumns, c.f.FQN, "column has %d values but the primary key %q has %d rows", len(cells[i]), pkFQN, n)
			}
		}
		entities := make([]queue.Entity, n)
		for row := range n {
			key, err := feature.ParseKey(ns.PrimaryKey.Type, pkCells[row])
			if err != nil {
				errs.add(CodeValidationFailed, pkFQN, "%s%v", rowPrefix(columnar, row), err)
				continue
			}
			entities[row] = queue.Entity{Namespace: ns.Name, Key: key, Values: make([]queue.Value, 0, len(values))}
		}
		for i, c := range values {
			if len(cells[i]) != n {
				continue // already reported
			}
			for row := range n {
				v, err := feature.FromJSON(c.f.Type, cells[i][row])
				if err != nil {
					errs.add(CodeValidationFailed, c.f.FQN, "%s%v", rowPrefix(columnar, row), err)
					continue
				}
				entities[row].Values = append(entities[row].Values, queue.Value{FQN: c.f.FQN, Value: v, ObservedAt: observedAt})
			}
		}
		rec.Entities = append(rec.Entities, entities...)
		rows += n
	}
	return rec, rows, errs
}

func isArray(raw json.RawMessage) bool {
	for _, c := range raw {
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		case '[':
			return true
		}
		return false
	}
	return false
}

func rowPrefix(columnar bool, row int) string {
	if !columnar {
		return ""
	}
	return "row " + strconv.Itoa(row) + ": "
}
