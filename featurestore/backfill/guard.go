package backfill

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/schemas"
)

// GuardTail is how many of each features-topic partition's newest records
// a run reads, before the lane starts, for rows of its version written by
// someone else.
const GuardTail = 2000

// foreignRow finds a row of the version in the tail of the features topic
// whose source offset the lane has not processed yet (at or past its
// committed offset, the start vector on a first run): the lane did not
// write it, so another processor computes the version too. It returns the
// first one found, or nil.
func foreignRow(ctx context.Context, adm *kadm.Client, opts []kgo.Opt, topic string, serde *schemas.Serde, version string, lane map[int32]int64) (*schemas.FeatureRow, error) {
	ends, err := retried(ctx, func() (kadm.ListedOffsets, error) { return adm.ListCommittedOffsets(ctx, topic) })
	if err != nil {
		return nil, fmt.Errorf("backfill: last stable offsets of %s: %w", topic, err)
	}
	starts, err := retried(ctx, func() (kadm.ListedOffsets, error) { return adm.ListStartOffsets(ctx, topic) })
	if err != nil {
		return nil, fmt.Errorf("backfill: start offsets of %s: %w", topic, err)
	}
	consume := map[int32]kgo.Offset{}
	for p, end := range ends {
		if from := max(starts[p], end-GuardTail); from < end {
			consume[p] = kgo.NewOffset().At(from)
		}
	}
	if len(consume) == 0 {
		return nil, nil
	}
	cl, err := kgo.NewClient(append(slices.Clone(opts),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: consume}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())...)
	if err != nil {
		return nil, fmt.Errorf("backfill: consumer of %s: %w", topic, err)
	}
	defer cl.Close()
	left := maps.Clone(consume)
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for len(left) > 0 {
		fs := cl.PollFetches(rctx)
		if err := rctx.Err(); err != nil {
			return nil, fmt.Errorf("backfill: reading the tail of %s: %w", topic, err)
		}
		for _, r := range fs.Records() {
			if r.Offset >= ends[r.Partition]-1 {
				delete(left, r.Partition)
			}
			if r.Attrs.IsControl() || r.Offset >= ends[r.Partition] {
				continue
			}
			var row schemas.FeatureRow
			if err := serde.Decode(ctx, r.Value, &row); err != nil {
				continue // the materializers skip it too
			}
			if at, ok := lane[r.Partition]; row.ViewVersion == version && ok && row.SourceOffset >= at {
				return &row, nil
			}
		}
	}
	return nil, nil
}
