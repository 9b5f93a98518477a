"""The scale-out profile end to end (#21): generated days, the first through `clipflow run`
and the rest through `clipflow backfill` (two run slots: a day's data lane beside the day
before's model lane), with the warehouse as Iceberg tables on S3 (SeaweedFS, catalog in
PostgreSQL), MLflow's artifacts on the same S3 and a 3-node Redis Cluster as the online
store, against the same days run one by one (`clipflow run`) on the local profile (Parquet
under the home, SQLite online store):

- the backfill ran lanes at once (a data run beside a model run), each lane in date order,
  a day's model run after its data run;

- every warehouse table holds the same rows on both (the same days, row counts and checksums
  of the sorted content; columns of wall time or run ids left out, named in VOLATILE);
- the registry has the same versions, aliases and metrics; the model files are in the bucket;
- what an app reads through Feast's own cluster store and through clipflow's equals the
  warehouse's newest rows (every clip's features and champion score), byte for byte between
  the two stores; the hashes are spread over the three nodes; the days' events are on the
  cluster's stream. (That the writers store the same bytes on a cluster as on one Redis is
  tests/feature_repo, which runs every store test on both.)"""

from __future__ import annotations

import json
import math
import os
from datetime import date, timedelta

import pytest
from faults.fault_support import SLOW, clipflow, clipflow_env, newest_rows

from models.core import settings
from models.core.iceberg import FEAST_MIRROR, IcebergWarehouse, warehouse_for
from models.core.names import FEATURE_COLUMNS, FEATURE_KINDS, FEATURES_VIEW
from models.core.warehouse import Warehouse
from models.integrations import events

pytestmark = SLOW
START, DAYS, RUN_DAYS = "2026-02-01", 5, 2  # days 1-2: clipflow run; 3-5: backfill
NUMERIC = [c for c in FEATURE_COLUMNS if FEATURE_KINDS[c] != "string"]
SCORES = ["score", "model_version"]

VOLATILE = {"quarantine": {"detected_at"}}  # table: columns of wall time, left out


def same_tables(ice: Warehouse, local: Warehouse) -> None:
    """Every table of the local warehouse holds, on the Iceberg one, the same days and the
    same rows: every column equal, but VOLATILE's; floating-point values (top-level or inside
    lists and structs) to 1e-9 relative, since DuckDB's parallel sums may add in any order."""
    tables = sorted(p.name for p in local.root.iterdir() if p.is_dir() and p.name[0] not in "_.")
    assert "clip_features" in tables and "creator_state" in tables, tables
    for table in tables:
        assert ice.partitions(table) == local.partitions(table), table
        got, want = (
            sorted((_drop(r, VOLATILE.get(table, ())) for r in _rows(wh, table)), key=_key)
            for wh in (ice, local)
        )
        assert len(got) == len(want) > 0, table
        for a, b in zip(got, want, strict=True):
            assert _close(a, b), (table, a, b)


def _rows(wh: Warehouse, table: str) -> list[dict]:
    return wh.connect().sql(f"SELECT * FROM {wh.scan(table)}").to_arrow_table().to_pylist()


def _drop(row: dict, columns) -> dict:
    return {k: v for k, v in row.items() if k not in columns}


def _key(row: dict) -> str:
    """An order of rows that rounding noise cannot change (floats to 6 significant digits)."""

    def norm(v):
        if isinstance(v, float):
            return float(f"{v:.6g}")
        if isinstance(v, dict):
            return {k: norm(x) for k, x in v.items()}
        if isinstance(v, list):
            return [norm(x) for x in v]
        return v

    return json.dumps(norm(row), sort_keys=True, default=str)


def _close(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) or (a != a and b != b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def cross_check(home) -> str:
    """What the newest built training set was checked against (its `verified_against`)."""
    import dagster as dg

    instance = dg.DagsterInstance.from_config(str(home / "dagster"))
    try:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("training_set")), limit=20
        ).records
    finally:
        instance.dispose()
    metas = [r.asset_materialization.metadata for r in records]
    built = [m for m in metas if m.get("built") and m["built"].value]
    assert built, metas
    return built[0]["verified_against"].value


