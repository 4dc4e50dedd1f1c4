// Package config parses weir.yaml, the one declarative configuration of a
// Weir deployment, into plain per-stage structs, applies defaults in one place
// and environment overrides for endpoints and secrets, and validates it with
// errors that name the file, line and field.
package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is a parsed weir.yaml.
type Config struct {
	DataDir        string          `yaml:"data_dir"`
	Kafka          Kafka           `yaml:"kafka"`
	SchemaRegistry SchemaRegistry  `yaml:"schema_registry"`
	Redis          Redis           `yaml:"redis"`
	ClickHouse     ClickHouse      `yaml:"clickhouse"`
	Topics         Topics          `yaml:"topics"`
	Sources        []Source        `yaml:"sources"`
	Entities       []Entity        `yaml:"entities"`
	Views          []View          `yaml:"views"`
	Models         []Model         `yaml:"models"`
	ModelRegistry  ModelRegistry   `yaml:"model_registry"`
	Labels         Labels          `yaml:"labels"`
	Monitors       []Monitor       `yaml:"monitors"`
	Retrain        []RetrainPolicy `yaml:"retrain"`
	Serve          Serve           `yaml:"serve"`
	State          State           `yaml:"state"`

	path string
	root *yaml.Node
}

// Kafka says how to reach the brokers.
type Kafka struct {
	// Brokers are seed addresses; WEIR_KAFKA_BROKERS (comma-separated)
	// overrides them. Empty under `weir dev` means the embedded broker.
	Brokers []string `yaml:"brokers"`
	// ClientID prefixes every client id and transactional id.
	ClientID string `yaml:"client_id"`
	// CommitInterval is how often a stage commits (default 100ms).
	CommitInterval Duration `yaml:"commit_interval"`
	// Guarantee is the stream stages' delivery guarantee: exactly_once (the
	// default: outputs, changelog and consumer offsets commit in one Kafka
	// transaction) or at_least_once (no transactions: outputs are
	// acknowledged before offsets commit, so a failure or restart may
	// duplicate outputs and count reprocessed records twice in state, but
	// never loses one; less latency and more throughput).
	Guarantee string `yaml:"guarantee"`
	SASL      SASL   `yaml:"sasl"`
}

// Delivery guarantees (Kafka.Guarantee).
const (
	GuaranteeExactlyOnce = "exactly_once"
	GuaranteeAtLeastOnce = "at_least_once"
)

// SASL is optional SASL/PLAIN or SCRAM authentication.
type SASL struct {
	Mechanism string `yaml:"mechanism"` // PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
	Username  string `yaml:"username"`
	Password  Secret `yaml:"password"` // WEIR_KAFKA_PASSWORD overrides
}

// SchemaRegistry is a Confluent-compatible registry; empty URL under `weir
// dev` means the embedded one. WEIR_SCHEMA_REGISTRY_URL overrides.
type SchemaRegistry struct {
	URL string `yaml:"url"`
}

// Redis is the online store: one node (addr) or a Redis Cluster (cluster).
type Redis struct {
	// Addr is one Redis node, host:port. WEIR_REDIS_ADDR overrides it and
	// clears cluster.
	Addr string `yaml:"addr"`
	// Cluster lists seed nodes of a Redis Cluster, host:port each; the
	// client discovers the others and follows slot moves. Set addr or
	// cluster, not both. WEIR_REDIS_CLUSTER (comma-separated) overrides it
	// and clears addr.
	Cluster []string `yaml:"cluster"`
	// Username is a Redis 6+ ACL user; empty authenticates as "default"
	// with Password alone (requirepass). WEIR_REDIS_USERNAME overrides.
	Username string `yaml:"username"`
	Password Secret `yaml:"password"` // WEIR_REDIS_PASSWORD overrides
	// DB is the database of a single node; a cluster has only database 0.
	DB        int    `yaml:"db"`
	KeyPrefix string `yaml:"key_prefix"` // default "weir"; no braces (the key's hash tag is the entity)
	TLS       TLS    `yaml:"tls"`
}

