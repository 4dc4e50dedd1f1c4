package schemas

import (
	"embed"
	"fmt"
	"sort"

	"github.com/hamba/avro/v2"
)

//go:embed *.avsc
var files embed.FS

// Names of the embedded schemas, as accepted by Parse.
const (
	TransactionSchema   = "transaction"
	LabelSchema         = "label"
	FeatureRowSchema    = "feature_row"
	PredictionSchema    = "prediction"
	MonitorMetricSchema = "monitor_metric"
	AlertSchema         = "alert"
	CommandSchema       = "command"
	ModelRecordSchema   = "model_record"
)

// Schema is one parsed embedded schema.
type Schema struct {
	Name string      // file name without .avsc, e.g. "feature_row"
	Text string      // the .avsc text, as registered
	Avro avro.Schema // parsed
}

// Names lists the embedded schemas.
func Names() []string {
	ents, _ := files.ReadDir(".")
	var out []string
	for _, e := range ents {
		n := e.Name()
		out = append(out, n[:len(n)-len(".avsc")])
	}
	sort.Strings(out)
	return out
}

// Parse parses the embedded schema with the given name. Each call parses
// anew into its own cache, so callers should keep the result.
func Parse(name string) (*Schema, error) {
	b, err := files.ReadFile(name + ".avsc")
	if err != nil {
		return nil, fmt.Errorf("schemas: no embedded schema %q (known: %v)", name, Names())
	}
	s, err := avro.ParseBytesWithCache(b, "", &avro.SchemaCache{})
	if err != nil {
		return nil, fmt.Errorf("schemas: parse %s.avsc: %w", name, err)
	}
	return &Schema{Name: name, Text: string(b), Avro: s}, nil
}

// MustParse is Parse for the embedded schemas, which are known to parse (a
// test checks); it panics on a programmer error such as a misspelt name.
func MustParse(name string) *Schema {
	s, err := Parse(name)
	if err != nil {
		panic(err)
	}
	return s
}
