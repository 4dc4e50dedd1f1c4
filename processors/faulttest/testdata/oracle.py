"""Batch oracle for processors/faulttest: which events are too late, and the
final values of the demo view's features, recomputed from the raw source
topic with pandas and nothing of Weir.

    oracle.py RAW_CSV OUT_DIR --out-of-order-ms N --lateness-ms N --ttl-ms N

RAW_CSV is the whole source topic as the Go test dumped it, one row per
record: partition, offset, key (the record key, "" when it has none),
card_id, txn_id, event_time (Unix ms), amount, and dead: "" for a record
that decodes and has a sane key and time, otherwise the dead-letter reason
the processor must give it (the Go side decodes the Avro and applies those
per-record checks, which is the only thing it does for us). Whether an event
is too late depends on the records before it, so that is decided here.

Semantics, as the processor documents them (processors/doc.go,
internal/config: out_of_order, lateness) and as written here:

Too late. Each partition has a watermark: the newest event time among the
events of the partition it accepted so far (offset order) minus the
source's out_of_order; none before its first accepted event. An event whose
time is more than the view's allowed lateness behind it,

    event_time < newest - out_of_order - lateness,

is too late for the view, which is the only view: it is dead-lettered with
reason "late", and it neither enters any window nor moves the watermark.
Records dead-lettered for other reasons (undecodable, no key, absurd time)
are not events and move nothing either. The watermark is the partition's,
not the key's: a card's event can be late behind other cards' events. (The
source's idle_timeout only makes windowed views close their windows at
other partitions' watermarks; it plays no part in the late check, and this
view is sliding.)

Final values. The view card_activity of deploy/demo/weir.yaml is sliding:
each feature of an accepted event e of key k in partition p, at time t, is
an aggregate over the accepted events of k in p whose event time lies in
(t - w, t]:

    txn_count_5m   count           w = 5 min
    amount_sum_5m  sum of amount   w = 5 min
    txn_count_1h   count           w = 1 h
    amount_sum_1h  sum of amount   w = 1 h
    amount_max_1h  max of amount   w = 1 h
    amount_last    amount of the newest event in the window: e's own

The engine keeps each key's events in event-time order, equal times in
processing (offset) order, and an event's window ends at the event itself
in that order: of the events at exactly t, it holds those at or before e's
offset. So the window holds the events f with t - w < t_f < t, and those
with t_f = t and offset <= e's; its newest event is e. Events accepted
after e (higher offsets) count too, once they arrived: a late event is
inserted in time order and re-emits, as a new version, the row of every
event of its key with a greater event time that came before it (see
Versions). The FINAL version of e's row (the last one on the view's topic)
is thus the window over ALL accepted events, which is what pandas' rolling
window computes over each key's events sorted by (event_time, offset),
closed="right" (ties included only up to the row itself).

Versions. Every accepted event e has its own row (revises_offset -1,
source_offset e) and one correction row for every accepted event L of the
same key and partition with a higher offset and an earlier event time
(t_L < t_e; L at the same time as e lands after e in the order, so it is
not in e's window): that row has revises_offset e and source_offset L, and
comes on the view's topic after the versions of e before it, in L's
transaction. (The engine re-emits every such row; here every one of them
also changes, as L, at most out_of_order + lateness before e, is in e's 1h
window. The engine retains every event that a not-too-late event's
window can reach: out_of_order + lateness + the longest window behind the
key's newest; the stream must span less than the view's TTL, which is
asserted, or keys would be forgotten.)

OUT_DIR gets
  expected.csv  one row per accepted record: partition, offset, key, txn_id,
                event_time, causes (the offsets, ascending and space
                separated, of the late events that re-emit its row; "" for
                none) and the six final features, floats written so that
                they round-trip;
  late.csv      partition, offset of every record too late to accept.
"""
import argparse
import bisect
import os
import sys

import pandas as pd

FEATURES = [
    # (name, window, aggregation over amount)
    ("txn_count_5m", "5min", "count"),
    ("amount_sum_5m", "5min", "sum"),
    ("txn_count_1h", "1h", "count"),
    ("amount_sum_1h", "1h", "sum"),
    ("amount_max_1h", "1h", "max"),
]


