package registry

import (
	"crypto/ed25519"
	"fmt"
	"slices"
	"strconv"

	"github.com/weirhq/weir/schemas"
	"github.com/weirhq/weir/scoring/model"
)

// Verify reads a record's artifact and checks it before it may serve: its
// SHA-256 must equal the record's (always), the record's signature must
// verify with pub when pub is not nil (see Sign), it must load as the
// record's format (model.Load), and it must fit the record (see
// checkArtifact). On failure reason is one of "signature", "read",
// "checksum", "parse", "mismatch".
func Verify(rec schemas.ModelRecord, pub ed25519.PublicKey) (m model.Model, reason string, err error) {
	return verify(rec, pub, Read)
}

// verify is Verify reading artifacts with read.
func verify(rec schemas.ModelRecord, pub ed25519.PublicKey, read func(uri string) ([]byte, error)) (m model.Model, reason string, err error) {
	fail := func(reason string, err error) (model.Model, string, error) {
		return nil, reason, fmt.Errorf("registry: verify %s v%d: %w", rec.Name, rec.Version, err)
	}
	if pub != nil {
		if err := checkSignature(rec, pub); err != nil {
			return fail("signature", err)
		}
	}
	b, err := read(rec.ArtifactURI)
	if err != nil {
		return fail("read", err)
	}
	if got := model.SHA256(b); got != rec.SHA256 {
		return fail("checksum", fmt.Errorf("%w: bytes at %s hash to %s, record says %s", ErrChecksum, rec.ArtifactURI, got, rec.SHA256))
	}
	m, err = model.Load(rec.Format, b)
	if err != nil {
		return fail("parse", err)
	}
	if err := checkArtifact(rec, m); err != nil {
		return fail("mismatch", err)
	}
	return m, "", nil
}

// checkArtifact checks that a loaded artifact fits its record. The name is
// compared only where the format records one (logreg-json). The record's
// features are the vector the scorer builds, so there must be exactly
// NumFeatures of them; where the artifact names its features they must
// equal the record's, in order. An artifact without names (XGBoost trained
// on a bare array) and LightGBM's default names Column_0..Column_N-1 say
// nothing of the features: the record's features map to the model's
// inputs by position.
func checkArtifact(rec schemas.ModelRecord, m model.Model) error {
	if lr, ok := m.(*model.LogReg); ok && lr.Name != rec.Name {
		return fmt.Errorf("artifact is of model %q, record says %q", lr.Name, rec.Name)
	}
	if m.ModelFormat() != rec.Format {
		return fmt.Errorf("artifact loaded as %q, record says %q", m.ModelFormat(), rec.Format)
	}
	names := m.FeatureNames()
	if named(names) && !slices.Equal(names, rec.Features) {
		return fmt.Errorf("artifact has features %v, record says %v", names, rec.Features)
	}
	if len(rec.Features) != m.NumFeatures() {
		return fmt.Errorf("artifact takes %d features, record lists %d (%v)", m.NumFeatures(), len(rec.Features), rec.Features)
	}
	return nil
}

// named reports whether an artifact's feature names are real names: not
// nil and not LightGBM's defaults Column_0, Column_1, ... in order.
func named(names []string) bool {
	if names == nil {
		return false
	}
	for i, n := range names {
		if n != "Column_"+strconv.Itoa(i) {
			return true
		}
	}
	return len(names) == 0
}
