// Command credit-service is an example http resolver service: it answers
// the user.credit resolver of examples/features.yaml with a score made up
// from each key, so that `cairn dev` has something to call.
//
//	go run ./examples/credit-service            # listens on 127.0.0.1:9000
//
// docs/resolvers.md describes the request and answer; a real service looks
// the keys up in its own data.
package main

import (
	"encoding/json"
	"flag"
	"hash/fnv"
	"log"
	"net/http"
)

type request struct {
	Namespace string   `json:"namespace"`
	Keys      []string `json:"keys"`
	Features  []string `json:"features"`
}

type row struct {
	Key    string         `json:"key"`
	Values map[string]any `json:"values"`
}

func main() {
	addr := flag.String("addr", "127.0.0.1:9000", "listen address")
	flag.Parse()
	http.HandleFunc("POST /resolve", func(w http.ResponseWriter, r *http.Request) {
		var req request
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rows := make([]row, 0, len(req.Keys))
		for _, k := range req.Keys {
			h := fnv.New32a()
			h.Write([]byte(k))
			rows = append(rows, row{Key: k, Values: map[string]any{"credit_score": 300 + h.Sum32()%551}})
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"rows": rows})
	})
	log.Printf("credit-service: listening on http://%s/resolve", *addr)
	log.Fatal(http.ListenAndServe(*addr, nil))
}
