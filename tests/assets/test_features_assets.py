"""clip_features and its blocking check, materialized with ingestion on generated data."""

from __future__ import annotations

from datetime import date

import dagster as dg
import pytest

from assets.features import clip_features, feature_checks
from assets.ingest import ingest_assets, ingest_checks
from assets.resources import LandingResource, WarehouseResource
from models.core.warehouse import Warehouse, connect
from models.features.clip_features import build_clip_features
from models.synthetic.landing import generate_landing

DAYS = ["2026-03-01", "2026-03-02", "2026-03-03"]


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp("landing")
    generate_landing(root, days=3, start=date(2026, 3, 1), clips_per_day=200, users=100, seed=5)
    return root


def _resources(landing_dir, home) -> dict:
    return {
        "warehouse": WarehouseResource(home=str(home)),
        "landing": LandingResource(landing_dir=str(landing_dir)),
    }


def test_clip_features_materialize_day_by_day_and_pass_their_check(generated, tmp_path):
    home = tmp_path / "home"
    resources = _resources(generated, home)
    wh, con = Warehouse(home), connect()
    clips_so_far = 0
    with dg.instance_for_test() as instance:
        for day in DAYS:
            result = dg.materialize(
                [*ingest_assets, *ingest_checks, clip_features, *feature_checks],
                partition_key=day,
                resources=resources,
                instance=instance,
            )
            assert result.success, day
            (ev,) = [
                e
                for e in result.get_asset_check_evaluations()
                if e.asset_key.path == ["clip_features"]
            ]
            assert ev.passed and ev.check_name == "features_sane"
            assert ev.metadata["duplicate_keys"].value == 0
            assert ev.metadata["clips_without_creation_row"].value == 0

            (clips_today,) = con.execute(
                f"SELECT count(*) FROM {wh.scan('clips')} WHERE ds = DATE '{day}'"
            ).fetchone()
            clips_so_far += clips_today
            meta = {
                m.asset_key.path[-1]: m.materialization.metadata
                for m in result.get_asset_materialization_events()
            }["clip_features"]
            assert clips_today > 150
            assert meta["creation_rows"].value == clips_today
            assert meta["day_end_rows"].value == clips_so_far  # every clip still in its week
            assert meta["dagster/row_count"].value == clips_today + clips_so_far
            assert meta["clips"].value == clips_so_far
            assert 0 < meta["share_with_views"].value < 1
            assert "preview" in meta and "path" in meta
            assert meta["creator_state_rebuilt_days"].value == 0  # the day before wrote it

        # day 1 ingested again (its files rewritten): day 3's run rebuilds the state of
        # days 1 and 2 and writes the same rows
        third = con.execute(
            f"SELECT * FROM {wh.scan('clip_features')} WHERE ds = '{DAYS[2]}' ORDER BY ALL"
        ).fetchall()
        again = dg.materialize(
            [*ingest_assets], partition_key=DAYS[0], resources=resources, instance=instance
        )
        assert again.success
        rerun = dg.materialize(
            [clip_features], partition_key=DAYS[2], resources=resources, instance=instance
        )
        (mat,) = rerun.get_asset_materialization_events()
        assert mat.materialization.metadata["creator_state_rebuilt_days"].value == 2
        assert (
            con.execute(
                f"SELECT * FROM {wh.scan('clip_features')} WHERE ds = '{DAYS[2]}' ORDER BY ALL"
            ).fetchall()
            == third
        )

    per_day = con.execute(
        f"SELECT ds::VARCHAR, count(*), count(*) FILTER (creator_label_count > 0) "
        f"FROM {wh.scan('clip_features')} GROUP BY ALL ORDER BY 1"
    ).fetchall()
    assert [r[0] for r in per_day] == DAYS
    assert per_day[0][2] == 0  # labels come 2-7 days after a clip: none known on day 1


