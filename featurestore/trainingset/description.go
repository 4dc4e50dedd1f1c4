package trainingset

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"

	"github.com/weirhq/weir/featurestore/offline"
)

// Format names this version of the Description's layout.
const Format = "weir.training_set/v1"

// MetadataKey is the Parquet key-value metadata key of the description.
const MetadataKey = "weir.training_set"

// Description says exactly what a training set was made from, to be stored
// with it and with every model trained on it. It holds no build time or
// host: the same inputs give the same description, byte for byte.
type Description struct {
	Format  string            `json:"format"`
	Spine   SpineDescription  `json:"spine"`
	Views   []ViewDescription `json:"views"`
	Cutoff  CutoffDescription `json:"cutoff"`
	Join    string            `json:"join"`
	SQL     []string          `json:"sql"` // one per view, with {lo} and {hi}
	Columns []Column          `json:"columns"`
	Rows    int64             `json:"rows"`
	// ContentHash is "sha256:<hex>" of the rows (hash.go defines the
	// encoding), the same for every output format.
	ContentHash string `json:"content_hash"`
}

// SpineDescription says where the spine came from.
type SpineDescription struct {
	Source string `json:"source"` // csv, parquet or clickhouse
	Path   string `json:"path,omitempty"`
	// SHA256 is the spine file's, hex.
	SHA256          string `json:"sha256,omitempty"`
	Table           string `json:"table,omitempty"`
	Where           string `json:"where,omitempty"`
	SQL             string `json:"sql,omitempty"`
	TimestampColumn string `json:"timestamp_column"`
	TimestampUnit   string `json:"timestamp_unit"`
}

// ViewDescription is one joined view version.
type ViewDescription struct {
	offline.DescribedView
	EntityColumn string   `json:"entity_column"`
	Columns      []string `json:"columns"` // the output's columns of its features
}

// CutoffDescription is the join's cut-off: mode "event_time" (none), or
// "known_at" with a time, an offset vector or both.
type CutoffDescription struct {
	Mode    string               `json:"mode"`
	KnownAt int64                `json:"known_at_ms,omitempty"`
	Offsets offline.OffsetVector `json:"offsets,omitempty"`
}

func describeCutoff(c offline.Cutoff) CutoffDescription {
	if c.KnownAt == 0 && c.Offsets == nil {
		return CutoffDescription{Mode: "event_time"}
	}
	d := CutoffDescription{Mode: "known_at", KnownAt: c.KnownAt, Offsets: c.Offsets}
	if c.Offsets != nil && len(c.Offsets) == 0 {
		d.Mode = "known_at (empty offset vector: no feature row known)"
	}
	return d
}

// FileSHA256 returns the hex SHA-256 of a file, for SpineDescription.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("trainingset: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("trainingset: hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
