// Command cairn is the online feature store: `cairn dev` runs everything on
// one machine; `cairn serve` (query servers) and `cairn write` (persistence
// writers) are the production roles; `cairn topics create` provisions the
// Kafka topics; `cairn status` shows the state of a deployment; `cairn
// config` prints and checks every knob; `cairn bench` measures online
// queries against a store; `cairn size` plans the capacity of DynamoDB and
// MSK for a workload.
//
// This package parses flags and prints help; what a process is and runs is
// package node's.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/cairnfs/cairn/internal/auth"
	"github.com/cairnfs/cairn/internal/config"
	"github.com/cairnfs/cairn/internal/node"
	"github.com/cairnfs/cairn/internal/queue"
)

const usage = `cairn: an online feature store.

Usage:
  cairn dev            query server + persistence writer + embedded broker and store, one process
  cairn serve          query server (reads the online store, publishes uploads to Kafka)
  cairn write          persistence writer (consumes Kafka, writes the online store)
  cairn topics create  create the Kafka topics, or bring them to the requested settings
  cairn status         writer group and lag, dead letters, topic settings, store reachability, last minute's rollup
  cairn failover kafka switch the active Kafka cluster of running processes (--to secondary --targets HOST:PORT,...)
  cairn config         print every configuration knob with its effective value, and check them all
  cairn keys new       make an API key: print its token once and its line for CAIRN_API_KEYS_FILE
  cairn features lock  give new features their short ids in the committed lock file (features.lock)
  cairn bench          measure online queries against a store, side by side with its floor
  cairn size           plan DynamoDB capacity, MSK storage and the terraform.tfvars for a workload

Run "cairn COMMAND -h" for a command's flags. Every flag has an environment
variable (see "cairn config"); a flag given on the command line wins.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], config.FromOS(), os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "cairn:", err)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, env *config.Env, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "dev":
		return runDev(ctx, rest, env, stderr)
	case "serve":
		return runRole(ctx, node.Serve, rest, env, stderr)
	case "write":
		return runRole(ctx, node.Write, rest, env, stderr)
	case "topics":
		if len(rest) == 0 || rest[0] != "create" {
			return errors.New(`usage: cairn topics create [flags]`)
		}
		return runTopicsCreate(ctx, rest[1:], env, stdout, stderr)
	case "status":
		return runStatus(ctx, rest, env, stdout, stderr)
	case "failover":
		return runFailover(ctx, rest, env, stdout, stderr)
	case "config":
		return runConfig(env, stdout)
	case "keys":
		if len(rest) == 0 || rest[0] != "new" {
			return errors.New(`usage: cairn keys new --name NAME --scopes query,upload,admin`)
		}
		return runKeysNew(rest[1:], stdout, stderr)
	case "features":
		if len(rest) == 0 || rest[0] != "lock" {
			return errors.New(`usage: cairn features lock [--from-store] [--check] [flags]`)
		}
		return runFeaturesLock(ctx, rest[1:], env, stdout, stderr)
	case "bench":
		return runBench(ctx, rest, env, stdout, stderr)
	case "size":
		return runSize(rest, env, stdout, stderr)
	case "bench-server":
		return runBenchServer(ctx, rest, env, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
}

// common holds the flags every long-running command shares.
type common struct {
	flags    node.Flags
	logLevel string
}

func (c *common) register(fs *flag.FlagSet, env *config.Env) {
	fs.StringVar(&c.flags.Features, "features", env.String("CAIRN_FEATURES"), "feature registry YAML (CAIRN_FEATURES)")
	c.flags.Store = env.String("CAIRN_ONLINE_STORE")
	fs.Var(uriFlag{&c.flags.Store}, "store", "online store URI (CAIRN_ONLINE_STORE)")
	fs.StringVar(&c.flags.Brokers, "brokers", env.String("CAIRN_KAFKA_BROKERS"), "comma-separated Kafka brokers (CAIRN_KAFKA_BROKERS)")
	fs.StringVar(&c.flags.Addr, "addr", env.String("CAIRN_ADDR"), "HTTP listen address: the query API, or the writer's health and metrics (CAIRN_ADDR)")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn, error")
}

// uriFlag is a flag holding a URI that may carry a password: help shows
// its default with the password masked.
type uriFlag struct{ s *string }

func (f uriFlag) String() string {
	if f.s == nil {
		return ""
	}
	return config.RedactURI(*f.s)
}

func (f uriFlag) Set(v string) error { *f.s = v; return nil }

func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("cairn "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

// runRole is `cairn serve` and `cairn write`.
func runRole(ctx context.Context, role node.Role, args []string, env *config.Env, stderr io.Writer) error {
	fs := newFlagSet(role.String(), stderr)
	var c common
	c.register(fs, env)
	rollups := true
	if role == node.Write {
		fs.BoolVar(&rollups, "metrics", true, "run the metrics consumer, which rolls query metrics up per minute into the online store")
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	c.flags.NoMetrics = !rollups
	log, err := newLogger(stderr, c.logLevel)
	if err != nil {
		return err
	}
	cfg, err := node.Load(role, env, c.flags)
	if err != nil {
		return err
	}
	return node.Run(ctx, cfg, node.Options{Log: log})
}

// runDev runs the whole path in one process: an embedded Kafka-protocol
// broker and an embedded store under --data-dir, the query server and the
// persistence writer. --store and --brokers swap in real ones.
func runDev(ctx context.Context, args []string, env *config.Env, stderr io.Writer) error {
	fs := newFlagSet("dev", stderr)
	var c common
	c.register(fs, env)
	fs.StringVar(&c.flags.DataDir, "data-dir", env.String("CAIRN_DATA_DIR"), "directory of the embedded broker and store (CAIRN_DATA_DIR)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log, err := newLogger(stderr, c.logLevel)
	if err != nil {
		return err
	}
	cfg, err := node.Load(node.Dev, env, c.flags)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	authn := "no authentication"
	if cfg.Auth.KeysFile != "" {
		authn = "API keys from " + cfg.Auth.KeysFile
	}
	scheme := "http"
	if cfg.TLS.Enabled() {
		scheme = "https"
	}
	return node.Run(ctx, cfg, node.Options{Log: log, OnListen: func(addr string) {
		fmt.Fprintf(stderr, "\ncairn dev is ready: %s://%s  (%s; upload: POST /v1/upload_features, query: POST /v1/query/online; Ctrl-C stops)\n\n", scheme, addr, authn)
	}})
}

// runConfig is `cairn config`: every knob with its effective value, then
// every problem with any of them, whatever the store; non-zero exit if any.
func runConfig(env *config.Env, stdout io.Writer) error {
	_, err := node.Load(node.Check, env, node.Flags{Store: env.String("CAIRN_ONLINE_STORE"), Brokers: env.String("CAIRN_KAFKA_BROKERS"),
		Features: env.String("CAIRN_FEATURES"), Addr: env.String("CAIRN_ADDR"), DataDir: env.String("CAIRN_DATA_DIR")})
	if perr := env.Print(stdout); perr != nil {
		return perr
	}
	if err != nil {
		return fmt.Errorf("invalid configuration:\n%w", err)
	}
	return nil
}

// runTopicsCreate is `cairn topics create`: it creates the missing topics
// and brings the others to the requested settings, one line per change.
func runTopicsCreate(ctx context.Context, args []string, env *config.Env, stdout, stderr io.Writer) error {
	fs := newFlagSet("topics create", stderr)
	var f node.Flags
	fs.StringVar(&f.Brokers, "brokers", env.String("CAIRN_KAFKA_BROKERS"), "comma-separated Kafka brokers (CAIRN_KAFKA_BROKERS)")
	partitions := fs.Int("partitions", env.Int("CAIRN_TOPIC_PARTITIONS"), "partitions per topic (CAIRN_TOPIC_PARTITIONS)")
	rf := fs.Int("replication-factor", env.Int("CAIRN_TOPIC_REPLICATION_FACTOR"), "replication factor (CAIRN_TOPIC_REPLICATION_FACTOR)")
	minISR := fs.Int("min-insync-replicas", env.Int("CAIRN_TOPIC_MIN_INSYNC_REPLICAS"), "min.insync.replicas (CAIRN_TOPIC_MIN_INSYNC_REPLICAS)")
	retention := fs.Duration("retention", env.Duration("CAIRN_TOPIC_RETENTION"), "retention, the replay window (CAIRN_TOPIC_RETENTION)")
	var opts queue.ReconcileOptions
	fs.BoolVar(&opts.DryRun, "dry-run", false, "print what would change, and change nothing")
	fs.BoolVar(&opts.AddPartitions, "add-partitions", false, "add partitions to topics with fewer than --partitions (keys move to other partitions)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	f.Topics.Partitions, f.Topics.ReplicationFactor = int32(*partitions), int16(*rf)
	f.Topics.MinInsyncReplicas, f.Topics.Retention = *minISR, *retention
	cfg, err := node.Load(node.Topics, env, f)
	if err != nil {
		return err
	}
	changes, err := node.CreateTopics(ctx, cfg, opts)
	acted, moved := false, false
	for _, c := range changes {
		fmt.Fprintln(stdout, c)
		acted = acted || c.Action()
		moved = moved || c.Kind == queue.AddPartitions && (c.Applied || opts.DryRun)
	}
	if moved {
		fmt.Fprintln(stderr, "warning:", queue.AddPartitionsWarning)
	}
	if err == nil && !acted {
		fmt.Fprintln(stdout, "nothing to change: the topics have the requested settings")
	}
	return err
}

// runKeysNew is `cairn keys new`: a fresh token, printed once, and the
// entry holding its hash.
func runKeysNew(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("keys new", stderr)
	name := fs.String("name", "", "the key's name, as metrics and logs show it (required)")
	scopes := fs.String("scopes", "", "comma-separated scopes among query, upload, admin (required)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	token, entry, err := auth.NewKey(*name, auth.ParseScopes(*scopes))
	if err != nil {
		return fmt.Errorf("keys new: %w", err)
	}
	fmt.Fprintf(stdout, "Token (shown this once; give it to the client, cairn keeps only its hash):\n\n  %s\n\n", token)
	fmt.Fprintf(stdout, "Add under \"keys:\" in CAIRN_API_KEYS_FILE, then send SIGHUP to each cairn serve:\n\n")
	for _, line := range strings.SplitAfter(entry.YAML(), "\n") {
		if line != "" {
			fmt.Fprint(stdout, "  "+line)
		}
	}
	return nil
}
