package registry

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/schemas"
)

// Change is one change of an alias's holder, as the registry topic's
// records show it.
type Change struct {
	At    time.Time `json:"at"` // timestamp of the record that made it
	Model string    `json:"model"`
	Alias string    `json:"alias"`
	// From is the version that held the alias before (0: none), To the
	// one that holds it after (0: none; the holder was deleted or
	// released it without another taking it).
	From int32 `json:"from"`
	To   int32 `json:"to"`
	// Action is "publish" when the record that gave To the alias was
	// To's first, the Move's action when MoveAlias recorded one (see
	// MoveOf), "move" for another writer (a trainer before moves were
	// recorded), "release" when To is 0.
	Action string `json:"action"`
	By     string `json:"by"`     // the Move's By, or the version's created_by on publish
	Reason string `json:"reason"` // the Move's Why; on publish or another writer's move, the record's reason
	// Partition and Offset locate the record on the topic.
	Partition int32 `json:"partition"`
	Offset    int64 `json:"offset"`
}

// TopicRecord is one decoded record of the registry topic; Record is
// nil for a tombstone.
type TopicRecord struct {
	Key       string
	Record    *schemas.ModelRecord
	At        time.Time
	Partition int32
	Offset    int64
}

// ReadTopic reads the registry topic from its start to the end offsets it
// finds when called and returns its records in timestamp order (offset
// order within a partition). Compaction keeps one record per version, so
// the older records of a version are there only until the log cleaner
// has run. Undecodable records are skipped.
func ReadTopic(ctx context.Context, opts []kgo.Opt, topic string, serde *schemas.Serde) ([]TopicRecord, error) {
	fail := func(err error) ([]TopicRecord, error) {
		return nil, fmt.Errorf("registry: read %s: %w", topic, err)
	}
	cl, err := kgo.NewClient(append(slices.Clone(opts), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		return fail(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return fail(err)
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition] = o.Offset
		}
	})
	var out []TopicRecord
	for len(want) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fail(err)
		}
		if fs.IsClientClosed() {
			return fail(errors.New("client closed"))
		}
		var ferr error
		fs.EachError(func(_ string, p int32, err error) { ferr = fmt.Errorf("partition %d: %w", p, err) })
		if ferr != nil {
			return fail(ferr)
		}
		fs.EachRecord(func(r *kgo.Record) {
			end, ok := want[r.Partition]
			if !ok || r.Offset >= end {
				return
			}
			if r.Offset+1 >= end {
				delete(want, r.Partition)
			}
			tr := TopicRecord{Key: string(r.Key), At: r.Timestamp, Partition: r.Partition, Offset: r.Offset}
			if r.Value != nil {
				var mr schemas.ModelRecord
				if serde.Decode(ctx, r.Value, &mr) != nil {
					return
				}
				tr.Record = &mr
			}
			out = append(out, tr)
		})
	}
	slices.SortStableFunc(out, func(a, b TopicRecord) int {
		if a.Partition == b.Partition {
			return cmp.Compare(a.Offset, b.Offset)
		}
		return a.At.Compare(b.At)
	})
	return out, nil
}

// History returns every change of the holders of model's aliases that
// recs (ReadTopic's, in order) show, oldest first. It applies the
// registry's rule: an alias belongs to the version whose latest record
// carrying it was read last. So the two records of a move make one
// change, and a compacted topic still shows the move that gave each
// current holder its alias.
func History(recs []TopicRecord, model string) []Change {
	type entry struct {
		rec schemas.ModelRecord
		seq int
	}
	state := map[int32]entry{}
	holders := map[string]int32{}
	var out []Change
	for i, tr := range recs {
		var version int32
		first := false
		if tr.Record == nil {
			name, v, ok := parseKey(tr.Key)
			if !ok || name != model {
				continue
			}
			version = v
			delete(state, v)
		} else {
			if tr.Record.Name != model {
				continue
			}
			version = tr.Record.Version
			_, seen := state[version]
			first = !seen
			state[version] = entry{*tr.Record, i}
		}
		// Recompute the holders as the registry does.
		now := map[string]int32{}
		seqs := map[string]int{}
		for _, e := range state {
			for _, a := range e.rec.Aliases {
				if s, ok := seqs[a]; !ok || e.seq > s {
					seqs[a], now[a] = e.seq, e.rec.Version
				}
			}
		}
		aliases := make([]string, 0, len(now)+len(holders))
		for a := range now {
			aliases = append(aliases, a)
		}
		for a := range holders {
			if _, ok := now[a]; !ok {
				aliases = append(aliases, a)
			}
		}
		slices.Sort(aliases)
		for _, a := range aliases {
			from, to := holders[a], now[a]
			if from == to {
				continue
			}
			c := Change{At: tr.At, Model: model, Alias: a, From: from, To: to, Partition: tr.Partition, Offset: tr.Offset}
			holder := state[to]
			m, moved := MoveOf(holder.rec, a)
			switch {
			case to == 0:
				c.Action = "release"
			case to != version:
				// The old holder released it (a tombstone or a record
				// without the alias) and it fell back to an earlier
				// holder.
				c.Action, c.Reason = "release", holder.rec.Reason
			case moved:
				c.Action, c.By, c.Reason = m.Action, m.By, m.Why
				if c.From == 0 {
					// The old holder's record was compacted away.
					c.From = m.From
				}
			case first:
				c.Action, c.By, c.Reason = "publish", holder.rec.CreatedBy, holder.rec.Reason
			default:
				c.Action, c.Reason = "move", holder.rec.Reason
			}
			out = append(out, c)
		}
		holders = now
	}
	return out
}
