package redis

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"time"
)

// A query's read is the store's hot path, and on a server of one node it
// does not go through go-redis. Measured side by side on one machine
// (BenchmarkRead100x50, lines floor and go-redis), a pipeline of 100
// HGETALLs of 51-field hashes took 1.54 ms through go-redis, even reading
// raw replies (which it assembles line by line into a buffer grown from
// nothing for every command), and 0.65 ms written and read directly on the
// connection; rueidis makes a string of every element, the allocation
// this path avoids. So reads have connections of their own (readPool), on
// which the commands of a read are written in one buffer and the replies
// read from the socket straight into one arena (respReader), where they
// are parsed as they lie: no copy but the system call's, and one scan.
//
// The read connections speak RESP2 and only read: HGETALL and HMGET, whose
// replies are flat arrays of bulk strings and nulls. Everything else —
// writes, scripts, the id mapping, and every read of a cluster, whose
// redirections go-redis follows — goes through go-redis. A read connection
// meets the same address, TLS, credentials and database as go-redis's, and
// the same timeouts, retries and pool size (Config).

// readPool holds the read connections to one server, at most
// Config.PoolSize open at once.
type readPool struct {
	cfg  Config
	tls  *tls.Config
	slot chan struct{} // a token per connection that may be open
	mu   sync.Mutex
	idle []*readConn
	// closed is set under mu by close; a connection put back then is
	// closed instead of kept.
	closed bool
	// onDial and onRetry count dials and retries in the metrics.
	onDial  func(err error)
	onRetry func()
}

// readConn is one read connection.
type readConn struct {
	nc net.Conn
	// rd reads the replies; its buffer is lent by each exchange.
	rd respReader
}

// errReadClosed is a read after the store was closed.
var errReadClosed = errors.New("redis: read connections closed")

func newReadPool(cfg Config, tlsConfig *tls.Config) *readPool {
	return &readPool{cfg: cfg, tls: tlsConfig, slot: make(chan struct{}, cfg.PoolSize),
		onDial: func(error) {}, onRetry: func() {}}
}

// get returns an idle connection, or dials one when fewer than PoolSize are
// open; when all are busy it waits for one, up to the read timeout plus a
// second (as go-redis's pool does) or ctx's end. reused reports whether
// the connection served an earlier read (it may have been closed by the
// server since).
func (p *readPool) get(ctx context.Context) (c *readConn, reused bool, err error) {
	select {
	case p.slot <- struct{}{}:
	default:
		t := time.NewTimer(p.cfg.ReadTimeout + time.Second)
		defer t.Stop()
		select {
		case p.slot <- struct{}{}:
		case <-ctx.Done():
			return nil, false, ctx.Err()
		case <-t.C:
			return nil, false, fmt.Errorf("redis: all %d read connections busy for %v (CAIRN_REDIS_POOL_SIZE)", p.cfg.PoolSize, p.cfg.ReadTimeout+time.Second)
		}
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.slot
		return nil, false, errReadClosed
	}
	if n := len(p.idle); n > 0 {
		c = p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return c, true, nil
	}
	p.mu.Unlock()
	c, err = p.dial(ctx)
	p.onDial(err)
	if err != nil {
		<-p.slot
		return nil, false, err
	}
	return c, false, nil
}

// put gives c back after a read; a connection that failed, or whose
// replies were not all read, is closed.
func (p *readPool) put(c *readConn, healthy bool) {
	p.mu.Lock()
	if healthy && !p.closed {
		p.idle = append(p.idle, c)
		p.mu.Unlock()
	} else {
		p.mu.Unlock()
		_ = c.nc.Close()
	}
	<-p.slot
}

// close closes the idle connections; those in use are closed when put back.
func (p *readPool) close() {
	p.mu.Lock()
	p.closed = true
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, c := range idle {
		_ = c.nc.Close()
	}
}

