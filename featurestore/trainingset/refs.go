package trainingset

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/weirhq/weir/featurestore/offline"
)

// ParseFeatures reads feature references, view[:version].feature or
// view[:version].* (every feature of the view), into view requests in the
// order the views first appear, each with its features in the order given.
// A view named with two versions, or a feature named twice, is an error.
func ParseFeatures(refs []string) ([]offline.ViewRequest, error) {
	var reqs []offline.ViewRequest
	all := map[string]bool{}
	for _, ref := range refs {
		dot := strings.LastIndexByte(ref, '.')
		if dot <= 0 || dot == len(ref)-1 {
			return nil, fmt.Errorf("trainingset: feature %q: want view[:version].feature", ref)
		}
		view, feature := ref[:dot], ref[dot+1:]
		version := ""
		if c := strings.IndexByte(view, ':'); c >= 0 {
			view, version = view[:c], view[c+1:]
			if view == "" || version == "" {
				return nil, fmt.Errorf("trainingset: feature %q: want view[:version].feature", ref)
			}
		}
		i := slices.IndexFunc(reqs, func(r offline.ViewRequest) bool { return r.View == view })
		if i < 0 {
			reqs = append(reqs, offline.ViewRequest{View: view, Version: version})
			i = len(reqs) - 1
		}
		r := &reqs[i]
		if version != r.Version {
			return nil, fmt.Errorf("trainingset: view %s named as version %q and as %q: name one version on every feature of a view (a training set never mixes two)", view, r.Version, version)
		}
		if feature == "*" {
			if len(r.Features) > 0 || all[view] {
				return nil, fmt.Errorf("trainingset: %s: view %s's features named twice", ref, view)
			}
			all[view] = true
			continue
		}
		if all[view] || slices.Contains(r.Features, feature) {
			return nil, fmt.Errorf("trainingset: %s: feature named twice", ref)
		}
		r.Features = append(r.Features, feature)
	}
	return reqs, nil
}

// ParseOffsets reads an offset vector: comma-separated entries
// [topic/]partition=offset, where offset is the next offset to read (a
// consumer group's committed offset). "none" is the empty vector (no row
// known).
func ParseOffsets(s string) (offline.OffsetVector, error) {
	ov := offline.OffsetVector{}
	if strings.TrimSpace(s) == "none" {
		return ov, nil
	}
	for _, e := range strings.Split(s, ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		var po offline.PartitionOffset
		if slash := strings.LastIndexByte(e, '/'); slash >= 0 {
			po.Topic, e = e[:slash], e[slash+1:]
		}
		p, o, ok := strings.Cut(e, "=")
		if !ok {
			return nil, fmt.Errorf("trainingset: offset vector entry %q: want [topic/]partition=offset", e)
		}
		pn, err := strconv.ParseInt(p, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("trainingset: offset vector entry %q: partition: %w", e, err)
		}
		on, err := strconv.ParseInt(o, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("trainingset: offset vector entry %q: offset: %w", e, err)
		}
		po.Partition, po.Offset = int32(pn), on
		ov = append(ov, po)
	}
	if len(ov) == 0 {
		return nil, fmt.Errorf("trainingset: offset vector %q has no entry (write none for the empty vector)", s)
	}
	return ov, ov.Validate()
}
