package main

import (
	"context"
	"fmt"
	"io"

	"github.com/cairnfs/cairn/internal/config"
	"github.com/cairnfs/cairn/internal/queue"
)

func runTopicsCreate(ctx context.Context, args []string, env *config.Env, stdout, stderr io.Writer) error {
	fs := newFlagSet("topics create", stderr)
	brokers := fs.String("brokers", env.String("CAIRN_KAFKA_BROKERS"), "comma-separated Kafka brokers (CAIRN_KAFKA_BROKERS)")
	partitions := fs.Int("partitions", env.Int("CAIRN_TOPIC_PARTITIONS"), "partitions per topic (CAIRN_TOPIC_PARTITIONS)")
	rf := fs.Int("replication-factor", env.Int("CAIRN_TOPIC_REPLICATION_FACTOR"), "replication factor (CAIRN_TOPIC_REPLICATION_FACTOR)")
	minISR := fs.Int("min-insync-replicas", env.Int("CAIRN_TOPIC_MIN_INSYNC_REPLICAS"), "min.insync.replicas (CAIRN_TOPIC_MIN_INSYNC_REPLICAS)")
	retention := fs.Duration("retention", env.Duration("CAIRN_TOPIC_RETENTION"), "retention, the replay window (CAIRN_TOPIC_RETENTION)")
	if err := env.Err(); err != nil {
		return err
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	qcfg, err := queueConfig(env, splitList(*brokers))
	if err != nil {
		return err
	}
	spec := queue.TopicSpec{Partitions: int32(*partitions), ReplicationFactor: int16(*rf), MinInsyncReplicas: *minISR, Retention: *retention}
	results, err := queue.CreateTopics(ctx, qcfg, spec)
	for _, r := range results {
		state := "created"
		if !r.Created {
			state = "exists, left unchanged"
		}
		fmt.Fprintf(stdout, "%s: %s\n", r.Topic, state)
	}
	return err
}
