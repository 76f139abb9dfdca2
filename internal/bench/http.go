package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// httpPath is path (a): queries to the query server, over HTTP/1.1
// keep-alive connections of its own. net/http's client runs a reader and a
// writer goroutine per connection and hands every request and answer
// between them; this lean client does neither, so that the generator adds
// as little as it can to what it measures.
type httpPath struct {
	addr string
	// headers are the request's Authorization and Accept header lines,
	// or empty.
	headers string
	// tls, if set, makes the connections TLS clients with it.
	tls  *tls.Config
	sets []requestSet
	next atomic.Uint64
	// idle holds the open connections not carrying a request.
	idle chan *httpConn
	// answers, if set, records every answer's size and Content-Type,
	// and call checks each against its Content-Type (checkAnswer).
	answers *answerStats
}

// httpConn is one connection of an httpPath.
type httpConn struct {
	conn net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	body bytes.Buffer
	// statusCode and contentType are those of the last answer.
	statusCode  int
	contentType string
}

// httpTimeout bounds one request of path (a).
const httpTimeout = 10 * time.Second

func newHTTPPath(addr string, v serverVariant, sets []requestSet, maxInFlight int) *httpPath {
	h := &httpPath{addr: addr, tls: v.tls, sets: withFormat(sets, v.format), idle: make(chan *httpConn, maxInFlight)}
	if v.token != "" {
		h.headers = "Authorization: Bearer " + v.token + "\r\n"
	}
	if v.accept != "" {
		h.headers += "Accept: " + v.accept + "\r\n"
	}
	return h
}

// close closes the idle connections.
func (h *httpPath) close() {
	for {
		select {
		case c := <-h.idle:
			c.conn.Close()
		default:
			return
		}
	}
}

// post sends the body of the next query on an idle connection (or a new
// one) and hands the answer's status, Content-Type and body to check,
// whose error it returns.
func (h *httpPath) post(ctx context.Context, check func(status int, contentType string, body []byte) error) error {
	var c *httpConn
	select {
	case c = <-h.idle:
	default:
		conn, err := (&net.Dialer{Timeout: httpTimeout}).DialContext(ctx, "tcp", h.addr)
		if err != nil {
			return fmt.Errorf("connect to the query server: %w", err)
		}
		if h.tls != nil {
			tc := tls.Client(conn, h.tls)
			hctx, cancel := context.WithTimeout(ctx, httpTimeout)
			err := tc.HandshakeContext(hctx)
			cancel()
			if err != nil {
				conn.Close()
				return fmt.Errorf("TLS handshake with the query server: %w", err)
			}
			conn = tc
		}
		c = &httpConn{conn: conn, br: bufio.NewReaderSize(conn, 64<<10), bw: bufio.NewWriterSize(conn, 16<<10)}
	}
	keep, err := c.roundTrip(ctx, h.addr, h.headers, h.sets[h.next.Add(1)%uint64(len(h.sets))].body)
	if err != nil {
		err = fmt.Errorf("POST /v1/query/online: %w", err)
	} else {
		err = check(c.statusCode, c.contentType, c.body.Bytes())
	}
	if !keep {
		c.conn.Close()
		return err
	}
	select {
	case h.idle <- c:
	default:
		c.conn.Close()
	}
	return err
}

// roundTrip sends one query and reads its answer into c.body, reporting
// whether the connection can carry another.
func (c *httpConn) roundTrip(ctx context.Context, host, headers string, body []byte) (keep bool, _ error) {
	deadline := time.Now().Add(httpTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := c.conn.SetDeadline(deadline); err != nil {
		return false, err
	}
	stop := context.AfterFunc(ctx, func() { _ = c.conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	fmt.Fprintf(c.bw, "POST /v1/query/online HTTP/1.1\r\nHost: %s\r\n%sContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", host, headers, len(body))
	c.bw.Write(body) // an error sticks, and Flush returns it
	if err := c.bw.Flush(); err != nil {
		return false, err
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return false, err
	}
	c.body.Reset()
	_, err = c.body.ReadFrom(resp.Body)
	resp.Body.Close()
	if err != nil {
		return false, fmt.Errorf("read the answer: %w", err)
	}
	c.statusCode, c.contentType = resp.StatusCode, resp.Header.Get("Content-Type")
	return !resp.Close, nil
}

// errorsNone is in every query answer without errors.
var errorsNone = []byte(`"errors":[]`)

// call is one request of path (a): a query whose answer must carry no
// errors. The values are not decoded: the client's work stays small.
// With answers set, the answer is checked against its Content-Type
// instead (checkAnswer), and recorded.
func (h *httpPath) call(ctx context.Context) error {
	if h.answers != nil {
		return h.post(ctx, func(status int, contentType string, body []byte) error {
			h.answers.add(contentType, len(body))
			return checkAnswer(status, contentType, body)
		})
	}
	return h.post(ctx, func(status int, _ string, body []byte) error {
		if status != http.StatusOK {
			return fmt.Errorf("HTTP %d: %.300s", status, body)
		}
		if !bytes.Contains(body, errorsNone) {
			return fmt.Errorf("query answered errors: %.300s", body)
		}
		return nil
	})
}

// check makes one query and checks that every value asked for came back,
// so that the benchmark measures reads of stored data.
func (h *httpPath) check(ctx context.Context, nfeats int) error {
	err := h.post(ctx, func(status int, _ string, body []byte) error {
		if status != http.StatusOK {
			return fmt.Errorf("HTTP %d: %.300s", status, body)
		}
		var ans struct {
			Data []struct {
				Value any `json:"value"`
			} `json:"data"`
			Errors []any `json:"errors"`
		}
		if err := json.Unmarshal(body, &ans); err != nil {
			return err
		}
		found := 0
		for _, d := range ans.Data {
			if d.Value != nil {
				found++
			}
		}
		if want := len(h.sets[0].keys) * nfeats; found != want || len(ans.Errors) > 0 {
			return fmt.Errorf("answered %d values of the %d written, errors %v", found, want, ans.Errors)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("bench: first query: %w", err)
	}
	return nil
}
