// Package bloom keeps, in every query server, a Bloom filter of the entity
// keys present in the online store, per configured namespace, so that a
// query for an absent entity is answered without a store read.
//
// The filter must never produce a false negative: a key in the store must be
// in the filter of every query server that can be asked about it. Two parts
// give that guarantee (docs/bloom.md has the full argument):
//
//   - A Tracker, in each query server, builds its filters from a scan of the
//     store's keys plus the persistence topic, read from the writers'
//     committed offsets (everything before them is in the store before the
//     scan starts), and keeps following the topic. It records how far it has
//     read as the committed offsets of a consumer group of its own, which
//     doubles as a heartbeat.
//   - A Barrier, in each persistence writer, holds every batch until every
//     live tracker has read past it. A key therefore reaches every live
//     filter before it reaches the store. A tracker renews its lease only
//     while it keeps up with the topic, and answers "absent" only for half
//     a lease after a renewal; writers ignore a tracker whose lease stopped
//     or that has not read past their batch for a lease. So a dead,
//     partitioned or stuck query server can neither block writes for more
//     than a lease nor answer wrongly.
//
// Guard puts a Tracker in front of a store's reads, and compares the
// filter's answers with the store in debug mode.
package bloom
