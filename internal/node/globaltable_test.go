package node

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/cairnfs/cairn/internal/config"
	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/store/dynamo"
	"github.com/cairnfs/cairn/internal/writer"
)

// writeLock writes a lock file holding fqns and returns its path.
func writeLock(t *testing.T, fqns []string) string {
	t.Helper()
	l := dynamo.NewLockFile()
	if _, err := l.Add(fqns); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "features.lock")
	if err := l.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	return path
}

// The multi-region knobs reach the store and the writer, and what cannot
// work is refused at start, naming the knob.
func TestGlobalTableKnobs(t *testing.T) {
	reg, err := feature.Load(features)
	if err != nil {
		t.Fatal(err)
	}
	all := LockedFQNs(reg)
	uri := "dynamodb:///features?region=us-east-1"
	lock := writeLock(t, all)

	cfg, err := Load(Write, config.FromMap(map[string]string{
		"DYNAMODB_GLOBAL_TABLE_REGIONS": "us-east-1, us-west-2",
		"CAIRN_FEATURES_LOCK":           lock,
		"CAIRN_WRITER_STORE_WRITES":     "standby",
	}), flagsFor(uri))
	if err != nil {
		t.Fatal(err)
	}
	d := cfg.Store.Dynamo
	if len(d.GlobalTableRegions) != 2 || d.GlobalTableRegions[1] != "us-west-2" || d.FeatureIDs == nil || len(d.FeatureIDs.IDs) != len(all) {
		t.Errorf("dynamo config: regions %v, lock %v", d.GlobalTableRegions, d.FeatureIDs)
	}
	if cfg.Writer.StoreWrites != writer.StoreWritesStandby {
		t.Errorf("writer store writes %q, want standby", cfg.Writer.StoreWrites)
	}
	if cfg, err := Load(Write, config.FromMap(nil), flagsFor(uri)); err != nil || cfg.Writer.StoreWrites != writer.StoreWritesActive {
		t.Errorf("default store writes: %v, %v; want active", cfg.Writer.StoreWrites, err)
	}

	// A global table without a lock file.
	_, err = Load(Write, config.FromMap(map[string]string{"DYNAMODB_GLOBAL_TABLE_REGIONS": "us-east-1,us-west-2"}), flagsFor(uri))
	checkOnce(t, err, "CAIRN_FEATURES_LOCK")
	// A registry feature missing from the lock file is named.
	_, err = Load(Serve, config.FromMap(map[string]string{"CAIRN_FEATURES_LOCK": writeLock(t, all[1:]), "CAIRN_API_AUTH": "none"}), flagsFor(uri))
	checkOnce(t, err, all[0]+" have no id in the feature lock file")
	// A lock file that does not parse names its line.
	_, err = Load(Write, config.FromMap(map[string]string{"CAIRN_FEATURES_LOCK": filepath.Join(t.TempDir(), "none")}), flagsFor(uri))
	checkOnce(t, err, "CAIRN_FEATURES_LOCK")
	// Standby without a global table, or with Redis.
	_, err = Load(Write, config.FromMap(map[string]string{"CAIRN_WRITER_STORE_WRITES": "standby"}), flagsFor("redis://127.0.0.1:6379/0"))
	checkOnce(t, err, "CAIRN_WRITER_STORE_WRITES=standby: only the writers of a DynamoDB global table's passive region")
	_, err = Load(Write, config.FromMap(map[string]string{"CAIRN_WRITER_STORE_WRITES": "passive"}), flagsFor(uri))
	checkOnce(t, err, `store writes "passive" (CAIRN_WRITER_STORE_WRITES)`)
}

// With a lock file, a reloaded feature file naming a feature the lock file
// lacks is refused (the writer keeps its features and pauses at records of
// the new one) rather than handed to the writer, whose every store write
// of it would fail.
func TestReloadRefusesFeatureWithoutID(t *testing.T) {
	reg, err := feature.Load(features)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(Write, config.FromMap(map[string]string{"CAIRN_FEATURES_LOCK": writeLock(t, LockedFQNs(reg))}),
		flagsFor("dynamodb:///features?region=us-east-1"))
	if err != nil {
		t.Fatal(err)
	}
	check := cfg.featureIDsCheck()
	if check == nil {
		t.Fatal("no check with a lock file")
	}
	grown := filepath.Join(t.TempDir(), "features.yaml")
	if err := os.WriteFile(grown, []byte(`
namespaces:
  - name: user
    primary_key: id
    features: {id: string, brand_new: int}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	set := 0
	reloadFeatures(grown, check, func(*feature.Registry) { set++ }, slog.New(slog.DiscardHandler))
	reloadFeatures(features, check, func(*feature.Registry) { set += 10 }, slog.New(slog.DiscardHandler))
	if set != 10 {
		t.Errorf("set called %d (×1 for the refused file, ×10 for the locked one); want only the locked one", set)
	}
	if c, _ := Load(Write, config.FromMap(nil), flagsFor("dynamodb:///features?region=us-east-1")); c.featureIDsCheck() != nil {
		t.Error("a check without a lock file")
	}
}
