package sockio

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"
)

// pair returns the two ends of a loopback TCP connection, the accepted
// one wrapped by Listener.
func pair(t *testing.T) (raw net.Conn, peer *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := Listener{Listener: ln}.Accept()
		if err != nil {
			t.Error(err)
		}
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	raw = <-accepted
	if raw == nil {
		t.FailNow()
	}
	peer = c.(*net.TCPConn)
	t.Cleanup(func() { raw.Close(); peer.Close() })
	return raw, peer
}

func wantRaw(t *testing.T, c net.Conn) {
	t.Helper()
	if _, ok := c.(*Conn); ok != supported {
		t.Fatalf("Wrap gave %T on %s", c, runtime.GOOS)
	}
}

func TestWrapKeepsWhatItCannotWrap(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if got := Wrap(a); got != a {
		t.Fatalf("Wrap(net.Pipe end) = %T, want the connection itself", got)
	}
}

// TestLargeWritesAndReads sends 32 MiB each way, more than the sockets'
// buffers hold: writes and reads wait for the socket in the poller, and
// the bytes arrive whole and in order.
func TestLargeWritesAndReads(t *testing.T) {
	raw, peer := pair(t)
	wantRaw(t, raw)
	out := make([]byte, 32<<20)
	if _, err := rand.Read(out); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var got []byte
	var readErr error
	wg.Go(func() { got, readErr = io.ReadAll(io.LimitReader(peer, int64(len(out)))) })
	n, err := raw.Write(out)
	if err != nil || n != len(out) {
		t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(out))
	}
	wg.Wait()
	if readErr != nil || !bytes.Equal(got, out) {
		t.Fatalf("peer read %d bytes (%v), equal %v", len(got), readErr, bytes.Equal(got, out))
	}

	wg.Go(func() {
		if _, err := peer.Write(out); err != nil {
			t.Error(err)
		}
	})
	back := make([]byte, 0, len(out))
	buf := make([]byte, 64<<10)
	for len(back) < len(out) {
		n, err := raw.Read(buf)
		if err != nil {
			t.Fatalf("Read after %d bytes: %v", len(back), err)
		}
		back = append(back, buf[:n]...)
	}
	wg.Wait()
	if !bytes.Equal(back, out) {
		t.Fatal("bytes read differ from those written")
	}
	if n, err := raw.Read(nil); n != 0 || err != nil {
		t.Fatalf("Read(nil) = %d, %v; want 0, nil", n, err)
	}
	if n, err := raw.Write(nil); n != 0 || err != nil {
		t.Fatalf("Write(nil) = %d, %v; want 0, nil", n, err)
	}
}

// TestErrorsAreNets: deadlines, Close and the peer going away give the
// errors net's own connections give, so that callers' checks still work.
func TestErrorsAreNets(t *testing.T) {
	t.Run("read deadline", func(t *testing.T) {
		raw, _ := pair(t)
		raw.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		_, err := raw.Read(make([]byte, 10))
		var ne net.Error
		if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("Read past its deadline = %v; want a net.Error timing out, os.ErrDeadlineExceeded", err)
		}
		var op *net.OpError
		if !errors.As(err, &op) || op.Op != "read" {
			t.Fatalf("error %v is not a *net.OpError for read", err)
		}
	})
	t.Run("write deadline", func(t *testing.T) {
		raw, _ := pair(t) // the peer never reads: the buffers fill up
		raw.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
		n, err := raw.Write(make([]byte, 64<<20))
		if !errors.Is(err, os.ErrDeadlineExceeded) || n == 0 || n == 64<<20 {
			t.Fatalf("Write past its deadline = %d, %v; want some bytes written and os.ErrDeadlineExceeded", n, err)
		}
	})
	t.Run("close while reading", func(t *testing.T) {
		raw, _ := pair(t)
		done := make(chan error, 1)
		go func() { _, err := raw.Read(make([]byte, 10)); done <- err }()
		time.Sleep(20 * time.Millisecond)
		raw.Close()
		select {
		case err := <-done:
			if !errors.Is(err, net.ErrClosed) {
				t.Fatalf("Read on a closed connection = %v; want net.ErrClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Read did not return after Close")
		}
	})
	t.Run("peer closes", func(t *testing.T) {
		raw, peer := pair(t)
		peer.Write([]byte("last"))
		peer.Close()
		got, err := io.ReadAll(raw)
		if err != nil || string(got) != "last" {
			t.Fatalf("ReadAll = %q, %v; want \"last\", nil (io.EOF at the end)", got, err)
		}
		raw.SetWriteDeadline(time.Now().Add(5 * time.Second))
		var werr error
		for range 100 { // the first writes may land before the reset
			if _, werr = raw.Write(make([]byte, 1<<16)); werr != nil {
				break
			}
		}
		var se *os.SyscallError
		if !errors.As(werr, &se) || errors.Is(werr, os.ErrDeadlineExceeded) {
			t.Fatalf("Write to a closed peer = %v; want the system call's error", werr)
		}
	})
}
