"""Feast's side of `make bench-trainingset` (runs in $WEIR_DATA/feast-venv).

    feast_ts.py prepare --work DIR
        Turns the rows bench/trainingset exported from Weir's ClickHouse
        tables (DIR/export/<view>.parquet) into Feast's layout
        (DIR/feast/data/<view>.parquet), the spine into an entity dataframe
        with an event_timestamp column (DIR/feast/spine.parquet), and writes
        and applies one feature repo per offline store: DIR/feast/dask (the
        default `file` store, dask) and DIR/feast/duckdb (duckdb through ibis);
        and DIR/feast/duckdb_naive, the same rows without the reconciliation
        below (event times as stored, TTL as configured, one created
        timestamp for every row), to show what it changes.
    feast_ts.py build --repo DIR/feast/<engine> --spine SPINE --out OUT
        The timed part: read the spine, get_historical_features for the three
        views' 30 features, write OUT as Parquet (zstd, as Weir writes).
        Prints one JSON line: phase seconds, rows, VmHWM.
    feast_ts.py compare --weir W.parquet --feast F.parquet --views JSON
        Row for row, joined on txn_id: every feature cell equal (the same
        float64 bits, or both missing). Prints a JSON line of counts; exits
        1 when any cell or row differs.

What is reconciled in `prepare` (none of it timed), so that Feast's join
answers what Weir's does (docs: bench/trainingset/README.md):
- Weir's tie-break among rows of one entity and event time is its rank
  (source partition, revised offset, source offset, window start); Feast's
  is the created timestamp. created = the row's position in Weir's rank
  order (the export is sorted by it), as microseconds since the epoch.
- Weir's availability delay d (card_velocity: 5 s) has no Feast
  counterpart: Feast gets event_timestamp = event time + d and ttl - d.
  (t - et <= ttl and et <= t - d) is (et + d <= t and et + d >= t - (ttl - d)).
- Feast's TTL keeps a row when event_timestamp >= t - ttl, Weir's when
  t - et <= ttl: the same, bounds included.
"""

import argparse
import json
import os
import sys
import time
from datetime import timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ENTITIES = {"card_id": "card", "merchant_id": "merchant"}


def vmhwm_mb():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return -1


def ms_to_ts(arr, unit="ms"):
    return pc.cast(arr, pa.timestamp(unit, tz="UTC"))


def prepare(a):
    with open(os.path.join(a.work, "views.json")) as fh:
        views = json.load(fh)
    root = os.path.join(a.work, "feast")
    data = os.path.join(root, "data")
    os.makedirs(data, exist_ok=True)
    naive = os.path.join(root, "data_naive")
    os.makedirs(naive, exist_ok=True)
    for v in views:
        t = pq.read_table(os.path.join(a.work, "export", v["name"] + ".parquet"))
        et = pc.add(t["event_time_ms"], pa.scalar(v["delay_ms"], pa.int64()))
        cols = {v["entity_column"]: t["entity"], "event_timestamp": ms_to_ts(et), "created": ms_to_ts(t["rank"], "us")}
        for f in v["features"]:
            cols[f] = t[f]
        pq.write_table(pa.table(cols), os.path.join(data, v["name"] + ".parquet"))
        # Without the reconciliation: event time as stored, created = the
        # time the row was exported (one value for all), as a pipeline that
        # copied the table would write it.
        cols["event_timestamp"] = ms_to_ts(t["event_time_ms"])
        cols["created"] = ms_to_ts(pa.array(np.full(t.num_rows, 1_700_000_000_000_000, dtype=np.int64)), "us")
        pq.write_table(pa.table(cols), os.path.join(naive, v["name"] + ".parquet"))
    sp = pq.read_table(os.path.join(a.work, "data", "spine.parquet"))
    sp = sp.append_column("event_timestamp", ms_to_ts(sp["ts"]))
    pq.write_table(sp, os.path.join(root, "spine.parquet"))

    for engine, store, d, naive_ in (("dask", "file", data, False), ("duckdb", "duckdb", data, False),
                                     ("duckdb_naive", "duckdb", naive, True)):
        repo = os.path.join(root, engine)
        os.makedirs(repo, exist_ok=True)
        with open(os.path.join(repo, "feature_store.yaml"), "w") as fh:
            fh.write(
                "project: weirbench_ts\n"
                f"registry: {repo}/registry.db\n"
                "provider: local\n"
                f"offline_store:\n  type: {store}\n"
                f"online_store:\n  type: sqlite\n  path: {repo}/online.db\n"
                "entity_key_serialization_version: 3\n"
            )
        store_ = open_store(repo)
        store_.apply(definitions(views, d, naive_))
    print(json.dumps({"prepared": root, "views": [v["name"] for v in views], "spine_rows": sp.num_rows}))


def open_store(repo):
    from feast import FeatureStore

    return FeatureStore(repo_path=repo)


def definitions(views, data, naive=False):
    from feast import Entity, FeatureView, Field, FileSource
    from feast.types import Float64

    ents = {col: Entity(name=name, join_keys=[col]) for col, name in ENTITIES.items()}
    out = list(ents.values())
    for v in views:
        src = FileSource(name=v["name"] + "_src", path=os.path.join(data, v["name"] + ".parquet"),
                         timestamp_field="event_timestamp", created_timestamp_column="created")
        ttl = timedelta(milliseconds=v["ttl_ms"] if naive else v["ttl_ms"] - v["delay_ms"])
        out.append(FeatureView(name=v["name"], entities=[ents[v["entity_column"]]], ttl=ttl,
                               schema=[Field(name=f, dtype=Float64) for f in v["features"]], source=src))
    return out


