package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cairnfs/cairn/internal/config"
	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/node"
	"github.com/cairnfs/cairn/internal/store/dynamo"
)

const featuresLockUsage = `Usage: cairn features lock [flags]

Gives every feature of the feature file that has no short id yet the next
id in the lock file (features.lock beside the feature file unless
--lock or CAIRN_FEATURES_LOCK names another), and never changes or reuses
an id. Commit the lock file with the feature file; a DynamoDB store started
with CAIRN_FEATURES_LOCK takes ids only from it (docs/multi-region.md).

--from-store first merges in the mapping of the DynamoDB table the store URI
names, as the migration of a table whose ids were allocated at run time: a
feature holding different ids in the two is an error naming both.
--check changes nothing and fails if a feature has no id.

Flags:
`

// runFeaturesLock is `cairn features lock`.
func runFeaturesLock(ctx context.Context, args []string, env *config.Env, stdout, stderr io.Writer) error {
	fset := newFlagSet("features lock", stderr)
	fset.Usage = func() {
		fmt.Fprint(fset.Output(), featuresLockUsage)
		fset.PrintDefaults()
	}
	features := fset.String("features", env.String("CAIRN_FEATURES"), "feature registry YAML (CAIRN_FEATURES)")
	lockPath := fset.String("lock", env.String("CAIRN_FEATURES_LOCK"), "lock file (CAIRN_FEATURES_LOCK); default features.lock beside the feature file")
	storeURI := env.String("CAIRN_ONLINE_STORE")
	fset.Var(uriFlag{&storeURI}, "store", "online store URI, for --from-store (CAIRN_ONLINE_STORE)")
	fromStore := fset.Bool("from-store", false, "merge in the DynamoDB table's current mapping first")
	check := fset.Bool("check", false, "change nothing; fail if a feature has no id in the lock file")
	if err := fset.Parse(args); err != nil {
		return err
	}
	if fset.NArg() > 0 {
		return fmt.Errorf("features lock: unexpected argument %q", fset.Arg(0))
	}
	if *check && *fromStore {
		return errors.New("features lock: --check and --from-store exclude each other")
	}
	reg, err := feature.Load(*features)
	if err != nil {
		return fmt.Errorf("--features: %w", err)
	}
	path := *lockPath
	if path == "" {
		path = filepath.Join(filepath.Dir(*features), "features.lock")
	}
	lock, err := dynamo.ReadLockFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist) && !*check:
		lock = dynamo.NewLockFile()
	case err != nil:
		return err
	}
	fqns := node.LockedFQNs(reg)
	if *check {
		if err := lock.Check(fqns); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		fmt.Fprintf(stdout, "%s: every feature of %s has an id\n", path, *features)
		return nil
	}
	merged := 0
	if *fromStore {
		if merged, err = mergeFromStore(ctx, storeURI, lock); err != nil {
			return err
		}
	}
	added, err := lock.Add(fqns)
	if err != nil {
		return err
	}
	if err := lock.WriteFile(path); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: %d features; %d from the table, %d added", path, len(lock.IDs), merged, len(added))
	if len(added) > 0 {
		fmt.Fprintf(stdout, " (%s)", strings.Join(added, ", "))
	}
	fmt.Fprintf(stdout, "; next id %s\n", strconv.FormatInt(lock.Next, 36))
	return nil
}

// mergeFromStore merges the mapping of the DynamoDB table uri names into
// lock and returns how many of the table's features it holds.
func mergeFromStore(ctx context.Context, uri string, lock *dynamo.LockFile) (int, error) {
	if uri == "" {
		return 0, errors.New("--from-store: no store (--store or CAIRN_ONLINE_STORE): want dynamodb:///table?region=R")
	}
	// The URI's table, region and endpoint only: the table's mapping is
	// read as it is, without a lock file checked against it.
	cfg, err := dynamo.ParseURI(uri)
	if err != nil {
		return 0, fmt.Errorf("--from-store: %w", err)
	}
	s, err := dynamo.Open(ctx, cfg, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		return 0, fmt.Errorf("--from-store: %w", err)
	}
	defer s.Close()
	table, err := s.FeatureIDs(ctx)
	if err != nil {
		return 0, fmt.Errorf("--from-store: %w", err)
	}
	if err := lock.Merge(table); err != nil {
		return 0, fmt.Errorf("--from-store: %w", err)
	}
	return len(table.IDs), nil
}
