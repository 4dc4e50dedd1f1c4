// Package catalog records every feature-view version ever defined, so that
// older versions stay nameable after weir.yaml moved on: a training set can
// be built from a version's table, the serving API can answer a request
// naming it, and `weir features list` shows the versions side by side.
//
// A view's version hashes its definition (config.View.Version), so a
// changed weir.yaml makes a new version and leaves the old one's Redis keys
// and ClickHouse table in place; only its definition, which says what
// those hold, would be lost with the old file. The catalog keeps it.
//
// # Records
//
// The catalog is a compacted Kafka topic (config.Config.ViewsTopic), one
// partition. A record's key is "<view>/<version>" and its value a YAML
// document:
//
//	registered_at: 2026-12-06T01:02:03Z   # first publication
//	by: processor payments                # who published it
//	view: {name: ..., source: ..., ...}   # the config.View, as in weir.yaml
//
// A definition never changes under its version, so a version is written
// once (Publish skips versions already recorded) and compaction keeps it.
// On read, a record whose definition does not hash to its key's version
// (a hand-written or corrupt record) is skipped and reported, never used.
package catalog

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"gopkg.in/yaml.v3"

	"github.com/weirhq/weir/internal/config"
)

// Entry is one recorded view version.
type Entry struct {
	View         config.View
	Version      string
	RegisteredAt time.Time
	By           string
}

// record is an Entry's value on the topic.
type record struct {
	RegisteredAt time.Time   `yaml:"registered_at"`
	By           string      `yaml:"by"`
	View         config.View `yaml:"view"`
}

// Key is the record key of a view version.
func Key(view, version string) string { return view + "/" + version }

// Encode is an entry's record value.
func Encode(e Entry) ([]byte, error) {
	b, err := yaml.Marshal(record{RegisteredAt: e.RegisteredAt.UTC(), By: e.By, View: e.View})
	if err != nil {
		return nil, fmt.Errorf("catalog: encode %s: %w", Key(e.View.Name, e.Version), err)
	}
	return b, nil
}

// Decode reads a record; it fails when the definition does not hash to the
// key's version.
func Decode(key string, value []byte) (Entry, error) {
	var r record
	if err := yaml.Unmarshal(value, &r); err != nil {
		return Entry{}, fmt.Errorf("catalog: record %s: %w", key, err)
	}
	e := Entry{View: r.View, Version: r.View.Version(), RegisteredAt: r.RegisteredAt, By: r.By}
	if k := Key(e.View.Name, e.Version); k != key {
		return Entry{}, fmt.Errorf("catalog: record %s holds a definition of %s: skipped", key, k)
	}
	return e, nil
}

// Catalog is the recorded versions, read once. It is immutable.
type Catalog struct {
	byView map[string][]Entry // oldest registration first
	// Skipped are the records that did not decode, with why.
	Skipped []error
}

// Versions returns a view's recorded versions, oldest registration first.
func (c *Catalog) Versions(view string) []Entry {
	if c == nil {
		return nil
	}
	return slices.Clone(c.byView[view])
}

// Views lists the views with at least one recorded version, sorted.
func (c *Catalog) Views() []string {
	if c == nil {
		return nil
	}
	out := make([]string, 0, len(c.byView))
	for v := range c.byView {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}

// Get returns the definition of one version.
func (c *Catalog) Get(view, version string) (config.View, bool) {
	if c == nil {
		return config.View{}, false
	}
	for _, e := range c.byView[view] {
		if e.Version == version {
			return e.View, true
		}
	}
	return config.View{}, false
}

// Previous returns the recorded definitions that are not in current (by
// name and version), newest registration first per view, views in name
// order: the older versions a deployment may still name.
func (c *Catalog) Previous(current []config.View) []config.View {
	cur := map[string]bool{}
	for i := range current {
		cur[Key(current[i].Name, current[i].Version())] = true
	}
	var out []config.View
	for _, name := range c.Views() {
		es := c.byView[name]
		for i := len(es) - 1; i >= 0; i-- {
			if !cur[Key(name, es[i].Version)] {
				out = append(out, es[i].View)
			}
		}
	}
	return out
}

// Read reads the whole catalog topic (up to its end offsets when called).
// opts are the base client options. A topic that does not exist is an
// empty catalog.
func Read(ctx context.Context, opts []kgo.Opt, topic string) (*Catalog, error) {
	cl, err := kgo.NewClient(append(slices.Clone(opts), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		return nil, fmt.Errorf("catalog: read %s: kafka client: %w", topic, err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if errors.Is(err, kerr.UnknownTopicOrPartition) {
		return &Catalog{byView: map[string][]Entry{}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("catalog: read %s: end offsets: %w", topic, err)
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition] = o.Offset
		}
	})
	latest := map[string][]byte{}
	var order []string
	for len(want) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("catalog: read %s: %w", topic, err)
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return nil, fmt.Errorf("catalog: read %s: %w", topic, ferr)
		}
		fs.EachRecord(func(r *kgo.Record) {
			k := string(r.Key)
			if _, seen := latest[k]; !seen {
				order = append(order, k)
			}
			latest[k] = r.Value // nil: a tombstone
			if w, ok := want[r.Partition]; ok && r.Offset+1 >= w {
				delete(want, r.Partition)
			}
		})
	}
	c := &Catalog{byView: map[string][]Entry{}}
	for _, k := range order {
		v := latest[k]
		if v == nil {
			continue
		}
		e, err := Decode(k, v)
		if err != nil {
			c.Skipped = append(c.Skipped, err)
			continue
		}
		c.byView[e.View.Name] = append(c.byView[e.View.Name], e)
	}
	for _, es := range c.byView {
		slices.SortStableFunc(es, func(a, b Entry) int { return a.RegisteredAt.Compare(b.RegisteredAt) })
	}
	return c, nil
}

// Publish records the versions of views that the catalog does not hold yet,
// registered now by by (e.g. "processor payments"), and returns how many
// it wrote. cl produces synchronously to topic.
func Publish(ctx context.Context, opts []kgo.Opt, topic string, views []config.View, by string, now time.Time) (int, error) {
	have, err := Read(ctx, opts, topic)
	if err != nil {
		return 0, err
	}
	var recs []*kgo.Record
	for i := range views {
		v := views[i]
		ver := v.Version()
		if _, ok := have.Get(v.Name, ver); ok {
			continue
		}
		b, err := Encode(Entry{View: v, Version: ver, RegisteredAt: now, By: by})
		if err != nil {
			return 0, err
		}
		recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(Key(v.Name, ver)), Value: b})
	}
	if len(recs) == 0 {
		return 0, nil
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return 0, fmt.Errorf("catalog: publish: kafka client: %w", err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		names := make([]string, len(recs))
		for i, r := range recs {
			names[i] = string(r.Key)
		}
		return 0, fmt.Errorf("catalog: publish %s to %s: %w", strings.Join(names, ", "), topic, err)
	}
	return len(recs), nil
}
