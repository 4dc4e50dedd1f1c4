// Package rollout decides which registry alias (arm) serves each scored
// event of a model, as models[].rollout (config.Rollout) says, and keeps the
// bandit's delayed rewards.
//
// # Choosing an arm
//
// Canary and A/B rollouts split entities, not events: [Bucket] hashes
// (model name, entity) with xxhash64 into [0, 1), so an entity stays on one
// arm for as long as the config stays, on every scorer instance and after
// restarts. A canary serves arms[1] when the bucket is below percent/100
// ([Canary]); an A/B rollout serves the arm whose cumulative weight share
// first exceeds the bucket ([Weighted]).
//
// A bandit chooses per event by Thompson sampling ([Thompson]) with a
// floor: with probability K*floor (K arms available) an arm is drawn
// uniformly, else each arm's Beta(alpha, beta) posterior is sampled and the
// largest sample wins; so each arm serves at least floor of the events and
// arm i serves floor + (1-K*floor) * P(arm i's sample is the largest). The
// random numbers come from a PCG generator seeded with [Seed] (model name,
// event id), so a choice is reproducible from the event id and the
// posterior snapshot the scorer read.
//
// # Rewards
//
// A [Joiner] (one per bandit model; see below) consumes the model's
// predictions topic (read_committed; shadow predictions skipped) and the
// labels topic, joins a label (txn_id) to the served prediction with that
// id, and counts a success or a failure for the (arm, version) that served
// it: with reward correct a success is a decision equal to the label, with
// reward label a positive label. A served prediction waits LabelWait of
// event time (the newest prediction's event time minus its own) for its
// label, then is dropped unrewarded; a label that comes before its
// prediction waits, at most 65,536 of them. The counts are published as
// one [State] record per model (key: model name, value JSON, see
// docs/format/rollout-rewards.md) on the compacted rewards topic
// (config.Config.RewardsTopic, one partition, created when missing).
//
// The State also carries, per partition of the two input topics, the
// offset to resume from (the oldest prediction or label still waiting) and
// the offset consumed up to, so counts and input positions are written in
// one record: after a crash the Joiner resumes from its last State, re-reads
// what was still waiting and skips any pair it had already joined (both
// offsets below the consumed ones). No reward is counted twice or lost,
// except labels that came before their prediction and arrive more than
// 65,536 early. Joiners are elected: every processor process runs one per
// bandit model in the consumer group weir-rewards-<model> on the rewards
// topic's single partition, and only the member assigned it joins.
//
// [Posteriors] reads the rewards topic into an immutable snapshot behind an
// atomic.Pointer that scorers read per event without locks; a new arm
// version starts from the prior, since counts are kept per (arm, version).
//
// # Metrics
//
//	weir_rollout_rewards_total{model,arm,outcome}   joined labels: success, failure
//	weir_rollout_unrewarded_total{model,reason}     served predictions or labels dropped: label_wait, early_labels_full, undecodable
//	weir_rollout_state_writes_total{model}          State records written
//	weir_rollout_posterior_rewards{model,arm,version,outcome}  counts the scorers sample from (Posteriors.Collector)
//	weir_rollout_posterior_updated_seconds{model}   write time of that State
package rollout
