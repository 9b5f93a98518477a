"""Bad numbers and future timestamps through `clipflow run` (#16, cases 5 and 6), with the
online store on a real Redis: a landing with a +inf cell, a 1e39 value (beyond float32:
inf once cast) and an engagement row dated next year. The run exits 0; the three rows are
quarantined naming the rule they broke; training and scoring proceed; no row in the
warehouse and no online row is dated in the future. On the old code the next-year row
was never read (its day is never run) and never quarantined: dropped without a trace,
waiting to be pushed online as the clip's newest value."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]
ROOT = Path(__file__).resolve().parents[2]
DAYS = ["2026-03-01", "2026-03-02", "2026-03-03", "2026-03-04"]
# labels come 2-7 days after a clip: 800 clips a day give ~240 labelled clips by the end of
# the fourth day, above the default min_labeled_clips (200), so that day trains a champion
CLIPS_PER_DAY = 800
DB = 11  # the test's own Redis database


def _clipflow(*args: str, redis_url: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CLIPFLOW_", "DAGSTER_", "MLFLOW_"))}  # fmt: skip
    if redis_url:
        env["CLIPFLOW_REDIS"] = redis_url
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True,
                          text=True, env=env, timeout=3000, cwd=ROOT)  # fmt: skip


def _first_parquet(folder: Path) -> Path:
    return sorted(folder.rglob("*.parquet"))[0]


def _plant(landing: Path, next_year: datetime) -> str:
    """Two bad clips next to a good one in a new clips file, and an engagement file of the
    second day holding a good row and one dated next year; returns the future row's clip."""
    clips = pq.read_table(_first_parquet(landing / "clips" / DAYS[0]))
    good, bad = clips.slice(0, 1), clips.slice(0, 2).to_pylist()
    bad[0] |= {"clip_id": "bad-inf", "bitrate_kbps": float("inf")}
    bad[1] |= {"clip_id": "bad-1e39", "scene_cuts_per_min": 1e39}
    rows = pa.Table.from_pylist(bad, schema=clips.schema)
    (landing / "clips" / "planted").mkdir()
    good = pa.Table.from_pylist([good.to_pylist()[0] | {"clip_id": "good-1"}], schema=clips.schema)
    pq.write_table(pa.concat_tables([rows, good]), landing / "clips" / "planted" / "bad.parquet")
    eng = pq.read_table(_first_parquet(landing / "engagement" / DAYS[1]))
    row = eng.slice(0, 1).to_pylist()[0]
    future = row | {"event_timestamp": next_year, "views": 10**6}
    (landing / "engagement" / "planted").mkdir()
    pq.write_table(pa.Table.from_pylist([row, future], schema=eng.schema),
                   landing / "engagement" / "planted" / "late-clock.parquet")  # fmt: skip
    return row["clip_id"]