// dial opens a connection, authenticates it and selects the database.
func (p *readPool) dial(ctx context.Context) (*readConn, error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.DialTimeout)
	defer cancel()
	d := net.Dialer{}
	nc, err := d.DialContext(ctx, "tcp", p.cfg.Addr)
	if err != nil {
		return nil, err
	}
	if p.tls != nil {
		tc := tls.Client(nc, p.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = nc.Close()
			return nil, err
		}
		nc = tc
	}
	c := &readConn{nc: nc, rd: respReader{r: nc}}
	var setup [][]string
	if p.cfg.Password != "" {
		if p.cfg.Username != "" {
			setup = append(setup, []string{"auth", p.cfg.Username, p.cfg.Password})
		} else {
			setup = append(setup, []string{"auth", p.cfg.Password})
		}
	}
	if p.cfg.DB != 0 {
		setup = append(setup, []string{"select", strconv.Itoa(p.cfg.DB)})
	}
	if len(setup) == 0 {
		return c, nil
	}
	deadline, _ := ctx.Deadline()
	_ = nc.SetDeadline(deadline)
	var out []byte
	for _, cmd := range setup {
		out = appendCommand(out, cmd[0], cmd[1:]...)
	}
	_, err = nc.Write(out)
	c.rd.reset(nil)
	for i := 0; err == nil && i < len(setup); i++ {
		var line []byte
		if line, err = c.rd.readLine(); err == nil && string(line) != "+OK" {
			// The reply names the cause (WRONGPASS, ...), never the password.
			err = fmt.Errorf("%s: %s", setup[i][0], bytesOr(line, 200))
		}
	}
	if err == nil && c.rd.pos != c.rd.end {
		err = fmt.Errorf("%d bytes after the replies to %s", c.rd.end-c.rd.pos, setup[len(setup)-1][0])
	}
	c.rd.reset(nil)
	if err != nil {
		_ = nc.Close()
		return nil, err
	}
	_ = nc.SetDeadline(time.Time{})
	return c, nil
}

// bytesOr returns b as a string, cut to at most n bytes.
func bytesOr(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
	}
	return string(b)
}

// appendCommand appends a command in RESP: an array of bulk strings.
func appendCommand(b []byte, name string, args ...string) []byte {
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(1+len(args)), 10)
	b = append(b, '\r', '\n')
	b = appendBulk(b, name)
	for _, a := range args {
		b = appendBulk(b, a)
	}
	return b
}

// appendBulk appends s as a RESP bulk string.
func appendBulk(b []byte, s string) []byte {
	b = append(b, '$')
	b = strconv.AppendInt(b, int64(len(s)), 10)
	b = append(b, '\r', '\n')
	b = append(b, s...)
	return append(b, '\r', '\n')
}

// respReader reads a connection's replies into one buffer, where they are
// parsed as they lie: the bytes of a read's replies are copied once, by the
// read system call, and scanned once. The buffer is the read's arena
// (readScratch.arena), lent for one exchange; it is grown as the replies
// need, and never has bytes discarded from it meanwhile, so that offsets
// into it (spans) stay valid.
type respReader struct {
	r   io.Reader
	buf []byte // buf[:end] came from r; buf[pos:end] is not parsed yet
	pos int
	end int
	// room is the least free room a read from r is given, minReadRoom
	// when 0 (tests make it small, to grow the buffer within a reply).
	room int
}

// minReadRoom is the least free room a read from the connection is given:
// a 100-entity reply of 50 features is some 180 KB, read in a few system
// calls.
const minReadRoom = 64 << 10

// maxLine bounds a RESP line: nothing a read asks for answers a longer one.
const maxLine = 64 << 10

// maxArena bounds the bytes of one exchange's replies, which spans address
// with 32-bit offsets.
const maxArena = 1<<31 - 1

// reset makes buf, emptied, the reader's buffer.
func (rd *respReader) reset(buf []byte) {
	rd.buf, rd.pos, rd.end = buf[:cap(buf)], 0, 0
}

