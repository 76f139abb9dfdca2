// Package redis is the Valkey/Redis online store: one hash per entity,
// fields keyed by short feature ids, values in the compact binary codec of
// package feature, written newest-wins per feature by a Lua script that
// runs atomically in the server, read with one pipelined round trip.
// Standalone servers and Redis Cluster are both supported; Valkey speaks
// the same protocol.
//
// # Keys
//
// Every key starts with a prefix (Config.KeyPrefix, default "cairn:"):
//
//	cairn:ids           the feature-id mapping, a hash
//	cairn:{user:u1}     the entity with key u1 in namespace user, a hash
//	cairn:{user:u1}:b:f   the buckets of its windowed feature f, a hash
//	cairn:{user:u1}:be:f  their expiry index, a sorted set
//
// An entity key is the namespace and the primary key, separated by a colon
// and wrapped in braces. Namespace names have no colon, so user "_xk" and
// user_x "k" are different keys; the primary key is kept byte for byte (it
// may hold any byte, NUL included). The braces are Redis Cluster's hash
// tag: the slot is computed from the text between the first { and the
// first } after it, so all keys ever stored for one entity share a slot.
//
// # Feature ids
//
// The mapping hash holds, for each feature ever written, its FQN and its
// short id, the base-36 text of a number (1, 2, ..., z, 10, ...); and
//
//	#last     the last number handed out
//	#gen      the mapping's generation
//	#layout   the layout version, "1"
//
// Ids are assigned by a script (ids.lua) that runs atomically in the
// server: an FQN without an id gets the next number of #last, which only
// grows, so an FQN never has two ids and no id is handed out twice. The
// mapping is loaded whole at Open; a writer meeting a feature without a
// cached id runs the script; a reader never assigns ids: a feature without
// one is looked up in the read's own pipeline and, when found, read again.
//
// The generation guards against a server that loses the mapping (a restart
// without persistence, or a failover to a replica that missed the latest
// writes): ids handed out again from 1 must never be read with the meaning
// they had before. The generation is the server's clock in milliseconds,
// base 36, when the mapping was created (at least one more than the
// newest generation the creating process knew). Every entity records the
// generation it was written under; an entity of an older generation than
// the mapping's is answered as absent and replaced whole by the next write,
// and a client that meets a newer one reloads the mapping. Each Write also
// checks the generation in its pipeline and, if it changed, writes again
// under the new one. Losing the mapping means losing the entities written
// with it; cairn_redis_mapping_generation_changes_total counts it.
//
// # Entities
//
// An entity's hash has one field per feature written, named by the
// feature's id, and the field "0" (never an id), the generation it was
// written under. A feature's field is
//
//	8 bytes    observed-at: microseconds since the Unix epoch, big-endian,
//	           with the sign bit flipped, so that the bytes sort as the
//	           times do
//	the rest   the value in the codec of package feature (a tag byte, then
//	           the payload); an explicit null is the single byte 0
//
// Keeping the observed-at in the value's field halves the fields a read
// asks for, and lets the script compare times bytewise.
//
// # Writes
//
// Each entity write is one call of write.lua, by its SHA-1 (EVALSHA), with
// the entity's key and every feature written: for each, it keeps the stored
// field if that was observed later, and otherwise sets the new one, so
// equal observed-ats replace. The script runs atomically, so concurrent
// writers never lose updates. A Write call sends the calls for all its
// entities in one pipeline. A server that answers NOSCRIPT (it restarted,
// or a replica without the script took over) gets the scripts loaded again
// (cairn_redis_script_reloads_total) and the entities concerned written
// again. Every request is idempotent, so retrying a Write, whole or in
// part, is always safe.
//
// When every feature of the namespace has a finite staleness bound, the
// entity key expires after the longest of them, counted from the last
// write that stored anything (stretched by how far in the future its
// newest observed-at lies); the expiry is raised, never lowered, by later
// writes. A namespace with a feature that never goes stale has no expiry,
// and writing such an entity removes one set before.
//
// # Reads
//
// A read is one pipeline of one command per key: HMGET of field "0" and the
// requested features' fields, or HGETALL when the features requested are
// all of the namespace's (the server takes about half as long over it, see
// readScratch.wholeHash). An entity exists when field "0" does. Replies
// are read raw and parsed by the store (resp.go); an error reply other than
// WRONGTYPE sends the read again as ordinary commands, so that go-redis
// handles it (cluster redirections, LOADING) as it does for any other. A
// stored value that does not decode as its feature's current type (the
// type changed in the registry, or the field was edited by hand) is
// answered as not found and counted in cairn_redis_undecodable_values_total;
// the next write of the feature replaces it. A key holding something other
// than a hash (not written by cairn) reads as absent, and rejects writes.
// ScanKeys lists a namespace's entities with SCAN, for the Bloom filter of
// present keys.
//
// # Buckets
//
// The buckets of an entity's windowed feature (store.BucketStore) are a
// hash, field <start> (Unix seconds) the state and v<start> the version,
// and a sorted set of the starts scored by expiry, both under the entity's
// hash tag and named by the feature's name, expiring with their latest
// bucket. A put is one call of bucket_put.lua, which deletes the expired
// buckets, checks the version and writes atomically; a range read is one
// call of bucket_read.lua. Expired buckets (by the server's clock) read as
// absent. Entity reads and ScanKeys never meet these keys (no bucket key
// ends in "}"). See bucket.go and docs/redis.md for why this layout.
//
// # Failures
//
// A request failing with a network error, a timeout or a server that is
// loading, read-only or down is retried Config.MaxRetries times with
// backoff; each connection attempt is bounded by Config.DialTimeout and each
// round trip by the read and write timeouts and the caller's context. Once
// connection attempts to a node have failed PoolSize times in a row, calls
// fail at once with the last error, while the node is probed every second;
// the first successful probe restores service. Nothing needs reopening.
package redis
