"""The point-in-time oracle: pandas merge_asof over gen.py's data, checked row
for row against a training set weir wrote.

    oracle.py --data DIR --got OUT.parquet|OUT.csv [--known-at MS] [--offsets P=O,...]

For each spine row and view: drop retried duplicates; keep the rows the
cut-off keeps (known_time_ms <= known_at; source_offset < the vector's
offset for the row's partition, no row of a partition the vector lacks);
order each entity's rows by (event time, partition, revised offset, source
offset, window start), the revised offset being revises_offset for a
correction and the source offset otherwise, and keep the last of each
event time; merge_asof backward on the spine time less the view's delay;
null when there is none or it is older than the TTL. Exits 1 on the first
mismatches, printing them.
"""

import argparse
import json
import os
import sys

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

KEY = ["entity", "event_time_ms", "source_partition", "source_offset", "window_start_ms", "revises_offset"]


def expected(data, meta, spine, known_at, offsets):
    out = {}
    for v in meta["views"]:
        f = pd.read_parquet(os.path.join(data, f"features_{v['name']}.parquet"))
        f = f.drop_duplicates(subset=KEY)
        if known_at is not None:
            f = f[f["known_time_ms"] <= known_at]
        if offsets is not None:
            limit = f["source_partition"].astype(str).map(offsets).fillna(0).astype(np.int64)
            f = f[f["source_offset"] < limit]
        f = f.assign(revised=np.where(f["revises_offset"] >= 0, f["revises_offset"], f["source_offset"]))
        f = f.sort_values(["entity", "event_time_ms", "source_partition", "revised", "source_offset", "window_start_ms"], kind="stable")
        f = f.groupby(["entity", "event_time_ms"], sort=False).tail(1)
        f = f.sort_values("event_time_ms", kind="stable")
        feats = v["features"]
        right = f[["entity", "event_time_ms"] + feats].rename(columns={"entity": "_key", "event_time_ms": "_et"})
        right["_hit"] = True
        left = pd.DataFrame({"_row": np.arange(len(spine)), "_key": spine[v["entity_column"]].astype(str).values,
                             "_t": spine["ts"].values, "_at": spine["ts"].values - v["delay_ms"]})
        left = left.sort_values("_at", kind="stable")
        m = pd.merge_asof(left, right, left_on="_at", right_on="_et", by="_key", direction="backward")
        m = m.sort_values("_row")
        hit = m["_hit"].eq(True).values & ((m["_t"] - m["_et"]).values <= v["ttl_ms"])
        for feat in feats:
            out[f"{v['name']}__{feat}"] = (m[feat].values, hit)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--got", required=True)
    ap.add_argument("--known-at", type=int)
    ap.add_argument("--offsets", help="partition=offset,...")
    ap.add_argument("--align", action="store_true", help="match rows by txn_id (a spine read in another order)")
    a = ap.parse_args()
    with open(os.path.join(a.data, "meta.json")) as fh:
        meta = json.load(fh)
    spine = pd.read_parquet(os.path.join(a.data, "spine.parquet"))
    offsets = None
    if a.offsets is not None:
        offsets = dict(e.split("=") for e in a.offsets.split(",") if e)
        offsets = {k: int(v) for k, v in offsets.items()}
    want = expected(a.data, meta, spine, a.known_at, offsets)

    if a.got.endswith(".parquet"):
        got = pq.read_table(a.got).to_pandas()
    else:
        got = pd.read_csv(a.got, dtype={"card_id": str, "merchant_id": str, "txn_id": str}, keep_default_na=False, na_values=[""])
    order = None
    if a.align and len(got) == len(spine):
        pos = pd.Series(np.arange(len(got)), index=got["txn_id"].astype(str).values)
        order = pos.loc[spine["txn_id"].astype(str).values].values
        got = got.iloc[order].reset_index(drop=True)
    bad = []
    if len(got) != len(spine):
        bad.append(f"{len(got)} rows, spine has {len(spine)}")
    def canon(s):
        # Bools as 0/1 (a ClickHouse or CSV spine carries them as integers),
        # every null alike.
        if s.dtype == bool:
            s = s.astype(int)
        return s.astype(object).where(s.notna(), "<null>").map(str).to_numpy()

    for c in spine.columns:
        if c not in got.columns:
            bad.append(f"spine column {c} missing")
        elif len(got) == len(spine) and not (canon(got[c]) == canon(spine[c])).all():
            i = int(np.argmax(canon(got[c]) != canon(spine[c])))
            bad.append(f"spine column {c} row {i}: {got[c].iloc[i]!r}, spine has {spine[c].iloc[i]!r}")
    found = nulls = nans = 0
    for name, (vals, hit) in want.items():
        if name not in got.columns:
            bad.append(f"feature column {name} missing")
            continue
        g = got[name].astype("float64").to_numpy(na_value=np.nan)
        isnull = np.isnan(g)  # CSV: a null and a NaN both read as NaN
        if a.got.endswith(".parquet"):
            # Parquet tells null from NaN: null is no row, NaN a stored NaN.
            col = pq.read_table(a.got, columns=[name]).column(0)
            isnull = col.is_null().to_numpy(zero_copy_only=False)
            if a.align:
                isnull = isnull[order]
        w = vals.astype("float64")
        # A stored NaN reads back as NaN (CSV) that pandas also calls NA.
        ok_null = isnull == ~hit if a.got.endswith(".parquet") else (isnull == (~hit | np.isnan(w)))
        same = np.where(hit, (g == w) | (np.isnan(g) & np.isnan(w)), True)
        okr = ok_null & same
        if not okr.all():
            for i in np.flatnonzero(~okr)[:5]:
                bad.append(f"row {i} ({spine['txn_id'].iloc[i]}) {name}: got {'null' if isnull[i] else g[i]}, want {w[i] if hit[i] else 'null'}")
        found += int(hit.sum())
        nulls += int((~hit).sum())
        nans += int((hit & np.isnan(w)).sum())
    print(json.dumps({"rows": len(spine), "found": found, "null": nulls, "stored_nan": nans, "mismatches": len(bad)}))
    if bad:
        print("\n".join(bad[:40]), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