// fill reads at least once more from the connection, growing the buffer
// when its free room is under minReadRoom.
func (rd *respReader) fill() error {
	room := rd.room
	if room == 0 {
		room = minReadRoom
	}
	if len(rd.buf)-rd.end < room {
		if rd.end+room > maxArena {
			return &errSurprise{errors.New("redis: read of more than 2 GiB")}
		}
		nb := make([]byte, max(2*len(rd.buf), rd.end+room))
		copy(nb, rd.buf[:rd.end])
		rd.buf = nb
	}
	for range 100 {
		n, err := rd.r.Read(rd.buf[rd.end:])
		rd.end += n
		if n > 0 {
			return nil
		}
		if err != nil {
			return err
		}
	}
	return io.ErrNoProgress
}

// need makes at least n bytes past pos buffered.
func (rd *respReader) need(n int) error {
	for rd.end-rd.pos < n {
		if err := rd.fill(); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// readLine reads one RESP line, without its CRLF. The line lies in the
// reader's buffer, valid until the buffer is reset or grown.
func (rd *respReader) readLine() ([]byte, error) {
	from := rd.pos
	for {
		if i := bytes.IndexByte(rd.buf[from:rd.end], '\n'); i >= 0 {
			end := from + i + 1
			line := rd.buf[rd.pos:end]
			rd.pos = end
			if len(line) < 3 || line[len(line)-2] != '\r' {
				return nil, unexpected(line)
			}
			return line[:len(line)-2], nil
		}
		if rd.end-rd.pos >= maxLine {
			return nil, errLineTooLong
		}
		from = rd.end
		if err := rd.fill(); err != nil {
			return nil, err
		}
	}
}

// errLineTooLong is a RESP line longer than 64 KiB: nothing a read asks
// for answers one.
var errLineTooLong = errors.New("redis: reply line longer than 64 KiB")

// span locates one element of a reply in a read's arena; n is -1 for a
// null.
type span struct{ off, n int32 }

// errSurprise wraps what makes a read connection's replies unreadable
// (a reply of another shape than a read expects): the connection is
// closed, and the read is sent again through go-redis.
type errSurprise struct{ err error }

func (e *errSurprise) Error() string { return e.err.Error() }
func (e *errSurprise) Unwrap() error { return e.err }

// readFlat reads one reply, which must be an array of bulk strings and
// nulls, into rd's buffer, and appends its elements' spans (offsets in the
// buffer). An error reply is returned as a *replyError, the connection
// still in step; anything else unexpected as an *errSurprise, and a
// failure of the connection as itself.
func readFlat(rd *respReader, spans []span) ([]span, error) {
	line, err := rd.readLine()
	if err != nil {
		return spans, err
	}
	switch line[0] {
	case '-':
		return spans, &replyError{text: string(line[1:]), server: true}
	case '*':
	default:
		return spans, &errSurprise{unexpected(line)}
	}
	n := parseLen(line[1:])
	if n < 0 { // a null array (-1) is nothing a read asks for, but well formed
		return spans, &errSurprise{unexpected(line)}
	}
	for n > 0 {
		// The elements already buffered are parsed in one tight loop;
		// the one cut by the buffer's end is read below.
		var k int
		spans, k = bufferedElems(rd, spans, n)
		if n -= k; n == 0 {
			break
		}
		n--
		line, err := rd.readLine()
		if err != nil {
			return spans, err
		}
		if line[0] != '$' {
			return spans, &errSurprise{unexpected(line)}
		}
		l := parseLen(line[1:])
		if l == -1 {
			spans = append(spans, span{n: -1})
			continue
		}
		if l < 0 || l > 1<<29 {
			return spans, &errSurprise{unexpected(line)}
		}
		if rd.pos+l+2 > maxArena {
			return spans, &errSurprise{errors.New("redis: read of more than 2 GiB")}
		}
		if err := rd.need(l + 2); err != nil {
			return spans, err
		}
		off := rd.pos
		if rd.buf[off+l] != '\r' || rd.buf[off+l+1] != '\n' {
			return spans, &errSurprise{unexpected(line)}
		}
		rd.pos += l + 2
		spans = append(spans, span{off: int32(off), n: int32(l)})
	}
	return spans, nil
}

// bufferedElems parses up to n elements of a flat reply that lie whole in
// rd's buffer, as readFlat does, appending their spans, and consumes them.
// It stops at the first element not whole in the buffer, or not a bulk
// string or null that it can take as it is (readFlat then reads it, or
// fails on it), and returns how many it took.
func bufferedElems(rd *respReader, spans []span, n int) ([]span, int) {
	b := rd.buf[:rd.end]
	at, k := rd.pos, 0
	// Indexes into b, not reslicing it, keep the loop to the checks the
	// format needs.
	for ; k < n && at+5 <= len(b) && b[at] == '$'; k++ {
		// "$<len>\r\n<bytes>\r\n" or "$-1\r\n".
		if b[at+1] == '-' {
			if b[at+2] != '1' || b[at+3] != '\r' || b[at+4] != '\n' {
				break
			}
			spans = append(spans, span{n: -1})
			at += 5
			continue
		}
		j, l := at+1, 0
		for ; j < len(b) && j <= at+10; j++ {
			d := b[j] - '0'
			if d > 9 {
				break
			}
			l = l*10 + int(d)
		}
		if j == at+1 || j+1 >= len(b) || b[j] != '\r' || b[j+1] != '\n' || l > 1<<29 || (j > at+2 && b[at+1] == '0') {
			break
		}
		body := j + 2
		end := body + l
		if end+2 > len(b) || b[end] != '\r' || b[end+1] != '\n' {
			break
		}
		spans = append(spans, span{off: int32(body), n: int32(l)})
		at = end + 2
	}
	rd.pos = at
	return spans, k
}

// exchange writes sc.out, cmds commands, on c and reads one flat reply per
// command into sc: sc.arena, sc.spans, sc.off (reply i's spans are
// sc.spans[off[i]:off[i+1]]) and sc.errs (error replies). The connection's
// deadline is ctx's, or the configured timeouts. It reports whether c can
// serve another read: every reply read, and its deadline not moved by
// ctx's end.
func (p *readPool) exchange(ctx context.Context, c *readConn, cmds int, sc *readScratch) (inStep bool, err error) {
	now := time.Now()
	wd, rdl := now.Add(p.cfg.WriteTimeout), now.Add(p.cfg.ReadTimeout)
	if d, ok := ctx.Deadline(); ok {
		wd, rdl = minTime(wd, d), minTime(rdl, d)
	}
	// Both deadlines are set before the write, in one call when they are
	// the same (the timeouts' defaults are), and before ctx's end can set
	// its own: none overwrites that one.
	if wd.Equal(rdl) {
		_ = c.nc.SetDeadline(rdl)
	} else {
		_ = c.nc.SetWriteDeadline(wd)
		_ = c.nc.SetReadDeadline(rdl)
	}
	// A context cancelled without a deadline (the client went away) ends
	// the exchange too; one that cannot be cancelled needs no watch.
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, func() { _ = c.nc.SetDeadline(time.Unix(1, 0)) })
		defer func() {
			if !stop() {
				// ctx ended: its deadline, set now or about to be, must
				// not meet the connection's next read; the error is
				// ctx's, not the i/o timeout it caused.
				inStep = false
				if err != nil {
					err = fmt.Errorf("%w (%v)", context.Cause(ctx), err)
				}
			}
		}()
	}
	if _, err := c.nc.Write(sc.out); err != nil {
		return false, err
	}
	// The replies are read into sc.arena, which the connection holds only
	// for this exchange.
	c.rd.reset(sc.arena)
	defer func() {
		sc.arena = c.rd.buf[:c.rd.end]
		if c.rd.pos != c.rd.end {
			// Bytes no command asked for: the connection is out of step.
			inStep = false
		}
		c.rd.reset(nil)
	}()
	sc.spans = sc.spans[:0]
	sc.off, sc.errs = append(sc.off[:0], 0), sc.errs[:0]
	var replyErr error
	for range cmds {
		var e error
		sc.spans, e = readFlat(&c.rd, sc.spans)
		if e != nil {
			// errors.AsType, unlike errors.As with a variable of the
			// loop's, allocates nothing per reply.
			re, ok := errors.AsType[*replyError](e)
			if !ok {
				return false, e
			}
			if !re.hasPrefix(codeWrongType) && replyErr == nil {
				replyErr = re
			}
		}
		sc.off = append(sc.off, len(sc.spans))
		sc.errs = append(sc.errs, e)
	}
	if replyErr != nil {
		return true, &errSurprise{replyErr}
	}
	return true, nil
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// roundTrip sends c.out's cmds commands and reads their replies into sc,
// retrying as go-redis does: after a network error or a timeout, up to
// MaxRetries times with jittered exponential backoff, on a new connection.
// A connection taken from the idle ones may have been closed by the server
// meanwhile; its failure is retried at once on a new one and not counted
// against MaxRetries. An *errSurprise asks the caller to read through
// go-redis instead.
func (p *readPool) roundTrip(ctx context.Context, cmds int, sc *readScratch) error {
	retries := 0
	for {
		c, reused, err := p.get(ctx)
		if err == nil {
			var inStep bool
			inStep, err = p.exchange(ctx, c, cmds, sc)
			p.put(c, inStep)
			if err == nil {
				return nil
			}
			if _, ok := errors.AsType[*errSurprise](err); ok {
				return err
			}
			if reused && ctx.Err() == nil && !isTimeout(err) {
				p.onRetry()
				continue // a connection the server closed while idle
			}
		}
		if errors.Is(err, errReadClosed) || ctx.Err() != nil || retries >= p.cfg.MaxRetries {
			return err
		}
		retries++
		p.onRetry()
		t := time.NewTimer(backoff(retries))
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// isTimeout reports whether err is a connection's deadline passing.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// backoff returns the jittered exponential wait before retry n (from 1),
// between minRetryBackoff and maxRetryBackoff, as go-redis waits.
func backoff(n int) time.Duration {
	d := minRetryBackoff << min(n-1, 16)
	if d > maxRetryBackoff || d <= 0 {
		d = maxRetryBackoff
	}
	return d/2 + rand.N(d/2+1)
}

// RawReads makes the round trips of a store's reads, on read connections
// of its own, and reads the replies without decoding their values: the
// floor under the store's reads, which cairn bench measures beside them.
type RawReads struct {
	p *readPool
}

// NewRawReads returns RawReads on cfg's server, configured as a store's
// read connections are. A cluster has no read connections: it is an
// error.
func NewRawReads(cfg Config) (*RawReads, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Clustered {
		return nil, errors.New("redis: a cluster is read through go-redis, without read connections")
	}
	return &RawReads{p: newReadPool(cfg, tlsConfig(cfg))}, nil
}

// Read sends, in one pipeline, a command reading each of keys (whole
// entity keys, see EntityKey): HGETALL when fields is empty, else HMGET of
// fields. It appends to found, for each key, whether its reply shows an
// entity: HGETALL's is not empty, HMGET's first value is not null. An
// error reply is an error.
func (r *RawReads) Read(ctx context.Context, keys, fields []string, found []bool) ([]bool, error) {
	sc := scratchPool.Get().(*readScratch)
	defer sc.release()
	sc.out = sc.out[:0]
	for _, k := range keys {
		if len(fields) == 0 {
			sc.out = appendCommand(sc.out, "hgetall", k)
			continue
		}
		sc.out = append(sc.out, '*')
		sc.out = strconv.AppendInt(sc.out, int64(2+len(fields)), 10)
		sc.out = append(sc.out, '\r', '\n')
		sc.out = appendBulk(sc.out, "hmget")
		sc.out = appendBulk(sc.out, k)
		for _, f := range fields {
			sc.out = appendBulk(sc.out, f)
		}
	}
	if err := r.p.roundTrip(ctx, len(keys), sc); err != nil {
		return found, err
	}
	for i := range keys {
		if err := sc.errs[i]; err != nil {
			return found, err
		}
		spans := sc.spans[sc.off[i]:sc.off[i+1]]
		found = append(found, len(spans) > 0 && (len(fields) == 0 || spans[0].n >= 0))
	}
	return found, nil
}

// Close closes the connections.
func (r *RawReads) Close() { r.p.close() }
