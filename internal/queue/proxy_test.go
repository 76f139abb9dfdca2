package queue

import (
	"net"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
)

// tcpProxy sits on the network between Kafka clients and an in-process
// kfake broker, which advertises the proxy's address as its own, so that
// every connection of a client goes through it. Tests hang it (it keeps
// connections open and forwards nothing, as with a broker stopped by
// SIGSTOP or a network partition) or cut it (it closes every connection and
// refuses new ones, as with a killed broker).
type tcpProxy struct {
	ln     net.Listener
	closed chan struct{}

	mu struct {
		sync.Mutex
		target string
		hung   bool
		resume chan struct{} // closed when the proxy stops hanging
		cut    bool
		conns  map[net.Conn]struct{}
	}
}

// proxiedCluster starts a one-broker kfake cluster behind a tcpProxy and
// returns the configuration of clients that reach it through the proxy.
func proxiedCluster(t *testing.T) (Config, *kfake.Cluster, *tcpProxy) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	px := &tcpProxy{ln: ln, closed: make(chan struct{})}
	px.mu.conns = map[net.Conn]struct{}{}
	go px.serve()
	t.Cleanup(px.close)
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.ListenFn(func(network, address string) (net.Listener, error) {
		bl, err := net.Listen(network, address)
		if err != nil {
			return nil, err
		}
		px.mu.Lock()
		px.mu.target = bl.Addr().String()
		px.mu.Unlock()
		return advertised{Listener: bl, addr: ln.Addr()}, nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cfg := Config{Brokers: c.ListenAddrs()}
	cfg.EnsureDefaults()
	return cfg, c, px
}

// advertised is a broker's listener that gives the proxy's address as its
// own, which kfake then advertises in metadata.
type advertised struct {
	net.Listener
	addr net.Addr
}

func (a advertised) Addr() net.Addr { return a.addr }

// Hang stops forwarding: connections stay open, bytes wait in the proxy.
func (px *tcpProxy) Hang() {
	px.mu.Lock()
	defer px.mu.Unlock()
	if !px.mu.hung {
		px.mu.hung, px.mu.resume = true, make(chan struct{})
	}
}

// Resume forwards again, the bytes held first.
func (px *tcpProxy) Resume() {
	px.mu.Lock()
	defer px.mu.Unlock()
	if px.mu.hung {
		px.mu.hung = false
		close(px.mu.resume)
	}
}

// Cut closes every connection and refuses new ones until Restore.
func (px *tcpProxy) Cut() {
	px.mu.Lock()
	defer px.mu.Unlock()
	px.mu.cut = true
	for c := range px.mu.conns {
		c.Close()
	}
}

// Restore accepts connections again after Cut.
func (px *tcpProxy) Restore() {
	px.mu.Lock()
	defer px.mu.Unlock()
	px.mu.cut = false
}

func (px *tcpProxy) close() {
	px.ln.Close()
	px.mu.Lock()
	defer px.mu.Unlock()
	select {
	case <-px.closed:
	default:
		close(px.closed)
	}
	for c := range px.mu.conns {
		c.Close()
	}
}

func (px *tcpProxy) serve() {
	for {
		client, err := px.ln.Accept()
		if err != nil {
			return
		}
		go px.forward(client)
	}
}

// forward connects client to the broker, unless the proxy is cut.
func (px *tcpProxy) forward(client net.Conn) {
	px.mu.Lock()
	target, cut := px.mu.target, px.mu.cut
	px.mu.Unlock()
	if cut {
		client.Close()
		return
	}
	broker, err := net.Dial("tcp", target)
	if err != nil {
		client.Close()
		return
	}
	if !px.track(client, broker) {
		return
	}
	go px.pipe(broker, client)
	px.pipe(client, broker)
}

// track registers a pair of connections, closing them if the proxy was
// cut or closed meanwhile.
func (px *tcpProxy) track(cs ...net.Conn) bool {
	px.mu.Lock()
	defer px.mu.Unlock()
	ok := !px.mu.cut
	select {
	case <-px.closed:
		ok = false
	default:
	}
	for _, c := range cs {
		if ok {
			px.mu.conns[c] = struct{}{}
		} else {
			c.Close()
		}
	}
	return ok
}

// pipe copies src to dst, holding each chunk while the proxy hangs.
func (px *tcpProxy) pipe(dst, src net.Conn) {
	defer func() {
		dst.Close()
		src.Close()
		px.mu.Lock()
		delete(px.mu.conns, dst)
		delete(px.mu.conns, src)
		px.mu.Unlock()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !px.wait() {
				return
			}
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// wait returns true once the proxy does not hang, false if it closes.
func (px *tcpProxy) wait() bool {
	px.mu.Lock()
	hung, resume := px.mu.hung, px.mu.resume
	px.mu.Unlock()
	if !hung {
		return true
	}
	select {
	case <-resume:
		return true
	case <-px.closed:
		return false
	}
}
