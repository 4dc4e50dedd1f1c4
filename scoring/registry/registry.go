// Package registry is Weir's model registry: model versions recorded on a
// compacted Kafka topic (config.Config.ModelsTopic, value
// schemas.ModelRecord), their artifacts in a blob store (see [Blobs]), and
// an in-process view of the topic that scorers read without locks.
//
// # Records
//
// Every record's key is "<name>/<version>" and its value the version's full
// current state, so compaction keeps exactly one record per version. Aliases
// such as "champion" live in the record's Aliases. Moving an alias (a
// promote or a rollback) writes two records: first the target version with
// the alias added and the move recorded in its Moves (its Reason, why the
// version was created, is kept), then the previous holder with the alias
// removed. An alias belongs to the version whose latest record carrying it
// was read last, so the view is the same between and after the two writes,
// and after compaction. Values are Avro schemas.ModelRecord in the
// Confluent wire format; a tombstone deletes a version.
//
// # Loading
//
// [Registry.Run] reads the topic from its start and keeps an immutable
// snapshot behind an atomic.Pointer. Every alias that serves is loaded: the
// champion always, and per model the aliases Options.Aliases names (the
// arms of its rollout, see scoring/rollout). When the version an alias
// points at changes, its artifact is read and verified before it serves
// (see [Verify]):
// its record's ed25519 signature must verify when Options.PublicKey is set
// (see [Sign]), the SHA-256 of the bytes read must equal the record's, the
// artifact must load as the record's format (any format model.Load reads:
// logreg-json, xgboost-json, lightgbm-text), and its name (where the
// format has one) and feature names (where it records them) must equal the
// record's. An artifact that fails is refused (an Error log line and a
// count in weir_registry_artifacts_refused_total) and the alias's previous
// version keeps serving. A refused artifact is not read again while the
// same version and SHA-256 hold the alias; moving the alias away and back
// retries it. Two aliases on the same version and SHA-256 share one loaded
// model. When the champion alias is on no version the previous champion
// keeps serving; when another serving alias is on no version (a challenger
// promoted, its alias removed), that alias stops serving.
//
// Writers ([Registry.Publish], [Registry.MoveAlias]) are meant to run in one
// process at a time (the trainer, which consumes the single-partition
// commands topic); within a process they are serialized.
//
// # Moves
//
// [Promote] and [Rollback] are how an alias moves, for `weir models
// promote|rollback` and the trainer's PROMOTE and ROLLBACK commands alike:
// they decide a [Move] (who, why, from, and previous: where a later
// rollback goes) and [Registry.MoveAlias] verifies the target and writes
// it. A rollback without a target goes to the holder's recorded previous
// (its parent where no move is recorded), so repeated rollbacks walk back.
// [MoveOf] and [LastMove] read a record's moves, and the move text that
// records written before moves had a field hold in their reason.
// [ReadTopic] and [History] rebuild an alias timeline from the topic;
// [DiffRecords] compares two versions' records.
//
// # Metrics
//
//	weir_registry_records_total                     records read from the topic
//	weir_registry_records_undecodable_total         records that did not decode (skipped)
//	weir_registry_artifacts_refused_total{model,reason}  champion artifacts refused (reason: signature, read, checksum, parse, mismatch)
//	weir_registry_swaps_total{model}                champion swaps
//	weir_registry_champion_version{model}           version of the serving champion
//	weir_registry_serving_version{model,alias}      version each serving alias serves (0: none)
package registry

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/schemas"
	"github.com/weirhq/weir/scoring/model"
)

// Champion is the alias scorers serve.
const Champion = "champion"

// Errors a caller may act on.
var (
	// ErrChecksum: an artifact's bytes do not hash to the record's SHA-256.
	ErrChecksum = errors.New("artifact checksum mismatch")
	// ErrNoVersion: the model has no such version.
	ErrNoVersion = errors.New("no such model version")
	// ErrVersionExists: Publish of a version that is already recorded.
	ErrVersionExists = errors.New("model version already exists")
)

