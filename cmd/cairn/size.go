package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/cairnfs/cairn/internal/config"
	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/sizing"
)

// sizeUsage explains `cairn size`; the flags follow it.
const sizeUsage = `Usage: cairn size --features FILE --qps N [flags]

Plans the capacity of a deployment: DynamoDB read and write units at steady
state and at peak, the capacity mode to choose and why, autoscaling floor and
ceiling, MSK storage per broker for the retention window, and the
terraform.tfvars of deploy/terraform's examples. Item sizes are those of
cairn's own DynamoDB items holding representative values of the registry's
features; docs/sizing.md states every rule and works three examples.

Every flag can also be set in a YAML file given with --from, keyed by the
flag's name without dashes (qps: 500, peak-qps: 1500, retention: 24h, ...);
flags given on the command line win over the file.

Flags:
`

// sizeFlags are the flags of `cairn size` besides the plan's options.
type sizeFlags struct {
	from, format string
	json, tfvars bool
}

// registerSizeFlags defines the flags of `cairn size` on fs, with o's
// values as their defaults.
func registerSizeFlags(fs *flag.FlagSet, o *sizing.Options, f *sizeFlags) {
	fs.StringVar(&f.from, "from", "", "YAML file of inputs, keyed by flag name; flags override it")
	fs.BoolVar(&f.json, "json", false, "print the plan as JSON, for scripts")
	fs.BoolVar(&f.tfvars, "tfvars", false, "print only the terraform.tfvars")
	fs.Float64Var(&o.QPS, "qps", o.QPS, "steady online queries per second")
	fs.Float64Var(&o.PeakQPS, "peak-qps", o.PeakQPS, "online queries per second at the daily peak (0: as --qps)")
	fs.Float64Var(&o.EntitiesPerQuery, "entities-per-query", o.EntitiesPerQuery, "entities each query reads")
	fs.Float64Var(&o.PersistFraction, "persist-fraction", o.PersistFraction, "fraction of queries whose results are persisted, 0 to 1")
	fs.Float64Var(&o.EntitiesPerPersistedQuery, "entities-per-persisted-query", o.EntitiesPerPersistedQuery, "entities a persisted query writes (0: as --entities-per-query)")
	fs.Float64Var(&o.UploadsPerSecond, "uploads-per-second", o.UploadsPerSecond, "upload requests per second, flat over the day")
	fs.Float64Var(&o.EntitiesPerUpload, "entities-per-upload", o.EntitiesPerUpload, "entities (rows) per upload")
	fs.BoolVar(&o.StrongReads, "strong-reads", o.StrongReads, "price reads as strongly consistent (cairn reads eventually consistent)")
	fs.BoolVar(&o.BulkTransactions, "bulk-transactions", o.BulkTransactions, "price bulk writes as transactions, 2× write units (DYNAMODB_CHECK_TS_FOR_BULK_WRITES)")
	fs.Func("retention", fmt.Sprintf("Kafka retention window, whole hours: 168h, 24h or 7d (default %s)", fmtHours(o.Retention)), func(s string) error {
		d, err := sizing.ParseRetention(s)
		if err != nil {
			return err
		}
		o.Retention = d
		return nil
	})
	fs.IntVar(&o.ReplicationFactor, "replication-factor", o.ReplicationFactor, "Kafka topics' replication factor")
	fs.IntVar(&o.BrokersCount, "brokers-count", o.BrokersCount, "number of MSK brokers")
	fs.StringVar(&o.Features, "features", o.Features, "feature registry YAML (CAIRN_FEATURES)")
	fs.StringVar(&o.Namespace, "namespace", o.Namespace, "namespace whose item is sized (default: the largest item)")
	fs.IntVar(&o.KeyBytes, "key-bytes", o.KeyBytes, "bytes of a representative string primary key")
	fs.IntVar(&o.StringBytes, "string-bytes", o.StringBytes, "bytes of a representative string, and of each string in a list or JSON object")
	fs.IntVar(&o.BytesBytes, "bytes-bytes", o.BytesBytes, "bytes of a representative bytes value")
	fs.IntVar(&o.ListLength, "list-length", o.ListLength, "elements of a representative list, and fields of a representative JSON object")
	fs.IntVar(&o.RecordSize, "record-size", o.RecordSize, "bytes each entity adds to the persistence topic (0: computed from cairn's record encoding)")
	fs.IntVar(&o.QueryServers, "query-servers", o.QueryServers, "query server processes, each sending one metrics record per interval")
	fs.IntVar(&o.Namespaces, "namespaces", o.Namespaces, "namespaces in each metrics record (0: the registry's count)")
	fs.DurationVar(&o.MetricsInterval, "metrics-interval", o.MetricsInterval, "query servers' metrics interval (CAIRN_METRICS_INTERVAL)")
	fs.Float64Var(&o.Headroom, "headroom", o.Headroom, "multiplier of the Kafka storage the retention window needs")
}

func fmtHours(d time.Duration) string { return fmt.Sprintf("%dh", int(d.Hours())) }

// runSize is `cairn size`. Inputs come from, lowest first: the defaults
// (--bulk-transactions, --features and --metrics-interval from their
// knobs), the --from file,
// the command line.
func runSize(args []string, env *config.Env, stdout, stderr io.Writer) error {
	defaults := sizing.DefaultOptions()
	defaults.BulkTransactions = env.Bool("DYNAMODB_CHECK_TS_FOR_BULK_WRITES")
	defaults.Features = env.String("CAIRN_FEATURES")
	defaults.MetricsInterval = env.Duration("CAIRN_METRICS_INTERVAL")
	if err := env.Err(); err != nil {
		return err
	}

	// A first pass finds --from; the second applies the command line over
	// the file.
	first := newFlagSet("size", io.Discard)
	var f sizeFlags
	scratch := defaults
	registerSizeFlags(first, &scratch, &f)
	opts := defaults
	if err := first.Parse(args); err == nil && f.from != "" {
		data, err := os.ReadFile(f.from)
		if err != nil {
			return fmt.Errorf("--from: %w", err)
		}
		if err := sizing.DecodeYAML(data, &opts); err != nil {
			return fmt.Errorf("--from %s: %w", f.from, err)
		}
	}
	fs := newFlagSet("size", stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), sizeUsage)
		fs.PrintDefaults()
	}
	registerSizeFlags(fs, &opts, &f)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("size: unexpected argument %q", fs.Arg(0))
	}
	if err := opts.Validate(); err != nil {
		return err
	}
	reg, err := feature.Load(opts.Features)
	if err != nil {
		return fmt.Errorf("--features: %w", err)
	}
	plan, err := sizing.Compute(opts, reg)
	if err != nil {
		return err
	}
	switch {
	case f.json:
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(plan)
	case f.tfvars:
		return plan.WriteTFVars(stdout)
	}
	return plan.WriteText(stdout)
}
