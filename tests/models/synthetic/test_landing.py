"""The synthetic landing generator follows docs/contract.md §1 and carries the signals it promises."""

from __future__ import annotations

import re
import time
from datetime import date
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
import yaml

from models.core.contract import TABLES as CONTRACT_TABLES
from models.experiments.config import assign_variants
from models.synthetic.landing import BAD_KINDS, generate_landing

START = date(2026, 1, 1)
CONTRACT = {t.name: t for t in CONTRACT_TABLES.values()}  # by landing folder
TABLES = ("clips", "engagement", "labels", "experiments/assignments", "experiments/user_metrics")
ISO_TS = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|\+00:00)$"


def scan(root: Path, table: str, with_file: bool = False) -> str:
    """A SQL subquery over every Parquet and CSV file of `table`, cast to contract types."""
    cols = ", ".join(f"CAST({f.name} AS {f.sql_type}) AS {f.name}" for f in CONTRACT[table].fields)
    if with_file:
        cols += ", filename"
    parts = []
    pq_files = sorted(str(p) for p in (root / table).rglob("*.parquet"))
    csv_files = sorted(str(p) for p in (root / table).rglob("*.csv"))
    if pq_files:
        parts.append(
            f"SELECT {cols} FROM read_parquet({pq_files}, union_by_name=true, filename=true)"
        )
    if csv_files:
        parts.append(
            f"SELECT {cols} FROM read_csv({csv_files}, header=true, all_varchar=true, "
            f"union_by_name=true, filename=true)"
        )
    return "(" + " UNION ALL ".join(parts) + ")"


def connect() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return con


def one(con, sql: str):
    return con.execute(sql).fetchone()[0]


