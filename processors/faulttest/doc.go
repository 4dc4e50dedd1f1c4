// Package faulttest proves the processor's exactly-once contract from the
// outside, on real Apache Kafka: the real `weir` binary runs the processor
// role as a subprocess, which the tests kill -9 at random moments (and, in a
// second test, whose broker they restart), and at the end every feature row
// on the view's topic is compared with a batch recomputation from the raw
// source topic: the same set of source (partition, offset), each exactly
// once, with every value equal. Dead letters are checked the same way.
//
// The recomputation is independent of the engine: testdata/oracle.py
// computes the demo view's features with pandas rolling windows over a CSV
// dump of the raw topic. Go only decodes the Avro for it.
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