// TLS configures a client's TLS connections. File paths are read relative
// to the working directory, as data_dir is.
type TLS struct {
	// Enabled turns TLS on; the other fields need it.
	Enabled bool `yaml:"enabled"`
	// CAFile holds PEM certificates of the CAs that sign the server's
	// certificate; empty trusts the system's roots.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a PEM client certificate and its key, for
	// servers that authenticate clients (tls-auth-clients yes); both or
	// neither.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName is the name the server's certificate must carry (default:
	// the host dialled).
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify accepts any server certificate: encryption without
	// authentication of the server, for tests only.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// ClickHouse is the offline store.
type ClickHouse struct {
	Addr     string `yaml:"addr"`     // native protocol; WEIR_CLICKHOUSE_ADDR overrides
	Database string `yaml:"database"` // default "weir"
	Username string `yaml:"username"` // default "default"
	Password Secret `yaml:"password"` // WEIR_CLICKHOUSE_PASSWORD overrides
}

// Topics sets how Weir's own topics are provisioned.
type Topics struct {
	Prefix      string `yaml:"prefix"`      // default "weir"
	Partitions  int    `yaml:"partitions"`  // default 4
	Replication int    `yaml:"replication"` // default 1
}

// Source is a raw event topic.
type Source struct {
	Name      string `yaml:"name"`
	Topic     string `yaml:"topic"`
	Schema    string `yaml:"schema"`     // embedded schema name, e.g. "transaction"
	Key       string `yaml:"key"`        // field holding the entity key
	EventTime string `yaml:"event_time"` // field holding the event time
	IDField   string `yaml:"id"`         // field holding the event id
	// MaxFuture is how far ahead of the wall clock an event time may be
	// before the event is dead-lettered as absurd (default 24h).
	MaxFuture Duration `yaml:"max_future"`
	// MaxSkew is how far an event time may be from its partition's
	// watermark, either way, before it is dead-lettered (default 7 days).
	MaxSkew Duration `yaml:"max_skew"`
	// OutOfOrder is how far behind its partition's newest event time an
	// event may arrive and still be on time: the partition watermark is the
	// newest event time minus OutOfOrder (default 0). Windows close at the
	// watermark.
	OutOfOrder Duration `yaml:"out_of_order"`
	// Lateness is the views' default allowed lateness: how far behind the
	// partition watermark an event may be and still be aggregated, its
	// windows corrected and re-emitted (default 1m). Events later than every
	// view allows are dead-lettered with reason "late".
	Lateness Duration `yaml:"lateness"`
	// IdleTimeout is how long (wall clock) a partition may go without events
	// before its watermark follows the other partitions' so its windows
	// still close (default 30s).
	IdleTimeout Duration `yaml:"idle_timeout"`
}

// State configures where processors keep entity state between
// transactions. The changelog topics are the source of truth either way:
// a store is rebuilt from them on every partition assignment.
type State struct {
	// Store is memory (the default: decoded state on the heap, fastest) or
	// pebble (encoded on disk, for state larger than memory).
	Store string `yaml:"store"`
	// Dir holds the pebble stores (default <data_dir>/state).
	Dir string `yaml:"dir"`
	// CacheMB is each pebble partition store's block cache (default 64).
	CacheMB int `yaml:"cache_mb"`
}

// State stores.
const (
	StoreMemory = "memory"
	StorePebble = "pebble"
)

// Entity names a key that views aggregate by.
type Entity struct {
	Name string `yaml:"name"`
	Key  string `yaml:"key"`
}

// View is a feature view: features of one entity computed from one source.
type View struct {
	Name   string   `yaml:"name"`
	Source string   `yaml:"source"`
	Entity string   `yaml:"entity"`
	TTL    Duration `yaml:"ttl"`
	// Kind is the window kind: sliding (default: each feature over its own
	// window ending at each event), tumbling, hopping or session (one row
	// per entity and window, every feature over the view's window).
	Kind string `yaml:"kind"`
	// Window is the length of a tumbling or hopping window.
	Window Duration `yaml:"window"`
	// Hop is how far apart hopping windows start; Window must be a multiple.
	Hop Duration `yaml:"hop"`
	// Gap closes a session window after this long without an event.
	Gap Duration `yaml:"gap"`
	// Emit says when a tumbling, hopping or session window's row is written:
	// update (on every event, as of the event), close (once, when the
	// watermark passes the window's end; the default) or both. Sliding
	// views always emit on update.
	Emit string `yaml:"emit"`
	// Lateness is this view's allowed lateness behind the partition
	// watermark (default: the source's).
	Lateness Duration  `yaml:"lateness"`
	Features []Feature `yaml:"features"`
	// Lane, when true, says the view's current version is computed by its
	// backfill lane (`weir backfill -view <name> -follow`, which replays its
	// history and then goes on live), not by the source's processor, which
	// skips it. It is not part of the definition (the version).
	Lane bool `yaml:"lane"`
}

// Window kinds.
const (
	KindSliding  = "sliding"
	KindTumbling = "tumbling"
	KindHopping  = "hopping"
	KindSession  = "session"
)

// Emit modes.
const (
	EmitUpdate = "update"
	EmitClose  = "close"
	EmitBoth   = "both"
)

// Feature is one aggregation: in a sliding view over an event-time window
// ending at each event, (t-window, t]; in a windowed view over the view's
// window. Only "last", "time_since_last" and "ratio" take no window.
type Feature struct {
	Name string `yaml:"name"`
	// Agg is count, sum, mean, min, max, variance or stddev (population),
	// distinct (count of distinct values of a string field), top_k (the K
	// most frequent values of a string field), last_n (the N newest values
	// of a numeric field, newest first), quantile (the Q quantile, from a
	// DDSketch with 1% relative accuracy) over the window; last (the newest
	// value at or before the event), time_since_last (ms since the entity's
	// previous event, NaN for its first) or ratio (Of[0] / Of[1], two other
	// features of the view).
	Agg    string   `yaml:"agg"`
	Field  string   `yaml:"field"`
	Window Duration `yaml:"window"`
	// Where, if set, aggregates only the events it holds for.
	Where *Filter `yaml:"where"`
	// K is top_k's number of values.
	K int `yaml:"k"`
	// N is last_n's number of values.
	N int `yaml:"n"`
	// Q is quantile's quantile, in [0, 1].
	Q float64 `yaml:"q"`
	// Of names ratio's numerator and denominator features.
	Of []string `yaml:"of"`
}

// Filter compares one source field with a constant: a string field with
// == or !=, a numeric field with ==, !=, <, <=, > or >=.
type Filter struct {
	Field string `yaml:"field"`
	Op    string `yaml:"op"`
	Value any    `yaml:"value"`
}

// String is the filter in a canonical form, e.g. country != "GB".
func (f *Filter) String() string { return fmt.Sprintf("%s %s %#v", f.Field, f.Op, f.Value) }

// FilterOps are the comparisons a filter may use.
var FilterOps = []string{"==", "!=", "<", "<=", ">", ">="}

// Aggregations a feature may use.
var Aggregations = []string{"count", "sum", "mean", "min", "max", "last", "variance", "stddev", "time_since_last",
	"distinct", "top_k", "last_n", "quantile", "ratio"}

// Model is a scored model.
type Model struct {
	Name string `yaml:"name"`
	// Source is the source whose events the model scores.
	Source string `yaml:"source"`
	// Features are "view.feature" names, in vector order.
	Features  []string `yaml:"features"`
	Threshold float64  `yaml:"threshold"` // default 0.5
	// Default is the value a logistic-regression model scores a missing
	// feature with (default 0); Defaults overrides it per feature
	// ("view.feature": value). Tree models (xgboost-json, lightgbm-text)
	// score a missing feature as missing (NaN: each split's default
	// direction), not with these.
	Default  float64            `yaml:"default"`
	Defaults map[string]float64 `yaml:"defaults"`
	// PositiveClass is the class whose probability is the score of a
	// multi-class model (0-based, as the model numbers its outputs).
	// Unset, a multi-class champion is refused by the scorer.
	PositiveClass *int `yaml:"positive_class"`
	// MaxAge is how old a feature value may be, by event time (the scored
	// event's time minus the feature row's), before the prediction flags it
	// stale; the value is still used, and stale features are counted.
	// Unset (0), each feature's max age is its view's ttl. MaxAges
	// overrides it per feature ("view.feature": duration).
	MaxAge  Duration            `yaml:"max_age"`
	MaxAges map[string]Duration `yaml:"max_ages"`
	// Rollout says which registry aliases score the model's events and
	// whose decision is served (champion only when unset); see Rollout.
	Rollout Rollout `yaml:"rollout"`
}

// ModelRegistry configures how model artifacts are trusted.
type ModelRegistry struct {
	// PublicKey is the file of an ed25519 public key (PEM "PUBLIC KEY",
	// as `weir models keygen` or `openssl pkey -pubout` writes it). When
	// set, a model version serves only if its record's signature verifies
	// with it (`weir models register -key` signs); unset, artifacts are
	// checked by SHA-256 only.
	PublicKey string `yaml:"public_key"`
	// PrivateKey is the file of an ed25519 private key (PEM "PRIVATE
	// KEY") that this process signs what it publishes with (the trainer,
	// the bootstrap, `weir models register` without -key). Keep it only
	// where versions are made.
	PrivateKey string `yaml:"private_key"`
	// Artifacts is the blob store new artifacts are written to: a
	// directory or file:///dir (default <data_dir>/models), or a bucket
	// URL such as s3://bucket?region=eu-west-1 (S3-compatible stores:
	// add endpoint=...&use_path_style=true). Records keep each
	// artifact's own URI, so changing it does not move old versions.
	Artifacts string `yaml:"artifacts"`
}

// Labels is the delayed-labels topic.
type Labels struct {
	Topic  string `yaml:"topic"`
	Schema string `yaml:"schema"` // default "label"
}

// Monitor watches one model's predictions.
type Monitor struct {
	Name     string   `yaml:"name"`
	Model    string   `yaml:"model"`
	Window   Duration `yaml:"window"`    // tumbling, event time; default 1m
	Grace    Duration `yaml:"grace"`     // how long after its end a window waits for stragglers; default 10s
	MinCount int      `yaml:"min_count"` // windows with fewer predictions are not evaluated; default 100
	Rules    []Rule   `yaml:"rules"`
	// LabelWait is how long after a window closes its labels are awaited
	// before AUC is computed; default 2m of event time.
	LabelWait Duration `yaml:"label_wait"`
}

// Rule raises an alert when a metric crosses a threshold for N windows.
type Rule struct {
	Name      string  `yaml:"name"`
	Metric    string  `yaml:"metric"`  // psi, auc
	Feature   string  `yaml:"feature"` // "score", a model feature, or "" (auc)
	Op        string  `yaml:"op"`      // ">" or "<"
	Threshold float64 `yaml:"threshold"`
	For       int     `yaml:"for"` // consecutive windows; default 1
}

// RetrainPolicy turns alerts into retrain commands.
type RetrainPolicy struct {
	Model    string   `yaml:"model"`
	OnRules  []string `yaml:"on_rules"`
	Cooldown Duration `yaml:"cooldown"` // default 10m (wall clock)
	Backend  string   `yaml:"backend"`  // local
	GPUs     int      `yaml:"gpus"`
	// MinRows is the least number of labelled rows a retrain trains on; the
	// trainer waits for labels until it has them (default 1000).
	MinRows int `yaml:"min_rows"`
	// Lookback is how much event time before the alert's start the training
	// data reaches back; 0 trains on data since the alert's start.
	Lookback Duration `yaml:"lookback"`
	// LabelTimeout is how long the trainer waits for MinRows labels (default 2m).
	LabelTimeout Duration `yaml:"label_timeout"`
}

// Serve is the HTTP listener for /metrics, /healthz and the feature serving
// API (/v1/features).
type Serve struct {
	Addr string `yaml:"addr"` // default 127.0.0.1:9464
	// Token, when set, is the bearer token feature requests must carry
	// (/metrics and /healthz stay open). WEIR_SERVE_TOKEN overrides it;
	// prefer the variable to writing the token into the file.
	Token Secret `yaml:"token"`
}

// Duration is a time.Duration written as "5m" in YAML.
type Duration time.Duration

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration like 90s, 5m or 1h", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// Secret is a string that never prints: String, Format, JSON and YAML show
// "[redacted]". Reveal returns the value for the one place that needs it.
type Secret string

// Reveal returns the secret's value.
func (s Secret) Reveal() string { return string(s) }

// String implements fmt.Stringer.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// GoString implements fmt.GoStringer.
func (s Secret) GoString() string { return s.String() }

// MarshalJSON implements json.Marshaler.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// MarshalYAML implements yaml.Marshaler.
func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }

