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
// With --scram-user NAME:PASSWORD (repeatable) the broker requires SASL and
// knows each such user as a SCRAM-SHA-512 superuser; with --tls-cert and
// --tls-key it accepts TLS connections only, presenting that certificate.
//
// Once it listens it writes one line, "listening 127.0.0.1:PORT", to
// standard output. SIGTERM or SIGINT closes it cleanly (state flushed) with
// exit status 0.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
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
		tlsCert    = flag.String("tls-cert", "", "PEM certificate to serve TLS with (with --tls-key); TLS only when set")
		tlsKey     = flag.String("tls-key", "", "PEM private key of --tls-cert")
		scramUsers userList
	)
	flag.Var(&scramUsers, "scram-user", "NAME:PASSWORD of a SCRAM-SHA-512 superuser; repeatable; SASL is required when set")
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
	if (*tlsCert == "") != (*tlsKey == "") {
		errs = append(errs, errors.New("--tls-cert and --tls-key go together"))
	}
	var tlsConfig *tls.Config
	if *tlsCert != "" && *tlsKey != "" {
		cert, err := tls.LoadX509KeyPair(*tlsCert, *tlsKey)
		if err != nil {
			errs = append(errs, fmt.Errorf("--tls-cert %s --tls-key %s: %w", *tlsCert, *tlsKey, err))
		} else {
			tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		}
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
	if len(scramUsers) > 0 {
		opts = append(opts, kfake.EnableSASL())
		for _, u := range scramUsers {
			opts = append(opts, kfake.Superuser("SCRAM-SHA-512", u.name, u.pass))
		}
	}
	if tlsConfig != nil {
		opts = append(opts, kfake.TLS(tlsConfig))
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

// userList is the value of the repeatable --scram-user flag.
type userList []struct{ name, pass string }

func (l *userList) String() string {
	names := make([]string, len(*l))
	for i, u := range *l {
		names[i] = u.name
	}
	return strings.Join(names, ",")
}

func (l *userList) Set(v string) error {
	name, pass, ok := strings.Cut(v, ":")
	if !ok || name == "" || pass == "" {
		return errors.New("want NAME:PASSWORD")
	}
	*l = append(*l, struct{ name, pass string }{name, pass})
	return nil
}
