package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// The API's routes are net/http handlers, served by fasthttp's HTTP/1.1
// server through the bridge below. net/http's server costs a query more
// than the query's own work needs: per request it starts a goroutine to
// watch the connection while the handler runs and wakes it again when the
// handler returns, and with idle CPUs each of those hand-offs wakes a
// thread of the runtime. fasthttp serves each connection from one
// goroutine, reading the request whole before the handler runs and
// writing the answer in one go (docs/api.md, "The HTTP server").

// maxHeaderBytes bounds a request's line and headers: fasthttp reads them
// in one buffer of this size per open connection. A larger request is
// answered 431 HEADERS_TOO_LARGE.
const maxHeaderBytes = 16 << 10

// newFastServer is the HTTP server of Run: h behind the bridge, with cfg's
// timeouts and limits. conns tracks its connections, so that Run can close
// those still open at the shutdown timeout.
func newFastServer(cfg Config, h http.Handler, log *slog.Logger, conns *connSet) *fasthttp.Server {
	b := &bridge{h: h, log: log, writeTimeout: cfg.WriteTimeout}
	readTimeout := cfg.ReadTimeout
	bodyLimit := int(cfg.MaxBodyBytes)
	return &fasthttp.Server{
		Handler:      b.serve,
		ErrorHandler: b.requestError(cfg),
		// Until the headers are read, the header timeout; from then on,
		// the read timeout bounds the body. The write timeout runs from
		// the start of the handler (bridge.serve), or, for an answer
		// fasthttp makes itself (requestError), from the start of its
		// write.
		ReadTimeout: cfg.ReadHeaderTimeout,
		HeaderReceived: func(*fasthttp.RequestHeader) fasthttp.RequestConfig {
			return fasthttp.RequestConfig{ReadTimeout: readTimeout, MaxRequestBodySize: bodyLimit + 1}
		},
		WriteTimeout:       cfg.WriteTimeout,
		IdleTimeout:        cfg.IdleTimeout,
		ReadBufferSize:     maxHeaderBytes,
		MaxRequestBodySize: bodyLimit + 1,
		// The handlers see one byte over the limit and answer 413
		// themselves, after authentication; a body larger still is
		// answered 413 by requestError before any handler runs.
		DisablePreParseMultipartForm: true,
		NoDefaultServerHeader:        true,
		NoDefaultContentType:         true,
		CloseOnShutdown:              true,
		// Request headers carry API keys: fasthttp's errors must not
		// quote them.
		SecureErrorLogMessage: true,
		Logger:                debugLogger{log},
		ConnState:             conns.track,
	}
}

// bridge serves a net/http handler from fasthttp's request: the request
// becomes an *http.Request without a copy of its body, and what the
// handler writes is fasthttp's answer. The objects it needs are pooled.
type bridge struct {
	h   http.Handler
	log *slog.Logger
	// writeTimeout bounds the time from the start of the handler to the
	// end of the answer's write, as net/http's WriteTimeout bounds it
	// from the end of the headers.
	writeTimeout time.Duration
	pool         sync.Pool // of *exchange
}

// exchange is what one request needs besides fasthttp's: the request and
// the response writer the handler is given.
type exchange struct {
	req  http.Request
	url  url.URL
	hdr  http.Header
	body bodyReader
	w    fastWriter
}

// bodyReader is a request body read from fasthttp's buffer.
type bodyReader struct{ bytes.Reader }

func (*bodyReader) Close() error { return nil }

func (b *bridge) serve(ctx *fasthttp.RequestCtx) {
	x, _ := b.pool.Get().(*exchange)
	if x == nil {
		x = &exchange{hdr: http.Header{}, w: fastWriter{hdr: http.Header{}}}
	}
	defer func() {
		if p := recover(); p != nil {
			b.panicked(ctx, x, p)
		}
		x.req, x.url = http.Request{}, url.URL{}
		x.body.Reset(nil)
		clear(x.hdr)
		clear(x.w.hdr)
		x.w.ctx = nil
		b.pool.Put(x)
	}()
	if b.writeTimeout > 0 {
		_ = ctx.SetWriteDeadline(ctx.Time().Add(b.writeTimeout))
	}
	x.fill(ctx)
	x.w.reset(ctx)
	b.h.ServeHTTP(&x.w, &x.req)
	x.w.finish()
}

