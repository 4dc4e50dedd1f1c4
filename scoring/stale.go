package scoring

// StaleChecker is an optional interface of Features. When ev.Features
// implements it, Score asks it about every feature it found, with the
// feature's age (the event's time minus the feature row's, ms; negative
// when the row is newer than the event), and flags the prediction's
// feature stale when it answers true. A stale feature is still scored with
// its value: the flag tells consumers and monitors that it is older than
// the model expects (models[].max_age). The implementation counts what it
// reports stale (scoring/lookup does, as weir_scoring_stale_features_total).
type StaleChecker interface {
	Stale(name string, ageMs int64) bool
}