// Format implements fmt.Formatter so that %v, %s, %q and %+v all redact.
func (s Secret) Format(f fmt.State, verb rune) { fmt.Fprint(f, s.String()) }

// Load reads and validates the config file at path, applying defaults and
// environment overrides (getenv may be os.Getenv).
func Load(path string, getenv func(string) string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, b, getenv)
}

// Parse parses config text; path names the file in errors.
func Parse(path string, b []byte, getenv func(string) string) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c := &Config{path: path, root: &root}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %s", path, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	c.applyEnv(getenv)
	c.applyDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Config) applyEnv(getenv func(string) string) {
	if getenv == nil {
		return
	}
	if v := getenv("WEIR_KAFKA_BROKERS"); v != "" {
		c.Kafka.Brokers = strings.Split(v, ",")
	}
	if v := getenv("WEIR_KAFKA_PASSWORD"); v != "" {
		c.Kafka.SASL.Password = Secret(v)
	}
	if v := getenv("WEIR_SCHEMA_REGISTRY_URL"); v != "" {
		c.SchemaRegistry.URL = v
	}
	// Either endpoint variable replaces the file's endpoint, one node or a
	// cluster; both set are left to conflict in Validate.
	addr, cluster := getenv("WEIR_REDIS_ADDR"), getenv("WEIR_REDIS_CLUSTER")
	if addr != "" {
		c.Redis.Addr, c.Redis.Cluster = addr, nil
	}
	if cluster != "" {
		if addr == "" {
			c.Redis.Addr = ""
		}
		c.Redis.Cluster = nil
		for _, a := range strings.Split(cluster, ",") {
			if a = strings.TrimSpace(a); a != "" {
				c.Redis.Cluster = append(c.Redis.Cluster, a)
			}
		}
	}
	if v := getenv("WEIR_REDIS_USERNAME"); v != "" {
		c.Redis.Username = v
	}
	if v := getenv("WEIR_REDIS_PASSWORD"); v != "" {
		c.Redis.Password = Secret(v)
	}
	if v := getenv("WEIR_CLICKHOUSE_ADDR"); v != "" {
		c.ClickHouse.Addr = v
	}
	if v := getenv("WEIR_CLICKHOUSE_PASSWORD"); v != "" {
		c.ClickHouse.Password = Secret(v)
	}
	if v := getenv("WEIR_SERVE_TOKEN"); v != "" {
		c.Serve.Token = Secret(v)
	}
	if v := getenv("WEIR_DATA"); v != "" && c.DataDir == "" {
		c.DataDir = v
	}
}

