// Package e2e tests cairn's production topology end to end, as separate
// processes of the built binary: a Kafka-protocol broker in a process of its
// own (with a data directory, killed and restarted by process id), two query
// servers (`cairn serve`), two persistence writers (`cairn write`), and an
// online store in a process of its own (redis-server, or moto_server for
// DynamoDB's API). The processes are started through internal/testserver.
//
// Each scenario asserts on what was acknowledged. Every client owns its keys
// and uploads, per key, increasing values with increasing observed-at; the
// test keeps, per key, the newest value answered 202 and the newest value
// sent at all. At the end every key must read back a value at least as new
// as its newest acknowledged one (and never newer than anything sent: an
// upload answered 503 may still have landed, which newest-wins makes
// harmless).
//
// The scenarios, each over redis-server and over moto:
//
//   - a writer killed (SIGKILL) and restarted three times during steady
//     uploads: everything acknowledged is readable within 30 s of the last
//     restart;
//   - the broker killed for a while (-broker-outage, 15 s by default) and
//     restarted: queries answer 200 throughout, uploads answer 503 within
//     CAIRN_KAFKA_PRODUCE_TIMEOUT plus one second while it is down and 202
//     again after the restart, with no cairn process restarted, and nothing
//     acknowledged is lost;
//   - the store down (redis-server killed and restarted; moto_server paused
//     and resumed, since moto keeps its data in memory): queries answer 200
//     with field errors within the query deadline, /healthz of every query
//     server goes 503 and back to 200, and the writers catch up;
//   - SIGTERM to every cairn process during load: each exits within
//     CAIRN_SHUTDOWN_TIMEOUT with status 0, and nothing acknowledged is lost;
//   - the README's local walk-through of the production topology.
//
// The package has only tests and benchmarks (bench_test.go). Run it with
//
//	go test ./internal/e2e/ [-args -broker-outage=5s]
//
// It needs redis-server and moto_server (skipped when missing, unless
// CAIRN_REQUIRE_SERVERS=1) and builds the cairn binary once, without the race
// detector.
package e2e
