package config

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Validate checks the config; each problem names the file, line and field.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s:%d: %s: %s", c.path, c.line(field), field, fmt.Sprintf(format, a...)))
	}
	if c.Topics.Partitions < 1 {
		bad("topics.partitions", "must be at least 1, got %d", c.Topics.Partitions)
	}
	if c.Topics.Replication < 1 {
		bad("topics.replication", "must be at least 1, got %d", c.Topics.Replication)
	}
	if len(c.Sources) == 0 {
		bad("sources", "at least one source is needed")
	}
	names := map[string]bool{}
	for i, s := range c.Sources {
		f := fmt.Sprintf("sources[%d]", i)
		switch {
		case s.Name == "":
			bad(f+".name", "is required")
		case names[s.Name]:
			bad(f+".name", "source %q is declared twice", s.Name)
		}
		names[s.Name] = true
		if s.Topic == "" {
			bad(f+".topic", "is required")
		}
		for _, req := range []struct{ field, v string }{{"schema", s.Schema}, {"key", s.Key}, {"event_time", s.EventTime}, {"id", s.IDField}} {
			if req.v == "" {
				bad(f+"."+req.field, "is required")
			}
		}
	}
	entities := map[string]bool{}
	for i, e := range c.Entities {
		if e.Name == "" {
			bad(fmt.Sprintf("entities[%d].name", i), "is required")
		}
		entities[e.Name] = true
	}
	views := map[string]*View{}
	for i := range c.Views {
		v := &c.Views[i]
		f := fmt.Sprintf("views[%d]", i)
		switch {
		case v.Name == "":
			bad(f+".name", "is required")
		case views[v.Name] != nil:
			bad(f+".name", "view %q is declared twice", v.Name)
		case strings.ContainsAny(v.Name, ".:{} "):
			bad(f+".name", "%q may not contain '.', ':', braces or spaces", v.Name)
		}
		views[v.Name] = v
		if _, ok := c.Source(v.Source); !ok {
			bad(f+".source", "unknown source %q", v.Source)
		}
		if !entities[v.Entity] {
			bad(f+".entity", "unknown entity %q (declare it under entities)", v.Entity)
		}
		if v.TTL <= 0 {
			bad(f+".ttl", "must be a positive duration such as 24h")
		}
		if len(v.Features) == 0 {
			bad(f+".features", "at least one feature is needed")
		}
		fnames := map[string]bool{}
		for j, ft := range v.Features {
			ff := fmt.Sprintf("%s.features[%d]", f, j)
			if ft.Name == "" {
				bad(ff+".name", "is required")
			} else if fnames[ft.Name] {
				bad(ff+".name", "feature %q is declared twice in view %q", ft.Name, v.Name)
			}
			fnames[ft.Name] = true
			if !slices.Contains(Aggregations, ft.Agg) {
				bad(ff+".agg", "unknown aggregation %q (one of %s)", ft.Agg, strings.Join(Aggregations, ", "))
			}
			windowless := ft.Agg == "last" || ft.Agg == "time_since_last"
			if ft.Agg != "count" && ft.Agg != "time_since_last" && ft.Field == "" {
				bad(ff+".field", "is required for agg %q", ft.Agg)
			}
			if ft.Window < 0 || (ft.Window == 0 && !windowless) {
				bad(ff+".window", "must be a positive duration for agg %q (only last and time_since_last take none)", ft.Agg)
			}
			if windowless && ft.Window != 0 {
				bad(ff+".window", "agg %q takes no window", ft.Agg)
			}
			if w := ft.Where; w != nil {
				switch {
				case w.Field == "":
					bad(ff+".where.field", "is required")
				case !slices.Contains(FilterOps, w.Op):
					bad(ff+".where.op", "unknown comparison %q (one of %s)", w.Op, strings.Join(FilterOps, " "))
				case ft.Agg == "time_since_last":
					bad(ff+".where", "time_since_last takes no filter")
				}
				switch w.Value.(type) {
				case string:
					if w.Op != "==" && w.Op != "!=" {
						bad(ff+".where.op", "%q compares numbers; a string value takes == or !=", w.Op)
					}
				case int, float64:
				default:
					bad(ff+".where.value", "must be a string or a number, got %v", w.Value)
				}
			}
			if ft.Window.D() > v.TTL.D() {
				bad(ff+".window", "%s is longer than the view's ttl %s", ft.Window.D(), v.TTL.D())
			}
		}
	}
	models := map[string]bool{}
	for i, m := range c.Models {
		f := fmt.Sprintf("models[%d]", i)
		if m.Name == "" {
			bad(f+".name", "is required")
		}
		models[m.Name] = true
		if _, ok := c.Source(m.Source); !ok {
			bad(f+".source", "unknown source %q", m.Source)
		}
		if len(m.Features) == 0 {
			bad(f+".features", "at least one feature is needed")
		}
		for j, ref := range m.Features {
			ff := fmt.Sprintf("%s.features[%d]", f, j)
			vn, fn, ok := SplitFeature(ref)
			if !ok {
				bad(ff, "%q is not of the form view.feature", ref)
				continue
			}
			v := views[vn]
			if v == nil {
				bad(ff, "unknown view %q", vn)
				continue
			}
			if _, ok := v.Feature(fn); !ok {
				bad(ff, "view %q has no feature %q", vn, fn)
			}
			if v.Source != m.Source {
				bad(ff, "view %q reads source %q, the model scores %q", vn, v.Source, m.Source)
			} else if src, ok := c.Source(m.Source); ok && c.EntityKey(v.Entity) != src.Key {
				bad(ff, "view %q is of entity %q, not keyed by the source's key %q: the inline scorer reads only the scored event's own entity's views", vn, v.Entity, src.Key)
			}
		}
		if m.Threshold <= 0 || m.Threshold >= 1 {
			bad(f+".threshold", "must be in (0, 1), got %g", m.Threshold)
		}
	}
	if len(c.Monitors) > 0 && c.Labels.Topic == "" {
		bad("labels.topic", "is required when monitors are declared")
	}
	rules := map[string]bool{}
	for i, m := range c.Monitors {
		f := fmt.Sprintf("monitors[%d]", i)
		if m.Name == "" {
			bad(f+".name", "is required")
		}
		if !models[m.Model] {
			bad(f+".model", "unknown model %q", m.Model)
		}
		if m.Window <= 0 {
			bad(f+".window", "must be positive")
		}
		for j, r := range m.Rules {
			ff := fmt.Sprintf("%s.rules[%d]", f, j)
			if r.Name == "" {
				bad(ff+".name", "is required")
			}
			rules[r.Name] = true
			switch r.Metric {
			case "psi":
				if r.Feature == "" {
					bad(ff+".feature", "is required for psi: 'score' or one of the model's features")
				}
			case "auc":
			default:
				bad(ff+".metric", "unknown metric %q (psi or auc)", r.Metric)
			}
			if r.Op != ">" && r.Op != "<" {
				bad(ff+".op", "must be \">\" or \"<\", got %q", r.Op)
			}
			if r.For < 1 {
				bad(ff+".for", "must be at least 1")
			}
		}
	}
	for i, r := range c.Retrain {
		f := fmt.Sprintf("retrain[%d]", i)
		if !models[r.Model] {
			bad(f+".model", "unknown model %q", r.Model)
		}
		for j, n := range r.OnRules {
			if !rules[n] {
				bad(fmt.Sprintf("%s.on_rules[%d]", f, j), "unknown rule %q", n)
			}
		}
		if r.Backend != "local" {
			bad(f+".backend", "unknown backend %q (local)", r.Backend)
		}
		if r.MinRows < 10 {
			bad(f+".min_rows", "must be at least 10, got %d", r.MinRows)
		}
	}
	return errors.Join(errs...)
}

// line finds the line of a dotted field path such as "views[0].features[1].agg"
// in the parsed YAML; it returns the closest existing ancestor's line.
func (c *Config) line(path string) int {
	if c.root == nil || len(c.root.Content) == 0 {
		return 0
	}
	n := c.root.Content[0]
	best := n.Line
	for _, part := range strings.Split(path, ".") {
		key, idx := part, -1
		if i := strings.IndexByte(part, '['); i >= 0 {
			key = part[:i]
			idx, _ = strconv.Atoi(strings.TrimSuffix(part[i+1:], "]"))
		}
		next := mapValue(n, key)
		if next == nil {
			return best
		}
		n, best = next, next.Line
		if idx >= 0 {
			if n.Kind != yaml.SequenceNode || idx >= len(n.Content) {
				return best
			}
			n = n.Content[idx]
			best = n.Line
		}
	}
	return best
}

func mapValue(n *yaml.Node, key string) *yaml.Node {
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}
