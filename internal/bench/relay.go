package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/cairnfs/cairn/internal/gcfloor"
	"github.com/cairnfs/cairn/internal/store/redis"
)

// With Options.Relay the measurement adds path (r), which makes the
// floor's exact read, path (b), from a process of its own reached over
// HTTP, as (a) reaches the query server:
//
//	(a) load generator → HTTP → query server → redis-server
//	(r) load generator → HTTP → relay        → redis-server
//	(b) load generator                       → redis-server
//
// The relay, `cairn bench-server --relay`, is as little as a process
// answering HTTP can be: a plain fasthttp server whose handler reads the
// keys of the request's body and reads them with the store's raw reads
// (redis.RawReads), as the floor does; no engine, no decoding of the
// replies, no JSON. So (r) − (b) is what the extra process hop costs
// (loopback HTTP, a second Go runtime's scheduler and collector, the
// CPUs shared by one more process), and (a) − (r) what cairn's own work
// in the query server adds on top of it.

// relayName is path (r)'s name.
const relayName = "(r)"

// relayVariant is the relay process of Options.Relay, reading the first
// ask features of the namespace (0: all of them) with read, the floor's
// round trip (redisFloor.describe).
func relayVariant(ask int, read string) serverVariant {
	return serverVariant{name: relayName, label: relayName + " relay: bare " + read + " through a process of its own over HTTP",
		args: []string{"--relay", "--ask", strconv.Itoa(ask)}}
}

// relaySets returns sets with, as each one's body, what the relay reads:
// its keys, one per line.
func relaySets(sets []requestSet) []requestSet {
	out := make([]requestSet, len(sets))
	for i, s := range sets {
		out[i] = requestSet{keys: s.keys, body: []byte(strings.Join(s.keys, "\n"))}
	}
	return out
}

// RelayConfig configures [RunRelay].
type RelayConfig struct {
	// Redis is the store's configuration, with its key prefix: the
	// relay reads the entities as the store names them. It must name a
	// single server (not a cluster), whose reads are raw. Required.
	Redis redis.Config
	// Features is the number of features of namespace [Namespace], as
	// declared by [Registry]. Default: none, required (1 or more).
	Features int
	// Ask is the number of features each read asks for, the first of the
	// namespace; 0 asks for all of them (HGETALL, else HMGET of their
	// ids). Default: 0.
	Ask int
	// GCHeapFloor is the floor under the collector's heap goal, in bytes,
	// kept as the query server keeps it (package gcfloor;
	// CAIRN_GC_HEAP_FLOOR_MIB), so that the relay's collector runs as
	// (a)'s server's does. Default: 0, none.
	GCHeapFloor uint64
}

// relay answers path (r)'s requests with the floor's reads.
type relay struct {
	fl *redisFloor
	// bufs holds the keys and found flags of a request, reused.
	bufs sync.Pool
}

// relayBufs is one request's scratch.
type relayBufs struct {
	keys  []string
	found []bool
}

// relayTimeout bounds the store's read of one request.
const relayTimeout = 10 * time.Second

// newRelay connects to the store as the floor does.
func newRelay(ctx context.Context, cfg RelayConfig) (*relay, error) {
	reg, err := Registry(cfg.Features)
	if err != nil {
		return nil, err
	}
	ns, _ := reg.Namespace(Namespace)
	feats := ns.Features[1:] // the primary key first
	if cfg.Ask < 0 || cfg.Ask > len(feats) {
		return nil, fmt.Errorf("bench: relay: --ask %d: want 0 (all) to --features (%d)", cfg.Ask, len(feats))
	}
	if cfg.Ask > 0 {
		feats = feats[:cfg.Ask]
	}
	if cfg.Redis.Clustered {
		return nil, errors.New("bench: relay: the store is a Redis cluster, read through go-redis: want a single server, read with the store's raw reads")
	}
	fl, err := newRedisFloor(ctx, cfg.Redis, ns, feats)
	if err != nil {
		return nil, err
	}
	return &relay{fl: fl}, nil
}

func (r *relay) close() { r.fl.close() }

// splitKeys appends to keys the lines of body, the keys of one request;
// empty lines are skipped.
func splitKeys(keys []string, body []byte) []string {
	for len(body) > 0 {
		line, rest, _ := bytes.Cut(body, []byte{'\n'})
		if len(line) > 0 {
			keys = append(keys, string(line))
		}
		body = rest
	}
	return keys
}

// serve is the relay's handler: whatever the method and path, it reads
// the entities of the body's keys, one per line, with the floor's reads,
// and answers 200 with {"errors":[]} when every one was found, else 500.
func (r *relay) serve(rc *fasthttp.RequestCtx) {
	p, _ := r.bufs.Get().(*relayBufs)
	if p == nil {
		p = &relayBufs{}
	}
	defer r.bufs.Put(p)
	p.keys = p.keys[:0]
	for _, k := range splitKeys(p.keys, rc.PostBody()) {
		p.keys = append(p.keys, r.fl.entityKey(k))
	}
	if len(p.keys) == 0 {
		rc.Error("relay: no keys in the body: want one entity key per line", fasthttp.StatusBadRequest)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), relayTimeout)
	defer cancel()
	found, err := r.fl.raw.Read(ctx, p.keys, r.fl.strFields, p.found[:0])
	p.found = found
	if err != nil {
		rc.Error("relay: read: "+err.Error(), fasthttp.StatusInternalServerError)
		return
	}
	for i, ok := range found {
		if !ok {
			rc.Error(fmt.Sprintf("relay: no entity at key %q", p.keys[i]), fasthttp.StatusInternalServerError)
			return
		}
	}
	rc.SetContentType("application/json")
	rc.SetBodyString(`{"errors":[]}`)
}

// RunRelay is `cairn bench-server --relay`, the process of path (r): it
// serves the relay on a loopback port, announces its address on stdout
// ([Announce]), answers the parent's requests for runtime statistics
// ([ServeParent]) and returns once stdin closes or ctx ends, having
// stopped serving.
func RunRelay(ctx context.Context, cfg RelayConfig, stdin io.Reader, stdout io.Writer) error {
	r, err := newRelay(ctx, cfg)
	if err != nil {
		return err
	}
	defer r.close()
	defer gcfloor.Start(cfg.GCHeapFloor, nil).Stop()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("bench: relay: %w", err)
	}
	srv := r.server()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	err = Announce(stdout, ln.Addr().String())
	if err == nil {
		err = ServeParent(ctx, stdin, stdout)
		if ctx.Err() != nil {
			err = nil // interrupted
		}
	}
	return errors.Join(err, srv.Shutdown(), <-served)
}

// server returns the relay's HTTP server: fasthttp's defaults, but
// for a name and no Date header, which the load generator does not read.
func (r *relay) server() *fasthttp.Server {
	return &fasthttp.Server{Handler: r.serve, Name: "cairn-bench-relay", NoDefaultDate: true}
}
