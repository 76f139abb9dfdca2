// Package sockio reads and writes TCP sockets without telling the Go
// runtime that a system call is under way.
//
// Go's network connections are non-blocking: a read or write system call
// returns at once, and the goroutine waits for the socket in the runtime's
// network poller, not in the kernel. The runtime still wraps every such
// call in its system-call bookkeeping (entersyscall/exitsyscall), and the
// first one made after the process went idle wakes the runtime's monitor
// thread (sysmon), which then polls every 20 µs while any goroutine runs.
// A query server answering small queries goes idle between most of them,
// so that each query woke a thread of its own for nothing: on two CPUs
// shared with the store and the load generator, that thread took CPU from
// them and from the query (docs/api.md, "The HTTP server").
//
// [Wrap] returns a connection whose Read and Write make the same system
// calls as Go's without that bookkeeping (syscall.RawSyscall), waiting for
// the socket through the connection's own [syscall.RawConn], so deadlines,
// Close and the network poller behave as for the connection wrapped. Only
// calls that cannot block go this way: the socket is non-blocking, and a
// call that would block returns EAGAIN and waits in the poller.
package sockio

import (
	"net"
	"syscall"
)

// Wrap returns c reading and writing through raw system calls when it is
// a TCP connection on a platform that supports it, and c itself otherwise.
func Wrap(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok || !supported {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	return &Conn{TCPConn: tc, rc: rc}
}

// Conn is a TCP connection whose Read and Write are raw system calls.
// Every other method is the TCP connection's.
type Conn struct {
	*net.TCPConn
	rc syscall.RawConn
}

// Listener wraps the connections a listener accepts with [Wrap].
type Listener struct {
	net.Listener
}

// Accept waits for the next connection and returns it wrapped.
func (l Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return Wrap(c), nil
}

// opError describes err as net's connections do.
func (c *Conn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
