package testserver

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// builds holds the binaries built by this test binary, each built once.
var builds struct {
	sync.Mutex
	dir  string               // temporary directory, removed by Run
	done map[string]*builtPkg // by package path relative to the module root
}

type builtPkg struct {
	once sync.Once
	path string
	err  error
}

// BuildCairn builds ./cmd/cairn once per test binary and returns the path of
// the binary. It is built without the race detector, whatever the test
// binary runs with, so that processes of it start and run at full speed.
func BuildCairn(t testing.TB) string {
	t.Helper()
	return buildPkg(t, "cmd/cairn")
}

// buildPkg builds the main package at pkg (relative to the module root) once
// per test binary and returns the binary's path.
func buildPkg(t testing.TB, pkg string) string {
	t.Helper()
	if !running.Load() {
		t.Fatalf("testserver: building %s needs the package's TestMain to call os.Exit(testserver.Run(m))", pkg)
	}
	builds.Lock()
	if builds.done == nil {
		builds.done = make(map[string]*builtPkg)
	}
	b := builds.done[pkg]
	if b == nil {
		b = &builtPkg{}
		builds.done[pkg] = b
	}
	builds.Unlock()
	b.once.Do(func() { b.path, b.err = goBuild(pkg) })
	if b.err != nil {
		t.Fatalf("testserver: %v", b.err)
	}
	return b.path
}

func goBuild(pkg string) (string, error) {
	goBin := goCommand()
	root, err := moduleRoot(goBin)
	if err != nil {
		return "", err
	}
	builds.Lock()
	if builds.dir == "" {
		builds.dir, err = os.MkdirTemp("", "cairn-testbin-")
	}
	dir := builds.dir
	builds.Unlock()
	if err != nil {
		return "", fmt.Errorf("build %s: %w", pkg, err)
	}
	out := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command(goBin, "build", "-o", out, "./"+pkg)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stdout = &stderr
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build ./%s: %w\n%s", pkg, err, stderr.String())
	}
	if d := time.Since(start); d > 30*time.Second {
		fmt.Fprintf(os.Stderr, "testserver: go build ./%s took %v\n", pkg, d.Round(time.Second))
	}
	return out, nil
}

// moduleRoot returns the directory of the go.mod of the module under test.
func moduleRoot(goBin string) (string, error) {
	out, err := exec.Command(goBin, "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("go env GOMOD: not inside a module")
	}
	return filepath.Dir(gomod), nil
}

// removeBuilds removes the binaries built by this test binary.
func removeBuilds() error {
	builds.Lock()
	defer builds.Unlock()
	if builds.dir == "" {
		return nil
	}
	err := os.RemoveAll(builds.dir)
	builds.dir = ""
	return err
}

// ModuleRoot returns the directory holding the go.mod of the module under
// test, for tests that read its files (examples/features.yaml).
func ModuleRoot(t testing.TB) string {
	t.Helper()
	root, err := moduleRoot(goCommand())
	if err != nil {
		t.Fatalf("testserver: %v", err)
	}
	return root
}

// goCommand returns the go command: the one on PATH, else the toolchain's
// that built this binary.
func goCommand() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}
