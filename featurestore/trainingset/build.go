package trainingset

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/sourcegraph/conc/pool"

	"github.com/weirhq/weir/featurestore/offline"
)

// DefaultChunkRows is how many spine rows Build joins at a time by default.
const DefaultChunkRows = 1 << 18

// Spec says what to build.
type Spec struct {
	Spine  Spine
	Source SpineDescription // where the spine came from, for the description
	// Views are the feature view versions to join, in output order.
	Views []offline.ViewRequest
	// EntityColumns names, for each view, the spine column that holds its
	// entity key.
	EntityColumns []string
	// Timestamp is the spine column of each row's time; Unit is what an
	// integer timestamp counts (default milliseconds).
	Timestamp string
	Unit      TimeUnit
	Cutoff    offline.Cutoff
	// ChunkRows bounds the spine rows in memory (default DefaultChunkRows).
	ChunkRows int
	// Progress, when set, is called after each chunk with the rows written
	// and the spine's row count (-1 when unknown).
	Progress func(done, total int64)
	// Trace is passed to the offline.Join (tests run its queries in chDB).
	Trace func(view int, query string, entities []string)
}

// Writer receives a training set's columns, then its rows chunk by chunk,
// then its description. Begin is called once before any Write; Finish
// once after the last, with the complete description, and makes the output
// final; Abort, instead of Finish, removes what can be removed of a partial
// output. A Writer does not keep the chunk after Write returns.
type Writer interface {
	Begin(cols []Column) error
	Write(c *Chunk) error
	Finish(d *Description) error
	Abort()
}

// FeatureColumn is the output column of a view's feature.
func FeatureColumn(view, feature string) string { return view + "__" + feature }

