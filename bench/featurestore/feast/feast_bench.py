"""Feast's side of `make bench-featurestore` (bench/featurestore).

    feast_bench.py load REPO CSV REDIS_ADDR VIEW TTL_SECONDS
        writes a Feast repo in REPO (feature_store.yaml: local provider, file
        registry, Redis online store at REDIS_ADDR), applies one entity `card`
        (join key card_id, string) and one feature view VIEW with the float
        columns of CSV as Float64 features, and writes every CSV row to the
        online store with FeatureStore.write_to_online_store.
    feast_bench.py teardown REPO
        deletes the project's online data (FeatureStore.teardown).

The CSV has columns card_id, event_time_ms, then the features; it is the
data the harness also wrote to Weir's keys. Floats are parsed with
float_precision="round_trip" so that both stores hold the same bits.
"""

import os
import sys
import time
from datetime import timedelta

import pandas as pd
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
from feast.types import Float64

PROJECT = "weirbench"


def load(repo, csv, redis_addr, view, ttl_seconds):
    os.makedirs(repo, exist_ok=True)
    with open(os.path.join(repo, "feature_store.yaml"), "w") as f:
        f.write(
            f"project: {PROJECT}\n"
            f"registry: {os.path.join(repo, 'registry.db')}\n"
            "provider: local\n"
            "online_store:\n"
            "  type: redis\n"
            f"  connection_string: \"{redis_addr}\"\n"
            "offline_store:\n"
            "  type: file\n"
            "entity_key_serialization_version: 3\n"
        )
    df = pd.read_csv(csv, dtype={"card_id": str}, float_precision="round_trip")
    df["event_timestamp"] = pd.to_datetime(df.pop("event_time_ms"), unit="ms", utc=True)
    features = [c for c in df.columns if c not in ("card_id", "event_timestamp")]
    parquet = os.path.join(repo, "data.parquet")
    df.to_parquet(parquet)

    card = Entity(name="card", join_keys=["card_id"], value_type=ValueType.STRING)
    source = FileSource(name=f"{view}_source", path=parquet, timestamp_field="event_timestamp")
    fv = FeatureView(
        name=view,
        entities=[card],
        ttl=timedelta(seconds=ttl_seconds),
        schema=[Field(name=c, dtype=Float64) for c in features],
        source=source,
        online=True,
    )
    store = FeatureStore(repo_path=repo)
    store.apply([card, fv])
    t = time.time()
    store.write_to_online_store(feature_view_name=view, df=df)
    print(f"feast: wrote {len(df)} rows of {len(features)} features to {view} in {time.time() - t:.1f}s", flush=True)


def teardown(repo):
    FeatureStore(repo_path=repo).teardown()


def main(argv):
    if len(argv) == 7 and argv[1] == "load":
        load(argv[2], argv[3], argv[4], argv[5], int(argv[6]))
    elif len(argv) == 3 and argv[1] == "teardown":
        teardown(argv[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
