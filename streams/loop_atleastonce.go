package streams

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// atLeastOnceSession runs the loop on a plain group consumer (see Loop)
// until ctx is done (nil), or the processor, a restore or authorization
// fails.
//
// A batch ends in one of three ways:
//   - committed: every output record was acknowledged (Flush), then the
//     offsets of every record polled committed (CommitUncommittedOffsets,
//     synchronous), then the processor's Commit;
//   - aborted: a record failed to produce, the offsets failed to commit or
//     the processor returned a *RetryError; the processor's Abort, a rewind
//     to the committed offsets, and a backoff. The batch's output that did
//     reach the brokers stays there: reprocessing writes it again;
//   - stopped: ctx done or another processor error; the processor's Abort,
//     and nothing commits, so the next owner of the partitions processes
//     the batch again.
//
// Rebalances stay blocked from each poll until the batch has ended, so
// Revoked and Assigned come between batches; offsets are committed under
// the generation whose partitions were processed.
func (l *Loop) atLeastOnceSession(ctx context.Context) error {
	var assignErr error // guarded by l.mu
	cl, err := kgo.NewClient(append(l.groupOpts(&assignErr), kgo.ConsumeTopics(l.cfg.Topics...))...)
	if err != nil {
		return fmt.Errorf("%s: start consumer: %w", l.cfg.Stage, err)
	}
	// Closing revokes the partitions, which waits for the rebalance to be
	// allowed. Records not flushed by then fail, and their batch's offsets
	// were not committed.
	defer cl.CloseAllowingRebalance()

	punct, _ := l.proc.(Punctuator)
	var failed produceErr
	promise := failed.promise
	produce := func(r *kgo.Record) { cl.Produce(ctx, r, promise) }
	backoff := minRetryBackoff
	for {
		fetches := l.poll(ctx, cl, punct)
		if ctx.Err() != nil {
			return nil
		}
		if err := l.restoreErr(&assignErr); err != nil {
			return err
		}
		if fetches.IsClientClosed() {
			return nil
		}
		input := fetches.NumRecords() > 0
		if !input && (punct == nil || !l.due(punct)) {
			cl.AllowRebalance()
			continue
		}
		b, err := l.fill(ctx, cl, fetches, input, produce)
		var retry *RetryError
		if err != nil && !errors.As(err, &retry) {
			l.abort()
			return err
		}
		start := time.Now()
		// Every promise has run once Flush returns; a batch that is not
		// committed still waits for its output, so that no promise of it
		// reports into the next batch.
		if ferr := cl.Flush(ctx); ferr != nil || ctx.Err() != nil {
			l.abort()
			return nil
		}
		if perr := failed.take(); err == nil && perr != nil {
			err = fmt.Errorf("%s: produce: %w", l.cfg.Stage, perr)
		}
		if err == nil {
			if cerr := cl.CommitUncommittedOffsets(ctx); cerr != nil {
				err = fmt.Errorf("%s: commit offsets: %w", l.cfg.Stage, cerr)
			}
		}
		if err == nil {
			backoff = minRetryBackoff
			l.committed(b, time.Since(start))
			cl.AllowRebalance()
			continue
		}
		l.abort()
		if ctx.Err() != nil {
			return nil // the commit may or may not have landed: either is safe
		}
		if unauthorized(err) {
			return err
		}
		// Rewind to the committed offsets while the rebalance is still
		// blocked (as SetOffsets wants), dropping what was fetched past
		// them, then let a waiting rebalance go on.
		cl.SetOffsets(cl.CommittedOffsets())
		cl.AllowRebalance()
		l.log.Warn("batch not committed; processing again from the committed offsets", "backoff", backoff, "err", err)
		if !l.wait(ctx, &backoff) {
			return nil
		}
	}
}

// produceErr keeps the first error that a batch's produce promises
// report.
type produceErr struct {
	mu  sync.Mutex
	err error
}

func (p *produceErr) promise(r *kgo.Record, err error) {
	if err == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err == nil {
		p.err = fmt.Errorf("%s/%d: %w", r.Topic, r.Partition, err)
	}
}

// take returns the first error since the last take and forgets it.
func (p *produceErr) take() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	err := p.err
	p.err = nil
	return err
}