// Options configure a Registry.
type Options struct {
	// Kafka are the base client options (streams.ClientOpts).
	Kafka []kgo.Opt
	// Topic is the registry topic, config.Config.ModelsTopic().
	Topic string
	// Serde encodes and decodes schemas.ModelRecord on Topic.
	Serde *schemas.Serde
	// Blobs is the artifact store Publish writes to (see Blobs for the
	// URLs: a directory, s3://, mem://). Reading needs only the record's
	// artifact_uri (file:// or s3://), so a read-only Registry may leave
	// it nil. The caller closes it.
	Blobs *Blobs
	// PublicKey, when set, is the ed25519 key every artifact's record
	// signature must verify with before it serves (and before Publish
	// and MoveAlias write); nil checks SHA-256 only.
	PublicKey ed25519.PublicKey
	// SigningKey, when set, signs what Publish writes when the record
	// carries no signature.
	SigningKey ed25519.PrivateKey
	// Logger; nil discards.
	Logger *slog.Logger
	// Registerer for the package's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Now is the wall clock for created_at; nil means time.Now.
	Now func() time.Time
	// OnSwap, when set, is called from Run's goroutine after a model's
	// serving champion changed from version from (0: none) to to. It must
	// not block.
	OnSwap func(name string, from, to int32)
	// Aliases names, per model, the aliases besides Champion whose
	// versions are loaded and served (see Serving): a rollout's arms.
	Aliases map[string][]string
}

// Loaded is a version that passed verification: its record and its
// parsed model. It is immutable.
type Loaded struct {
	Record schemas.ModelRecord
	// Model is the artifact loaded by model.Load in Record.Format. Its
	// inputs are Record.Features, in order.
	Model model.Model
}

// Registry is the in-process view of the registry topic and its writer.
type Registry struct {
	o    Options
	log  *slog.Logger
	now  func() time.Time
	prod *kgo.Client
	m    metrics

	snap atomic.Pointer[snapshot]

	ready     chan struct{} // closed once the topic was read up to its end offsets at start
	readyOnce sync.Once
	stopped   chan struct{} // closed when Run returns
	running   atomic.Bool

	posMu    sync.Mutex
	pos      map[int32]int64 // next offset to read, per partition
	advanced chan struct{}   // closed and replaced when pos advances

	pubMu sync.Mutex // serializes writers

	// Owned by Run's goroutine.
	state   map[string]map[int32]entry
	seq     uint64
	loaded  map[string]map[string]*Loaded // model -> alias -> serving
	refused map[string]string             // model\x00alias -> "version/sha256" refused last
}

// entry is one version's latest record and the order it was read in.
type entry struct {
	rec schemas.ModelRecord
	seq uint64
}

// snapshot is what readers see; never modified once stored.
type snapshot struct {
	models map[string]*modelSnap
}

type modelSnap struct {
	records []schemas.ModelRecord // by version, ascending
	aliases map[string]int32
	serving map[string]*Loaded // alias -> what serves; Champion included
}

func (s *snapshot) model(name string) *modelSnap {
	if s == nil {
		return nil
	}
	return s.models[name]
}

func (m *modelSnap) get(version int32) (schemas.ModelRecord, bool) {
	if m == nil {
		return schemas.ModelRecord{}, false
	}
	i, ok := slices.BinarySearchFunc(m.records, version, func(r schemas.ModelRecord, v int32) int { return int(r.Version) - int(v) })
	if !ok {
		return schemas.ModelRecord{}, false
	}
	return m.records[i], true
}

type metrics struct {
	records, undecodable prometheus.Counter
	refused, swaps       *prometheus.CounterVec
	champion, serving    *prometheus.GaugeVec
}

