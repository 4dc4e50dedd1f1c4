package registry

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/weirhq/weir/schemas"
)

// Diff is what differs between two versions of a model: A is the version
// compared from, B the one compared to. Only fields that differ are set,
// except Metrics, which lists every metric either version has.
type Diff struct {
	Model string `json:"model"`
	A     int32  `json:"a"`
	B     int32  `json:"b"`
	// Fields are the record's single-valued fields that differ, by
	// field name: format, sha256, artifact_uri, signature, parent_version,
	// created_at, created_by, reason, last_move (the latest recorded alias
	// move, see LastMove, as Move.String writes it), aliases.
	Fields []FieldDiff `json:"fields,omitempty"`
	// Features compares the feature vectors.
	Features FeatureDiff `json:"features"`
	// Views compares the view@version lists.
	Views ViewDiff `json:"views"`
	// TrainingSet lists the keys of the training_set JSON descriptions
	// (flattened to dotted paths; arrays compared whole) whose values
	// differ. Keys ending in _ms that hold a Unix-millisecond time are
	// shown with the time too.
	TrainingSet []FieldDiff `json:"training_set,omitempty"`
	// Metrics are every metric of either version, by name.
	Metrics []MetricDiff `json:"metrics,omitempty"`
}

// FieldDiff is one field's value in A and in B ("" when absent).
type FieldDiff struct {
	Field string `json:"field"`
	A     string `json:"a"`
	B     string `json:"b"`
}

// FeatureDiff compares two feature vectors. Reordered means the features
// both have are in a different relative order in B, so the vector each
// builds puts them at other positions.
type FeatureDiff struct {
	Added     []string `json:"added,omitempty"`   // in B only, in B's order
	Removed   []string `json:"removed,omitempty"` // in A only, in A's order
	Reordered bool     `json:"reordered,omitempty"`
	// A and B are the full vectors when they differ at all.
	A []string `json:"a,omitempty"`
	B []string `json:"b,omitempty"`
}

// Same reports whether the vectors are equal.
func (f FeatureDiff) Same() bool { return f.A == nil && f.B == nil }

// ViewDiff compares the feature views two versions read.
type ViewDiff struct {
	Added   []string    `json:"added,omitempty"`   // view@version read by B only
	Removed []string    `json:"removed,omitempty"` // view@version read by A only
	Changed []FieldDiff `json:"changed,omitempty"` // a view both read, at another version (Field: the view)
}

// Same reports whether both read the same views at the same versions.
func (v ViewDiff) Same() bool { return len(v.Added)+len(v.Removed)+len(v.Changed) == 0 }

// MetricDiff is one metric side by side. A or B is nil where that version
// lacks it; Delta (B - A) is set when both have it.
type MetricDiff struct {
	Name  string   `json:"name"`
	A     *float64 `json:"a"`
	B     *float64 `json:"b"`
	Delta *float64 `json:"delta,omitempty"`
}

// DiffRecords compares two versions' records.
func DiffRecords(a, b schemas.ModelRecord) Diff {
	d := Diff{Model: b.Name, A: a.Version, B: b.Version}
	if a.Name != b.Name {
		d.Fields = append(d.Fields, FieldDiff{"name", a.Name, b.Name})
	}
	field := func(name, x, y string) {
		if x != y {
			d.Fields = append(d.Fields, FieldDiff{name, x, y})
		}
	}
	field("format", a.Format, b.Format)
	field("sha256", a.SHA256, b.SHA256)
	field("artifact_uri", a.ArtifactURI, b.ArtifactURI)
	field("signature", signedOrNot(a.Signature), signedOrNot(b.Signature))
	field("parent_version", vname(a.ParentVersion), vname(b.ParentVersion))
	field("created_at", msTime(a.CreatedAt), msTime(b.CreatedAt))
	field("created_by", a.CreatedBy, b.CreatedBy)
	field("reason", a.Reason, b.Reason)
	field("last_move", lastMove(a), lastMove(b))
	field("aliases", strings.Join(sorted(a.Aliases), ","), strings.Join(sorted(b.Aliases), ","))
	d.Features = diffFeatures(a.Features, b.Features)
	d.Views = diffViews(a.Views, b.Views)
	d.TrainingSet = diffJSON(a.TrainingSet, b.TrainingSet)
	d.Metrics = diffMetrics(a.Metrics, b.Metrics)
	return d
}

