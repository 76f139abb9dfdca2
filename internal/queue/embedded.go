package queue

import (
	"fmt"
	"path/filepath"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Broker is an in-process, single-node Kafka-protocol broker whose log and
// group offsets live on disk and are fsynced on every produce, so what it
// acknowledged survives a restart. It backs `cairn dev`.
type Broker struct {
	c *kfake.Cluster
}

// StartBroker starts a broker keeping its state under dir, listening on a
// free port of 127.0.0.1 (kfake binds loopback only). Topics are not created automatically.
func StartBroker(dir string) (*Broker, error) {
	c, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.DataDir(filepath.Join(dir, "kafka")),
		kfake.SyncWrites(),
	)
	if err != nil {
		return nil, fmt.Errorf("queue: start embedded broker in %s: %w", dir, err)
	}
	return &Broker{c: c}, nil
}

// Addrs returns the broker's listen addresses.
func (b *Broker) Addrs() []string { return b.c.ListenAddrs() }

// Close stops the broker, flushing its state to disk.
func (b *Broker) Close() { b.c.Close() }
