"""Generates the training-set test data: feature rows of three views, as the
offline store holds them (with corrections, equal event times, hopping
windows, retried duplicates and NaNs), a spine, and the cut-offs to test.

    gen.py --out DIR --spine-rows N [--seed S] [--spine-order time|random]

Writes DIR/features_<view>.parquet (the offline table's columns, duplicates
included, in no particular order), DIR/spine.parquet and DIR/spine.csv (the
same rows), and DIR/meta.json (views, cut-offs). Deterministic for a seed.
"""

import argparse
import json
import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

TOPIC = "payments.transactions"
PARTITIONS = 4
N_FEATURES = 10
DAY = 86_400_000
START = 1_767_225_600_000  # 2026-01-01T00:00:00Z

# name, entity column, ttl, availability delay, hopping (two windows a row)
VIEWS = [
    ("card_stats", "card_id", 3_600_000, 0, False),
    ("card_velocity", "card_id", 600_000, 5_000, False),
    ("merchant_risk", "merchant_id", 6 * 3_600_000, 0, True),
]


def write_parquet(df, path, nullable=()):
    """Writes df with NaN kept as NaN (pyarrow's from_pandas would make it
    null) and every column required but those named nullable."""
    fields, arrays = [], []
    for c in df.columns:
        col = df[c]
        if c in nullable:
            arr = pa.array(col.to_numpy(), from_pandas=True)
        else:
            arr = pa.array(col.to_numpy(dtype=object if col.dtype == object or str(col.dtype) in ("str", "string") else None), from_pandas=False)
        fields.append(pa.field(c, arr.type, nullable=c in nullable))
        arrays.append(arr)
    pq.write_table(pa.Table.from_arrays(arrays, schema=pa.schema(fields)), path)


def partition_of(keys):
    # Any stable function of the key: an entity's rows share a partition.
    return np.array([sum(k.encode()) % PARTITIONS for k in keys], dtype=np.int32)