// applyDefaults fills every default; it is the one place defaults live.
func (c *Config) applyDefaults() {
	def := func(d *Duration, v time.Duration) {
		if *d == 0 {
			*d = Duration(v)
		}
	}
	if c.DataDir == "" {
		c.DataDir = ".weir"
	}
	if c.Kafka.ClientID == "" {
		c.Kafka.ClientID = "weir"
	}
	def(&c.Kafka.CommitInterval, 100*time.Millisecond)
	if c.Kafka.Guarantee == "" {
		c.Kafka.Guarantee = GuaranteeExactlyOnce
	}
	if c.Redis.KeyPrefix == "" {
		c.Redis.KeyPrefix = "weir"
	}
	if c.ClickHouse.Database == "" {
		c.ClickHouse.Database = "weir"
	}
	if c.ClickHouse.Username == "" {
		c.ClickHouse.Username = "default"
	}
	if c.Topics.Prefix == "" {
		c.Topics.Prefix = "weir"
	}
	if c.Topics.Partitions == 0 {
		c.Topics.Partitions = 4
	}
	if c.Topics.Replication == 0 {
		c.Topics.Replication = 1
	}
	for i := range c.Sources {
		s := &c.Sources[i]
		def(&s.MaxFuture, 24*time.Hour)
		def(&s.MaxSkew, 7*24*time.Hour)
		def(&s.Lateness, time.Minute)
		def(&s.IdleTimeout, 30*time.Second)
	}
	if c.State.Store == "" {
		c.State.Store = StoreMemory
	}
	if c.State.Dir == "" {
		c.State.Dir = filepath.Join(c.DataDir, "state")
	}
	for i := range c.Views {
		v := &c.Views[i]
		if v.Kind == "" {
			v.Kind = KindSliding
		}
		if v.Emit == "" {
			v.Emit = EmitClose
			if v.Kind == KindSliding {
				v.Emit = EmitUpdate
			}
		}
		if v.Lateness == 0 {
			if s, ok := c.Source(v.Source); ok {
				v.Lateness = s.Lateness
			}
		}
	}
	for i := range c.Models {
		if c.Models[i].Threshold == 0 {
			c.Models[i].Threshold = 0.5
		}
		c.Models[i].Rollout.applyDefaults()
	}
	if c.Labels.Schema == "" {
		c.Labels.Schema = "label"
	}
	for i := range c.Monitors {
		m := &c.Monitors[i]
		def(&m.Window, time.Minute)
		def(&m.Grace, 10*time.Second)
		def(&m.LabelWait, 2*time.Minute)
		if m.MinCount == 0 {
			m.MinCount = 100
		}
		for j := range m.Rules {
			if m.Rules[j].For == 0 {
				m.Rules[j].For = 1
			}
		}
	}
	for i := range c.Retrain {
		r := &c.Retrain[i]
		def(&r.Cooldown, 10*time.Minute)
		def(&r.LabelTimeout, 2*time.Minute)
		if r.Backend == "" {
			r.Backend = "local"
		}
		if r.MinRows == 0 {
			r.MinRows = 1000
		}
	}
	if c.Serve.Addr == "" {
		c.Serve.Addr = "127.0.0.1:9464"
	}
}