// Build joins every spine row with the features of spec.Views as of its
// timestamp under spec.Cutoff (offline.Join's rule), writes the spine's
// columns and then one nullable Float64 per feature to w, in spine order,
// and returns the description it gave w. A null feature means the entity
// had no usable row (none at or before the time less the delay, within
// the TTL, under the cut-off); a stored NaN stays NaN.
func Build(ctx context.Context, store *offline.Store, spec Spec, w Writer) (_ *Description, err error) {
	if spec.ChunkRows <= 0 {
		spec.ChunkRows = DefaultChunkRows
	}
	if spec.Unit == 0 {
		spec.Unit = Milliseconds
	}
	if len(spec.EntityColumns) != len(spec.Views) {
		return nil, fmt.Errorf("trainingset: %d entity columns for %d views", len(spec.EntityColumns), len(spec.Views))
	}
	join, err := store.Join(spec.Views, spec.Cutoff)
	if err != nil {
		return nil, fmt.Errorf("trainingset: %w", err)
	}
	join.Trace = spec.Trace
	spineCols := spec.Spine.Columns()
	colIndex := func(name string) int {
		return slices.IndexFunc(spineCols, func(c Column) bool { return c.Name == name })
	}
	tsCol := colIndex(spec.Timestamp)
	if tsCol < 0 {
		return nil, fmt.Errorf("trainingset: the spine has no timestamp column %q (has %s)", spec.Timestamp, names(spineCols))
	}
	if t := spineCols[tsCol].Type; t != Int64 && t != String {
		return nil, fmt.Errorf("trainingset: timestamp column %q is %s; want an integer or RFC 3339 text", spec.Timestamp, t)
	}

	d := &Description{Format: Format, Spine: spec.Source, Cutoff: describeCutoff(spec.Cutoff), Join: "for each spine row (entity column = entity, timestamp t) and each view: " + offline.JoinRule}
	d.Spine.TimestampColumn, d.Spine.TimestampUnit = spec.Timestamp, unitName(spec.Unit)
	outCols := slices.Clone(spineCols)
	taken := map[string]bool{}
	for _, c := range spineCols {
		taken[c.Name] = true
	}
	views := join.Views()
	// Views sharing an entity column share their sorted keys.
	type keyGroup struct {
		col  int // spine column
		keys []offline.Key
	}
	var groups []*keyGroup
	viewGroup := make([]*keyGroup, len(views))
	seenView := map[string]bool{}
	for i, v := range views {
		if seenView[v.View] {
			return nil, fmt.Errorf("trainingset: view %s requested twice (one version per view: a training set never mixes two)", v.View)
		}
		seenView[v.View] = true
		ec := colIndex(spec.EntityColumns[i])
		if ec < 0 {
			return nil, fmt.Errorf("trainingset: view %s: the spine has no entity column %q (has %s)", v.View, spec.EntityColumns[i], names(spineCols))
		}
		if t := spineCols[ec].Type; t != String && t != Int64 {
			return nil, fmt.Errorf("trainingset: view %s: entity column %q is %s; want text or an integer", v.View, spec.EntityColumns[i], t)
		}
		vd := ViewDescription{DescribedView: v, EntityColumn: spec.EntityColumns[i]}
		for _, f := range v.Features {
			name := FeatureColumn(v.View, f)
			if taken[name] {
				return nil, fmt.Errorf("trainingset: feature column %s: the spine has a column of that name", name)
			}
			taken[name] = true
			vd.Columns = append(vd.Columns, name)
			outCols = append(outCols, Column{Name: name, Type: Float64, Nullable: true})
		}
		d.Views = append(d.Views, vd)
		d.SQL = append(d.SQL, join.SQL(i))
		for _, g := range groups {
			if g.col == ec {
				viewGroup[i] = g
			}
		}
		if viewGroup[i] == nil {
			viewGroup[i] = &keyGroup{col: ec}
			groups = append(groups, viewGroup[i])
		}
	}
	d.Columns = outCols

	if err := w.Begin(outCols); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			w.Abort()
		}
	}()
	hash := newContentHash(outCols)
	total := spec.Spine.Rows()
	var in, out Chunk
	times := make([]int64, 0, spec.ChunkRows)
	found := make([][]bool, len(views))
	featVecs := make([]Vector, len(outCols)-len(spineCols))
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		err := spec.Spine.Next(&in, spec.ChunkRows)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		n := in.Len
		times = times[:0]
		for i := 0; i < n; i++ {
			t, err := timeOf(&in.Cols[tsCol], spineCols[tsCol].Type, spec.Unit, i)
			if err != nil {
				return nil, fmt.Errorf("trainingset: spine row %d, column %s: %w", d.Rows+int64(i)+1, spec.Timestamp, err)
			}
			times = append(times, t)
		}
		for _, g := range groups {
			g.keys = g.keys[:0]
			for i := 0; i < n; i++ {
				e, err := entityOf(&in.Cols[g.col], spineCols[g.col].Type, i)
				if err != nil {
					return nil, fmt.Errorf("trainingset: spine row %d, column %s: %w", d.Rows+int64(i)+1, spineCols[g.col].Name, err)
				}
				g.keys = append(g.keys, offline.Key{Entity: e, T: times[i], Row: i})
			}
			slices.SortFunc(g.keys, func(a, b offline.Key) int {
				if c := cmp.Compare(a.Entity, b.Entity); c != 0 {
					return c
				}
				if c := cmp.Compare(a.T, b.T); c != 0 {
					return c
				}
				return cmp.Compare(a.Row, b.Row)
			})
		}

		// The output chunk: the spine's vectors, then the features'.
		p := pool.New().WithContext(ctx).WithCancelOnError().WithFirstError()
		next := 0
		for vi, v := range views {
			cols := make([][]float64, len(v.Features))
			for k := range cols {
				vec := &featVecs[next+k]
				vec.Floats = resize(vec.Floats, n)
				vec.Null = resize(vec.Null, n)
				cols[k] = vec.Floats
			}
			next += len(v.Features)
			found[vi] = resize(found[vi], n)
			keys, fnd := viewGroup[vi].keys, found[vi]
			p.Go(func(ctx context.Context) error {
				return join.Lookup(ctx, vi, keys, cols, fnd)
			})
		}
		if err := p.Wait(); err != nil {
			return nil, fmt.Errorf("trainingset: %w", err)
		}
		next = 0
		for vi, v := range views {
			for k := range v.Features {
				vec := &featVecs[next+k]
				for i, ok := range found[vi] {
					vec.Null[i] = !ok
					if !ok {
						vec.Floats[i] = 0
					}
				}
			}
			next += len(v.Features)
		}
		out.Len = n
		out.Cols = append(append(out.Cols[:0], in.Cols...), featVecs...)
		hash.add(outCols, &out)
		if err := w.Write(&out); err != nil {
			return nil, err
		}
		d.Rows += int64(n)
		if spec.Progress != nil {
			spec.Progress(d.Rows, total)
		}
	}
	d.ContentHash = hash.sum()
	if err := w.Finish(d); err != nil {
		return nil, err
	}
	return d, nil
}

// resize returns s with length n, reusing its array when it can; the
// elements are not cleared.
func resize[T any](s []T, n int) []T {
	if cap(s) >= n {
		return s[:n]
	}
	return make([]T, n)
}

func names(cols []Column) string {
	s := make([]string, len(cols))
	for i, c := range cols {
		s[i] = c.Name
	}
	return fmt.Sprint(s)
}

func unitName(u TimeUnit) string {
	switch u {
	case Seconds:
		return "s"
	case Microseconds:
		return "us"
	case Nanoseconds:
		return "ns"
	}
	return "ms"
}
