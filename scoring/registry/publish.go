package registry

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/schemas"
	"github.com/weirhq/weir/scoring/model"
)

// Publish records a new model version. rec.Format names the artifact's
// format (model.Load's); when empty it is detected (model.Detect). The
// artifact must load, and fit the record as Verify checks it: its name
// must be rec.Name where the format records one, and rec.Features (filled
// from the artifact's feature names when empty and the artifact has real
// names) must be the model's inputs in order. When rec.Version is 0 the
// next version is assigned. Publish writes the artifact to the blob store,
// sets Format, ArtifactURI, SHA256 and CreatedAt (when 0), and produces the
// record synchronously; for each alias in rec.Aliases that another version
// holds, it then produces that version's record with the alias removed. It
// returns once Run has read its writes back, so Get, List and Champion see
// them.
//
// rec.Signature is kept as given (see Sign); when empty and
// Options.SigningKey is set, Publish signs. With Options.PublicKey set,
// Publish refuses an artifact whose signature does not verify.
//
// Publish needs Run to be running and Blobs to be set.
func (r *Registry) Publish(ctx context.Context, rec schemas.ModelRecord, artifact []byte) (schemas.ModelRecord, error) {
	fail := func(err error) (schemas.ModelRecord, error) {
		return schemas.ModelRecord{}, fmt.Errorf("registry: publish %s: %w", rec.Name, err)
	}
	if r.o.Blobs == nil {
		return fail(errors.New("no blob store configured"))
	}
	if !validName(rec.Name) {
		return fail(fmt.Errorf("model name %q: use letters, digits, '_', '-' and '.'", rec.Name))
	}
	if rec.Format == "" {
		if rec.Format = model.Detect(artifact); rec.Format == "" {
			return fail(fmt.Errorf("no format given and the artifact is none of %q, %q, %q", model.FormatLogReg, model.FormatXGBoostJSON, model.FormatLightGBMText))
		}
	}
	m, err := model.Load(rec.Format, artifact)
	if err != nil {
		return fail(err)
	}
	if len(rec.Features) == 0 {
		names := m.FeatureNames()
		if !named(names) {
			return fail(fmt.Errorf("the %s artifact does not name its %d features: give the record's features (view.feature, in the model's input order)", rec.Format, m.NumFeatures()))
		}
		rec.Features = slices.Clone(names)
	}
	if err := checkArtifact(rec, m); err != nil {
		return fail(err)
	}
	if rec.Signature == "" && r.o.SigningKey != nil {
		rec.Signature = Sign(r.o.SigningKey, rec.Name, rec.Format, artifact)
	}
	if r.o.PublicKey != nil {
		chk := rec
		chk.SHA256 = model.SHA256(artifact)
		if err := checkSignature(chk, r.o.PublicKey); err != nil {
			return fail(err)
		}
	}
	if err := r.WaitReady(ctx); err != nil {
		return fail(err)
	}
	r.pubMu.Lock()
	defer r.pubMu.Unlock()

	ms := r.snap.Load().model(rec.Name)
	if rec.Version == 0 {
		rec.Version = 1
		if ms != nil && len(ms.records) > 0 {
			rec.Version = ms.records[len(ms.records)-1].Version + 1
		}
	} else if _, ok := ms.get(rec.Version); ok {
		return fail(fmt.Errorf("version %d: %w", rec.Version, ErrVersionExists))
	}
	if rec.Version < 0 {
		return fail(fmt.Errorf("version %d: must be positive", rec.Version))
	}
	uri, err := r.o.Blobs.Put(rec.Name, rec.Version, rec.Format, artifact)
	if err != nil {
		return fail(err)
	}
	rec.ArtifactURI = uri
	rec.SHA256 = model.SHA256(artifact)
	if rec.CreatedAt == 0 {
		rec.CreatedAt = r.now().UnixMilli()
	}
	normalize(&rec)
	out := append([]schemas.ModelRecord{rec}, r.releases(ms, rec.Version, rec.Aliases)...)
	if err := r.produce(ctx, out); err != nil {
		return fail(err)
	}
	return rec, nil
}