// Path is the file the config was read from.
func (c *Config) Path() string { return c.path }

// Topic names. Every Weir topic is named here and nowhere else.

// FeaturesTopic is the topic a view's feature rows are written to.
func (c *Config) FeaturesTopic(view string) string { return c.Topics.Prefix + ".features." + view }

// PredictionsTopic is the topic a model's predictions are written to.
func (c *Config) PredictionsTopic(model string) string {
	return c.Topics.Prefix + ".predictions." + model
}

// ChangelogTopic is the compacted changelog of a source's processor state.
func (c *Config) ChangelogTopic(source string) string {
	return c.Topics.Prefix + ".changelog." + source
}

// RepartitionTopic carries a source's events re-keyed by another entity's key,
// for the views of that entity.
func (c *Config) RepartitionTopic(source, entity string) string {
	return c.Topics.Prefix + ".repartition." + source + "." + entity
}

// EntityChangelogTopic is the compacted changelog of the state of a source's
// views of an entity other than the source's own (read from the
// repartition topic).
func (c *Config) EntityChangelogTopic(source, entity string) string {
	return c.Topics.Prefix + ".changelog." + source + "." + entity
}

// EntityKey returns the key field of the named entity.
func (c *Config) EntityKey(entity string) string {
	for _, e := range c.Entities {
		if e.Name == entity {
			return e.Key
		}
	}
	return ""
}

