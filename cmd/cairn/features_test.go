package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairnfs/cairn/internal/config"
	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/node"
	"github.com/cairnfs/cairn/internal/store"
	"github.com/cairnfs/cairn/internal/store/dynamo"
	"github.com/cairnfs/cairn/internal/testserver"
)

// featuresLock runs `cairn features lock args...` and returns its output.
func featuresLock(t *testing.T, env map[string]string, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), append([]string{"features", "lock"}, args...), config.FromMap(env), &out, &errOut)
	return out.String() + errOut.String(), err
}

// copyFeatures copies the example feature file into a directory of its own.
func copyFeatures(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../examples/features.yaml")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "features.yaml")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// `cairn features lock` writes features.lock beside the feature file with
// every feature, and running it again changes nothing; --check fails on a
// feature without an id, naming it.
func TestFeaturesLock(t *testing.T) {
	features := copyFeatures(t)
	lockPath := filepath.Join(filepath.Dir(features), "features.lock")
	if out, err := featuresLock(t, nil, "--features", features); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	first, err := os.ReadFile(lockPath)
	if err != nil {
		t.Fatal(err)
	}
	reg, _ := feature.Load(features)
	lock, err := dynamo.ParseLockFile(first)
	if err != nil {
		t.Fatal(err)
	}
	if err := lock.Check(node.LockedFQNs(reg)); err != nil {
		t.Fatal(err)
	}
	if out, err := featuresLock(t, map[string]string{"CAIRN_FEATURES": features}, "--check"); err != nil || !strings.Contains(out, "every feature") {
		t.Fatalf("--check: %v\n%s", err, out)
	}
	if out, err := featuresLock(t, nil, "--features", features); err != nil || !strings.Contains(out, "0 added") {
		t.Fatalf("second run: %v\n%s", err, out)
	}
	if again, _ := os.ReadFile(lockPath); !bytes.Equal(again, first) {
		t.Errorf("a second run changed the lock file:\n%s\n%s", first, again)
	}
	// A lock file lacking a feature fails --check, naming it.
	fqn := node.LockedFQNs(reg)[0]
	delete(lock.IDs, fqn)
	if err := lock.WriteFile(lockPath); err != nil {
		t.Fatal(err)
	}
	if out, err := featuresLock(t, nil, "--features", features, "--check"); err == nil || !strings.Contains(err.Error(), fqn) {
		t.Errorf("--check with %s missing: %v\n%s", fqn, err, out)
	}
}

// --from-store moves a table's run-time ids into the lock file, so that a
// store started with it reads every value already stored.
func TestFeaturesLockFromStore(t *testing.T) {
	features := copyFeatures(t)
	reg, err := feature.Load(features)
	if err != nil {
		t.Fatal(err)
	}
	uri := fmt.Sprintf("dynamodb:///cairn-lock-%d?region=us-east-1&endpoint=%s", time.Now().UnixNano(), testserver.Moto(t))
	cfg, err := dynamo.ParseURI(uri)
	if err != nil {
		t.Fatal(err)
	}
	cfg.CreateTableIfNotExists = true
	ctx := context.Background()
	s, err := dynamo.Open(ctx, cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ns := reg.Namespaces()[0]
	// The last feature of the namespace first: its id then differs from
	// the one a fresh lock file would give it.
	fqns := reg.FQNs()
	var f *feature.Feature
	for i := len(fqns) - 1; i >= 0 && f == nil; i-- {
		if g, _ := reg.Lookup(fqns[i]); g.Namespace == ns && g.Type.Kind == feature.KindInt {
			f = g
		}
	}
	if f == nil {
		t.Skip("no int feature in the example registry")
	}
	if err := s.Write(ctx, []store.EntityWrite{{Namespace: ns, Key: "m1", Values: []store.Value{{Feature: f, Value: int64(5), ObservedAt: time.Now()}}}}); err != nil {
		t.Fatal(err)
	}

	lockPath := filepath.Join(t.TempDir(), "features.lock")
	if out, err := featuresLock(t, nil, "--features", features, "--lock", lockPath, "--store", uri, "--from-store"); err != nil || !strings.Contains(out, "1 from the table") {
		t.Fatalf("--from-store: %v\n%s", err, out)
	}
	lock, err := dynamo.ReadLockFile(lockPath)
	if err != nil {
		t.Fatal(err)
	}
	if lock.IDs[f.FQN] != "1" {
		t.Fatalf("lock gives %s id %q, want the table's 1", f.FQN, lock.IDs[f.FQN])
	}
	cfg.FeatureIDs = lock
	locked, err := dynamo.Open(ctx, cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer locked.Close()
	rows, err := locked.Read(ctx, ns, []string{"m1"}, []*feature.Feature{f})
	if err != nil || !rows[0].Cells[0].Found || rows[0].Cells[0].Value != int64(5) {
		t.Fatalf("read through the lock file: %+v, %v", rows, err)
	}
}
