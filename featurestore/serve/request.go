package serve

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"

	"github.com/weirhq/weir/internal/config"
)

// view is one served view version.
type view struct {
	id                    int // index in catalog.all (metrics)
	name, version, entity string
	ttlMs                 int64 // 0: never expires
	features              []string
	refs                  []string // "name:version.feature", by feature
	index                 map[string]int
}

// catalog is the set of served view versions.
type catalog struct {
	all     []*view
	byName  map[string]map[string]*view // name -> version -> view
	current map[string]*view
	names   []string // sorted view names, for error messages
}

func newCatalog(cur, prev []config.View) (*catalog, error) {
	c := &catalog{byName: map[string]map[string]*view{}, current: map[string]*view{}}
	add := func(d *config.View, current bool) error {
		v := &view{id: len(c.all), name: d.Name, version: d.Version(), entity: d.Entity, ttlMs: d.TTL.D().Milliseconds(), index: map[string]int{}}
		if current {
			if _, dup := c.current[v.name]; dup {
				return fmt.Errorf("serve: view %s defined twice", v.name)
			}
		}
		if c.byName[v.name] == nil {
			c.byName[v.name] = map[string]*view{}
			c.names = append(c.names, v.name)
		}
		if old, ok := c.byName[v.name][v.version]; ok {
			if current {
				c.current[v.name] = old
			}
			return nil // the same definition twice
		}
		for _, f := range d.Features {
			v.index[f.Name] = len(v.features)
			v.features = append(v.features, f.Name)
			v.refs = append(v.refs, v.name+":"+v.version+"."+f.Name)
		}
		c.byName[v.name][v.version] = v
		c.all = append(c.all, v)
		if current {
			c.current[v.name] = v
		}
		return nil
	}
	for i := range cur {
		if err := add(&cur[i], true); err != nil {
			return nil, err
		}
	}
	for i := range prev {
		if err := add(&prev[i], false); err != nil {
			return nil, err
		}
	}
	slices.Sort(c.names)
	return c, nil
}

// request is the body of POST /v1/features.
type request struct {
	Entities []string `json:"entities"`
	Features []string `json:"features"`
}

// decodeRequest parses and checks a body's shape.
func decodeRequest(body []byte) (*request, *Error) {
	var req request
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return nil, jsonError(err)
	}
	if dec.More() {
		return nil, badRequest("", "body holds more than one JSON value")
	}
	if req.Entities == nil && req.Features == nil && bytes.Equal(bytes.TrimSpace(body), []byte("null")) {
		return nil, badRequest("", `body is null: want {"entities": [...], "features": [...]}`)
	}
	return &req, nil
}

// jsonError turns a decoding error into an Error naming the field.
func jsonError(err error) *Error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return badRequest("", `body is empty: want {"entities": [...], "features": [...]}`)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("", "body is truncated JSON")
	case errors.As(err, &syn):
		return badRequest("", "body is not valid JSON at byte %d: %v", syn.Offset, syn)
	case errors.As(err, &typ):
		if typ.Field == "" {
			return badRequest("", `body is a JSON %s: want an object {"entities": [...], "features": [...]}`, typ.Value)
		}
		want := "a list of strings"
		if typ.Type.Kind() == reflect.String { // an element of the list
			want = "a string"
		}
		return badRequest(typ.Field, "want %s, got a JSON %s", want, typ.Value)
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return badRequest(strings.Trim(name, `"`), "unknown field (a request has entities and features)")
	}
	return badRequest("", "body: %v", err)
}

// column is one resolved feature of a request.
type column struct {
	view int // index in plan.views
	slot int // index in plan.need[view]
	ref  string
}

// plan is a request resolved against the catalog.
type plan struct {
	entity string
	views  []*view
	cols   []column
	// need lists the distinct features read from each view, slots the
	// position of each of the view's features in need (-1: not read).
	need  [][]string
	slots [][]int
}

// add appends a column for feature k of plan view vi.
func (p *plan) add(vi, k int) {
	v := p.views[vi]
	slot := p.slots[vi][k]
	if slot < 0 {
		slot = len(p.need[vi])
		p.slots[vi][k] = slot
		p.need[vi] = append(p.need[vi], v.features[k])
	}
	p.cols = append(p.cols, column{view: vi, slot: slot, ref: v.refs[k]})
}

