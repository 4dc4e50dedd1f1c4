// Package monitors watches a model's predictions: drift of the score and of
// every model input against the reference profile of the model version that
// made them (PSI, monitors/profile), performance once delayed labels arrive
// (ROC AUC, monitors/metric), and alert rules with hysteresis over both.
//
// A [Monitor] runs one config.Monitor. It consumes the model's predictions
// topic (read_committed) and the labels topic in one consumer group and
// publishes schemas.MonitorMetric records to the metrics topic and
// schemas.Alert records to the alerts topic.
//
// # Windows
//
// Predictions fall in tumbling event-time windows of Monitor.Window. The
// watermark is the least, over the predictions topic's partitions
// (Options.Partitions), of the newest prediction event time seen on each; a
// window [start, end) closes when the watermark passes end+Grace, and a
// prediction for a closed window is dropped as late. When a window closes,
// each model version in it gets a "count" metric, and each version with at
// least MinCount predictions gets "psi" of the score and of every model
// feature against that version's own reference profile (so a canary's
// predictions are compared with the canary's training data). A shadow
// arm's predictions (Prediction.Shadow: a challenger scored beside the
// served model, with the same prediction id) are windowed apart per version,
// their metrics published with Shadow set, and a label reaches both
// predictions of its event. Rules are evaluated on the served version that
// made most of the window's predictions (the newer on a tie), never on a
// shadow arm; windows where it had fewer than MinCount predictions are not
// evaluated. Nothing closes while no predictions arrive: time is event
// time only, and the monitor reads no clock. A partition read behind the
// others (a catch-up after downtime) holds windows open rather than losing
// its predictions as late; an idle partition holds them open too (an idle
// timeout is future work).
//
// # Labels
//
// A label (field txn_id = Prediction.PredictionID) is joined to the prediction
// held in its event-time window. The evaluated versions of a closed window
// keep (prediction id -> score, label) until the watermark passes
// end+Grace+LabelWait; then "labels" (how many were labelled) and, when both
// classes were labelled, "auc" are published and the window is dropped. A
// label that comes before its prediction is held in its window until the
// prediction comes or the window closes (at most 262,144 such labels in all;
// more are dropped as unmatched). Memory is bounded by the windows
// held: at most ceil((Grace+LabelWait)/Window)+2 of them, each holding an
// id, a score and a label byte per prediction, plus histogram counters
// (bins x features per version) while open; and the windows ahead of the
// watermark that early labels created (at most one per early label).
//
// # Rules
//
// A rule holds in a window when metric op threshold (NaN never holds). It
// FIRES when it held in For consecutive evaluated windows and RESOLVES when
// it did not hold in For consecutive evaluated windows; an alert is
// published only on these changes. Alert.Since is the start of the first
// window of the run that changed the state, Alert.At that run's last window
// end, Alert.Windows the run's length. PSI rules are evaluated when a window
// closes, AUC rules when its label wait ends (and only when AUC is defined).
//
// # Delivery and restarts
//
// Offsets are committed after the metrics and alerts that the consumed
// records produced have been acknowledged, so output is at least once;
// Alert.AlertID (monitor/rule/at/state) is deterministic, so a consumer can
// drop repeats. Windows are not checkpointed: after a restart the monitor
// resumes from the group's committed offsets, and windows that were open (or
// waiting for labels) are lost, as is rule state. One monitor instance per
// group: windows are not merged across instances.
//
// # Metrics
//
// Exported on the injected prometheus.Registerer by [PrometheusHook]:
//
//	weir_monitor_psi{monitor,model,version,feature}        gauge, latest closed window
//	weir_monitor_auc{monitor,model,version}                gauge, latest labelled window (NaN: undefined)
//	weir_monitor_shadow_psi{monitor,model,version,feature} gauge, a shadow arm's predictions, latest closed window
//	weir_monitor_shadow_auc{monitor,model,version}         gauge, a shadow arm's predictions, latest labelled window
//	weir_monitor_window_predictions{monitor,model,version} gauge, latest closed window
//	weir_monitor_window_labels{monitor,model,version}      gauge, latest labelled window
//	weir_monitor_alerts_firing{monitor,rule}               gauge, 1 firing, 0 not
//	weir_monitor_predictions_consumed_total{monitor,outcome} counter: windowed, late, shadow (a shadow arm's prediction, windowed apart), undecodable
//	weir_monitor_labels_consumed_total{monitor,outcome}      counter: joined, unmatched, undecodable
package monitors