// fill makes x.req fasthttp's request.
func (x *exchange) fill(ctx *fasthttp.RequestCtx) {
	rh := &ctx.Request.Header
	for k, v := range rh.All() {
		key := headerKey(k)
		if key == "Host" {
			continue
		}
		x.hdr[key] = append(x.hdr[key], string(v))
	}
	x.url.Path = string(ctx.Path())
	if q := ctx.URI().QueryString(); len(q) > 0 {
		x.url.RawQuery = string(q)
	}
	body := ctx.PostBody()
	x.body.Reset(body)
	x.req = http.Request{
		Method:        method(ctx.Method()),
		URL:           &x.url,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        x.hdr,
		Body:          &x.body,
		ContentLength: int64(len(body)),
		Close:         rh.ConnectionClose(),
		Host:          string(rh.Host()),
		RemoteAddr:    ctx.RemoteAddr().String(),
		RequestURI:    string(ctx.RequestURI()),
	}
	if !rh.IsHTTP11() {
		x.req.Proto, x.req.ProtoMinor = "HTTP/1.0", 0
	}
}

// method returns m as a string, without allocating for the usual ones.
func method(m []byte) string {
	switch string(m) {
	case http.MethodGet:
		return http.MethodGet
	case http.MethodPost:
		return http.MethodPost
	case http.MethodHead:
		return http.MethodHead
	}
	return string(m)
}

// headerKey returns k, canonical already, as a string, without allocating
// for the headers clients usually send.
func headerKey(k []byte) string {
	switch string(k) {
	case "Host":
		return "Host"
	case "Content-Type":
		return "Content-Type"
	case "Content-Length":
		return "Content-Length"
	case "Accept":
		return "Accept"
	case "Authorization":
		return "Authorization"
	case "User-Agent":
		return "User-Agent"
	case "Accept-Encoding":
		return "Accept-Encoding"
	case "Connection":
		return "Connection"
	}
	return http.CanonicalHeaderKey(string(k))
}

// fastWriter is the handler's http.ResponseWriter: headers are kept until
// the status is written, the body is added to fasthttp's, which writes the
// whole answer once the handler returns.
type fastWriter struct {
	ctx   *fasthttp.RequestCtx
	hdr   http.Header
	wrote bool
}

func (w *fastWriter) reset(ctx *fasthttp.RequestCtx) {
	w.ctx, w.wrote = ctx, false
}

func (w *fastWriter) Header() http.Header { return w.hdr }

func (w *fastWriter) WriteHeader(code int) {
	if w.wrote {
		return
	}
	w.wrote = true
	w.ctx.SetStatusCode(code)
	rh := &w.ctx.Response.Header
	for k, vs := range w.hdr {
		switch k {
		case "Content-Length", "Transfer-Encoding":
			continue // fasthttp frames the answer itself
		case "Content-Type":
			rh.SetContentType(vs[0])
			continue
		}
		for _, v := range vs {
			rh.Add(k, v)
		}
	}
}

func (w *fastWriter) Write(p []byte) (int, error) {
	if !w.wrote {
		if len(p) > 0 && w.hdr.Get("Content-Type") == "" {
			// As net/http does: a body without a type is sniffed.
			w.hdr.Set("Content-Type", http.DetectContentType(p))
		}
		w.WriteHeader(http.StatusOK)
	}
	return w.ctx.Write(p)
}

// Flush does nothing: the answer is written when the handler returns.
func (w *fastWriter) Flush() {}

// finish writes the status and headers of a handler that wrote neither.
func (w *fastWriter) finish() {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
}

// panicked answers a request whose handler panicked: 500, the connection
// closed, the panic logged at debug level (a client may cause it; not
// http.ErrAbortHandler, which a handler uses to give up). Nothing has
// reached the client yet, fasthttp writing the answer once the handler
// returns, so what the handler wrote is dropped: a client never takes a
// cut answer for a whole one (net/http, having sent it, resets the
// connection instead).
func (b *bridge) panicked(ctx *fasthttp.RequestCtx, x *exchange, p any) {
	if p != http.ErrAbortHandler {
		b.log.Debug("api: handler panicked", "method", x.req.Method, "path", x.url.Path, "panic", fmt.Sprint(p))
	}
	ctx.Response.Reset()
	ctx.SetConnectionClose()
	writeErrors(&fastWriter{ctx: ctx, hdr: http.Header{}}, http.StatusInternalServerError, errorList{{Code: CodeInternal,
		Category: CategoryRequest, Message: "the server failed to answer the request"}})
}

