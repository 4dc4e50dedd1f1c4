"""Batch oracle for processors/faulttest: the demo view's features, recomputed
from the raw source topic with pandas and nothing of Weir.

    oracle.py RAW_CSV OUT_CSV

RAW_CSV is the whole source topic as the Go test dumped it, one row per
record: partition, offset, key (the record key, "" when it has none),
card_id, txn_id, event_time (Unix ms), amount, and dead: "" for a record
the processor must accept, otherwise the dead-letter reason it must give it
(the Go side decodes the Avro, which is the only thing it does for us).

For every accepted record, the view card_activity of deploy/demo/weir.yaml
is, over the events of the same key in the same partition processed so far
(offset order, the record itself included) whose event time lies in the
window (t - w, t]:

    txn_count_5m   count           w = 5 min
    amount_sum_5m  sum of amount   w = 5 min
    txn_count_1h   count           w = 1 h
    amount_sum_1h  sum of amount   w = 1 h
    amount_max_1h  max of amount   w = 1 h
    amount_last    the record's own amount

Assumption, asserted below: within a partition, each key's event times do not
decrease in offset order (loadgen's stream is in event-time order). Then
"processed so far with time <= t" is exactly "the rows before it in offset
order", which is what pandas' time-based rolling window computes with
closed="right" (ties included only up to the row itself).

OUT_CSV gets one row per accepted record: partition, offset, key, txn_id and
the six features, floats written so that they round-trip.
"""
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


def main(raw_path, out_path):
    raw = pd.read_csv(
        raw_path,
        dtype={"partition": "int64", "offset": "int64", "key": str, "card_id": str,
               "txn_id": str, "event_time": str, "amount": str, "dead": str},
        keep_default_na=False,
    )
    acc = raw[raw["dead"] == ""].copy()
    acc["event_time"] = acc["event_time"].astype("int64")
    # Python's float() reads Go's shortest round-trip text back exactly.
    acc["amount"] = acc["amount"].map(float).astype("float64")
    if (acc["key"] != acc["card_id"]).any():
        sys.exit("oracle: an accepted record's key differs from its card_id")
    acc = acc.sort_values(["partition", "offset"]).reset_index(drop=True)
    if acc.duplicated(["partition", "offset"]).any():
        sys.exit("oracle: the raw dump holds a (partition, offset) twice")

    keys = ["partition", "key"]
    back = acc.groupby(keys, sort=False)["event_time"].diff() < 0
    if back.any():
        r = acc[back].iloc[0]
        sys.exit(f"oracle: assumption broken: key {r['key']} goes back in event time at "
                 f"partition {r['partition']} offset {r['offset']}")

    acc["ts"] = pd.to_datetime(acc["event_time"], unit="ms")
    out = acc[["partition", "offset", "key", "txn_id"]].copy()
    groups = acc.groupby(keys, sort=False)[["ts", "amount"]]
    for name, window, agg in FEATURES:
        rolled = getattr(groups.rolling(window, on="ts", closed="right"), agg)()
        # The last index level is acc's row index: align on it.
        values = rolled["amount"].droplevel(list(range(rolled.index.nlevels - 1)))
        out[name] = values.reindex(out.index)
    out["amount_last"] = acc["amount"]
    if out.isna().any().any():
        sys.exit("oracle: a feature came out NaN")
    out.to_csv(out_path, index=False)
    print(f"oracle: {len(raw)} raw records, {len(out)} accepted, "
          f"{len(raw) - len(out)} to dead-letter, {acc.groupby(keys).ngroups} keys")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
