package config

import (
	"errors"
	"fmt"
	"maps"
	"math"
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
	if c.Kafka.Guarantee != GuaranteeExactlyOnce && c.Kafka.Guarantee != GuaranteeAtLeastOnce {
		bad("kafka.guarantee", "unknown guarantee %q (exactly_once or at_least_once)", c.Kafka.Guarantee)
	}
	c.validateRedis(bad)
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
	if c.State.Store != StoreMemory && c.State.Store != StorePebble {
		bad("state.store", "unknown store %q (memory or pebble)", c.State.Store)
	}
	if c.State.CacheMB < 0 {
		bad("state.cache_mb", "must not be negative")
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
		windowed := v.Kind != KindSliding
		switch v.Kind {
		case KindSliding:
			for name, d := range map[string]Duration{"window": v.Window, "hop": v.Hop, "gap": v.Gap} {
				if d != 0 {
					bad(f+"."+name, "a sliding view takes no %s: each feature names its own window (or set kind: tumbling, hopping or session)", name)
				}
			}
			if v.Emit != EmitUpdate {
				bad(f+".emit", "a sliding view emits a row on every event; %q needs kind tumbling, hopping or session", v.Emit)
			}
		case KindTumbling, KindHopping:
			if v.Window <= 0 {
				bad(f+".window", "must be a positive duration for a %s view", v.Kind)
			}
			if v.Kind == KindHopping && (v.Hop <= 0 || v.Hop >= v.Window || v.Window%v.Hop != 0) {
				bad(f+".hop", "must be positive, shorter than the window %s and divide it", v.Window.D())
			}
			if v.Kind == KindTumbling && v.Hop != 0 {
				bad(f+".hop", "a tumbling view takes no hop (use kind: hopping)")
			}
			if v.Gap != 0 {
				bad(f+".gap", "only a session view takes a gap")
			}
		case KindSession:
			if v.Gap <= 0 {
				bad(f+".gap", "must be a positive duration for a session view")
			}
			if v.Window != 0 || v.Hop != 0 {
				bad(f+".window", "a session view takes a gap, not a window or hop")
			}
		default:
			bad(f+".kind", "unknown window kind %q (sliding, tumbling, hopping or session)", v.Kind)
		}
		if windowed && !slices.Contains([]string{EmitUpdate, EmitClose, EmitBoth}, v.Emit) {
			bad(f+".emit", "unknown emit mode %q (update, close or both)", v.Emit)
		}
		if v.Lateness < 0 {
			bad(f+".lateness", "must not be negative")
		}
		if windowed && v.Window.D()+v.Gap.D() > v.TTL.D() {
			bad(f+".ttl", "%s is shorter than the view's window", v.TTL.D())
		}
		fnames := map[string]bool{}
		for _, ft := range v.Features {
			fnames[ft.Name] = true
		}
		seen := map[string]bool{}
		for j, ft := range v.Features {
			ff := fmt.Sprintf("%s.features[%d]", f, j)
			if ft.Name == "" {
				bad(ff+".name", "is required")
			} else if seen[ft.Name] {
				bad(ff+".name", "feature %q is declared twice in view %q", ft.Name, v.Name)
			}
			seen[ft.Name] = true
			if !slices.Contains(Aggregations, ft.Agg) {
				bad(ff+".agg", "unknown aggregation %q (one of %s)", ft.Agg, strings.Join(Aggregations, ", "))
			}
			windowless := ft.Agg == "last" || ft.Agg == "time_since_last" || ft.Agg == "ratio"
			if ft.Agg != "count" && ft.Agg != "time_since_last" && ft.Agg != "ratio" && ft.Field == "" {
				bad(ff+".field", "is required for agg %q", ft.Agg)
			}
			switch {
			case windowed && ft.Window != 0:
				bad(ff+".window", "a %s view's features take the view's window; remove it here", v.Kind)
			case windowed:
			case ft.Window < 0 || (ft.Window == 0 && !windowless):
				bad(ff+".window", "must be a positive duration for agg %q (only last, time_since_last and ratio take none)", ft.Agg)
			case windowless && ft.Window != 0:
				bad(ff+".window", "agg %q takes no window", ft.Agg)
			}
			if windowed && ft.Agg == "time_since_last" {
				bad(ff+".agg", "time_since_last needs a sliding view")
			}
			if (ft.K != 0) != (ft.Agg == "top_k") || ft.K < 0 || ft.K > 100 {
				bad(ff+".k", "top_k takes k from 1 to 100, and only top_k takes k")
			}
			if (ft.N != 0) != (ft.Agg == "last_n") || ft.N < 0 || ft.N > 1000 {
				bad(ff+".n", "last_n takes n from 1 to 1000, and only last_n takes n")
			}
			if ft.Q < 0 || ft.Q > 1 || (ft.Q != 0 && ft.Agg != "quantile") {
				bad(ff+".q", "quantile takes q in [0, 1], and only quantile takes q")
			}
			if ft.Agg == "ratio" {
				if ft.Field != "" {
					bad(ff+".field", "ratio takes no field: name two features of the view in of")
				}
				if len(ft.Of) != 2 {
					bad(ff+".of", "ratio needs two features of the view: [numerator, denominator]")
				}
				for _, o := range ft.Of {
					if !fnames[o] || o == ft.Name {
						bad(ff+".of", "%q is not another feature of view %q", o, v.Name)
					} else if of, _ := v.Feature(o); of.Agg == "ratio" || of.Agg == "top_k" || of.Agg == "last_n" {
						bad(ff+".of", "%q is a %s: a ratio divides numeric aggregates", o, of.Agg)
					}
				}
			} else if len(ft.Of) > 0 {
				bad(ff+".of", "only ratio takes of")
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
			// The scorer looks a view up by the scored event's key of the
			// view's entity: the source's key, or the key of an entity with
			// views of the source (its events carry it).
			if src, ok := c.Source(m.Source); ok && !c.sourceHasKey(src, c.EntityKey(v.Entity)) {
				bad(ff, "view %q is of entity %q, whose key %q is neither source %q's key nor the key of an entity with views of it: the scorer cannot look it up", vn, v.Entity, c.EntityKey(v.Entity), m.Source)
			}
		}
		if m.Threshold <= 0 || m.Threshold >= 1 {
			bad(f+".threshold", "must be in (0, 1), got %g", m.Threshold)
		}
		for _, ref := range slices.Sorted(maps.Keys(m.Defaults)) {
			v := m.Defaults[ref]
			if !slices.Contains(m.Features, ref) {
				bad(f+".defaults", "%q is not one of the model's features", ref)
			} else if math.IsNaN(v) || math.IsInf(v, 0) {
				bad(f+".defaults", "%q: %g is not finite", ref, v)
			}
		}
		if math.IsNaN(m.Default) || math.IsInf(m.Default, 0) {
			bad(f+".default", "%g is not finite", m.Default)
		}
		if m.MaxAge < 0 {
			bad(f+".max_age", "must not be negative, got %s", m.MaxAge.D())
		}
		for _, ref := range slices.Sorted(maps.Keys(m.MaxAges)) {
			if !slices.Contains(m.Features, ref) {
				bad(f+".max_ages", "%q is not one of the model's features", ref)
			} else if d := m.MaxAges[ref]; d <= 0 {
				bad(f+".max_ages", "%q: must be positive, got %s", ref, d.D())
			}
		}
		if m.PositiveClass != nil && *m.PositiveClass < 0 {
			bad(f+".positive_class", "must be 0 or more, got %d", *m.PositiveClass)
		}
		validateRollout(bad, f, &m.Rollout, c.Labels.Topic)
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

// sourceHasKey reports whether src's events carry the entity key field key:
// it is the source's key or the key of an entity with views of src.
func (c *Config) sourceHasKey(src *Source, key string) bool {
	if key == src.Key {
		return true
	}
	for _, e := range c.Rekeyed(src.Name) {
		if c.EntityKey(e) == key {
			return true
		}
	}
	return false
}
