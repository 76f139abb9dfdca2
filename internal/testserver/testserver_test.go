package testserver

import (
	"net/http"
	"os"
	"testing"
)

func TestMain(m *testing.M) { os.Exit(Run(m)) }

func TestMotoAnswers(t *testing.T) {
	ep := Moto(t)
	resp, err := http.Get(ep + "/")
	if err != nil {
		t.Fatalf("GET %s: %v", ep, err)
	}
	resp.Body.Close()
	if again := Moto(t); again != ep {
		t.Errorf("second Moto call gave %s, want the same server %s", again, ep)
	}
}

func TestRedisAnswers(t *testing.T) {
	addr := Redis(t)
	if err := redisSpec.ready(addr); err != nil {
		t.Fatalf("PING %s: %v", addr, err)
	}
	if again := Redis(t); again != addr {
		t.Errorf("second Redis call gave %s, want the same server %s", again, addr)
	}
}

func TestTailBufferKeepsTheEnd(t *testing.T) {
	b := &tailBuffer{max: 4}
	b.Write([]byte("abc"))
	b.Write([]byte("defg"))
	if got := b.String(); got != "defg" {
		t.Errorf("tail = %q, want %q", got, "defg")
	}
}

func TestMissingServerSkips(t *testing.T) {
	t.Setenv(EnvRequireServers, "")
	ls := &lazyServer{spec: spec{binary: "cairn-no-such-server", env: "CAIRN_TEST_NOTHING"}}
	var reached bool
	t.Run("uses missing server", func(t *testing.T) {
		ls.addr(t)
		reached = true
	})
	if reached {
		t.Fatal("test went on without its server")
	}
}