// Rekeyed returns the entities of a source's views that are not keyed by the
// source's key, in config order: each needs a repartition.
func (c *Config) Rekeyed(source string) []string {
	src, ok := c.Source(source)
	if !ok {
		return nil
	}
	var out []string
	for _, v := range c.ViewsOf(source) {
		if c.EntityKey(v.Entity) != src.Key && !slices.Contains(out, v.Entity) {
			out = append(out, v.Entity)
		}
	}
	return out
}

// ViewsOfEntity returns a source's views of one entity.
func (c *Config) ViewsOfEntity(source, entity string) []*View {
	var out []*View
	for _, v := range c.ViewsOf(source) {
		if v.Entity == entity {
			out = append(out, v)
		}
	}
	return out
}

// DeadLetterTopic receives records that cannot be processed, with a reason header.
func (c *Config) DeadLetterTopic() string { return c.Topics.Prefix + ".deadletter" }

// MetricsTopic receives monitor metrics.
func (c *Config) MetricsTopic() string { return c.Topics.Prefix + ".monitor.metrics" }

// AlertsTopic receives alerts.
func (c *Config) AlertsTopic() string { return c.Topics.Prefix + ".alerts" }

// CommandsTopic receives retrain, rollback and promote commands.
func (c *Config) CommandsTopic() string { return c.Topics.Prefix + ".commands" }

