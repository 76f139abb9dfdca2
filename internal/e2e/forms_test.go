package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
)

// TestAnswerForms asks a query server, a process of the built binary
// behind a writer and a broker of their own, for the same entities in the
// three answer forms: the row JSON, the columnar JSON and an Arrow IPC
// stream carry the same values, absent ones as nulls.
func TestAnswerForms(t *testing.T) {
	c := startCluster(t, "redis", 1, 1)
	serve := c.serves[0].URL()
	ctx, cancel := context.WithTimeout(context.Background(), readableWithin)
	defer cancel()
	at := time.Now()
	for i, key := range []string{"ada", "bob"} {
		if code, body, err := uploadAge(ctx, serve, key, int64(30+i), at); err != nil || code != http.StatusAccepted {
			t.Fatalf("upload %s: %d %s %v", key, code, body, err)
		}
	}
	keys := []string{"ada", "nobody", "bob"}
	// The row answer, once both uploads are readable.
	var ages map[string]int64
	for {
		_, _, got, _, err := queryAges(ctx, serve, keys)
		if err == nil && got["ada"] == 30 && got["bob"] == 31 {
			ages = got
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("uploads not readable: %v %v", got, err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	ask := func(body map[string]any, accept string) (string, []byte) {
		t.Helper()
		b, _ := json.Marshal(body)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, serve+"/v1/query/online", bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("query: %d %s", resp.StatusCode, out)
		}
		return resp.Header.Get("Content-Type"), out
	}
	q := map[string]any{"inputs": map[string]any{"user.id": keys}, "outputs": []string{"user.age"}}

	// Columnar JSON.
	q["format"] = "columnar"
	ct, body := ask(q, "")
	var col struct {
		Columns struct {
			IDs  []string `json:"user.id"`
			Ages []*int64 `json:"user.age"`
		} `json:"columns"`
	}
	if err := json.Unmarshal(body, &col); err != nil || !strings.HasPrefix(ct, "application/json") || len(col.Columns.IDs) != len(keys) {
		t.Fatalf("columnar answer %s (%s): %v", body, ct, err)
	}
	delete(q, "format")
	for i, key := range keys {
		got := col.Columns.Ages[i]
		if want, ok := ages[key]; ok != (got != nil) || ok && *got != want {
			t.Errorf("columnar user.age of %s: %v, want %v (present %v)", key, got, want, ok)
		}
	}

	// Arrow.
	ct, body = ask(q, "application/vnd.apache.arrow.stream")
	if ct != "application/vnd.apache.arrow.stream" {
		t.Fatalf("Arrow answer's Content-Type %q", ct)
	}
	rd, err := ipc.NewReader(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Release()
	if !rd.Next() {
		t.Fatalf("no record batch: %v", rd.Err())
	}
	rec := rd.RecordBatch()
	idx := rec.Schema().FieldIndices("user.age")
	if len(idx) != 1 || rec.NumRows() != int64(len(keys)) {
		t.Fatalf("Arrow schema %v, %d rows", rec.Schema(), rec.NumRows())
	}
	col64, ok := rec.Column(idx[0]).(*array.Int64)
	if !ok {
		t.Fatalf("user.age is %T, want int64", rec.Column(idx[0]))
	}
	for i, key := range keys {
		want, present := ages[key]
		if col64.IsNull(i) == present || present && col64.Value(i) != want {
			t.Errorf("Arrow user.age of %s: null %v value %d, want %d (present %v)", key, col64.IsNull(i), col64.Value(i), want, present)
		}
	}
	c.requireAllRunning()
}
