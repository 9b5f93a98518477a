"""The ingestion assets and their GE checks, materialized through Dagster on a temp home."""

from __future__ import annotations

from collections import Counter
from datetime import date

import dagster as dg
import duckdb
import pytest

from assets.ingest import ingest_assets, ingest_checks
from assets.resources import LandingResource, WarehouseResource
from models.core.contract import TABLES
from models.synthetic.landing import BAD_KINDS, generate_landing

DAYS = ["2026-03-01", "2026-03-02", "2026-03-03"]
# the quarantine's reasons for each kind of bad row the generator plants (rules joined by "; ")
PLANTED_REASONS = {
    "clips": {
        "negative_duration": ("duration_s must be 0 < x <= 600",),
        "resolution_8k": ("resolution must be one of 480p, 720p, 1080p, 1440p, 4K",),
        "fps_zero": ("fps must be 0 < x <= 120",),
        "speech_ratio_gt_1": ("speech_ratio must be 0 <= x <= 1",),
        "language_not_iso": ("language must match ^[a-z]{2}$",),
        # a CSV landing file reads "" as null
        "empty_creator_id": ("creator_id must be non-empty", "creator_id is required"),
        "duplicate_clip_id": ("duplicate clip_id: already in the warehouse",),
    },
    "engagement": {
        "completions_gt_views": ("completions must be <= views",),
        # views < 0 <= completions: both rules broken
        "negative_views": ("views must be 0 <= x; completions must be <= views",),
        "unknown_clip_id": ("clip_id must exist in clips",),
    },
    "labels": {"quality_score_gt_100": ("quality_score must be 0 <= x <= 100",)},
}
KIND_OF = {
    (table, reason): kind
    for table, kinds in PLANTED_REASONS.items()
    for kind, reasons in kinds.items()
    for reason in reasons
}


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """(the landing root, the generator's summary with its planted bad rows)."""
    root = tmp_path_factory.mktemp("landing")
    summary = generate_landing(
        root,
        days=3,
        start=date(2026, 3, 1),
        clips_per_day=300,
        users=200,
        seed=3,
        bad_row_rate=0.02,
    )
    return root, summary


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
    landing, summary = generated
    home = tmp_path / "home"
    quarantined = dict.fromkeys(TABLES, 0)
    with dg.instance_for_test() as instance:
        for day in DAYS:
            result = _materialize(landing, home, day, instance)
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
            assert "preview" in clips_meta
            for table, m in mats.items():
                quarantined[table] += m.materialization.metadata["rows_quarantined"].value
    # exactly the rows the generator planted, table by table and rule by rule
    planted = summary["bad_rows"]
    assert quarantined == {t: sum(planted.get(t, {}).values()) for t in TABLES}
    assert planted["clips"]["duplicate_clip_id"] and planted["labels"]["quality_score_gt_100"]
    assert {t: set(kinds) for t, kinds in PLANTED_REASONS.items()} == {
        t: set(kinds) for t, kinds in BAD_KINDS.items()
    }
    con = duckdb.connect()
    glob = f"{home}/warehouse/clips/**/*.parquet"
    days = con.execute(
        f"SELECT DISTINCT ds FROM read_parquet('{glob}', hive_partitioning=true) ORDER BY 1"
    ).fetchall()
    assert [str(d[0]) for d in days] == DAYS
    q = con.execute(
        f"SELECT table_name, reason, count(*) FROM read_parquet('{home}/warehouse/quarantine/"
        "**/*.parquet', hive_partitioning=true) GROUP BY ALL"
    ).fetchall()
    unplanted = {(t, reason) for t, reason, _ in q} - KIND_OF.keys()
    assert not unplanted, unplanted
    by_kind = Counter()
    for t, reason, n in q:
        by_kind[t, KIND_OF[t, reason]] += n
    assert by_kind == {
        (t, kind): n for t, kinds in planted.items() for kind, n in kinds.items() if n
    }


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


def test_the_first_day_without_engagement_passes_a_later_one_fails(tmp_path, landing):
    """Engagement rows are expected once a clip exists before the day (#16, case 9): the first
    day of a landing has none and passes; an empty later day fails, saying why."""
    from support import GOOD_CLIP, ts

    home = tmp_path / "home"
    landing.write("clips", [GOOD_CLIP], name="d1")
    day2 = {**GOOD_CLIP, "clip_id": "c2", "created_at": ts("2026-01-02T10:00:00Z")}
    landing.write("clips", [day2], name="d2")
    with dg.instance_for_test() as instance:
        first = _materialize(landing.root, home, "2026-01-01", instance)
        second = _materialize(landing.root, home, "2026-01-02", instance)
    assert first.success
    (ev,) = [e for e in first.get_asset_check_evaluations() if e.asset_key.path == ["engagement"]]
    assert ev.passed and ev.metadata["rows"].value == 0
    assert ev.metadata["rows_expected"].value == (
        "no: no clip exists before 2026-01-01: nothing could be watched yet"
    )
    assert not second.success
    (ev,) = [e for e in second.get_asset_check_evaluations() if e.asset_key.path == ["engagement"]]
    assert not ev.passed and "expect_table_row_count_to_be_between" in ev.metadata["failures"].value
    assert ev.metadata["rows_expected"].value == (
        "yes: clips exist before 2026-01-02 (since 2026-01-01), so they are watched"
    )