// ModelsTopic is the compacted model registry.
func (c *Config) ModelsTopic() string { return c.Topics.Prefix + ".models" }

// ViewsTopic is the compacted catalog of every view version defined
// (featurestore/catalog).
func (c *Config) ViewsTopic() string { return c.Topics.Prefix + ".views" }

// Source returns the named source.
func (c *Config) Source(name string) (*Source, bool) {
	for i := range c.Sources {
		if c.Sources[i].Name == name {
			return &c.Sources[i], true
		}
	}
	return nil, false
}

// View returns the named view.
func (c *Config) View(name string) (*View, bool) {
	for i := range c.Views {
		if c.Views[i].Name == name {
			return &c.Views[i], true
		}
	}
	return nil, false
}

// Model returns the named model.
func (c *Config) Model(name string) (*Model, bool) {
	for i := range c.Models {
		if c.Models[i].Name == name {
			return &c.Models[i], true
		}
	}
	return nil, false
}

// ViewsOf returns the views computed from a source, in config order.
func (c *Config) ViewsOf(source string) []*View {
	var out []*View
	for i := range c.Views {
		if c.Views[i].Source == source {
			out = append(out, &c.Views[i])
		}
	}
	return out
}

// Version is derived from the view's definition: changing the source, entity
// or any feature gives a new version, stored side by side with the old one.
func (v *View) Version() string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00", v.Name, v.Source, v.Entity)
	if v.Kind != "" && v.Kind != KindSliding { // sliding views keep the versions they had before kinds existed
		fmt.Fprintf(h, "kind %s %d %d %d %s\x00", v.Kind, v.Window, v.Hop, v.Gap, v.Emit)
	}
	for _, f := range v.Features {
		fmt.Fprintf(h, "%s\x00%s\x00%s\x00%d\x00", f.Name, f.Agg, f.Field, f.Window)
		if f.Where != nil {
			fmt.Fprintf(h, "where %s\x00", f.Where)
		}
		if f.K != 0 || f.N != 0 || f.Q != 0 || len(f.Of) > 0 {
			fmt.Fprintf(h, "params %d %d %g %q\x00", f.K, f.N, f.Q, f.Of)
		}
	}
	return "v" + hex.EncodeToString(h.Sum(nil))[:8]
}

// Feature returns the named feature of the view.
func (v *View) Feature(name string) (*Feature, bool) {
	for i := range v.Features {
		if v.Features[i].Name == name {
			return &v.Features[i], true
		}
	}
	return nil, false
}

// SplitFeature splits a model feature reference "view.feature".
func SplitFeature(ref string) (view, feature string, ok bool) {
	i := strings.IndexByte(ref, '.')
	if i <= 0 || i == len(ref)-1 {
		return "", "", false
	}
	return ref[:i], ref[i+1:], true
}
