// Command kafkabroker runs a single-node Kafka-protocol broker (franz-go's
// kfake) in a process of its own, so that tests can kill it by its process
// id, hang it and restart it, as they would a real broker. It is built and
// started by testserver.StartKafka; it can also be run by hand for a local
// walk-through of the production topology:
//
//	go run ./internal/testserver/kafkabroker --dir ./kafka-data --port 9092
//
// The broker keeps its log and consumer-group offsets under --dir and
// fsyncs every produce before acknowledging it (kfake's DataDir and
// SyncWrites), so every record it acknowledged survives SIGKILL, and a
// restart on the same --port and --dir serves the same topics, records and
// committed offsets. Topics are not created automatically, as on MSK:
// create them first (cairn topics create).
//
// Once it listens it writes one line, "listening 127.0.0.1:PORT", to
// standard output. SIGTERM or SIGINT closes it cleanly (state flushed) with
// exit status 0.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "kafkabroker:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		dir        = flag.String("dir", "", "directory of the broker's log and group offsets (required)")
		port       = flag.Int("port", 0, "port to listen on, on 127.0.0.1 (0: any free port)")
		partitions = flag.Int("partitions", 4, "partitions of a topic created without a count")
		minSession = flag.Duration("group-min-session-timeout", 6*time.Second, "smallest session timeout a consumer group member may ask for")
	)
	flag.Parse()
	var errs []error
	if *dir == "" {
		errs = append(errs, errors.New("--dir is required"))
	}
	if *port < 0 || *port > 65535 {
		errs = append(errs, fmt.Errorf("--port %d: want 0 to 65535", *port))
	}
	if *partitions < 1 {
		errs = append(errs, fmt.Errorf("--partitions %d: want at least 1", *partitions))
	}
	if *minSession <= 0 {
		errs = append(errs, fmt.Errorf("--group-min-session-timeout %v: want a positive duration", *minSession))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.DataDir(filepath.Join(*dir, "kafka")),
		kfake.SyncWrites(),
		kfake.DefaultNumPartitions(*partitions),
		kfake.GroupMinSessionTimeout(*minSession),
	}
	if *port != 0 {
		opts = append(opts, kfake.Ports(*port))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return fmt.Errorf("start broker in %s: %w", *dir, err)
	}
	fmt.Printf("listening %s\n", c.ListenAddrs()[0])
	<-ctx.Done()
	c.Close()
	fmt.Println("stopped")
	return nil
}