def _online_timestamps(home: Path, redis_url: str, clip_ids: list[str]) -> dict[str, datetime]:
    """The event time of each clip's online features row (Feast's own read path)."""
    code = f"""
import json, os
os.environ["CLIPFLOW_HOME"] = {str(home)!r}
os.environ["CLIPFLOW_REDIS"] = {redis_url!r}
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value
from feature_repo.config import feature_store
store = feature_store()
fv = store.get_feature_view("clip_features")
keys = [EntityKey(join_keys=["clip_id"], entity_values=[Value(string_val=c)]) for c in {clip_ids!r}]
got = store._get_provider().online_read(store.config, fv, keys)
# a key Redis does not hold reads back as the epoch with every value unset: None here
held = [bool(v) and any(x.WhichOneof("val") for x in v.values()) for _, v in got]
print(json.dumps({{c: (ts.isoformat() if h else None)
                  for c, (ts, _), h in zip({clip_ids!r}, got, held)}}))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    import json

    return {
        c: (datetime.fromisoformat(t) if t else None)
        for c, t in json.loads(r.stdout.strip().splitlines()[-1]).items()
    }


def test_inf_1e39_and_next_year_are_quarantined_and_the_days_run(tmp_path, redis_server):
    client = redis.Redis(host=redis_server["host"], port=redis_server["port"], db=DB)
    if redis_server["owned"]:
        client.flushdb()
    redis_url = f"{redis_server['connection_string']},db={DB}"
    landing, home = tmp_path / "landing", tmp_path / "home"
    r = _clipflow("generate", "--out", str(landing), "--days", str(len(DAYS)), "--start",
                  DAYS[0], "--clips-per-day", str(CLIPS_PER_DAY), "--users", "100", "--seed", "5",
                  "--bad-row-rate", "0")  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    started = datetime.now(UTC)
    next_year = (started + timedelta(days=365)).replace(microsecond=0)
    watched = _plant(landing, next_year)

    # the days explicitly: by default a run goes up to the newest day any landing row has
    # (capped at yesterday), so the next-year row alone would stretch it over months
    r = _clipflow("run", "--landing", str(landing), "--home", str(home), "--start", DAYS[0],
                  "--end", DAYS[-1], redis_url=redis_url)  # fmt: skip
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert f"{len(DAYS)}/{len(DAYS)} days succeeded" in r.stdout
    finished = datetime.now(UTC)

    wh = f"{home}/warehouse"
    q = duckdb.sql(
        f"SELECT table_name, ds::VARCHAR, reason, \"row\" FROM read_parquet('{wh}/quarantine/**/*.parquet', "
        "hive_partitioning=true) WHERE source_file LIKE '%/planted/%' ORDER BY ALL"
    ).fetchall()
    by_reason = {(t, ds, reason): row for t, ds, reason, row in q}
    assert ("clips", DAYS[0], "bitrate_kbps must be 0 < x and finite") in by_reason
    assert ("clips", DAYS[0], "scene_cuts_per_min must be 0 <= x and finite") in by_reason
    future = [(t, ds, reason) for t, ds, reason in by_reason if "dated in the future" in reason]
    assert len(future) == 1 and len(q) == 3  # the good rows of the planted files landed
    t, ds, reason = future[0]
    assert (t, ds) == ("engagement", DAYS[1])  # its file's first day
    assert reason.startswith("event_timestamp must be <= ingestion time + 300 s (")
    bound = datetime.fromisoformat(reason.split("(")[1].split(")")[0].replace("Z", "+00:00"))
    assert started + timedelta(minutes=5) <= bound <= finished + timedelta(minutes=5)
    assert str(next_year.year) in by_reason[future[0]]  # the row itself is kept

    con = duckdb.connect()
    scan = f"read_parquet('{wh}/{{}}/**/*.parquet', hive_partitioning=true)"
    ids = con.sql(f"SELECT clip_id FROM {scan.format('clips')}").fetchall()
    assert ("good-1",) in ids and ("bad-inf",) not in ids and ("bad-1e39",) not in ids
    latest = con.sql(f"SELECT max(event_timestamp) FROM {scan.format('engagement')}").fetchall()[0][
        0
    ]
    assert latest < started
    # training and scoring went on: the champion scored the last day, every score finite
    scores = con.sql(
        f"SELECT count(*), count(*) FILTER (isfinite(score)) FROM {scan.format('clip_scores')} "
        f"WHERE ds = DATE '{DAYS[-1]}' AND model_alias = 'champion'"
    ).fetchall()[0]
    assert scores[0] > 100 and scores[0] == scores[1]

    online = _online_timestamps(home, redis_url, [watched, "good-1", "bad-inf"])
    assert online["bad-inf"] is None  # never reached the warehouse, nor the online store
    assert online[watched] is not None and online["good-1"] is not None
    assert all(ts < started for ts in online.values() if ts is not None)
    # what is online is the clip's newest feature row in the warehouse, not the planted one
    for clip in (watched, "good-1"):
        newest = con.sql(
            f"SELECT max(event_timestamp) FROM {scan.format('clip_features')} WHERE clip_id = $c",
            params={"c": clip},
        ).fetchall()[0][0]
        assert newest is not None, clip
        assert online[clip] == (newest if newest.tzinfo else newest.replace(tzinfo=UTC)), clip
