// Package e2e holds the end-to-end test of the whole loop on real services:
// a seeded payments stream through processor, scorer, materializers,
// monitor, retrain policy and trainer, checked against a batch
// recomputation from the raw topic. It has no non-test code.
package e2e
