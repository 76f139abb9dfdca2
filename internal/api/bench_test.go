package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/query"
	"github.com/cairnfs/cairn/internal/store"
	"github.com/cairnfs/cairn/internal/store/redis"
	"github.com/cairnfs/cairn/internal/testserver"
)

// The query handler alone, over the Redis store (no HTTP connection): the
// shape of `cairn bench`'s queries, 50 features of the plain types.
func BenchmarkQueryHandler1x50(b *testing.B)   { benchQueryHandler(b, 1) }
func BenchmarkQueryHandler100x50(b *testing.B) { benchQueryHandler(b, 100) }

func benchQueryHandler(b *testing.B, entities int) {
	types := []string{"int", "float", "string", "bool", "datetime", "float", "int", "string", "bytes", "int"}
	var y strings.Builder
	y.WriteString("namespaces:\n- name: bench\n  primary_key: id\n  features:\n    id: string\n")
	for i := range 50 {
		fmt.Fprintf(&y, "    f%03d: %s\n", i, types[i%len(types)])
	}
	reg, err := feature.Parse("bench", []byte(y.String()))
	if err != nil {
		b.Fatal(err)
	}
	ns, _ := reg.Namespace("bench")
	feats := ns.Features[1:]

	cfg := redis.DefaultConfig()
	cfg.Addr = testserver.Redis(b)
	cfg.KeyPrefix = fmt.Sprintf("cairn-api-bench-%d:", time.Now().UnixNano())
	st, err := redis.Open(context.Background(), cfg, nil, quiet())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	at := time.Now().UTC()
	keys := make([]string, 200)
	ws := make([]store.EntityWrite, len(keys))
	for i := range keys {
		keys[i] = fmt.Sprintf("e%07d", i)
		ws[i] = store.EntityWrite{Namespace: ns, Key: keys[i]}
		for j, f := range feats {
			var v any
			switch f.Type.Kind {
			case feature.KindInt:
				v = int64(i*1000 + j)
			case feature.KindFloat:
				v = float64(i) + float64(j)/7
			case feature.KindString:
				v = fmt.Sprintf("value %d of entity %d", j, i)
			case feature.KindBool:
				v = (i+j)%2 == 0
			case feature.KindDatetime:
				v = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i*60+j) * time.Second)
			case feature.KindBytes:
				v = []byte{byte(i), byte(i >> 8), byte(j), 0xca, 0x1e}
			}
			ws[i].Values = append(ws[i].Values, store.Value{Feature: f, Value: v, ObservedAt: at})
		}
	}
	if err := st.Write(context.Background(), ws); err != nil {
		b.Fatal(err)
	}

	promReg := prometheus.NewRegistry()
	srv, err := New(Config{}, reg, query.NewEngine(st, promReg, nil), nil, nil, promReg, quiet())
	if err != nil {
		b.Fatal(err)
	}
	h := srv.Handler()
	outputs := make([]string, len(feats))
	for i, f := range feats {
		outputs[i] = f.FQN
	}
	bodies := make([][]byte, 64)
	for i := range bodies {
		var input any = keys[i]
		if entities > 1 {
			ks := make([]string, entities)
			for j := range ks {
				ks[j] = keys[(i+j)%len(keys)]
			}
			input = ks
		}
		bodies[i], _ = json.Marshal(map[string]any{"inputs": map[string]any{"bench.id": input}, "outputs": outputs})
	}
	check := httptest.NewRecorder()
	h.ServeHTTP(check, httptest.NewRequest(http.MethodPost, "/v1/query/online", bytes.NewReader(bodies[0])))
	if check.Code != http.StatusOK || strings.Contains(check.Body.String(), `"errors":[{`) {
		b.Fatalf("query answered %d: %s", check.Code, check.Body)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodPost, "/v1/query/online", bytes.NewReader(bodies[i%len(bodies)]))
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			b.Fatalf("query answered %d", w.Code)
		}
	}
}