def build(a):
    import pandas as pd

    t0 = time.perf_counter()
    if a.duckdb_memory_limit:
        # Feast's duckdb store runs on ibis's default backend; its config
        # has no memory setting. DuckDB's own default is 80% of RAM.
        import ibis

        ibis.get_backend().raw_sql(f"SET memory_limit = '{a.duckdb_memory_limit}'")
    store = open_store(a.repo)
    with open(os.path.join(a.repo, "..", "..", "views.json")) as fh:
        views = json.load(fh)
    refs = [f"{v['name']}:{f}" for v in views for f in v["features"]]
    t1 = time.perf_counter()
    spine = pd.read_parquet(a.spine)
    t2 = time.perf_counter()
    job = store.get_historical_features(entity_df=spine, features=refs, full_feature_names=True)
    table = job.to_arrow()
    t3 = time.perf_counter()
    pq.write_table(table, a.out, compression="zstd", compression_level=1)
    t4 = time.perf_counter()
    print(json.dumps({"rows": table.num_rows, "columns": table.num_columns, "open_s": t1 - t0, "spine_s": t2 - t1,
                      "join_s": t3 - t2, "write_s": t4 - t3, "build_s": t4 - t1, "vmhwm_mb": vmhwm_mb()}))


def compare(a):
    views = json.loads(a.views)
    w = pq.read_table(a.weir)
    f = pq.read_table(a.feast)
    wid = w["txn_id"].to_numpy(zero_copy_only=False)
    fid = f["txn_id"].to_numpy(zero_copy_only=False)
    res = {"weir_rows": w.num_rows, "feast_rows": f.num_rows}
    fpos = {k: i for i, k in enumerate(fid)}
    res["feast_duplicate_ids"] = len(fid) - len(fpos)
    idx = np.array([fpos.get(k, -1) for k in wid])
    missing = idx < 0
    res["rows_missing_in_feast"] = int(missing.sum())
    res["rows_extra_in_feast"] = int(len(fpos) - (~missing).sum())
    present = ~missing
    take = pa.array(idx[present])
    cells = equal = null_vs_nan = nan_vs_null = differ = 0
    per_view = {}
    examples = []
    for v in views:
        bad = 0
        for feat in v["features"]:
            col = f"{v['name']}__{feat}"
            wc = w[col].filter(pa.array(present))
            fc = f[col].take(take)
            wn = wc.is_null().to_numpy(zero_copy_only=False)
            fn = fc.is_null().to_numpy(zero_copy_only=False)
            wv = wc.fill_null(0.0).to_numpy(zero_copy_only=False).astype(np.float64)
            fv = fc.cast(pa.float64()).fill_null(0.0).to_numpy(zero_copy_only=False)
            wnan, fnan = ~wn & np.isnan(wv), ~fn & np.isnan(fv)
            same = (wn & fn) | (wnan & fnan) | (~wn & ~fn & ~wnan & ~fnan & (wv.view(np.int64) == fv.view(np.int64)))
            nv = wn & fnan  # Weir: no row; Feast: NaN
            vn = wnan & fn  # Weir: the row's NaN; Feast: null
            d = ~same & ~nv & ~vn
            cells += len(same)
            equal += int(same.sum())
            null_vs_nan += int(nv.sum())
            nan_vs_null += int(vn.sum())
            differ += int(d.sum())
            bad += int(d.sum())
            if d.any() and len(examples) < 5:
                i = int(np.flatnonzero(d)[0])
                row = np.flatnonzero(present)[i]
                examples.append({"txn_id": str(wid[row]), "column": col, "weir": None if wn[i] else float(wv[i]),
                                 "feast": None if fn[i] else float(fv[i])})
        per_view[v["name"]] = bad
    res.update({"cells": cells, "equal": equal, "weir_null_feast_nan": null_vs_nan, "weir_nan_feast_null": nan_vs_null,
                "differ": differ, "differ_by_view": per_view, "examples": examples})
    res["strict_match"] = differ == 0 and null_vs_nan == 0 and nan_vs_null == 0 and res["rows_missing_in_feast"] == 0 \
        and res["rows_extra_in_feast"] == 0 and res["feast_duplicate_ids"] == 0
    # Null and NaN told apart or not, every value the same.
    res["match"] = differ == 0 and res["rows_missing_in_feast"] == 0 and res["rows_extra_in_feast"] == 0 \
        and res["feast_duplicate_ids"] == 0
    print(json.dumps(res))
    return 0 if res["match"] else 1


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--work", required=True)
    b = sub.add_parser("build")
    b.add_argument("--repo", required=True)
    b.add_argument("--spine", required=True)
    b.add_argument("--out", required=True)
    b.add_argument("--duckdb-memory-limit", help="SET memory_limit on the duckdb backend Feast's duckdb store uses, e.g. 4GB")
    c = sub.add_parser("compare")
    c.add_argument("--weir", required=True)
    c.add_argument("--feast", required=True)
    c.add_argument("--views", required=True)
    a = ap.parse_args()
    if a.cmd == "prepare":
        prepare(a)
    elif a.cmd == "build":
        build(a)
    else:
        sys.exit(compare(a))


if __name__ == "__main__":
    main()
