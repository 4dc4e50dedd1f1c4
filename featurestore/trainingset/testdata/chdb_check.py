"""Runs the SQL a training set ran on ClickHouse 18.16 again in chDB (current
ClickHouse, in process) over the same data, and compares the results row
for row.

    chdb_check.py --data DIR --trace TRACE.json

TRACE.json (written by the Go test) holds the database name, each feature
table's DDL and data file, the spine table's DDL, and every query with the
entities it sent as the external table weir_keys and the rows ClickHouse
18.16 returned (floats as "f:<IEEE 754 bits>"). The tables are created with
the same DDL and filled from gen.py's files; weir_keys becomes a table of
the session's current database, which the queries name unqualified, as
they name the external table. Results are compared with adjacent equal rows
collapsed (see collapse). Prints a JSON summary; exits 1 on a mismatch.
"""

import argparse
import json
import os
import sys
import tempfile

import chdb
import numpy as np
import pyarrow as pa
from chdb import session as chs

FIXED = ["entity", "event_time_ms", "known_time_ms", "source_topic", "source_partition", "source_offset",
         "event_id", "window_start_ms", "window_end_ms", "revises_offset"]


def column(col):
    """A chDB result column as the Go side writes its cells: floats as
    "f:<IEEE 754 bits>", strings as text, integers as numbers, null as None."""
    if pa.types.is_floating(col.type):
        arr = col.to_numpy(zero_copy_only=False).astype(np.float64)
        out = ["f:%d" % b for b in arr.view(np.uint64).tolist()]
    elif pa.types.is_binary(col.type) or pa.types.is_large_binary(col.type):
        out = [None if v is None else v.decode() for v in col.to_pylist()]
    elif pa.types.is_boolean(col.type):
        out = [None if v is None else int(v) for v in col.to_pylist()]
    else:
        out = col.to_pylist()
    if col.null_count:
        valid = col.is_valid().to_pylist()
        out = [v if ok else None for v, ok in zip(out, valid)]
    return out


def rows_of(sess, sql):
    res = sess.query(sql, "ArrowTable")
    tbl = res if hasattr(res, "to_pylist") else chdb.to_arrowTable(res)
    cols = [column(tbl.column(i)) for i in range(tbl.num_columns)]
    return [list(r) for r in zip(*cols)] if cols else []


def collapse(rows):
    """Drops each row equal to the one before it. The feature queries do not
    deduplicate: a retried insert's rows are identical to and sort next to
    their twins, and how many are left depends on each server's merges (and
    on whether it collapses duplicates within an insert), while the
    point-in-time merge's results do not."""
    out = []
    for r in rows:
        if not out or out[-1] != r:
            out.append(r)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--trace", required=True)
    a = ap.parse_args()
    with open(a.trace) as fh:
        tr = json.load(fh)
    tmp = tempfile.mkdtemp(prefix="weir-chdb-")
    sess = chs.Session(tmp)
    version = rows_of(sess, "SELECT version()")[0][0]
    db = tr["database"]
    sess.query(f"CREATE DATABASE IF NOT EXISTS `{db}`")
    for t in tr["tables"]:
        sess.query(t["ddl"])
        feats = t["features"]
        cols = ", ".join(["entity", "event_time"] + FIXED[1:] + [f"`{f}`" for f in feats])
        sel = ", ".join(["entity", "toDateTime(intDiv(event_time_ms, 1000))"] + FIXED[1:] + [f"`{f}`" for f in feats])
        path = os.path.abspath(os.path.join(a.data, t["file"]))
        sess.query(f"INSERT INTO {t['table']} ({cols}) SELECT {sel} FROM file('{path}', Parquet)")
    sess.query("CREATE TABLE weir_keys (entity String) ENGINE = Memory")
    bad = []
    n_rows = dups = 0
    for i, q in enumerate(tr["queries"]):
        sess.query("TRUNCATE TABLE weir_keys")
        ents = q["entities"]
        for j in range(0, len(ents), 50_000):
            vals = ",".join("('" + e.replace("\\", "\\\\").replace("'", "\\'") + "')" for e in ents[j:j + 50_000])
            sess.query("INSERT INTO weir_keys VALUES " + vals)
        got = rows_of(sess, q["sql"])
        want = q["rows"]
        n_rows += len(want)
        dups += len(want) - len(collapse(want)) + len(got) - len(collapse(got))
        got, want = collapse(got), collapse(want)
        if got != want:
            k = next((k for k in range(min(len(got), len(want))) if got[k] != want[k]), min(len(got), len(want)))
            bad.append(f"query {i} ({len(got)} rows in chDB, {len(want)} in ClickHouse {tr.get('server', '')}), first difference at row {k}: "
                       f"chDB {got[k] if k < len(got) else None} vs {want[k] if k < len(want) else None}\n  {q['sql']}")
    sp = tr.get("spine")
    if sp:
        sess.query(sp["ddl"])
        path = os.path.abspath(os.path.join(a.data, sp["file"]))
        sess.query(f"INSERT INTO {sp['table']} ({sp['columns']}) SELECT {sp['select']} FROM file('{path}', Parquet)")
        got = rows_of(sess, sp["sql"])
        if got != sp["rows"]:
            k = next((k for k in range(min(len(got), len(sp["rows"]))) if got[k] != sp["rows"][k]), 0)
            bad.append(f"spine query: chDB {len(got)} rows vs {len(sp['rows'])}; first difference at {k}: "
                       f"{got[k] if k < len(got) else None} vs {sp['rows'][k] if k < len(sp['rows']) else None}\n  {sp['sql']}")
        n_rows += len(sp["rows"])
    print(json.dumps({"chdb_version": version, "queries": len(tr["queries"]) + (1 if sp else 0), "rows": n_rows,
                      "adjacent_duplicates": dups, "mismatches": len(bad)}))
    if bad:
        print("\n".join(bad[:10]), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