// requestError answers, in the API's error shape, a request fasthttp could
// not read: headers over maxHeaderBytes (431), a body over the largest
// limit (413), a request not received within its timeouts (408), or one
// that is not HTTP (400).
func (b *bridge) requestError(cfg Config) func(*fasthttp.RequestCtx, error) {
	return func(ctx *fasthttp.RequestCtx, err error) {
		fw := &fastWriter{ctx: ctx, hdr: http.Header{}}
		var small *fasthttp.ErrSmallBuffer
		var netErr net.Error
		var record tls.RecordHeaderError
		switch {
		case errors.As(err, &record) && record.Conn != nil:
			// Plain HTTP to the TLS listener: answered in plain HTTP,
			// as net/http answers it, and logged at debug level.
			b.log.Debug("api: TLS handshake failed", "remote", ctx.RemoteAddr().String(), "err", err)
			if looksLikeHTTP(record.RecordHeader[:]) {
				_ = record.Conn.SetWriteDeadline(time.Now().Add(time.Second))
				_, _ = io.WriteString(record.Conn, "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
			}
			_ = record.Conn.Close()
			return
		case errors.As(err, &small):
			drainBody(ctx, maxDrainBytes)
			writeErrors(fw, http.StatusRequestHeaderFieldsTooLarge, errorList{{Code: CodeHeadersTooLarge, Category: CategoryRequest,
				Message: fmt.Sprintf("the request line and headers are larger than the limit of %d bytes", maxHeaderBytes)}})
		case errors.Is(err, fasthttp.ErrBodyTooLarge):
			drainBody(ctx, int64(ctx.Request.Header.ContentLength()))
			writeErrors(fw, http.StatusRequestEntityTooLarge, errorList{{Code: CodeRequestTooLarge, Category: CategoryRequest,
				Message: fmt.Sprintf("request body is larger than the limit of %d bytes (CAIRN_MAX_BODY_BYTES); split the request", cfg.MaxBodyBytes)}})
		case errors.As(err, &netErr) && netErr.Timeout():
			writeErrors(fw, http.StatusRequestTimeout, errorList{{Code: CodeRequestTimeout, Category: CategoryNetwork,
				Message: fmt.Sprintf("the request was not received within the read timeouts (CAIRN_HTTP_READ_HEADER_TIMEOUT %v, CAIRN_HTTP_READ_TIMEOUT %v)", cfg.ReadHeaderTimeout, cfg.ReadTimeout)}})
		default:
			drainBody(ctx, maxDrainBytes)
			writeErrors(fw, http.StatusBadRequest, errorList{{Code: CodeMalformedRequest, Category: CategoryRequest,
				Message: "malformed HTTP request: " + err.Error()}})
		}
	}
}

// The most of a refused body drainBody reads, how long it waits for it in
// all, and how long for the next bytes.
const (
	maxDrainBytes = 1 << 20
	drainTimeout  = time.Second
	drainPause    = 50 * time.Millisecond
)

// drainBody reads and drops what the client still sends of a refused
// request, up to limit bytes (its body's length, negative when unknown)
// or maxDrainBytes, for at most
// drainTimeout, stopping when no byte came for drainPause, before the
// answer is written and the connection closed. Closing a connection with
// unread bytes resets it, and the reset would destroy the answer before
// the client reads it: the client would see a broken pipe instead of the
// 413 or 431. More than that still ends in a reset (net/http gives up at
// 256 KiB).
func drainBody(ctx *fasthttp.RequestCtx, limit int64) {
	if limit < 0 || limit > maxDrainBytes {
		limit = maxDrainBytes
	}
	c := ctx.Conn()
	end := time.Now().Add(drainTimeout)
	buf := make([]byte, 32<<10)
	for read := int64(0); read < limit; {
		d := time.Now().Add(drainPause)
		if d.After(end) {
			d = end
		}
		if c.SetReadDeadline(d) != nil {
			return
		}
		n, err := c.Read(buf)
		read += int64(n)
		if err != nil {
			return
		}
	}
}

// looksLikeHTTP reports whether the first 5 bytes of a connection are those
// of an HTTP request, as net/http checks them.
func looksLikeHTTP(hdr []byte) bool {
	switch string(hdr) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO":
		return true
	}
	return false
}

// debugLogger logs fasthttp's messages (a failed TLS handshake, a
// connection that broke) at debug level: a client can cause them.
type debugLogger struct{ log *slog.Logger }

func (l debugLogger) Printf(format string, args ...any) {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug("api: " + fmt.Sprintf(format, args...))
	}
}

// connSet is the server's open connections.
type connSet struct {
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func (s *connSet) track(c net.Conn, state fasthttp.ConnState) {
	switch state {
	case fasthttp.StateNew:
		s.mu.Lock()
		if s.conns == nil {
			s.conns = map[net.Conn]struct{}{}
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
	case fasthttp.StateClosed, fasthttp.StateHijacked:
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}
}

// closeAll closes every open connection.
func (s *connSet) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		_ = c.Close()
	}
}