def view_rows(rng, name, entities, n_rows, span, hopping):
    """Feature rows of one view: first versions, then corrections."""
    ent = rng.choice(entities, size=n_rows).astype(object)
    et = START + rng.integers(0, span, size=n_rows)
    # 2% of rows share the event time of another row of their entity.
    tie = rng.random(n_rows) < 0.02
    src = rng.integers(0, n_rows, size=tie.sum())
    ent[tie], et[tie] = ent[src], et[src]
    known = et + rng.integers(10, 2_000, size=n_rows)
    df = pd.DataFrame({"entity": ent, "event_time_ms": et, "known_time_ms": known})
    df["row"] = np.arange(n_rows)
    df["revises_row"] = -1
    # Corrections: 3% of rows get one, a third of those a second; each is
    # known later than the version it replaces (a late event's cause).
    fix = df[rng.random(n_rows) < 0.03]
    fix2 = fix[rng.random(len(fix)) < 0.33]
    parts = [df]
    for base, lo, hi in ((fix, 1_000, 600_000), (fix2, 600_000, 3_600_000)):
        c = base.copy()
        c["revises_row"] = base["row"].values
        c["known_time_ms"] = base["known_time_ms"].values + rng.integers(lo, hi, size=len(c))
        c["row"] = -1
        parts.append(c)
    df = pd.concat(parts, ignore_index=True)
    df["source_partition"] = partition_of(df["entity"].tolist())
    # Offsets in processing (known time) order within each partition.
    df = df.sort_values(["source_partition", "known_time_ms", "entity", "event_time_ms"], kind="stable").reset_index(drop=True)
    df["source_offset"] = df.groupby("source_partition").cumcount().astype(np.int64) * 3 + 7
    first = df[df["row"] >= 0].set_index("row")["source_offset"]
    df["revises_offset"] = np.where(df["revises_row"] >= 0, first.reindex(df["revises_row"]).values, -1).astype(np.int64)
    df["source_topic"] = TOPIC
    df["event_id"] = "e" + df["source_offset"].astype(str)
    df["window_start_ms"] = 0
    df["window_end_ms"] = 0
    if hopping:
        # Each row in two overlapping windows of one instant.
        a, b = df.copy(), df.copy()
        a["window_start_ms"], a["window_end_ms"] = a["event_time_ms"] - 60_000, a["event_time_ms"] + 60_000
        b["window_start_ms"], b["window_end_ms"] = b["event_time_ms"] - 30_000, b["event_time_ms"] + 90_000
        df = pd.concat([a, b], ignore_index=True)
    vals = rng.normal(100, 50, size=(len(df), N_FEATURES)).round(3)
    vals[rng.random(vals.shape) < 0.005] = np.nan  # a feature a row lacked
    for k in range(N_FEATURES):
        df[f"f{k}"] = vals[:, k]
    # 1% retried duplicates.
    dup = df[rng.random(len(df)) < 0.01]
    df = pd.concat([df, dup], ignore_index=True)
    df = df.sample(frac=1, random_state=rng.integers(1 << 31)).reset_index(drop=True)
    cols = ["entity", "event_time_ms", "known_time_ms", "source_topic", "source_partition", "source_offset",
            "event_id", "window_start_ms", "window_end_ms", "revises_offset"] + [f"f{k}" for k in range(N_FEATURES)]
    return df[cols]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--spine-rows", type=int, required=True)
    ap.add_argument("--seed", type=int, default=20260101)
    ap.add_argument("--spine-order", choices=["time", "random"], default="random")
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    n = a.spine_rows
    os.makedirs(a.out, exist_ok=True)
    # Event time spans a minute per spine row: at least an hour, at most 30 days.
    span = min(max(DAY // 24, n * 60), 30 * DAY)
    cards = np.array([f"c{i:06d}" for i in range(max(50, n // 20))])
    merchants = np.array([f"m{i:05d}" for i in range(max(10, n // 200))])

    views = []
    for name, ecol, ttl, delay, hopping in VIEWS:
        entities = cards if ecol == "card_id" else merchants
        df = view_rows(rng, name, entities, n, span, hopping)
        write_parquet(df, os.path.join(a.out, f"features_{name}.parquet"))
        views.append({"name": name, "entity_column": ecol, "ttl_ms": ttl, "delay_ms": delay,
                      "features": [f"f{k}" for k in range(N_FEATURES)], "rows": len(df)})

    # The spine: labelled transactions. 10% sit exactly on a feature row's
    # event time, 5% exactly a TTL after one, 5% a millisecond past it; 2%
    # name entities with no feature rows.
    card = rng.choice(cards, size=n).astype(object)
    merchant = rng.choice(merchants, size=n).astype(object)
    ts = START + rng.integers(-3_600_000, span + 3_600_000, size=n)
    ref = pd.read_parquet(os.path.join(a.out, "features_card_stats.parquet"), columns=["entity", "event_time_ms"])
    ref_entity, ref_et = ref["entity"].to_numpy(dtype=object), ref["event_time_ms"].to_numpy()
    pick = rng.integers(0, len(ref), size=n)
    u = rng.random(n)
    on = u < 0.10
    at_ttl = (u >= 0.10) & (u < 0.15)
    past_ttl = (u >= 0.15) & (u < 0.20)
    for mask, add in ((on, 0), (at_ttl, VIEWS[0][2]), (past_ttl, VIEWS[0][2] + 1)):
        card[mask] = ref_entity[pick[mask]]
        ts[mask] = ref_et[pick[mask]] + add
    cold = rng.random(n) < 0.02
    card[cold] = np.array(["cold-" + c for c in card[cold]], dtype=object)
    spine = pd.DataFrame({
        "txn_id": [f"t{i:08d}" for i in range(n)],
        "card_id": card,
        "merchant_id": merchant,
        "ts": ts.astype(np.int64),
        "amount": rng.exponential(40, size=n).round(2),
        "is_fraud": rng.random(n) < 0.02,
        # A nullable column: null 5% of the time.
        "merchant_score": np.where(rng.random(n) < 0.05, np.nan, rng.random(n).round(4)),
    })
    if a.spine_order == "time":
        spine = spine.sort_values(["ts", "txn_id"], kind="stable").reset_index(drop=True)
    write_parquet(spine, os.path.join(a.out, "spine.parquet"), nullable=("merchant_score",))
    csv = spine.copy()
    csv["is_fraud"] = csv["is_fraud"].astype(int)
    csv.to_csv(os.path.join(a.out, "spine.csv"), index=False)

    # Cut-offs: a time 60% into the span, and each partition's median offset.
    allf = pd.concat([pd.read_parquet(os.path.join(a.out, f"features_{v['name']}.parquet"),
                                      columns=["source_partition", "source_offset"]) for v in views[:1]])
    offsets = {str(p): int(g["source_offset"].median()) for p, g in allf.groupby("source_partition")}
    meta = {"topic": TOPIC, "partitions": PARTITIONS, "start_ms": START, "span_ms": span, "views": views,
            "spine_rows": n, "known_at_ms": START + span * 6 // 10, "offsets": offsets}
    with open(os.path.join(a.out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2)


if __name__ == "__main__":
    main()
