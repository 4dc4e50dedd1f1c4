package trainingset

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync/atomic"

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
	// Views sharing an entity column share their sorted keys: groups are
	// the distinct entity columns, viewGroup each view's.
	var groups []int
	viewGroup := make([]int, len(views))
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
		viewGroup[i] = slices.Index(groups, ec)
		if viewGroup[i] < 0 {
			viewGroup[i] = len(groups)
			groups = append(groups, ec)
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
	b := &builder{spec: spec, join: join, spineCols: spineCols, tsCol: tsCol, groups: groups, viewGroup: viewGroup, views: views,
		features: len(outCols) - len(spineCols)}
	hash := newContentHash(outCols)
	total := spec.Spine.Rows()

	// Two chunks in flight: while the writer hashes and writes one, the
	// next is read and joined (ClickHouse works while this process writes).
	free := make(chan *chunkJob, 2)
	free <- new(chunkJob)
	free <- new(chunkJob)
	ready := make(chan *chunkJob, 1)
	written := make(chan error, 1)
	var failed atomic.Bool
	go func() {
		var err error
		var out Chunk
		for j := range ready {
			if err == nil {
				out.Len = j.in.Len
				out.Cols = append(append(out.Cols[:0], j.in.Cols...), j.feats...)
				hash.add(outCols, &out)
				if err = w.Write(&out); err == nil {
					d.Rows += int64(j.in.Len)
					if spec.Progress != nil {
						spec.Progress(d.Rows, total)
					}
				} else {
					failed.Store(true)
				}
			}
			free <- j
		}
		written <- err
	}()
	var read int64 // rows read, for error messages
	for !failed.Load() {
		j := <-free
		n, rerr := b.next(ctx, j, read)
		if rerr != nil || n == 0 {
			err = rerr
			free <- j
			break
		}
		read += int64(n)
		ready <- j
	}
	close(ready)
	if werr := <-written; err == nil {
		err = werr
	}
	if err != nil {
		return nil, err
	}
	d.ContentHash = hash.sum()
	if err := w.Finish(d); err != nil {
		return nil, err
	}
	return d, nil
}

// builder reads and joins chunks for Build.
type builder struct {
	spec      Spec
	join      *offline.Join
	spineCols []Column
	tsCol     int
	groups    []int // entity columns
	viewGroup []int // each view's index in groups
	views     []offline.DescribedView
	features  int
}

// chunkJob is one chunk in flight: its spine rows, keys and features.
type chunkJob struct {
	in    Chunk
	times []int64
	keys  [][]offline.Key // per group, sorted
	found [][]bool        // per view
	feats []Vector        // per feature, in output order
}

// next reads the next chunk into j and joins it; 0 rows at the end.
// read is how many rows came before it.
func (b *builder) next(ctx context.Context, j *chunkJob, read int64) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	err := b.spec.Spine.Next(&j.in, b.spec.ChunkRows)
	if errors.Is(err, io.EOF) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n := j.in.Len
	tsType := b.spineCols[b.tsCol].Type
	j.times = j.times[:0]
	for i := 0; i < n; i++ {
		t, err := timeOf(&j.in.Cols[b.tsCol], tsType, b.spec.Unit, i)
		if err != nil {
			return 0, fmt.Errorf("trainingset: spine row %d, column %s: %w", read+int64(i)+1, b.spec.Timestamp, err)
		}
		j.times = append(j.times, t)
	}
	if len(j.keys) < len(b.groups) {
		j.keys = make([][]offline.Key, len(b.groups))
	}
	for gi, col := range b.groups {
		keys := j.keys[gi][:0]
		for i := 0; i < n; i++ {
			e, err := entityOf(&j.in.Cols[col], b.spineCols[col].Type, i)
			if err != nil {
				return 0, fmt.Errorf("trainingset: spine row %d, column %s: %w", read+int64(i)+1, b.spineCols[col].Name, err)
			}
			keys = append(keys, offline.Key{Entity: e, T: j.times[i], Row: i})
		}
		slices.SortFunc(keys, func(a, b offline.Key) int {
			if c := cmp.Compare(a.Entity, b.Entity); c != 0 {
				return c
			}
			if c := cmp.Compare(a.T, b.T); c != 0 {
				return c
			}
			return cmp.Compare(a.Row, b.Row)
		})
		j.keys[gi] = keys
	}

	if len(j.feats) < b.features {
		j.feats = make([]Vector, b.features)
		j.found = make([][]bool, len(b.views))
	}
	p := pool.New().WithContext(ctx).WithCancelOnError().WithFirstError()
	next := 0
	for vi, v := range b.views {
		cols := make([][]float64, len(v.Features))
		for k := range cols {
			vec := &j.feats[next+k]
			vec.Floats = resize(vec.Floats, n)
			vec.Null = resize(vec.Null, n)
			cols[k] = vec.Floats
		}
		next += len(v.Features)
		j.found[vi] = resize(j.found[vi], n)
		keys, found := j.keys[b.viewGroup[vi]], j.found[vi]
		p.Go(func(ctx context.Context) error {
			return b.join.Lookup(ctx, vi, keys, cols, found)
		})
	}
	if err := p.Wait(); err != nil {
		return 0, fmt.Errorf("trainingset: %w", err)
	}
	next = 0
	for vi, v := range b.views {
		for k := range v.Features {
			vec := &j.feats[next+k]
			for i, ok := range j.found[vi] {
				vec.Null[i] = !ok
				if !ok {
					vec.Floats[i] = 0
				}
			}
		}
		next += len(v.Features)
	}
	return n, nil
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