def too_late(ev, out_of_order, lateness):
    """A boolean Series over ev (sorted by partition, offset): the events a
    partition's watermark, simulated record by record, makes too late."""
    late = [False] * len(ev)
    newest = {}  # partition -> newest accepted event time
    for i, (p, t) in enumerate(zip(ev["partition"].tolist(), ev["event_time"].tolist())):
        n = newest.get(p)
        if n is not None and t < n - out_of_order - lateness:
            late[i] = True
            continue
        newest[p] = t if n is None else max(n, t)
    return pd.Series(late, index=ev.index)


def causes_of(acc):
    """For each accepted event (acc sorted by partition, offset), the offsets
    of the later-processed events of its key with an earlier event time."""
    causes = [[] for _ in range(len(acc))]
    keys = {}  # (partition, key) -> (times ascending, row numbers in that order)
    offs = acc["offset"].tolist()
    for i, (p, k, t) in enumerate(zip(acc["partition"].tolist(), acc["key"].tolist(), acc["event_time"].tolist())):
        times, rows = keys.setdefault((p, k), ([], []))
        j = bisect.bisect_right(times, t)  # after the events at or before t
        for m in rows[j:]:
            causes[m].append(offs[i])
        times.insert(j, t)
        rows.insert(j, i)
    return [" ".join(map(str, c)) for c in causes]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("raw")
    ap.add_argument("out_dir")
    ap.add_argument("--out-of-order-ms", type=int, required=True)
    ap.add_argument("--lateness-ms", type=int, required=True)
    ap.add_argument("--ttl-ms", type=int, required=True)
    a = ap.parse_args()

    raw = pd.read_csv(
        a.raw,
        dtype={"partition": "int64", "offset": "int64", "key": str, "card_id": str,
               "txn_id": str, "event_time": str, "amount": str, "dead": str},
        keep_default_na=False,
    )
    ev = raw[raw["dead"] == ""].copy()
    ev["event_time"] = ev["event_time"].astype("int64")
    # Python's float() reads Go's shortest round-trip text back exactly.
    ev["amount"] = ev["amount"].map(float).astype("float64")
    if (ev["key"] != ev["card_id"]).any():
        sys.exit("oracle: an event's key differs from its card_id")
    ev = ev.sort_values(["partition", "offset"]).reset_index(drop=True)
    if ev.duplicated(["partition", "offset"]).any():
        sys.exit("oracle: the raw dump holds a (partition, offset) twice")

    late = too_late(ev, a.out_of_order_ms, a.lateness_ms)
    acc = ev[~late].reset_index(drop=True)
    if len(acc) and acc["event_time"].max() - acc["event_time"].min() >= a.ttl_ms:
        sys.exit("oracle: the stream spans the view's TTL: keys would expire, which this oracle does not model")
    acc["causes"] = causes_of(acc)

    # Final values: each key's events in (event_time, offset) order.
    keys = ["partition", "key"]
    srt = acc.sort_values(["partition", "key", "event_time", "offset"])
    srt["ts"] = pd.to_datetime(srt["event_time"], unit="ms")
    out = acc[["partition", "offset", "key", "txn_id", "event_time", "causes"]].copy()
    groups = srt.groupby(keys, sort=False)[["ts", "amount"]]
    for name, window, agg in FEATURES:
        rolled = getattr(groups.rolling(window, on="ts", closed="right"), agg)()
        # The last index level is acc's row index: align on it.
        values = rolled["amount"].droplevel(list(range(rolled.index.nlevels - 1)))
        out[name] = values.reindex(out.index)
    out["amount_last"] = acc["amount"]
    if out[[f[0] for f in FEATURES]].isna().any().any():
        sys.exit("oracle: a feature came out NaN")
    out.to_csv(os.path.join(a.out_dir, "expected.csv"), index=False)
    ev[late][["partition", "offset"]].to_csv(os.path.join(a.out_dir, "late.csv"), index=False)

    ncorr = int(acc["causes"].map(lambda c: len(c.split())).sum())
    behind = acc.groupby(keys, sort=False)["event_time"].diff() < 0
    print(f"oracle: {len(raw)} raw records, {len(acc)} accepted ({int(behind.sum())} behind their key's "
          f"previous event), {int(late.sum())} too late, {len(raw) - len(ev)} dead-lettered otherwise, "
          f"{ncorr} corrections, {acc.groupby(keys).ngroups} keys")


if __name__ == "__main__":
    main()
