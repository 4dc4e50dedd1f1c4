package schemas

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"
)

// Registry is what Serde needs of a schema registry.
type Registry interface {
	// Register registers schema text under subject and returns its global id
	// (the existing id when the same schema is already registered).
	Register(ctx context.Context, subject, schema string) (int, error)
	// SchemaByID returns the schema text registered under id.
	SchemaByID(ctx context.Context, id int) (string, error)
}

// SRClient adapts a franz-go schema-registry client to Registry; it works
// against any Confluent-compatible registry.
type SRClient struct{ *sr.Client }

var _ Registry = SRClient{}

// NewSRClient returns a registry client for the registry at url.
func NewSRClient(url string, opts ...sr.ClientOpt) (SRClient, error) {
	cl, err := sr.NewClient(append([]sr.ClientOpt{sr.URLs(url)}, opts...)...)
	if err != nil {
		return SRClient{}, fmt.Errorf("schema registry %s: %w", url, err)
	}
	return SRClient{cl}, nil
}

// Register implements Registry.
func (c SRClient) Register(ctx context.Context, subject, schema string) (int, error) {
	id, err := c.RegisterSchema(ctx, subject, sr.Schema{Schema: schema, Type: sr.TypeAvro}, -1, -1)
	if err != nil {
		return 0, fmt.Errorf("register schema under subject %q: %w", subject, err)
	}
	return id, nil
}

// SchemaByID implements Registry.
func (c SRClient) SchemaByID(ctx context.Context, id int) (string, error) {
	s, err := c.Client.SchemaByID(ctx, id)
	if err != nil {
		return "", fmt.Errorf("schema id %d: %w", id, err)
	}
	return s.Schema, nil
}

// ErrRegistryUnavailable marks a decode that failed because the registry
// could not be asked for a writer schema (unreachable, 5xx): unlike an
// unknown id or a bad body, retrying later may succeed.
var ErrRegistryUnavailable = errors.New("schema registry unavailable")

// Subject returns the registry subject of a topic's values (TopicNameStrategy).
func Subject(topic string) string { return topic + "-value" }

// Serde encodes one record type in the Confluent wire format under a
// registered schema id and decodes values written with any schema id the
// registry knows, resolving the writer schema against the reader schema.
// It is safe for concurrent use.
type Serde struct {
	schema *Schema
	id     int
	reg    Registry

	mu         sync.RWMutex
	writers    map[int]avro.Schema // schema id -> schema to decode with (resolved)
	projectors map[projKey]*Projector
}

type projKey struct {
	id     int
	fields string
}

// NewSerde registers schema under subject and returns a Serde for it.
func NewSerde(ctx context.Context, reg Registry, subject string, schema *Schema) (*Serde, error) {
	id, err := reg.Register(ctx, subject, schema.Text)
	if err != nil {
		return nil, fmt.Errorf("schemas: serde for %s: %w", schema.Name, err)
	}
	return &Serde{schema: schema, id: id, reg: reg, writers: map[int]avro.Schema{id: schema.Avro}}, nil
}

// ID is the registered schema id values are written with.
func (s *Serde) ID() int { return s.id }

// Schema is the reader and writer schema.
func (s *Serde) Schema() *Schema { return s.schema }

// AppendEncode appends the framed encoding of v to dst.
func (s *Serde) AppendEncode(dst []byte, v any) ([]byte, error) {
	body, err := avro.Marshal(s.schema.Avro, v)
	if err != nil {
		return dst, fmt.Errorf("schemas: encode %s: %w", s.schema.Name, err)
	}
	dst = AppendHeader(dst, s.id)
	return append(dst, body...), nil
}

// Encode returns the framed encoding of v.
func (s *Serde) Encode(v any) ([]byte, error) { return s.AppendEncode(nil, v) }

// Decode decodes a framed value into v (a pointer to the record's struct).
func (s *Serde) Decode(ctx context.Context, b []byte, v any) error {
	id, body, err := SplitHeader(b)
	if err != nil {
		return err
	}
	w, err := s.writer(ctx, id)
	if err != nil {
		return err
	}
	if err := avro.Unmarshal(w, body, v); err != nil {
		return fmt.Errorf("schemas: decode %s (schema id %d): %w", s.schema.Name, id, err)
	}
	return nil
}