// New returns a Registry; call Run to read the topic, and Close when done.
func New(o Options) (*Registry, error) {
	if o.Topic == "" || o.Serde == nil {
		return nil, errors.New("registry: new: Topic and Serde are required")
	}
	r := &Registry{
		o: o, log: o.Logger, now: o.Now,
		ready: make(chan struct{}), stopped: make(chan struct{}),
		pos: map[int32]int64{}, advanced: make(chan struct{}),
		state: map[string]map[int32]entry{}, loaded: map[string]map[string]*Loaded{}, refused: map[string]string{},
		m: metrics{
			records:     prometheus.NewCounter(prometheus.CounterOpts{Name: "weir_registry_records_total", Help: "Model registry records read."}),
			undecodable: prometheus.NewCounter(prometheus.CounterOpts{Name: "weir_registry_records_undecodable_total", Help: "Model registry records that did not decode and were skipped."}),
			refused:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weir_registry_artifacts_refused_total", Help: "Champion artifacts refused at load (signature, read, checksum, parse, mismatch)."}, []string{"model", "reason"}),
			swaps:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weir_registry_swaps_total", Help: "Champion swaps."}, []string{"model"}),
			champion:    prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "weir_registry_champion_version", Help: "Version of the serving champion."}, []string{"model"}),
			serving:     prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "weir_registry_serving_version", Help: "Version each serving alias serves (0: none)."}, []string{"model", "alias"}),
		},
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.now == nil {
		r.now = time.Now
	}
	if reg := o.Registerer; reg != nil {
		for _, c := range []prometheus.Collector{r.m.records, r.m.undecodable, r.m.refused, r.m.swaps, r.m.champion, r.m.serving} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("registry: register metrics: %w", err)
			}
		}
	}
	prod, err := kgo.NewClient(append(slices.Clone(o.Kafka), kgo.DefaultProduceTopic(o.Topic))...)
	if err != nil {
		return nil, fmt.Errorf("registry: kafka client: %w", err)
	}
	r.prod = prod
	r.snap.Store(&snapshot{models: map[string]*modelSnap{}})
	return r, nil
}

// Close releases the writer's client. Stop Run first.
func (r *Registry) Close() { r.prod.Close() }

// Champion returns the serving champion of a model: the last champion
// whose artifact passed verification. It takes no lock.
func (r *Registry) Champion(name string) (*Loaded, bool) {
	return r.Serving(name, Champion)
}

// Serving returns what an alias of a model serves: the last version the
// alias pointed at whose artifact passed verification (see the package
// doc for an alias on no version). Only Champion and the aliases
// Options.Aliases names are loaded. It takes no lock; the Loaded is
// immutable, so a caller that reads it once scores with one version.
func (r *Registry) Serving(name, alias string) (*Loaded, bool) {
	m := r.snap.Load().model(name)
	if m == nil {
		return nil, false
	}
	l := m.serving[alias]
	return l, l != nil
}

// Get returns the record of one version. Its slices and map are shared:
// do not modify them.
func (r *Registry) Get(name string, version int32) (schemas.ModelRecord, bool) {
	return r.snap.Load().model(name).get(version)
}

// Alias returns the version an alias points at (per the records, whether
// or not its artifact loaded).
func (r *Registry) Alias(name, alias string) (int32, bool) {
	m := r.snap.Load().model(name)
	if m == nil {
		return 0, false
	}
	v, ok := m.aliases[alias]
	return v, ok
}

// List returns every version of a model, ascending. The records' slices and
// maps are shared: do not modify them.
func (r *Registry) List(name string) []schemas.ModelRecord {
	m := r.snap.Load().model(name)
	if m == nil {
		return nil
	}
	return slices.Clone(m.records)
}

// Names lists the models with at least one version, sorted.
func (r *Registry) Names() []string {
	s := r.snap.Load()
	out := make([]string, 0, len(s.models))
	for n := range s.models {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// WaitReady blocks until Run has read the topic up to the end offsets it
// saw when it started, or ctx is done, or Run returned.
func (r *Registry) WaitReady(ctx context.Context) error {
	select {
	case <-r.ready:
		return nil
	case <-r.stopped:
		return errors.New("registry: stopped before it was ready")
	case <-ctx.Done():
		return fmt.Errorf("registry: wait ready: %w", ctx.Err())
	}
}

// Run reads the registry topic from its start until ctx is done, then
// returns nil; it returns an error when it cannot start (e.g. the topic
// does not exist). Call it once.
func (r *Registry) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("registry: Run called twice")
	}
	defer close(r.stopped)
	cl, err := kgo.NewClient(append(slices.Clone(r.o.Kafka),
		kgo.ConsumeTopics(r.o.Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)...)
	if err != nil {
		return fmt.Errorf("registry: kafka client: %w", err)
	}
	defer cl.Close()

	// A topic created just now may not be in the broker's metadata yet:
	// give it a little while before calling it missing.
	var ends kadm.ListedOffsets
	for deadline := time.Now().Add(30 * time.Second); ; {
		ends, err = kadm.NewClient(cl).ListEndOffsets(ctx, r.o.Topic)
		if err == nil {
			err = ends.Error()
		}
		if err == nil || !errors.Is(err, kerr.UnknownTopicOrPartition) || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(200 * time.Millisecond):
		}
	}
	if err != nil {
		return fmt.Errorf("registry: end offsets of %s: %w", r.o.Topic, err)
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition] = o.Offset
		}
	})
	r.checkReady(want)

	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if fs.IsClientClosed() {
			return errors.New("registry: kafka client closed")
		}
		fs.EachError(func(topic string, p int32, err error) {
			r.log.Warn("registry fetch", "topic", topic, "partition", p, "err", err)
		})
		changed := map[string]bool{}
		last := map[int32]int64{}
		fs.EachRecord(func(rec *kgo.Record) {
			r.apply(ctx, rec, changed)
			last[rec.Partition] = rec.Offset + 1
		})
		if len(changed) > 0 {
			r.rebuild(changed)
		}
		if len(last) > 0 {
			r.posMu.Lock()
			for p, o := range last {
				r.pos[p] = o
			}
			close(r.advanced)
			r.advanced = make(chan struct{})
			r.posMu.Unlock()
			r.checkReady(want)
		}
	}
}

