package testserver

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

// roleStartTimeout bounds how long a cairn role may take to become ready.
const roleStartTimeout = 30 * time.Second

// Role is a process of the cairn binary running one role (serve, write,
// dev) with its HTTP endpoints on a free port of 127.0.0.1.
type Role struct {
	*Server
}

// StartRole starts `bin role --addr 127.0.0.1:PORT args...` and waits at
// most 30 seconds until GET /readyz answers 200. A restart keeps the
// address, the arguments and the environment.
//
// The process's environment is the test binary's without any CAIRN_* or
// DYNAMODB_* variable, followed by env ("NAME=value" each): a knob reaches
// the role only when the test names it.
func StartRole(t testing.TB, bin, role string, args []string, env []string) *Role {
	t.Helper()
	environment := environ([]string{"CAIRN_", "DYNAMODB_"}, env...)
	cmd := func(port int) Command {
		a := append([]string{role, "--addr", fmt.Sprintf("127.0.0.1:%d", port)}, args...)
		return Command{Name: "cairn-" + role, Path: bin, Args: a, Env: environment}
	}
	return &Role{Server: startServer(t, "cairn-"+role, cmd, pollReady(readyz), roleStartTimeout)}
}

// URL returns the role's base URL, such as http://127.0.0.1:41234.
func (r *Role) URL() string { return "http://" + r.Addr() }

// readyz returns nil once GET /readyz answers 200.
func readyz(addr string) error {
	c := &http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + addr + "/readyz")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /readyz: %s", resp.Status)
	}
	return nil
}