func lastMove(rec schemas.ModelRecord) string {
	if m, ok := LastMove(rec); ok {
		return m.String()
	}
	return ""
}

func signedOrNot(sig string) string {
	if sig == "" {
		return "unsigned"
	}
	return "signed " + sig
}

func msTime(ms int64) string {
	if ms == 0 {
		return ""
	}
	return time.UnixMilli(ms).UTC().Format(time.RFC3339Nano)
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func diffFeatures(a, b []string) FeatureDiff {
	var d FeatureDiff
	if slices.Equal(a, b) {
		return d
	}
	d.A, d.B = slices.Clone(a), slices.Clone(b)
	if d.A == nil {
		d.A = []string{}
	}
	if d.B == nil {
		d.B = []string{}
	}
	var commonA, commonB []string
	for _, f := range a {
		if slices.Contains(b, f) {
			commonA = append(commonA, f)
		} else {
			d.Removed = append(d.Removed, f)
		}
	}
	for _, f := range b {
		if slices.Contains(a, f) {
			commonB = append(commonB, f)
		} else {
			d.Added = append(d.Added, f)
		}
	}
	d.Reordered = !slices.Equal(commonA, commonB)
	return d
}

func diffViews(a, b []string) ViewDiff {
	split := func(refs []string) (map[string]string, []string) {
		m := map[string]string{}
		var order []string
		for _, r := range refs {
			name, version, _ := strings.Cut(r, "@")
			if _, ok := m[name]; !ok {
				order = append(order, name)
			}
			m[name] = version
		}
		return m, order
	}
	ma, oa := split(a)
	mb, ob := split(b)
	var d ViewDiff
	for _, n := range oa {
		vb, ok := mb[n]
		switch {
		case !ok:
			d.Removed = append(d.Removed, joinView(n, ma[n]))
		case vb != ma[n]:
			d.Changed = append(d.Changed, FieldDiff{n, ma[n], vb})
		}
	}
	for _, n := range ob {
		if _, ok := ma[n]; !ok {
			d.Added = append(d.Added, joinView(n, mb[n]))
		}
	}
	return d
}

func joinView(name, version string) string {
	if version == "" {
		return name
	}
	return name + "@" + version
}

// diffJSON compares two JSON documents key by key (objects flattened to
// dotted paths, other values compared as their JSON). A document that is
// not a JSON object is compared whole, under the key ".".
func diffJSON(a, b string) []FieldDiff {
	fa, fb := flatten(a), flatten(b)
	keys := make([]string, 0, len(fa)+len(fb))
	for k := range fa {
		keys = append(keys, k)
	}
	for k := range fb {
		if _, ok := fa[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var out []FieldDiff
	for _, k := range keys {
		if fa[k] != fb[k] {
			out = append(out, FieldDiff{k, withTime(k, fa[k]), withTime(k, fb[k])})
		}
	}
	return out
}

func flatten(doc string) map[string]string {
	out := map[string]string{}
	if strings.TrimSpace(doc) == "" {
		return out
	}
	var v any
	if err := json.Unmarshal([]byte(doc), &v); err != nil {
		out["."] = doc
		return out
	}
	if _, ok := v.(map[string]any); !ok {
		out["."] = doc
		return out
	}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		if m, ok := v.(map[string]any); ok {
			for k, x := range m {
				p := k
				if prefix != "" {
					p = prefix + "." + k
				}
				walk(p, x)
			}
			return
		}
		b, _ := json.Marshal(v)
		out[prefix] = string(b)
	}
	walk("", v)
	return out
}

// withTime appends the UTC time to a value of a key ending in _ms that
// reads as a Unix-millisecond time after 2001.
func withTime(key, v string) string {
	if !strings.HasSuffix(key, "_ms") {
		return v
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil || ms < 1e12 {
		return v
	}
	return v + " (" + time.UnixMilli(ms).UTC().Format(time.RFC3339) + ")"
}

func diffMetrics(a, b map[string]float64) []MetricDiff {
	names := make([]string, 0, len(a)+len(b))
	for k := range a {
		names = append(names, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	out := make([]MetricDiff, 0, len(names))
	for _, n := range names {
		m := MetricDiff{Name: n}
		if v, ok := a[n]; ok {
			m.A = &v
		}
		if v, ok := b[n]; ok {
			m.B = &v
		}
		if m.A != nil && m.B != nil {
			d := *m.B - *m.A
			m.Delta = &d
		}
		out = append(out, m)
	}
	return out
}

// WriteText writes d for a person: what differs, one line per field,
// then the training-set keys that differ and the metrics side by side.
// Long values are cut to width characters (0: no limit).
func (d Diff) WriteText(w io.Writer, width int) error {
	cut := func(s string) string {
		if s == "" {
			return "-"
		}
		s = strings.ReplaceAll(s, "\n", " ")
		if width > 0 && len(s) > width {
			return s[:width-3] + "..."
		}
		return s
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "%s v%d -> v%d\n", d.Model, d.A, d.B)
	for _, f := range d.Fields {
		fmt.Fprintf(tw, "  %s\t%s\t->\t%s\n", f.Field, cut(f.A), cut(f.B))
	}
	if d.Features.Same() {
		fmt.Fprintf(tw, "  features\tsame\n")
	} else {
		var parts []string
		for _, f := range d.Features.Added {
			parts = append(parts, "+"+f)
		}
		for _, f := range d.Features.Removed {
			parts = append(parts, "-"+f)
		}
		if d.Features.Reordered {
			parts = append(parts, "reordered")
		}
		fmt.Fprintf(tw, "  features\t%s\n", strings.Join(parts, " "))
		fmt.Fprintf(tw, "    v%d\t%s\n", d.A, strings.Join(d.Features.A, ", "))
		fmt.Fprintf(tw, "    v%d\t%s\n", d.B, strings.Join(d.Features.B, ", "))
	}
	if d.Views.Same() {
		fmt.Fprintf(tw, "  views\tsame\n")
	} else {
		var parts []string
		for _, v := range d.Views.Added {
			parts = append(parts, "+"+v)
		}
		for _, v := range d.Views.Removed {
			parts = append(parts, "-"+v)
		}
		for _, c := range d.Views.Changed {
			parts = append(parts, fmt.Sprintf("%s@%s->%s", c.Field, c.A, c.B))
		}
		fmt.Fprintf(tw, "  views\t%s\n", strings.Join(parts, " "))
	}
	if len(d.TrainingSet) == 0 {
		fmt.Fprintf(tw, "  training set\tsame\n")
	} else {
		fmt.Fprintf(tw, "  training set\n")
		for _, f := range d.TrainingSet {
			fmt.Fprintf(tw, "    %s\t%s\t->\t%s\n", f.Field, cut(f.A), cut(f.B))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(d.Metrics) == 0 {
		_, err := fmt.Fprintf(w, "  metrics  none\n")
		return err
	}
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  metrics\tv%d\tv%d\tdelta\n", d.A, d.B)
	num := func(p *float64, sign bool) string {
		switch {
		case p == nil:
			return "-"
		case sign && *p > 0 && !math.IsNaN(*p):
			return "+" + strconv.FormatFloat(*p, 'g', 6, 64)
		}
		return strconv.FormatFloat(*p, 'g', 6, 64)
	}
	for _, m := range d.Metrics {
		fmt.Fprintf(tw, "    %s\t%s\t%s\t%s\n", m.Name, num(m.A, false), num(m.B, false), num(m.Delta, true))
	}
	return tw.Flush()
}