func (r *Registry) checkReady(want map[int32]int64) {
	r.posMu.Lock()
	defer r.posMu.Unlock()
	for p, o := range want {
		if r.pos[p] < o {
			return
		}
	}
	r.readyOnce.Do(func() { close(r.ready) })
}

// waitApplied blocks until the record at partition p, offset o has been
// applied to the snapshot.
func (r *Registry) waitApplied(ctx context.Context, p int32, o int64) error {
	for {
		r.posMu.Lock()
		done, ch := r.pos[p] > o, r.advanced
		r.posMu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-r.stopped:
			return errors.New("registry: Run stopped before the write was read back")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// apply folds one record into the state.
func (r *Registry) apply(ctx context.Context, rec *kgo.Record, changed map[string]bool) {
	r.m.records.Inc()
	if rec.Value == nil { // tombstone: the version is deleted
		name, v, ok := parseKey(string(rec.Key))
		if !ok {
			r.log.Warn("registry: tombstone with an unreadable key", "key", string(rec.Key), "offset", rec.Offset)
			return
		}
		delete(r.state[name], v)
		changed[name] = true
		return
	}
	var mr schemas.ModelRecord
	if err := r.o.Serde.Decode(ctx, rec.Value, &mr); err != nil {
		r.m.undecodable.Inc()
		r.log.Error("registry: undecodable record skipped", "key", string(rec.Key), "partition", rec.Partition, "offset", rec.Offset, "err", err)
		return
	}
	if k := Key(mr.Name, mr.Version); k != string(rec.Key) {
		r.log.Warn("registry: record key does not match its value; the value wins", "key", string(rec.Key), "value", k)
	}
	vs := r.state[mr.Name]
	if vs == nil {
		vs = map[int32]entry{}
		r.state[mr.Name] = vs
	}
	r.seq++
	vs[mr.Version] = entry{rec: mr, seq: r.seq}
	changed[mr.Name] = true
}

// rebuild stores a new snapshot with the changed models rebuilt, loading
// champions that changed.
func (r *Registry) rebuild(changed map[string]bool) {
	old := r.snap.Load()
	next := &snapshot{models: make(map[string]*modelSnap, len(old.models)+len(changed))}
	for n, m := range old.models {
		next.models[n] = m
	}
	for name := range changed {
		vs := r.state[name]
		if len(vs) == 0 {
			delete(next.models, name)
			continue
		}
		ms := &modelSnap{aliases: map[string]int32{}}
		aliasSeq := map[string]uint64{}
		for _, e := range vs {
			ms.records = append(ms.records, e.rec)
			for _, a := range e.rec.Aliases {
				if e.seq > aliasSeq[a] {
					aliasSeq[a], ms.aliases[a] = e.seq, e.rec.Version
				}
			}
		}
		slices.SortFunc(ms.records, func(a, b schemas.ModelRecord) int { return int(a.Version) - int(b.Version) })
		ms.serving = map[string]*Loaded{}
		for _, alias := range r.servedAliases(name) {
			if l := r.serve(name, alias, ms); l != nil {
				ms.serving[alias] = l
			}
		}
		next.models[name] = ms
	}
	r.snap.Store(next)
}

// servedAliases lists the aliases of a model that are loaded: Champion
// first, then Options.Aliases[name].
func (r *Registry) servedAliases(name string) []string {
	out := []string{Champion}
	for _, a := range r.o.Aliases[name] {
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// serve returns what should serve for an alias of a model: its record's
// verified artifact, or what served before when it fails (see the package
// doc for an alias on no version).
func (r *Registry) serve(name, alias string, ms *modelSnap) *Loaded {
	loaded := r.loaded[name]
	if loaded == nil {
		loaded = map[string]*Loaded{}
		r.loaded[name] = loaded
	}
	cur := loaded[alias]
	v, ok := ms.aliases[alias]
	if !ok {
		if cur == nil {
			return nil
		}
		if alias == Champion {
			r.log.Warn("registry: no version holds the champion alias; the previous champion keeps serving", "model", name, "version", cur.Record.Version)
			return cur
		}
		r.log.Info("registry: alias removed; it no longer serves", "model", name, "alias", alias, "version", cur.Record.Version)
		delete(loaded, alias)
		r.m.serving.WithLabelValues(name, alias).Set(0)
		return nil
	}
	rec, _ := ms.get(v)
	if cur != nil && cur.Record.Version == rec.Version && cur.Record.SHA256 == rec.SHA256 {
		// Same artifact; refresh the record (aliases, reason).
		l := &Loaded{Record: rec, Model: cur.Model}
		loaded[alias] = l
		return l
	}
	var m model.Model
	for _, o := range loaded { // another alias already serves this artifact
		if o.Record.Version == rec.Version && o.Record.SHA256 == rec.SHA256 && o.Record.Signature == rec.Signature {
			m = o.Model
		}
	}
	if m == nil {
		key := name + "\x00" + alias
		id := fmt.Sprintf("%d/%s", rec.Version, rec.SHA256)
		if r.refused[key] == id {
			return cur
		}
		var reason string
		var err error
		m, reason, err = r.verify(rec)
		if err != nil {
			r.refused[key] = id
			r.m.refused.WithLabelValues(name, reason).Inc()
			attrs := []any{"model", name, "alias", alias, "version", rec.Version, "artifact_uri", rec.ArtifactURI, "reason", reason, "err", err}
			if cur != nil {
				attrs = append(attrs, "serving_version", cur.Record.Version)
			}
			msg := "registry: " + alias + " artifact refused; the alias's previous version keeps serving"
			if alias == Champion {
				msg = "registry: champion artifact refused; the previous champion keeps serving"
			}
			r.log.Error(msg, attrs...)
			return cur
		}
		delete(r.refused, key)
	}
	l := &Loaded{Record: rec, Model: m}
	loaded[alias] = l
	var from int32
	if cur != nil {
		from = cur.Record.Version
	}
	r.m.serving.WithLabelValues(name, alias).Set(float64(rec.Version))
	if alias != Champion {
		r.log.Info("registry: alias swapped", "model", name, "alias", alias, "from", from, "to", rec.Version, "sha256", rec.SHA256, "reason", rec.Reason)
		return l
	}
	r.m.swaps.WithLabelValues(name).Inc()
	r.m.champion.WithLabelValues(name).Set(float64(rec.Version))
	r.log.Info("registry: champion swapped", "model", name, "from", from, "to", rec.Version, "sha256", rec.SHA256, "reason", rec.Reason)
	if r.o.OnSwap != nil {
		r.o.OnSwap(name, from, rec.Version)
	}
	return l
}

// verify is Verify with the registry's key, reading artifacts of its own
// blob store through it (a mem:// or already opened bucket) and others
// with Read.
func (r *Registry) verify(rec schemas.ModelRecord) (model.Model, string, error) {
	read := Read
	if b := r.o.Blobs; b != nil {
		read = func(uri string) ([]byte, error) { return b.Read(context.Background(), uri) }
	}
	return verify(rec, r.o.PublicKey, read)
}

// Key is the record key of a version: "<name>/<version>".
func Key(name string, version int32) string {
	return name + "/" + strconv.FormatInt(int64(version), 10)
}

func parseKey(k string) (string, int32, bool) {
	i := strings.LastIndexByte(k, '/')
	if i <= 0 {
		return "", 0, false
	}
	v, err := strconv.ParseInt(k[i+1:], 10, 32)
	if err != nil {
		return "", 0, false
	}
	return k[:i], int32(v), true
}