// plan resolves a request's features and checks its limits.
func (h *Handler) plan(req *request) (*plan, *Error) {
	if len(req.Entities) == 0 {
		return nil, badRequest("entities", "empty: name at least one entity key")
	}
	if len(req.Entities) > h.opts.MaxEntities {
		return nil, badRequest("entities", "%d entities, at most %d per request", len(req.Entities), h.opts.MaxEntities)
	}
	for i, e := range req.Entities {
		if e == "" {
			return nil, badRequest(fmt.Sprintf("entities[%d]", i), "empty entity key")
		}
	}
	if len(req.Features) == 0 {
		return nil, badRequest("features", `empty: name at least one feature ("view.feature", "view:version.feature") or view`)
	}
	p := &plan{cols: make([]column, 0, len(req.Features))}
	first := make([]int, 0, 2) // per plan view, the index of the reference that named it
	for i, ref := range req.Features {
		v, feature, msg := h.cat.resolve(ref)
		if msg != "" {
			return nil, badRequest(fmt.Sprintf("features[%d]", i), "%q: %s", ref, msg)
		}
		vi := -1
		for j, pv := range p.views {
			if pv.name != v.name {
				continue
			}
			if pv != v {
				return nil, badRequest(fmt.Sprintf("features[%d]", i), "%q: version %s of view %s, but features[%d] %q names version %s: a request never mixes versions of a view",
					ref, v.version, v.name, first[j], req.Features[first[j]], pv.version)
			}
			vi = j
		}
		if vi < 0 {
			if p.entity != "" && v.entity != p.entity {
				return nil, badRequest(fmt.Sprintf("features[%d]", i), "%q: view %s is keyed by entity %q, but features[%d] %q by %q: a request serves one entity",
					ref, v.name, v.entity, first[0], req.Features[first[0]], p.entity)
			}
			p.entity = v.entity
			vi = len(p.views)
			p.views = append(p.views, v)
			first = append(first, i)
			slots := make([]int, len(v.features))
			for k := range slots {
				slots[k] = -1
			}
			p.slots = append(p.slots, slots)
			p.need = append(p.need, make([]string, 0, len(v.features)))
		}
		if feature != "" {
			p.add(vi, v.index[feature])
			continue
		}
		for k := range v.features {
			p.add(vi, k)
		}
	}
	if n := len(req.Entities) * len(p.cols); n > h.opts.MaxValues {
		return nil, badRequest("features", "%d entities x %d features = %d values, at most %d per request", len(req.Entities), len(p.cols), n, h.opts.MaxValues)
	}
	return p, nil
}

// resolve finds a reference's view version and feature ("" for the whole
// view), or says what is wrong with it.
func (c *catalog) resolve(ref string) (v *view, feature, problem string) {
	viewPart, feature, hasFeature := strings.Cut(ref, ".")
	name, version, hasVersion := strings.Cut(viewPart, ":")
	switch {
	case ref == "":
		return nil, "", "empty reference"
	case name == "":
		return nil, "", "no view name (want view.feature, view:version.feature or view)"
	case hasVersion && version == "":
		return nil, "", "empty version after ':'"
	case hasFeature && feature == "":
		return nil, "", "empty feature name after '.'"
	}
	versions, ok := c.byName[name]
	if !ok {
		return nil, "", fmt.Sprintf("unknown view %q (served: %s)", name, strings.Join(c.names, ", "))
	}
	cur := c.current[name]
	if !hasVersion {
		if cur == nil {
			return nil, "", fmt.Sprintf("view %s has no current version: name one (%s)", name, strings.Join(versionList(versions), ", "))
		}
		v = cur
	} else if v, ok = versions[version]; !ok {
		return nil, "", fmt.Sprintf("view %s has no served version %q (served: %s)", name, version, strings.Join(versionList(versions), ", "))
	}
	if hasFeature {
		if _, ok := v.index[feature]; !ok {
			return nil, "", fmt.Sprintf("view %s:%s has no feature %q (features: %s)", v.name, v.version, feature, strings.Join(v.features, ", "))
		}
	}
	return v, feature, ""
}

func versionList(m map[string]*view) []string {
	var out []string
	for ver := range m {
		out = append(out, ver)
	}
	slices.Sort(out)
	return out
}