// MoveAlias makes move m: it points alias m.Alias of model m.Model at
// version m.To, and is the one way an alias moves (Promote and Rollback
// decide m; call those). It verifies the target's artifact (refusing to
// move to one that would not load) and that m.From still holds the alias
// (0: none; else ErrAliasMoved), then produces the target's record with
// the alias added and m recorded in its Moves (replacing the entry of the
// same alias; m.At is set to now), then the previous holder's record with
// the alias removed. The records' own Reason is left as it is. When m.To
// already holds the alias and its artifact verifies, it writes nothing.
// It returns the target's record as written and once Run has read it
// back.
//
// MoveAlias needs Run to be running.
func (r *Registry) MoveAlias(ctx context.Context, m Move) (schemas.ModelRecord, error) {
	fail := func(err error) (schemas.ModelRecord, error) {
		return schemas.ModelRecord{}, fmt.Errorf("registry: move %s alias %q to v%d: %w", m.Model, m.Alias, m.To, err)
	}
	if err := checkMove(m); err != nil {
		return fail(err)
	}
	if err := r.WaitReady(ctx); err != nil {
		return fail(err)
	}
	r.pubMu.Lock()
	defer r.pubMu.Unlock()

	ms := r.snap.Load().model(m.Model)
	target, ok := ms.get(m.To)
	if !ok {
		return fail(ErrNoVersion)
	}
	if _, _, err := r.verify(target); err != nil {
		return fail(err)
	}
	holder := ms.aliases[m.Alias] // 0: none (ms is not nil: it has target)
	if holder != m.From {
		return fail(fmt.Errorf("%w: %s holds it, not %s", ErrAliasMoved, vname(holder), vname(m.From)))
	}
	if holder == m.To {
		return target, nil
	}
	target = clone(target)
	if !slices.Contains(target.Aliases, m.Alias) {
		target.Aliases = append(target.Aliases, m.Alias)
	}
	m.At = r.now()
	target.Moves = slices.DeleteFunc(target.Moves, func(am schemas.AliasMove) bool { return am.Alias == m.Alias })
	target.Moves = append(target.Moves, m.record())
	out := append([]schemas.ModelRecord{target}, r.releases(ms, m.To, []string{m.Alias})...)
	if err := r.produce(ctx, out); err != nil {
		return fail(err)
	}
	return target, nil
}

// releases returns the records of versions other than keep that hold one
// of aliases, with those aliases removed.
func (r *Registry) releases(ms *modelSnap, keep int32, aliases []string) []schemas.ModelRecord {
	if ms == nil {
		return nil
	}
	var out []schemas.ModelRecord
	for _, rec := range ms.records {
		if rec.Version == keep || !slices.ContainsFunc(rec.Aliases, func(a string) bool { return slices.Contains(aliases, a) }) {
			continue
		}
		rec = clone(rec)
		rec.Aliases = slices.DeleteFunc(rec.Aliases, func(a string) bool { return slices.Contains(aliases, a) })
		out = append(out, rec)
	}
	return out
}

// produce writes records in order and waits until Run has applied them.
func (r *Registry) produce(ctx context.Context, recs []schemas.ModelRecord) error {
	krs := make([]*kgo.Record, len(recs))
	for i, rec := range recs {
		b, err := r.o.Serde.Encode(rec)
		if err != nil {
			return err
		}
		krs[i] = &kgo.Record{Topic: r.o.Topic, Key: []byte(Key(rec.Name, rec.Version)), Value: b}
	}
	if err := r.prod.ProduceSync(ctx, krs...).FirstErr(); err != nil {
		return fmt.Errorf("produce to %s: %w", r.o.Topic, err)
	}
	for _, kr := range krs {
		if err := r.waitApplied(ctx, kr.Partition, kr.Offset); err != nil {
			return fmt.Errorf("read back %s: %w", kr.Key, err)
		}
	}
	return nil
}

// clone copies a record's slices and map so it can be changed.
func clone(rec schemas.ModelRecord) schemas.ModelRecord {
	rec.Features = slices.Clone(rec.Features)
	rec.Views = slices.Clone(rec.Views)
	rec.Aliases = slices.Clone(rec.Aliases)
	rec.Metrics = maps.Clone(rec.Metrics)
	rec.Moves = slices.Clone(rec.Moves)
	normalize(&rec)
	return rec
}

// normalize makes nil collections empty, as Avro arrays and maps decode.
func normalize(rec *schemas.ModelRecord) {
	if rec.Features == nil {
		rec.Features = []string{}
	}
	if rec.Views == nil {
		rec.Views = []string{}
	}
	if rec.Aliases == nil {
		rec.Aliases = []string{}
	}
	if rec.Metrics == nil {
		rec.Metrics = map[string]float64{}
	}
	if rec.Moves == nil {
		rec.Moves = []schemas.AliasMove{}
	}
}