@pytest.fixture(scope="module")
def landing(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("landing")
    summary = generate_landing(
        root, days=8, start=START, clips_per_day=500, users=600, seed=1, bad_row_rate=0.0
    )
    return root, summary


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    kw = dict(days=4, clips_per_day=150, users=80, bad_row_rate=0.02)
    a = generate_landing(tmp_path / "a", seed=3, **kw)
    b = generate_landing(tmp_path / "b", seed=3, **kw)
    generate_landing(tmp_path / "c", seed=4, **kw)
    assert a["files"] == b["files"] and a["rows"] == b["rows"]
    for rel in a["files"]:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    con = connect()
    for table in TABLES:
        rows = [
            con.execute(f"SELECT * FROM {scan(tmp_path / run, table)} ORDER BY ALL").fetchall()
            for run in ("a", "b")
        ]
        assert rows[0] == rows[1] and rows[0], table
    clips = [
        con.execute(f"SELECT * FROM {scan(tmp_path / r, 'clips')} ORDER BY ALL").fetchall()
        for r in ("a", "c")
    ]
    assert clips[0] != clips[1]


CONTRACT_VIOLATIONS = {
    "clips": """
        clip_id IS NULL OR clip_id = '' OR video_id IS NULL OR video_id = ''
        OR creator_id IS NULL OR creator_id = '' OR created_at IS NULL
        OR NOT (duration_s > 0 AND duration_s <= 600)
        OR resolution NOT IN ('480p', '720p', '1080p', '1440p', '4K') OR NOT bitrate_kbps > 0
        OR NOT (fps > 0 AND fps <= 120) OR aspect_ratio NOT IN ('9:16', '1:1', '4:5', '16:9')
        OR has_captions IS NULL OR NOT speech_ratio BETWEEN 0 AND 1
        OR NOT scene_cuts_per_min >= 0 OR NOT hook_strength BETWEEN 0 AND 1
        OR NOT regexp_full_match(language, '[a-z]{2}') OR topic IS NULL OR topic = ''""",
    "engagement": """
        NOT (views >= 0 AND likes >= 0 AND shares >= 0 AND comments >= 0)
        OR NOT (completions >= 0 AND completions <= views) OR NOT watch_time_s >= 0""",
    "labels": "NOT quality_score BETWEEN 0 AND 100",
    "experiments/assignments": "experiment_id <> 'exp_ranker_v2' "
    "OR variant NOT IN ('control', 'treatment')",
    "experiments/user_metrics": "metric NOT IN ('sessions', 'clips_viewed', 'watch_time_s') "
    "OR NOT value >= 0",
}
TS_COLUMN = {
    "clips": "created_at",
    "engagement": "event_timestamp",
    "labels": "labeled_at",
    "experiments/assignments": "assigned_at",
    "experiments/user_metrics": "event_timestamp",
}


def test_valid_rows_follow_every_contract_rule(landing):
    root, summary = landing
    con = connect()
    end = "TIMESTAMPTZ '2026-01-09 00:00:00+00'"
    for table, bad in CONTRACT_VIOLATIONS.items():
        src = scan(root, table, with_file=True)
        ts = TS_COLUMN[table]
        assert one(con, f"SELECT count(*) FROM {src}") == summary["rows"][table.split("/")[-1]]
        assert one(con, f"SELECT count(*) FROM {src} WHERE {bad}") == 0, table
        assert (
            one(
                con,
                f"SELECT count(*) FROM {src} WHERE {ts} IS NULL OR {ts} >= {end} "
                f"OR {ts} < TIMESTAMPTZ '2026-01-01 00:00:00+00'",
            )
            == 0
        ), table
        # every row sits in the folder of the day of its own timestamp
        assert (
            one(
                con,
                f"SELECT count(*) FROM {src} WHERE "
                f"strpos(filename, strftime({ts}, '/%Y-%m-%d/')) = 0",
            )
            == 0
        ), table
    clips = scan(root, "clips")
    assert one(con, f"SELECT count(*) - count(DISTINCT clip_id) FROM {clips}") == 0
    for table, ts in (("engagement", "event_timestamp"), ("labels", "labeled_at")):
        orphans = one(
            con,
            f"SELECT count(*) FROM {scan(root, table)} t "
            f"LEFT JOIN {clips} c USING (clip_id) "
            f"WHERE c.clip_id IS NULL OR t.{ts} < c.created_at",
        )
        assert orphans == 0, table
    assert (
        one(
            con,
            f"SELECT count(*) - count(DISTINCT (clip_id, labeled_at)) FROM {scan(root, 'labels')}",
        )
        == 0
    )
    assert (
        one(
            con,
            f"SELECT count(*) FROM {scan(root, 'labels')} GROUP BY clip_id ORDER BY 1 DESC LIMIT 1",
        )
        == 2
    )  # some revised labels
    assert (
        one(
            con,
            f"SELECT count(*) - count(DISTINCT user_id) "
            f"FROM {scan(root, 'experiments/assignments')}",
        )
        == 0
    )


def test_files_mix_formats_and_timestamp_precisions(landing):
    root, summary = landing
    files = summary["files"]
    assert all((root / f).is_file() for f in files)
    assert {Path(f).suffix for f in files} == {".parquet", ".csv", ".yaml"}
    assert "clips/2026-01-03/part-000.csv" in files  # day index 2 with csv_every=3
    units = {
        pq.read_schema(root / f).field("created_at").type.unit
        for f in files
        if f.startswith("clips/") and f.endswith(".parquet")
    }
    assert units == {"ns", "us"}
    for f in files:
        if f.endswith(".parquet"):
            schema = pq.read_schema(root / f)
            zones = [t.tz for t in schema.types if hasattr(t, "tz")]
            assert zones and set(zones) == {"UTC"}, f  # every table has a timestamp
    con = connect()
    csvs = [str(root / f) for f in files if f.endswith(".csv")]
    stamps = con.execute(
        f"SELECT created_at FROM read_csv({[c for c in csvs if '/clips/' in c]}, all_varchar=true)"
    ).fetchall()
    assert stamps and all(re.match(ISO_TS, s) for (s,) in stamps)
    suffixes = set()
    for c in csvs:
        suffixes.add("Z" if "Z," in Path(c).read_text().splitlines()[1] else "+00:00")
    assert suffixes == {"Z", "+00:00"}
    spec = yaml.safe_load((root / "experiments/experiments.yaml").read_text())["experiments"][0]
    assert spec["experiment_id"] == "exp_ranker_v2"
    assert spec["variants"] == {"control": 0.5, "treatment": 0.5}
    assert spec["start"] == "2026-01-03T00:00:00Z" and spec["end"] == "2026-01-09T00:00:00Z"
    assert spec["primary_metric"] == "watch_time_s"
    first = one(con, f"SELECT min(assigned_at) FROM {scan(root, 'experiments/assignments')}")
    assert first.isoformat() >= "2026-01-03T00:00:00+00:00"


BAD_ROW_SQL = {
    "negative_duration": ("clips", "duration_s <= 0"),
    "resolution_8k": ("clips", "resolution = '8K'"),
    "fps_zero": ("clips", "fps = 0"),
    "speech_ratio_gt_1": ("clips", "speech_ratio > 1"),
    "language_not_iso": ("clips", "language = 'ENG'"),
    "empty_creator_id": ("clips", "coalesce(creator_id, '') = ''"),
    "completions_gt_views": ("engagement", "completions > views AND views >= 0"),
    "negative_views": ("engagement", "views < 0"),
    "quality_score_gt_100": ("labels", "quality_score > 100"),
}


def test_bad_rows_are_planted_and_leave_the_rest_alone(tmp_path):
    kw = dict(days=3, clips_per_day=700, users=50, seed=5)
    summary = generate_landing(tmp_path / "bad", bad_row_rate=0.05, **kw)
    clean = generate_landing(tmp_path / "clean", bad_row_rate=0.0, **kw)
    root, con = tmp_path / "bad", connect()
    planted = {k: n for counts in summary["bad_rows"].values() for k, n in counts.items()}
    assert set(planted) == {k for kinds in BAD_KINDS.values() for k in kinds}
    assert all(n > 0 for n in planted.values()), planted
    for kind, (table, where) in BAD_ROW_SQL.items():
        assert (
            one(con, f"SELECT count(*) FROM {scan(root, table)} WHERE {where}") >= planted[kind]
        ), kind
    clips = scan(root, "clips", with_file=True)
    dups = con.execute(
        f"SELECT count(DISTINCT filename), max(created_at) > min(created_at) "
        f"FROM {clips} WHERE clip_id IN (SELECT clip_id FROM {clips} "
        f"GROUP BY clip_id HAVING count(*) > 1) GROUP BY clip_id"
    ).fetchall()
    assert len(dups) == planted["duplicate_clip_id"] and all(f == 2 and later for f, later in dups)
    unknown = one(
        con,
        f"SELECT count(*) FROM {scan(root, 'engagement')} "
        f"WHERE clip_id NOT IN (SELECT clip_id FROM {clips})",
    )
    assert unknown == planted["unknown_clip_id"]
    # bad clips are extra rows, bad engagement rows altered ones: the other rows are the same
    assert summary["rows"]["engagement"] == clean["rows"]["engagement"]
    added, lost = (
        one(
            con,
            f"SELECT count(*) FROM (FROM {scan(x, 'clips')} EXCEPT ALL FROM {scan(y, 'clips')})",
        )
        for x, y in ((root, tmp_path / "clean"), (tmp_path / "clean", root))
    )
    assert (added, lost) == (sum(summary["bad_rows"]["clips"].values()), 0)


def test_quality_is_learnable_from_attributes_and_early_engagement(landing):
    root, _ = landing
    con = connect()
    corr_hook, corr_early, n = con.execute(f"""
        WITH first_label AS (
            SELECT clip_id, arg_min(quality_score, labeled_at) AS q
            FROM {scan(root, "labels")} GROUP BY clip_id),
        early AS (
            SELECT e.clip_id, sum(completions) / nullif(sum(views), 0) AS completion_rate
            FROM {scan(root, "engagement")} e JOIN {scan(root, "clips")} c USING (clip_id)
            WHERE e.event_timestamp <= c.created_at + INTERVAL 24 HOUR GROUP BY e.clip_id)
        SELECT corr(q, hook_strength), corr(q, completion_rate), count(*)
        FROM first_label JOIN {scan(root, "clips")} USING (clip_id) JOIN early USING (clip_id)
    """).fetchone()
    assert n > 1500
    assert corr_hook > 0.4 and corr_early > 0.4, (corr_hook, corr_early)
    spread = one(con, f"SELECT stddev(quality_score) FROM {scan(root, 'labels')}")
    assert 10 < spread < 25


def test_pre_period_predicts_post_period(landing):
    root, _ = landing
    con = connect()
    corr = one(
        con,
        f"""
        WITH m AS (
            SELECT m.user_id, m.value, m.event_timestamp >= a.assigned_at AS post
            FROM {scan(root, "experiments/user_metrics")} m
            JOIN {scan(root, "experiments/assignments")} a USING (user_id)
            WHERE metric = 'watch_time_s')
        SELECT corr(pre, post) FROM (
            SELECT avg(value) FILTER (NOT post) AS pre, avg(value) FILTER (post) AS post
            FROM m GROUP BY user_id) WHERE pre IS NOT NULL AND post IS NOT NULL""",
    )
    assert 0.4 < corr < 0.85, corr


def test_drift_moves_attributes_only_from_drift_start(tmp_path):
    kw = dict(days=6, clips_per_day=600, users=20, seed=2, bad_row_rate=0.0)
    generate_landing(tmp_path / "base", **kw)
    generate_landing(tmp_path / "drift", drift_start=date(2026, 1, 4), **kw)
    con = connect()
    cut = "TIMESTAMPTZ '2026-01-04 00:00:00+00'"
    before = [
        con.execute(
            f"SELECT * FROM {scan(tmp_path / run, 'clips')} WHERE created_at < {cut} ORDER BY ALL"
        ).fetchall()
        for run in ("base", "drift")
    ]
    assert before[0] == before[1] and before[0]  # before drift_start: the very same clips
    base, drift = (
        con.execute(f"""
        SELECT avg(duration_s), avg((aspect_ratio = '16:9')::INT), avg((language = 'pt')::INT),
               avg(speech_ratio), avg((resolution = '4K')::INT)
        FROM {scan(tmp_path / run, "clips")} WHERE created_at >= {cut}""").fetchone()
        for run in ("base", "drift")
    )
    assert drift[0] > 1.4 * base[0] and drift[3] < 0.8 * base[3]
    assert drift[1] > base[1] + 0.2 and drift[2] > base[2] + 0.1 and drift[4] > base[4] + 0.1


def test_srm_drops_treatment_and_lift_moves_primary_metric(tmp_path):
    kw = dict(days=4, clips_per_day=20, users=4000, seed=7, bad_row_rate=0.0)
    con = connect()
    share = {}
    for srm in (0.0, 0.3):
        root = tmp_path / f"srm{srm}"
        generate_landing(root, srm=srm, ab_lift=0.5, **kw)
        share[srm] = one(
            con,
            f"SELECT avg((variant = 'treatment')::INT) "
            f"FROM {scan(root, 'experiments/assignments')}",
        )
    assert 0.47 < share[0.0] < 0.53 and share[0.3] < 0.45
    ratio = one(
        con,
        f"""
        SELECT avg(value) FILTER (variant = 'treatment') / avg(value) FILTER (variant = 'control')
        FROM {scan(tmp_path / "srm0.0", "experiments/user_metrics")} m
        JOIN {scan(tmp_path / "srm0.0", "experiments/assignments")} a USING (user_id)
        WHERE metric = 'watch_time_s' AND m.event_timestamp >= a.assigned_at""",
    )
    assert 1.3 < ratio < 1.7


def test_assignments_are_the_variants_serving_picks(tmp_path):
    generate_landing(tmp_path, days=3, clips_per_day=10, users=3000, seed=2)
    spec = yaml.safe_load((tmp_path / "experiments/experiments.yaml").read_text())["experiments"][0]
    users, variants = zip(*duckdb.sql(
        f"SELECT user_id, variant FROM {scan(tmp_path, 'experiments/assignments')}"
    ).fetchall(), strict=True)  # fmt: skip
    assert len(users) > 2000
    assert list(variants) == list(assign_variants(spec, users))


def test_generates_200k_clips_in_seconds(tmp_path):
    t0 = time.perf_counter()
    summary = generate_landing(tmp_path, days=1, clips_per_day=200_000, users=500)
    elapsed = time.perf_counter() - t0
    print(f"200k clips: {elapsed:.2f} s, rows {summary['rows']}")
    assert summary["rows"]["clips"] == 200_000 + sum(summary["bad_rows"]["clips"].values())
    assert elapsed < 60
