package api

import (
	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/query"
)

// fieldsAnswer returns an answer of fields, in order, as the row answer
// writes them: a group of one row per run of fields of one namespace and
// key.
func fieldsAnswer(fields []query.Field) *query.Answer {
	a := &query.Answer{}
	for lo := 0; lo < len(fields); {
		hi := lo + 1
		ns, key := fields[lo].Feature.Namespace, fields[lo].Key
		for hi < len(fields) && fields[hi].Feature.Namespace == ns && fields[hi].Key == key {
			hi++
		}
		outs := make([]*feature.Feature, 0, hi-lo)
		for _, f := range fields[lo:hi] {
			outs = append(outs, f.Feature)
		}
		a.Groups = append(a.Groups, query.FieldsGroup(ns, []string{key}, outs, fields[lo:hi]))
		lo = hi
	}
	return a
}

// tableAnswer returns fields, laid out as the engine answers qr (namespace
// by namespace in the order the outputs first name them, then key by key,
// then in output order), as an answer. Fields beyond that layout are
// dropped; too few panic.
func tableAnswer(qr *query.Request, fields []query.Field) *query.Answer {
	a := &query.Answer{}
	var order []*feature.Namespace
	outs := map[*feature.Namespace][]*feature.Feature{}
	for _, f := range qr.Outputs {
		if _, ok := outs[f.Namespace]; !ok {
			order = append(order, f.Namespace)
		}
		outs[f.Namespace] = append(outs[f.Namespace], f)
	}
	at := 0
	for _, ns := range order {
		keys := qr.Keys[ns]
		n := len(keys) * len(outs[ns])
		a.Groups = append(a.Groups, query.FieldsGroup(ns, keys, outs[ns], fields[at:at+n]))
		at += n
	}
	return a
}

// fieldsOf returns a's fields in the row answer's order.
func fieldsOf(a *answer) []query.Field {
	if a.res == nil {
		return nil
	}
	return a.res.Fields(nil)
}
