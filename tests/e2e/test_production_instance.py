"""The README's production setup, run for real: the Dagster instance (runs, events,
schedules) and the MLflow store in PostgreSQL, the online store in Redis.

The `dagster.yaml` used here is the one printed in the README ("Running it in
production"), read from the README itself, so the two cannot drift apart. PostgreSQL comes
from `CLIPFLOW_TEST_POSTGRES` (default `postgresql://postgres@127.0.0.1:5432`, trust auth):
two throwaway databases are created and dropped. Without a PostgreSQL the test fails under
`CI=true` and is skipped elsewhere.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import dagster as dg
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SERVER = os.environ.get("CLIPFLOW_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
REDIS_DB = 10  # the other tests use 5-9


def readme_dagster_yaml() -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"```yaml\n(# \$DAGSTER_HOME/dagster\.yaml.*?)```", text, re.S)
    assert m, "README: the production dagster.yaml block is missing"
    return m.group(1)


def _admin():
    import psycopg2

    try:
        con = psycopg2.connect(f"{SERVER}/postgres", connect_timeout=5)
    except psycopg2.OperationalError as e:
        why = f"PostgreSQL at {SERVER} does not answer ({e}); set CLIPFLOW_TEST_POSTGRES"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(why)
        pytest.skip(why)
    con.autocommit = True
    return con


@pytest.fixture(scope="module")
def databases():
    con = _admin()
    names = {k: f"clipflow_test_{k}_{uuid.uuid4().hex[:8]}" for k in ("dagster", "mlflow")}
    with con.cursor() as cur:
        for name in names.values():
            cur.execute(f'CREATE DATABASE "{name}"')
    # SQLAlchemy 2.1 (under dagster-postgres and MLflow) reads a bare postgresql:// as
    # psycopg 3; the lock has psycopg2, named in the URL as the README says
    url = SERVER.replace("postgresql://", "postgresql+psycopg2://", 1)
    try:
        yield {k: f"{url}/{v}" for k, v in names.items()}
    finally:
        with con.cursor() as cur:
            for name in names.values():
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        con.close()


def _query(url: str, sql: str) -> list[tuple]:
    import psycopg2

    with psycopg2.connect(url.replace("+psycopg2", "", 1)) as con, con.cursor() as cur:
        cur.execute(sql)
        return cur.fetchall()


def test_nightly_runs_on_a_postgres_instance_with_redis_online(
    databases, redis_server, tmp_path, monkeypatch
):
    import redis

    redis.Redis(host=redis_server["host"], port=redis_server["port"], db=REDIS_DB).flushdb()
    home, landing = tmp_path / "home", tmp_path / "landing"
    (home / "dagster").mkdir(parents=True)
    (home / "dagster" / "dagster.yaml").write_text(readme_dagster_yaml())
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("CLIPFLOW_", "DAGSTER_"))},
        "CLIPFLOW_HOME": str(home),
        "CLIPFLOW_LANDING_DIR": str(landing),
        "CLIPFLOW_REDIS": f"{redis_server['connection_string'].split(',')[0]},db={REDIS_DB}",
        "DAGSTER_HOME": str(home / "dagster"),
        "DAGSTER_PG_URL": databases["dagster"],
        # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; the lock has psycopg2
        "MLFLOW_TRACKING_URI": databases["mlflow"].replace(
            "postgresql://", "postgresql+psycopg2://"
        ),
    }

    def clipflow(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "pipelines.cli", *args],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
        )  # fmt: skip

    gen = clipflow(
        "generate", "--out", str(landing), "--days", "4", "--start", "2026-02-01",
        "--clips-per-day", "800", "--users", "200", "--seed", "5",
    )  # fmt: skip
    assert gen.returncode == 0, gen.stderr[-3000:]
    run = clipflow("run")
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]

    # the runs, their events and the asset materializations are in Postgres
    runs = _query(databases["dagster"], "SELECT status FROM runs")
    assert sorted(r[0] for r in runs) == ["SUCCESS"] * 4
    events = _query(
        databases["dagster"],
        "SELECT count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'",
    )[0][0]
    assert events >= 4 * 10
    monkeypatch.setenv("DAGSTER_PG_URL", databases["dagster"])
    instance = dg.DagsterInstance.from_config(str(home / "dagster"))
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 1
        assert instance.get_latest_materialization_event(dg.AssetKey("clip_scores"))
    finally:
        instance.dispose()

    # the model registry is in Postgres, its artifacts under the home
    aliases = _query(databases["mlflow"], "SELECT alias, version FROM registered_model_aliases")
    assert ("champion", 1) in aliases
    assert list((home / "mlartifacts").rglob("MLmodel"))

    # and an app reads from Redis through Feast the champion's score of the newest day
    import duckdb

    scores = home / "warehouse" / "clip_scores" / "**" / "*.parquet"
    [(clip_id, want, want_version)] = duckdb.sql(
        f"SELECT clip_id, score, model_version FROM read_parquet('{scores}', "
        "hive_partitioning=true) WHERE model_alias = 'champion' "
        "ORDER BY ds DESC, clip_id LIMIT 1"
    ).fetchall()
    code = (
        "from feature_repo.config import feature_store; "
        "r = feature_store().get_online_features(features=['clip_scores:score', "
        f"'clip_scores:model_version'], entity_rows=[{{'clip_id': '{clip_id}'}}]).to_dict(); "
        "print(repr(r['score'][0]), r['model_version'][0])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-3000:]
    score, version = out.stdout.split()[-2:]
    assert float(score) == pytest.approx(want, abs=1e-6) and version == want_version == "1"
