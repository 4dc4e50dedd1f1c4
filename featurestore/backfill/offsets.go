package backfill

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// listed turns a listing into partition -> offset.
func listed(l kadm.ListedOffsets, err error) (map[int32]int64, error) {
	if err == nil {
		err = l.Error()
	}
	if err != nil {
		return nil, err
	}
	out := map[int32]int64{}
	l.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	if len(out) == 0 {
		return nil, fmt.Errorf("no partitions (does the topic exist?)")
	}
	return out, nil
}

// transient says whether err may pass by itself: a topic just created and
// not yet known to every broker, or a retriable broker error such as the
// group coordinator still loading on a fresh cluster.
func transient(err error) bool {
	return errors.Is(err, kerr.UnknownTopicOrPartition) || errors.Is(err, kerr.LeaderNotAvailable) || kerr.IsRetriable(err)
}

// again calls f until it succeeds, fails for good, or 40 tries 250ms apart
// (10s) have passed.
func again[T any](ctx context.Context, f func() (T, error)) (T, error) {
	for i := 0; ; i++ {
		out, err := f()
		if err == nil || i == 40 || !transient(err) {
			return out, err
		}
		select {
		case <-ctx.Done():
			return out, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// retried lists again while the listing fails transiently.
func retried(ctx context.Context, list func() (kadm.ListedOffsets, error)) (map[int32]int64, error) {
	return again(ctx, func() (map[int32]int64, error) { return listed(list()) })
}

// offsetsAt is each partition's first offset with a timestamp at or after t
// (its end offset when there is none).
func offsetsAt(ctx context.Context, adm *kadm.Client, topic string, t time.Time) (map[int32]int64, error) {
	at, err := retried(ctx, func() (kadm.ListedOffsets, error) { return adm.ListOffsetsAfterMilli(ctx, t.UnixMilli(), topic) })
	if err != nil {
		return nil, fmt.Errorf("backfill: offsets of %s at %s: %w", topic, t.UTC().Format(time.RFC3339), err)
	}
	ends, err := retried(ctx, func() (kadm.ListedOffsets, error) { return adm.ListEndOffsets(ctx, topic) })
	if err != nil {
		return nil, fmt.Errorf("backfill: end offsets of %s: %w", topic, err)
	}
	for p, o := range at {
		if o < 0 {
			at[p] = ends[p]
		}
	}
	return at, nil
}

// groupOffsets is a group's committed offsets on topic (empty: none).
func groupOffsets(ctx context.Context, adm *kadm.Client, group, topic string) (map[int32]int64, error) {
	resp, err := again(ctx, func() (kadm.OffsetResponses, error) {
		resp, err := adm.FetchOffsets(ctx, group)
		if err == nil {
			err = resp.Error()
		}
		return resp, err
	})
	if errors.Is(err, kerr.GroupIDNotFound) {
		return map[int32]int64{}, nil // kfake: a group never committed to
	}
	if err != nil {
		return nil, fmt.Errorf("backfill: offsets of group %s: %w", group, err)
	}
	out := map[int32]int64{}
	for p, o := range resp[topic] {
		if o.Err == nil && o.At >= 0 {
			out[p] = o.At
		}
	}
	return out, nil
}

// commit sets a group's offsets (the group must have no members).
func commit(ctx context.Context, adm *kadm.Client, group, topic string, at map[int32]int64) error {
	var os kadm.Offsets
	for p, o := range at {
		os.AddOffset(topic, p, o, -1)
	}
	_, err := again(ctx, func() (kadm.OffsetResponses, error) {
		resp, err := adm.CommitOffsets(ctx, group, os)
		if err == nil {
			err = resp.Error()
		}
		return resp, err
	})
	if err != nil {
		return fmt.Errorf("backfill: commit start offsets of group %s: %w", group, err)
	}
	return nil
}

// countRows is the sum of the topic's end offsets (a progress gauge of the
// records written to it, markers included).
func countRows(ctx context.Context, adm *kadm.Client, topic string) (int64, error) {
	ends, err := retried(ctx, func() (kadm.ListedOffsets, error) { return adm.ListEndOffsets(ctx, topic) })
	if err != nil {
		return 0, fmt.Errorf("backfill: end offsets of %s: %w", topic, err)
	}
	var n int64
	for _, o := range ends {
		n += o
	}
	return n, nil
}
