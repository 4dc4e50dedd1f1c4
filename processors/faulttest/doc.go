// Package faulttest proves the processor's exactly-once contract from the
// outside, on real Apache Kafka: the real `weir` binary runs the processor
// role as a subprocess, which the tests kill -9 at random moments (and, in a
// second test, whose broker they restart), and at the end every feature row
// on the view's topic is compared with a batch recomputation from the raw
// source topic: every version of every event's row exactly once, and every
// event's final row equal. Dead letters are checked the same way.
//
// The stream is out of order, as loadgen's Disorder makes it: 5% of the
// events are moved back in event time by up to a minute (rig_test.go's
// constants), on a source with out_of_order 5s and a view with lateness
// 20s. So some events are on time though behind others, some are late but
// within the lateness, and correct the rows of their card's events after
// them, and more than half of the moved ones are too late and must be
// dead-lettered with reason "late"; kills land in the middle of all three.
//
// The recomputation is independent of the engine: testdata/oracle.py,
// written from the documented semantics (its doc says them at length),
// replays each partition's watermark over a CSV dump of the raw topic in
// offset order (newest accepted event time minus out_of_order; an event
// more than the lateness behind it is too late and moves nothing), and
// computes with pandas rolling windows each accepted event's final
// features: over all accepted events of its card whose time is in the
// window, those at its exact time only up to its own offset, late ones
// included. It also lists each event's versions: its own row, then one
// correction for every later-processed accepted event of its card with an
// earlier event time. Go only decodes the Avro for it, flags the records
// that are bad on their own (undecodable, keyless, absurd time), and
// compares. A version is (partition, event offset, cause offset): the
// event offset is a row's revises_offset if set, its source_offset if not,
// and the cause is its source_offset. The same version twice is a
// duplicate; versions must come in cause order, and the last of them, the
// event's final row, must equal the oracle's. The test waits for the
// oracle's count of rows and dead letters before it stops the processor.
//
// The package holds tests only. Sizes come from the environment, so that
// `make test` runs a small version and `make soak` the full one:
//
//	WEIR_SOAK_EVENTS          events of the kill -9 test (default 100000)
//	WEIR_SOAK_KILLS           kill -9s in it (default 5)
//	WEIR_SOAK_SEED            replays the kill timings' seed that a run logged
//	WEIR_SOAK_BROKER_RESTART  1 runs the broker-restart test, which restarts
//	                          the shared broker (deploy/local/kafka.sh) and
//	                          would break other packages' tests running
//	                          beside it: `make soak` sets it, `make test` not
//	WEIR_SOAK_BROKER_EVENTS   events of the broker-restart test (default 50000)
//
// Both tests skip under -short. They need Kafka ($WEIR_KAFKA_BROKERS) and the
// project's Python ($WEIR_PYTHON) with pandas, as `make setup` provides.
// A processor restarted after kill -9 runs under the same --instance, so it
// is the same static group member: it fences the killed run's transaction,
// then takes the killed member's place and partitions at once, without
// waiting for the group coordinator to expire the killed member's session
// (45s). A failed test keeps its scratch directory (config, every run's
// log, the CSVs) and says where; a processor that stops making progress is
// made to dump its goroutines (SIGQUIT) into its log first.
package faulttest
