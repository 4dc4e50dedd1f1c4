package schemas

// Times are Unix milliseconds (Avro long, logicalType timestamp-millis).

// Transaction is the demo's raw payment event.
type Transaction struct {
	TxnID      string  `avro:"txn_id"`
	CardID     string  `avro:"card_id"`
	MerchantID string  `avro:"merchant_id"`
	Amount     float64 `avro:"amount"`
	Currency   string  `avro:"currency"`
	Country    string  `avro:"country"`
	DeviceID   string  `avro:"device_id"`
	EventTime  int64   `avro:"event_time"`
}

// Label is the delayed outcome of a transaction.
type Label struct {
	TxnID     string `avro:"txn_id"`
	CardID    string `avro:"card_id"`
	EventTime int64  `avro:"event_time"`
	LabelTime int64  `avro:"label_time"`
	IsFraud   bool   `avro:"is_fraud"`
}

// FeatureValue is one named feature value.
type FeatureValue struct {
	Name   string    `avro:"name"`
	Value  float64   `avro:"value"`
	List   []float64 `avro:"list"`   // last_n
	Labels []string  `avro:"labels"` // top_k
}

// FeatureRow is one version of an entity's feature view values.
type FeatureRow struct {
	Entity          string         `avro:"entity"`
	View            string         `avro:"view"`
	ViewVersion     string         `avro:"view_version"`
	EventTime       int64          `avro:"event_time"`
	KnownTime       int64          `avro:"known_time"`
	SourceTopic     string         `avro:"source_topic"`
	SourcePartition int32          `avro:"source_partition"`
	SourceOffset    int64          `avro:"source_offset"`
	EventID         string         `avro:"event_id"`
	Values          []FeatureValue `avro:"values"`
	WindowStart     int64          `avro:"window_start"`
	WindowEnd       int64          `avro:"window_end"`
	RevisesOffset   int64          `avro:"revises_offset"`
}

// UsedFeature is one element of the feature vector a prediction used.
type UsedFeature struct {
	Name  string  `avro:"name"`
	Value float64 `avro:"value"`
	AgeMs int64   `avro:"age_ms"`
	// Stale: AgeMs is more than the feature's max age (models[].max_age,
	// max_ages; default the view's TTL). Records written before the field
	// read as false.
	Stale bool `avro:"stale"`
}

// Prediction is one model decision on one event.
type Prediction struct {
	PredictionID    string        `avro:"prediction_id"`
	Entity          string        `avro:"entity"`
	EventTime       int64         `avro:"event_time"`
	ScoredTime      int64         `avro:"scored_time"`
	ModelName       string        `avro:"model_name"`
	ModelVersion    int32         `avro:"model_version"`
	RolloutArm      string        `avro:"rollout_arm"`
	Score           float64       `avro:"score"`
	Threshold       float64       `avro:"threshold"`
	Decision        bool          `avro:"decision"`
	SourcePartition int32         `avro:"source_partition"`
	SourceOffset    int64         `avro:"source_offset"`
	LatencyUs       int64         `avro:"latency_us"`
	Features        []UsedFeature `avro:"features"`
	// Shadow marks a shadow arm's prediction: scored and logged, not
	// served. Each scored event has exactly one prediction with Shadow
	// false per model. Records written before the field read as false.
	Shadow bool `avro:"shadow"`
}

// MonitorMetric is one metric of one closed monitoring window.
type MonitorMetric struct {
	Monitor      string  `avro:"monitor"`
	ModelName    string  `avro:"model_name"`
	ModelVersion int32   `avro:"model_version"`
	Metric       string  `avro:"metric"`
	Feature      string  `avro:"feature"`
	WindowStart  int64   `avro:"window_start"`
	WindowEnd    int64   `avro:"window_end"`
	Value        float64 `avro:"value"`
	Count        int64   `avro:"count"`
	// Shadow marks a metric of a shadow arm's predictions (a challenger
	// scored beside the served model, not served); rules never read it.
	Shadow bool `avro:"shadow"`
}

// Alert states.
const (
	AlertFiring   = "FIRING"
	AlertResolved = "RESOLVED"
)

// Alert is a monitor rule changing state.
type Alert struct {
	AlertID      string  `avro:"alert_id"`
	Monitor      string  `avro:"monitor"`
	Rule         string  `avro:"rule"`
	State        string  `avro:"state"`
	ModelName    string  `avro:"model_name"`
	ModelVersion int32   `avro:"model_version"`
	Metric       string  `avro:"metric"`
	Feature      string  `avro:"feature"`
	Value        float64 `avro:"value"`
	Threshold    float64 `avro:"threshold"`
	Windows      int32   `avro:"windows"`
	Since        int64   `avro:"since"`
	At           int64   `avro:"at"`
	Reference    string  `avro:"reference"`
}

// Command types.
const (
	CommandRetrain  = "RETRAIN"
	CommandRollback = "ROLLBACK"
	CommandPromote  = "PROMOTE"
)

// Command is an instruction to the training consumer.
type Command struct {
	CommandID     string `avro:"command_id"`
	Type          string `avro:"type"`
	ModelName     string `avro:"model_name"`
	TargetVersion int32  `avro:"target_version"`
	Reason        string `avro:"reason"`
	RequestedBy   string `avro:"requested_by"`
	RequestedAt   int64  `avro:"requested_at"`
	TrainSince    int64  `avro:"train_since"`
	TrainUntil    int64  `avro:"train_until"`
}

// ModelRecord is one model version in the registry. Its JSON names are
// the Avro field names.
type ModelRecord struct {
	Name        string   `avro:"name" json:"name"`
	Version     int32    `avro:"version" json:"version"`
	Format      string   `avro:"format" json:"format"`
	Features    []string `avro:"features" json:"features"`
	Views       []string `avro:"views" json:"views"`
	ArtifactURI string   `avro:"artifact_uri" json:"artifact_uri"`
	SHA256      string   `avro:"sha256" json:"sha256"`
	CreatedAt   int64    `avro:"created_at" json:"created_at"`
	CreatedBy   string   `avro:"created_by" json:"created_by"`
	// Reason is why the version was created; an alias move does not
	// change it (records written before Moves existed may hold a move's
	// text here instead).
	Reason           string             `avro:"reason" json:"reason"`
	ParentVersion    int32              `avro:"parent_version" json:"parent_version"`
	Metrics          map[string]float64 `avro:"metrics" json:"metrics"`
	TrainingSet      string             `avro:"training_set" json:"training_set"`
	ReferenceProfile string             `avro:"reference_profile" json:"reference_profile"`
	Aliases          []string           `avro:"aliases" json:"aliases"`
	Signature        string             `avro:"signature" json:"signature"`
	// Moves holds, per alias, the last move that gave this version that
	// alias; an entry stays when the alias moves on. Records written
	// before the field read as none.
	Moves []AliasMove `avro:"moves" json:"moves"`
}

// AliasMove is the last move that gave a version one alias: a promote or
// a rollback (scoring/registry Move), who made it and why.
type AliasMove struct {
	Alias  string `avro:"alias" json:"alias"`
	Action string `avro:"action" json:"action"`
	// FromVersion held the alias before (0: none). PreviousVersion is
	// where a rollback from this version goes (0: none recorded).
	FromVersion     int32  `avro:"from_version" json:"from_version"`
	PreviousVersion int32  `avro:"previous_version" json:"previous_version"`
	By              string `avro:"by" json:"by"`
	Reason          string `avro:"reason" json:"reason"`
	At              int64  `avro:"at" json:"at"` // Unix ms
}
