package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/internal/loadgen"
	"github.com/weirhq/weir/schemas"
)

// kafka is the harness's access to the broker.
type kafka struct {
	seeds []string
	adm   *kadm.Client
}

func newKafka(seeds []string) (*kafka, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		return nil, err
	}
	return &kafka{seeds: seeds, adm: kadm.NewClient(cl)}, nil
}

func (k *kafka) close() { k.adm.Close() }

func (k *kafka) client(opts ...kgo.Opt) (*kgo.Client, error) {
	return kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(k.seeds...)}, opts...)...)
}

func (k *kafka) createTopic(ctx context.Context, name string, partitions int32) error {
	resp, err := k.adm.CreateTopic(ctx, partitions, 1, nil, name)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		return fmt.Errorf("create topic %s: %w", name, err)
	}
	return nil
}

// deleteTopics deletes every topic whose name starts with prefix.
func (k *kafka) deleteTopics(ctx context.Context, prefix string) ([]string, error) {
	td, err := k.adm.ListTopics(ctx)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, n := range td.Names() {
		if strings.HasPrefix(n, prefix) {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return nil, nil
	}
	resps, err := k.adm.DeleteTopics(ctx, names...)
	if err != nil {
		return names, err
	}
	var errs []error
	for _, r := range resps {
		if r.Err != nil && !errors.Is(r.Err, kerr.UnknownTopicOrPartition) {
			errs = append(errs, fmt.Errorf("delete %s: %w", r.Topic, r.Err))
		}
	}
	sort.Strings(names)
	return names, errors.Join(errs...)
}

// deleteNamed deletes the named topics, ignoring ones that do not exist.
func (k *kafka) deleteNamed(ctx context.Context, names ...string) {
	if _, err := k.adm.DeleteTopics(ctx, names...); err != nil {
		logf("warning: delete %v: %v", names, err)
	}
}

// produce writes n loadgen transactions to topic, keyed by card, as `weir
// loadgen` does (idempotent, acks=all, 5 ms linger, franz-go's default
// snappy compression, the default murmur2 partitioner), without labels.
func (k *kafka) produce(ctx context.Context, topic string, serde *schemas.Serde, g *loadgen.Generator, n int) error {
	cl, err := k.client(kgo.ProducerLinger(5 * time.Millisecond))
	if err != nil {
		return err
	}
	defer cl.Close()
	errc := make(chan error, 1)
	promise := func(_ *kgo.Record, err error) {
		if err != nil {
			select {
			case errc <- err:
			default:
			}
		}
	}
	last := time.Now()
	for i := range n {
		tx, _ := g.Next()
		b, err := serde.Encode(&tx)
		if err != nil {
			return err
		}
		cl.Produce(ctx, &kgo.Record{Topic: topic, Key: []byte(tx.CardID), Value: b}, promise)
		select {
		case err := <-errc:
			return fmt.Errorf("produce: %w", err)
		default:
		}
		if time.Since(last) > 5*time.Second {
			fmt.Fprintf(os.Stderr, "  produced %d/%d\n", i+1, n)
			last = time.Now()
		}
	}
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	select {
	case err := <-errc:
		return fmt.Errorf("produce: %w", err)
	default:
	}
	return nil
}

// endOffsets returns each partition's end offset (of a topic written without
// transactions: the number of records, since it starts at 0).
func (k *kafka) endOffsets(ctx context.Context, topic string) (map[int32]int64, error) {
	lo, err := k.adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	if err := lo.Error(); err != nil {
		return nil, err
	}
	out := map[int32]int64{}
	lo.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out, nil
}

// committed returns how many records of topic group's committed offsets
// cover (the sum over partitions of min(committed offset, end)).
func (k *kafka) committed(ctx context.Context, group, topic string, ends map[int32]int64) (int64, error) {
	resp, err := k.adm.FetchOffsets(ctx, group)
	if err != nil {
		if errors.Is(err, kerr.CoordinatorLoadInProgress) || errors.Is(err, kerr.CoordinatorNotAvailable) || errors.Is(err, kerr.GroupIDNotFound) {
			return 0, nil
		}
		return 0, err
	}
	var n int64
	for p, end := range ends {
		if o, ok := resp.Lookup(topic, p); ok && o.Err == nil && o.At > 0 {
			n += min(o.At, end)
		}
	}
	return n, nil
}

// readAll calls fn for every committed record of topic, from the start to
// each partition's last stable offset as it is when called, with
// read_committed. Control records (transaction markers) are read to know
// where a partition ends, not passed to fn.
//
// It first waits (up to 30 s) for the topic to have no open transaction
// (last stable offset = end offset on every partition): a group's committed
// offsets can be visible before the coordinator has written the
// transaction's markers to the output partitions.
func (k *kafka) readAll(ctx context.Context, topic string, fn func(*kgo.Record)) error {
	var ends kadm.ListedOffsets
	for deadline := time.Now().Add(30 * time.Second); ; {
		var err error
		ends, err = k.adm.ListCommittedOffsets(ctx, topic)
		if err == nil {
			err = ends.Error()
		}
		if err != nil {
			return fmt.Errorf("list stable offsets of %s: %w", topic, err)
		}
		hw, err := k.adm.ListEndOffsets(ctx, topic)
		if err == nil {
			err = hw.Error()
		}
		if err != nil {
			return fmt.Errorf("list end offsets of %s: %w", topic, err)
		}
		open := false
		hw.Each(func(o kadm.ListedOffset) {
			if s, ok := ends.Lookup(topic, o.Partition); !ok || s.Offset < o.Offset {
				open = true
			}
		})
		if !open {
			break
		}
		if time.Now().After(deadline) {
			logf("warning: %s still has an open transaction after 30 s; reading up to its last stable offsets", topic)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	starts, err := k.adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return fmt.Errorf("list start offsets of %s: %w", topic, err)
	}
	want := map[int32]int64{}
	from := map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) {
		s, _ := starts.Lookup(topic, o.Partition)
		if o.Offset > s.Offset {
			want[o.Partition] = o.Offset
			from[o.Partition] = kgo.NewOffset().At(s.Offset)
		}
	})
	if len(want) == 0 {
		return nil
	}
	cl, err := k.client(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: from}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())
	if err != nil {
		return err
	}
	defer cl.Close()
	for len(want) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("read %s: %w (partitions left: %v)", topic, err, want)
		}
		var ferr error
		fs.EachError(func(tp string, p int32, err error) { ferr = fmt.Errorf("read %s/%d: %w", tp, p, err) })
		if ferr != nil {
			return ferr
		}
		fs.EachRecord(func(rec *kgo.Record) {
			end, ok := want[rec.Partition]
			if !ok || rec.Offset >= end {
				return
			}
			if !rec.Attrs.IsControl() {
				fn(rec)
			}
			if rec.Offset >= end-1 {
				delete(want, rec.Partition)
			}
		})
	}
	return nil
}