def test_features_sane_fails_on_a_broken_partition(generated, tmp_path, monkeypatch):
    """A partition with a duplicate row, a rate above 1 and no creation rows fails the check."""

    def broken(con, wh, ds):
        build_clip_features(con, wh, ds)
        part = wh.partition_dir("clip_features", ds)
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE _f AS SELECT * EXCLUDE (ds) "
            f"FROM read_parquet('{part}/*.parquet') WHERE event_timestamp <> created_at"
        )
        return wh.write_partition(
            con,
            "clip_features",
            ds,
            """
            SELECT * REPLACE (2.0 AS completion_rate_1d) FROM _f
            UNION ALL (SELECT * FROM _f LIMIT 1)
        """,
        )

    monkeypatch.setattr("assets.features.build_clip_features", broken)
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [*ingest_assets, *ingest_checks, clip_features, *feature_checks],
            partition_key=DAYS[0],
            resources=_resources(generated, tmp_path / "home"),
            instance=instance,
            raise_on_error=False,
        )
    assert not result.success
    (ev,) = [e for e in result.get_asset_check_evaluations() if e.check_name == "features_sane"]
    assert not ev.passed
    meta = {k: v.value for k, v in ev.metadata.items()}
    assert meta["duplicate_keys"] == 1
    assert meta["rows_with_rates_out_of_range"] == meta["rows"] - 1  # all but the copy
    assert meta["clips_without_creation_row"] > 150
    assert meta["rows_with_nulls"] == 0


def test_features_sane_fails_on_non_finite_features_naming_them(generated, tmp_path, monkeypatch):
    """+inf, -inf and NaN in features fail the check, counted per feature (#16, case 5: an
    inf passed `rate >= 0` and crashed every later training in XGBoost)."""
    planted = {"bitrate_kbps": ("'inf'", 3), "completion_rate_1d": ("'nan'", 2),
               "creator_label_mean": ("'-inf'", 1)}  # fmt: skip

    def broken(con, wh, ds):
        build_clip_features(con, wh, ds)
        part = wh.partition_dir("clip_features", ds)
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE _f AS SELECT * EXCLUDE (ds), "
            f"row_number() OVER (ORDER BY clip_id, event_timestamp) AS _n "
            f"FROM read_parquet('{part}/*.parquet')"
        )
        # rows 1-3 get inf bitrate, rows 2-3 NaN completion rate, row 5 -inf creator mean
        sets = {"bitrate_kbps": "_n <= 3", "completion_rate_1d": "_n IN (2, 3)",
                "creator_label_mean": "_n = 5"}  # fmt: skip
        repl = ", ".join(
            f"CASE WHEN {sets[c]} THEN {v}::DOUBLE ELSE {c} END AS {c}"
            for c, (v, _) in planted.items()
        )
        return wh.write_partition(
            con, "clip_features", ds, f"SELECT * EXCLUDE (_n) REPLACE ({repl}) FROM _f"
        )

    monkeypatch.setattr("assets.features.build_clip_features", broken)
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [*ingest_assets, *ingest_checks, clip_features, *feature_checks],
            partition_key=DAYS[0],
            resources=_resources(generated, tmp_path / "home"),
            instance=instance,
            raise_on_error=False,
        )
    (ev,) = [e for e in result.get_asset_check_evaluations() if e.check_name == "features_sane"]
    assert not ev.passed and not result.success
    meta = {k: v.value for k, v in ev.metadata.items()}
    assert meta["rows_with_non_finite"] == 4  # rows 1, 2, 3 and 5
    assert meta["rows"] > 5 and meta["rows_with_nulls"] == 0
    table = meta["non_finite"]
    for c, (_, n) in planted.items():
        assert f"| {c} | {n} |" in table
    assert table.count("\n") == 1 + len(planted)  # header, rule, one line per feature
    assert ev.description == (
        "non-finite values in bitrate_kbps (3 rows), completion_rate_1d (2 rows), "
        "creator_label_mean (1 rows)"
    )
