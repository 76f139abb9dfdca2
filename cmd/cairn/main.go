// Command cairn is the online feature store: `cairn dev` runs everything on
// one machine; `cairn serve` (query servers) and `cairn write` (persistence
// writers) are the production roles; `cairn topics create` provisions the
// Kafka topics; `cairn config` prints every knob; `cairn bench` measures
// online queries against a store.
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

	"github.com/cairnfs/cairn/internal/config"
)

const usage = `cairn: an online feature store.

Usage:
  cairn dev            query server + persistence writer + embedded broker and store, one process
  cairn serve          query server (reads the online store, publishes uploads to Kafka)
  cairn write          persistence writer (consumes Kafka, writes the online store)
  cairn topics create  create the Kafka topics
  cairn config         print every configuration knob with its effective value
  cairn bench          measure online queries against a store, side by side with its floor

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
		return runServe(ctx, rest, env, stderr)
	case "write":
		return runWrite(ctx, rest, env, stderr)
	case "topics":
		if len(rest) == 0 || rest[0] != "create" {
			return errors.New(`usage: cairn topics create [flags]`)
		}
		return runTopicsCreate(ctx, rest[1:], env, stdout, stderr)
	case "config":
		return env.Print(stdout)
	case "bench":
		return runBench(ctx, rest, env, stdout, stderr)
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
	features string
	store    string
	brokers  string
	addr     string
	logLevel string
}

func (c *common) register(fs *flag.FlagSet, env *config.Env, withAddr bool) {
	fs.StringVar(&c.features, "features", env.String("CAIRN_FEATURES"), "feature registry YAML (CAIRN_FEATURES)")
	fs.StringVar(&c.store, "store", env.String("CAIRN_ONLINE_STORE"), "online store URI (CAIRN_ONLINE_STORE)")
	fs.StringVar(&c.brokers, "brokers", env.String("CAIRN_KAFKA_BROKERS"), "comma-separated Kafka brokers (CAIRN_KAFKA_BROKERS)")
	if withAddr {
		fs.StringVar(&c.addr, "addr", env.String("CAIRN_ADDR"), "HTTP listen address (CAIRN_ADDR)")
	}
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn, error")
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