def registry(home) -> list[tuple]:
    """The registered versions of a home's MLflow store: (version, aliases, holdout rmse,
    the tags that say how and why it trained)."""
    from mlflow import MlflowClient

    from models.core.names import MODEL_NAME
    from models.core.settings import sqlite_uri

    client = MlflowClient(tracking_uri=sqlite_uri(home / "mlflow.db"),
                          registry_uri=sqlite_uri(home / "mlflow.db"))  # fmt: skip
    aliases = client.get_registered_model(MODEL_NAME).aliases  # (search omits them)
    out = []
    for mv in client.search_model_versions(f"name = '{MODEL_NAME}'"):
        rmse = client.get_run(mv.run_id).data.metrics.get("rmse")
        tags = {
            k: v for k, v in mv.tags.items() if k.startswith("train") or k == "data_fingerprint"
        }
        named = sorted(a for a, v in aliases.items() if str(v) == str(mv.version))
        out.append((int(mv.version), named, rmse, sorted(tags.items())))
    return sorted(out)


def hashes(client, nodes) -> dict[bytes, dict[bytes, bytes]]:
    """Every Feast hash the online store holds (not clipflow's own keys: lease, events)."""
    out = {}
    for node in nodes:
        for key in node.scan_iter(count=1000):
            if not key.startswith((b"clipflow:", b"{clipflow:")):
                out[key] = client.hgetall(key)
    return out


def test_the_nightly_on_the_scaleout_profile_equals_the_local_one(
    tmp_path, redis_cluster, iceberg_env, monkeypatch
):
    landing, home, local = tmp_path / "landing", tmp_path / "home", tmp_path / "local"
    r = clipflow("generate", "--out", str(landing), "--days", str(DAYS), "--start", START,
                 "--clips-per-day", "800", "--users", "200", "--seed", "5",
                 env=clipflow_env())  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    r = clipflow("run", "--landing", str(landing), env=clipflow_env(local))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    cluster = redis_cluster["client"]()
    url = redis_cluster["connection_string"]
    s3 = iceberg_env["s3"]
    profile = {**{k: os.environ[k] for k in (*s3.env(), "AWS_ENDPOINT_URL_S3")},
               "CLIPFLOW_REDIS": url, "CLIPFLOW_WAREHOUSE": iceberg_env["location"],
               "CLIPFLOW_ICEBERG_CATALOG": iceberg_env["catalog"],
               "CLIPFLOW_MLFLOW_ARTIFACTS": iceberg_env["location"] + "-mlartifacts"}  # fmt: skip
    try:
        cluster.flushall()  # the session's cluster: only this run's keys from here on
        env = clipflow_env(home, **profile)
        split = (date.fromisoformat(START) + timedelta(days=RUN_DAYS)).isoformat()
        last = (date.fromisoformat(START) + timedelta(days=DAYS - 1)).isoformat()
        r = clipflow("run", "--landing", str(landing), "--start", START, "--end",
                     (date.fromisoformat(split) - timedelta(days=1)).isoformat(), env=env)  # fmt: skip
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        assert f"{RUN_DAYS}/{RUN_DAYS} days succeeded" in r.stdout
        r = clipflow("backfill", "--landing", str(landing), "--start", split, "--end", last,
                     env=env)  # fmt: skip
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        n = DAYS - RUN_DAYS
        assert f"{n}/{n} days succeeded" in r.stdout and "(2 slot(s)" in r.stdout, r.stdout
        lanes_ran_at_once_in_order(home, n)
        for name, value in profile.items():
            monkeypatch.setenv(name, value)
        wh = warehouse_for(settings.current(home))
        assert isinstance(wh, IcebergWarehouse)
        # nothing of a table under the home: its bookkeeping and the files' local cache
        assert {p.name for p in (home / "warehouse").iterdir()} <= {
            "_manifest",
            "_tmp",
            "_cache",
            ".writer.lock",
        }
        same_tables(wh, Warehouse(local))
        models, want = registry(home), registry(local)
        assert models == want and any("champion" in m[1] for m in models), (models, want)
        stored = s3.keys(iceberg_env["location"].split("/", 3)[3] + "-mlartifacts/")
        assert sum(k.endswith("/MLmodel") for k in stored) == len(models)  # each model's files
        # the training set was cross-checked through Feast's offline store on both: on
        # Iceberg, Feast read the local mirror of clip_features' snapshot, brought in step
        # when the last training set was built (a later day's files came after it)
        assert [cross_check(h) for h in (home, local)] == ["feast", "feast"]
        snapshot = {f.split("/clip_features/data/")[1] for f in wh._all_files("clip_features")}

        def mirrored() -> set[str]:
            base = home / FEAST_MIRROR / "clip_features"
            return {p.relative_to(base).as_posix() for p in base.glob("ds=*/*")}

        assert mirrored() and mirrored() <= snapshot
        wh.feast_offline(["clip_features"])
        assert mirrored() == snapshot

        features = newest_rows(home, "clip_features", FEATURE_COLUMNS, warehouse=wh)
        scores = newest_rows(home, "clip_scores", SCORES, "WHERE model_alias = 'champion'", wh)
        assert len(features) >= 800 * DAYS and scores, "no champion scored the clips"
        nodes = [n.redis_connection for n in cluster.get_primaries()]
        stored = hashes(cluster, nodes)
        assert len(stored) == len(features)  # one hash per clip, nothing else
        per_node = [sum(1 for k in n.scan_iter(count=1000) if k in stored) for n in nodes]
        assert len(per_node) == 3 and min(per_node) > len(stored) / 6, per_node
        published = [e for _, e in cluster.xrange(events.STREAM)
                     if e[b"type"] == b"scores_published"]  # fmt: skip
        assert published and all(e[b"event_id"] for e in published)

        ids = sorted(features)
        monkeypatch.setenv("CLIPFLOW_HOME", str(home))
        monkeypatch.setenv("CLIPFLOW_REDIS", url)
        reads = {}
        for stock in ("1", ""):  # Feast's own cluster store, then clipflow's
            monkeypatch.setenv("CLIPFLOW_FEAST_STOCK_READ", stock)
            reads[stock] = read_online(ids)
        assert reads["1"]["type"] == "redis" and reads[""]["type"] != "redis"
        assert reads["1"]["redis_type"] == reads[""]["redis_type"] == "RedisType.redis_cluster"
        assert reads["1"]["rows"] == reads[""]["rows"]
        rows = reads["1"]["rows"]
        assert rows["clip_id"] == ids
        for i, cid in enumerate(ids):
            for c in FEATURE_COLUMNS:
                value = features[cid][c]
                expect = pytest.approx(value, rel=1e-9) if c in NUMERIC and value else value
                assert rows[c][i] == expect, (cid, c)
            held = scores.get(cid)
            assert rows["score"][i] == (pytest.approx(held["score"], rel=1e-9) if held else None)
            assert rows["model_version"][i] == (held["model_version"] if held else None)
    finally:
        cluster.flushall()
        cluster.close()


