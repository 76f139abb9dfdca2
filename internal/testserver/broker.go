package testserver

import (
	"errors"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// KafkaOptions configures a broker started by [StartKafka].
type KafkaOptions struct {
	// Partitions is the partition count of a topic created without one.
	// The default is 4.
	Partitions int
	// GroupMinSessionTimeout is the smallest session timeout a consumer
	// group member may ask for. The default is kfake's, 6 seconds.
	GroupMinSessionTimeout time.Duration
	// SCRAMUsers, when not empty, makes the broker require SASL and know
	// each user (name to password) as a SCRAM-SHA-512 superuser.
	SCRAMUsers map[string]string
	// TLSCertFile and TLSKeyFile, when set, make the broker accept TLS
	// connections only, presenting this PEM certificate and key.
	TLSCertFile, TLSKeyFile string
}

// Kafka is a single-node Kafka-protocol broker (kfake) in a process of its
// own, built from ./internal/testserver/kafkabroker. It fsyncs every produce
// before acknowledging it and keeps its state in a data directory of the
// test's, so a record it acknowledged survives [Server.Kill], and
// [Server.Restart] brings back the same topics, records and group offsets
// on the same address. Topics are not created automatically.
type Kafka struct {
	*Server
	dir string
}

// StartKafka builds the broker (once per test binary), starts it on a free
// port of 127.0.0.1 and waits until it listens. It is stopped when t's test
// is over.
func StartKafka(t testing.TB, opts KafkaOptions) *Kafka {
	t.Helper()
	if opts.Partitions == 0 {
		opts.Partitions = 4
	}
	bin := buildPkg(t, "internal/testserver/kafkabroker")
	k := &Kafka{dir: t.TempDir()}
	users := make([]string, 0, len(opts.SCRAMUsers))
	for name := range opts.SCRAMUsers {
		users = append(users, name)
	}
	sort.Strings(users)
	cmd := func(port int) Command {
		args := []string{"--dir", k.dir, "--port", strconv.Itoa(port), "--partitions", strconv.Itoa(opts.Partitions)}
		if opts.GroupMinSessionTimeout > 0 {
			args = append(args, "--group-min-session-timeout", opts.GroupMinSessionTimeout.String())
		}
		for _, name := range users {
			args = append(args, "--scram-user", name+":"+opts.SCRAMUsers[name])
		}
		if opts.TLSCertFile != "" || opts.TLSKeyFile != "" {
			args = append(args, "--tls-cert", opts.TLSCertFile, "--tls-key", opts.TLSKeyFile)
		}
		return Command{Name: "kafkabroker", Path: bin, Args: args}
	}
	k.Server = startServer(t, "kafkabroker", cmd, brokerReady, startTimeout)
	return k
}

// brokerReady waits for the broker's "listening ADDR" line.
func brokerReady(p *Process, addr string, timeout time.Duration) error {
	line, err := p.WaitForOutput("listening ", timeout)
	if err != nil {
		return err
	}
	if got := strings.TrimSpace(strings.TrimPrefix(line, "listening ")); got != addr {
		return errors.New("kafkabroker listens on " + got + ", want " + addr)
	}
	return nil
}

// Dir returns the broker's data directory.
func (k *Kafka) Dir() string { return k.dir }