// ceilingRun is one raw consume of the input topic.
type ceilingRun struct {
	Seconds      float64 `json:"seconds"`
	EventsPerSec float64 `json:"events_per_sec"`
	CPUSeconds   float64 `json:"cpu_seconds"` // this process's, over the interval
}

// ceiling consumes the whole topic with a plain franz-go read_committed
// consumer (no group, from the start), counting records and doing nothing
// else: the rate a stream stage on this machine cannot beat. The interval
// runs from the first fetch request (connection already up) to the last
// record.
func (k *kafka) ceiling(ctx context.Context, topic string, total int64) (ceilingRun, error) {
	cl, err := k.client(kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return ceilingRun{}, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	// Connect first, so the interval holds the fetches and not the dial.
	if err := cl.Ping(ctx); err != nil {
		return ceilingRun{}, err
	}
	var n int64
	first := time.Now()
	cpu0, _ := procTicks(os.Getpid())
	for n < total {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return ceilingRun{}, fmt.Errorf("ceiling read of %s: %w after %d of %d records", topic, err, n, total)
		}
		var ferr error
		fs.EachError(func(tp string, p int32, err error) { ferr = fmt.Errorf("read %s/%d: %w", tp, p, err) })
		if ferr != nil {
			return ceilingRun{}, ferr
		}
		n += int64(fs.NumRecords())
	}
	el := time.Since(first).Seconds()
	cpu1, _ := procTicks(os.Getpid())
	return ceilingRun{Seconds: el, EventsPerSec: float64(n) / el, CPUSeconds: float64(cpu1-cpu0) / clockTicks}, nil
}