// Projection decodes only some top-level fields of framed values, whatever
// schema id they were written with (a projector is compiled once per id).
type Projection struct {
	s      *Serde
	fields []string
	key    string
}

// Projection returns a projection of the named fields.
func (s *Serde) Projection(fields []string) *Projection {
	return &Projection{s: s, fields: slices.Clone(fields), key: fieldsKey(fields)}
}

// Project decodes the projection's fields of a framed value into out, in
// the order they were named. Values of string fields alias b.
func (p *Projection) Project(ctx context.Context, b []byte, out []Value) error {
	return p.s.project(ctx, b, p.fields, p.key, out)
}

// Project decodes only the named top-level fields of a framed value into
// out; a Projection avoids the per-call work of naming them.
func (s *Serde) Project(ctx context.Context, b []byte, fields []string, out []Value) error {
	return s.project(ctx, b, fields, fieldsKey(fields), out)
}

func (s *Serde) project(ctx context.Context, b []byte, fields []string, fkey string, out []Value) error {
	id, body, err := SplitHeader(b)
	if err != nil {
		return err
	}
	key := projKey{id, fkey}
	s.mu.RLock()
	p := s.projectors[key]
	s.mu.RUnlock()
	if p == nil {
		if p, err = s.projector(ctx, id, fields, key); err != nil {
			return err
		}
	}
	if err := p.Project(body, out); err != nil {
		return fmt.Errorf("schemas: decode %s (schema id %d): %w", s.schema.Name, id, err)
	}
	return nil
}

func fieldsKey(fields []string) string {
	n := 0
	for _, f := range fields {
		n += len(f) + 1
	}
	b := make([]byte, 0, n)
	for _, f := range fields {
		b = append(append(b, f...), 0)
	}
	return string(b)
}

func (s *Serde) projector(ctx context.Context, id int, fields []string, key projKey) (*Projector, error) {
	var w avro.Schema = s.schema.Avro
	if id != s.id {
		text, err := s.writerText(ctx, id)
		if err != nil {
			return nil, err
		}
		if w, err = avro.ParseWithCache(text, "", &avro.SchemaCache{}); err != nil {
			return nil, fmt.Errorf("schemas: parse writer schema id %d: %w", id, err)
		}
	}
	p, err := NewProjector(w, s.schema.Avro, fields)
	if err != nil {
		return nil, fmt.Errorf("schemas: %s under schema id %d: %w", s.schema.Name, id, err)
	}
	s.mu.Lock()
	if s.projectors == nil {
		s.projectors = map[projKey]*Projector{}
	}
	s.projectors[key] = p
	s.mu.Unlock()
	return p, nil
}

// writerText asks the registry for a writer schema.
func (s *Serde) writerText(ctx context.Context, id int) (string, error) {
	text, err := s.reg.SchemaByID(ctx, id)
	if err != nil {
		var re *sr.ResponseError
		if errors.As(err, &re) && re.StatusCode >= 400 && re.StatusCode < 500 {
			// The registry answered: it does not know the id.
			return "", fmt.Errorf("schemas: writer schema of %s: %w", s.schema.Name, err)
		}
		return "", fmt.Errorf("schemas: writer schema of %s: %w: %w", s.schema.Name, ErrRegistryUnavailable, err)
	}
	return text, nil
}

func (s *Serde) writer(ctx context.Context, id int) (avro.Schema, error) {
	s.mu.RLock()
	w, ok := s.writers[id]
	s.mu.RUnlock()
	if ok {
		return w, nil
	}
	text, err := s.writerText(ctx, id)
	if err != nil {
		return nil, err
	}
	ws, err := avro.ParseWithCache(text, "", &avro.SchemaCache{})
	if err != nil {
		return nil, fmt.Errorf("schemas: parse writer schema id %d: %w", id, err)
	}
	resolved, err := avro.NewSchemaCompatibility().Resolve(s.schema.Avro, ws)
	if err != nil {
		return nil, fmt.Errorf("schemas: writer schema id %d cannot be read as %s: %w", id, s.schema.Name, err)
	}
	s.mu.Lock()
	s.writers[id] = resolved
	s.mu.Unlock()
	return resolved, nil
}
