"""PostgreSQL stopped and restarted under the production setup, mid-run (#16).

The Dagster instance (the README's production `dagster.yaml`: runs, events, schedules in
PostgreSQL) and the MLflow registry live in a throwaway PostgreSQL 15 cluster that this test
starts (initdb + pg_ctl as the `postgres` user, a free loopback port). A champion is
registered first; `clipflow run` then runs two days and the cluster is stopped
(`pg_ctl -m fast`) once the run log shows day two's `clip_scores` started.

The run fails clearly: after dagster-postgres' own connection retries, one line names the
instance's storage and what to do, never the URL's password (before: a bare traceback, and
the day's run read STARTED for ever). After the restart, the next run succeeds and nothing
is lost: day one's run, the champion (one version, its alias), every partition; the
unfinished run is marked failed, saying why."""

from __future__ import annotations

import re
import subprocess
import sys

import dagster as dg
from faults.fault_support import (
    ROOT,
    RUN_S,
    SLOW,
    PostgresCluster,
    clipflow,
    clipflow_env,
    generate,
    leftovers,
    start_clipflow,
    wait_for_step,
)

pytestmark = SLOW
DAYS = ["2026-01-01", "2026-01-02"]
PASSWORD = "pw-never-printed-7f3a"  # trust auth ignores it; it must not appear anywhere

SEED_CHAMPION = """
import sys
from support import tiny_training_set
from mlflow import MlflowClient
from models.training import registry, train as training
from models.training.evaluation import GateResult, metrics
uri, artifacts = sys.argv[1], sys.argv[2]
m = training.train(tiny_training_set(300), training.TrainParams(n_estimators=8))
v = registry.log_and_register(m, metrics(m.y_holdout, m.holdout_pred), None, None, uri,
                              artifact_location=artifacts)
ok = GateResult(True, [], {"checks": ["passed."], "better_than_champion": False})
print(v, registry.apply_gate(MlflowClient(uri, uri), v, ok, None, tracking_uri=uri))
"""


def readme_dagster_yaml() -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"```yaml\n(# \$DAGSTER_HOME/dagster\.yaml.*?)```", text, re.S)
    assert m, "README: the production dagster.yaml block is missing"
    return m.group(1)


def test_postgres_stopped_mid_run_fails_clearly_and_the_next_run_loses_nothing(
    tmp_path, monkeypatch
):
    pg = PostgresCluster()
    pg.start()
    try:
        dagster_url = pg.create_database("dagster").replace("postgres@", f"postgres:{PASSWORD}@")
        mlflow_url = pg.create_database("mlflow").replace("postgres@", f"postgres:{PASSWORD}@")
        landing, home = tmp_path / "landing", tmp_path / "home"
        generate(landing, days=len(DAYS), start=DAYS[0])
        (home / "dagster").mkdir(parents=True)
        (home / "dagster" / "dagster.yaml").write_text(readme_dagster_yaml())
        env = clipflow_env(home, DAGSTER_PG_URL=dagster_url, MLFLOW_TRACKING_URI=mlflow_url)
        seed = subprocess.run(
            [sys.executable, "-c", SEED_CHAMPION, mlflow_url, (home / "mlartifacts").as_uri()],
            cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT / "tests")},
            capture_output=True, text=True, timeout=RUN_S,
        )  # fmt: skip
        assert seed.returncode == 0 and seed.stdout.split()[-2:] == ["1", "champion"], seed.stderr

        monkeypatch.setenv("DAGSTER_PG_URL", dagster_url)  # the test reads the run log too
        log = tmp_path / "run.log"
        proc = start_clipflow("run", "--landing", str(landing), env=env, log=log)
        assert wait_for_step(home, DAYS[-1], "clip_scores", proc, timeout=RUN_S), log.read_text()
        pg.stop("fast")
        try:
            assert proc.wait(RUN_S) == 1  # dagster-postgres retries, then the run gives up
        finally:
            proc.kill()
        out = log.read_text()
        assert f"{DAYS[0]}  ok" in out, out[-3000:]
        assert f"{DAYS[-1]}  FAILED  the Dagster instance's storage stopped answering" in out
        assert "DAGSTER_PG_URL" in out and "run again once it is back" in out
        assert PASSWORD not in out

        pg.start()
        r = clipflow("run", "--landing", str(landing), "--start", DAYS[-1], env=env)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        assert "ended before this run did (killed?)" in r.stdout
        assert PASSWORD not in r.stdout + r.stderr
        runs = pg.query("dagster", "SELECT status FROM runs")
        assert sorted(s for (s,) in runs) == ["FAILURE", "SUCCESS", "SUCCESS"]
        assert pg.query("mlflow", "SELECT count(*) FROM model_versions") == [(1,)]
        aliases = pg.query("mlflow", "SELECT alias, version FROM registered_model_aliases")
        assert aliases == [("champion", 1)]
        assert leftovers(home) == []
        scored = sorted(p.parent.name for p in (home / "warehouse" / "clip_scores").glob("*/*"))
        assert scored == [f"ds={d}" for d in DAYS]
        instance = dg.DagsterInstance.from_config(str(home / "dagster"))
        try:
            key = dg.AssetKey("clip_scores")
            assert instance.get_materialized_partitions(key) == set(DAYS)
        finally:
            instance.dispose()
    finally:
        pg.remove()