def lanes_ran_at_once_in_order(home, days: int) -> None:
    """The backfill's runs (from the Dagster instance): one data and one model run per day;
    each lane's runs one after another in date order; a day's model run after its data run;
    some data run beside a model run (the point of the lanes)."""
    import dagster as dg

    instance = dg.DagsterInstance.from_config(str(home / "dagster"))
    try:
        runs = [(r.dagster_run, r.start_time, r.end_time) for r in instance.get_run_records(
            dg.RunsFilter(tags={"clipflow/launched_by": "clipflow backfill"}))]  # fmt: skip
    finally:
        instance.dispose()
    lanes = {
        job: sorted((run.tags["dagster/partition"], start, end)
                    for run, start, end in runs if run.job_name == job)  # fmt: skip
        for job in ("data_job", "model_job")
    }
    assert all(run.status == dg.DagsterRunStatus.SUCCESS for run, _, _ in runs)
    assert [len(v) for v in lanes.values()] == [days, days], lanes
    for lane in lanes.values():
        for (_, _, end), (_, start, _) in zip(lane, lane[1:], strict=False):
            assert end <= start, lane  # date order, one at a time
    for (day, _, data_end), (same, model_start, _) in zip(*lanes.values(), strict=True):
        assert day == same and data_end <= model_start, lanes
    assert any(d_start < m_end and m_start < d_end
               for _, d_start, d_end in lanes["data_job"]
               for _, m_start, m_end in lanes["model_job"]), lanes  # fmt: skip


def read_online(ids: list[str]) -> dict:
    """What an app reads through Feast for `ids`, the store's type beside it."""
    from feature_repo.config import feature_store

    store = feature_store()
    refs = [f"{FEATURES_VIEW}:{c}" for c in FEATURE_COLUMNS] + [f"clip_scores:{c}" for c in SCORES]
    got = store.get_online_features(features=refs, entity_rows=[{"clip_id": i} for i in ids])
    online = store.config.online_store
    return {"type": online.type, "redis_type": str(online.redis_type), "rows": got.to_dict()}
