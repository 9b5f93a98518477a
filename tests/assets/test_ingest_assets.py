"""The ingestion assets and their GE checks, materialized through Dagster on a temp home."""

from __future__ import annotations

from datetime import date

import dagster as dg
import duckdb
import pytest

from assets.ingest import ingest_assets, ingest_checks
from assets.resources import LandingResource, WarehouseResource
from models.synthetic.landing import generate_landing


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp("landing")
    generate_landing(
        root,
        days=3,
        start=date(2026, 3, 1),
        clips_per_day=300,
        users=200,
        seed=3,
        bad_row_rate=0.02,
    )
    return root


def _materialize(landing_dir, home, day, instance):
    return dg.materialize(
        [*ingest_assets, *ingest_checks],
        partition_key=day,
        instance=instance,
        resources={
            "warehouse": WarehouseResource(home=str(home)),
            "landing": LandingResource(landing_dir=str(landing_dir)),
        },
        raise_on_error=False,
    )


def test_materialize_ingestion_on_generated_landing(generated, tmp_path):
    home = tmp_path / "home"
    with dg.instance_for_test() as instance:
        for day in ["2026-03-01", "2026-03-02"]:
            result = _materialize(generated, home, day, instance)
            assert result.success, day
            evals = result.get_asset_check_evaluations()
            assert len(evals) == 5 and all(e.passed for e in evals)
            for e in evals:  # every expectation's result is shown, not only the failures
                meta = e.metadata
                results = meta["results"].value.splitlines()[2:]
                assert len(results) == meta["expectations"].value > 5
                assert all("| ok |" in line for line in results)
            mats = {m.asset_key.path[-1]: m for m in result.get_asset_materialization_events()}
            clips_meta = mats["clips"].materialization.metadata
            assert clips_meta["dagster/row_count"].value > 200
            assert clips_meta["rows_quarantined"].value > 0  # bad_row_rate plants bad rows
            assert "preview" in clips_meta
    con = duckdb.connect()
    glob = f"{home}/warehouse/clips/**/*.parquet"
    days = con.execute(
        f"SELECT DISTINCT ds FROM read_parquet('{glob}', hive_partitioning=true) ORDER BY 1"
    ).fetchall()
    assert [str(d[0]) for d in days] == ["2026-03-01", "2026-03-02"]
    q = con.execute(
        f"SELECT DISTINCT table_name FROM read_parquet('{home}/warehouse/quarantine/"
        "**/*.parquet', hive_partitioning=true)"
    ).fetchall()
    assert {"clips", "engagement"} <= {r[0] for r in q}


def test_a_failing_contract_check_blocks_downstream(tmp_path, landing):
    """No clips on a day: the clips check fails (row count > 0) and engagement does not run."""
    home = tmp_path / "home"
    with dg.instance_for_test() as instance:
        result = _materialize(landing.root, home, "2026-03-01", instance)
    assert not result.success
    (ev,) = [e for e in result.get_asset_check_evaluations() if e.asset_key.path == ["clips"]]
    assert not ev.passed
    assert "expect_table_row_count_to_be_between" in ev.metadata["failures"].value
    done = {m.asset_key.path[-1] for m in result.get_asset_materialization_events()}
    assert "clips" in done and "engagement" not in done and "labels" not in done
