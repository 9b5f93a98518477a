"""Ingestion of whole files: unreadable files, duplicates, re-runs, timestamp types."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime

import pyarrow.parquet as pq
from support import GOOD_CLIP, GOOD_ENGAGEMENT, ts

from models.core.contract import CLIPS, ENGAGEMENT
from models.core.warehouse import Warehouse, connect
from models.ingest.day import ingest_day
from models.ingest.landing import landing_days

D1, D2 = date(2026, 1, 1), date(2026, 1, 2)
NOW = datetime(2026, 1, 3, tzinfo=UTC)


def _rows(con, wh, table, where="TRUE"):
    return con.execute(
        f"SELECT * EXCLUDE (detected_at) FROM {wh.scan(table)} WHERE {where} ORDER BY ALL"
        if table == "quarantine"
        else f"SELECT * FROM {wh.scan(table)} WHERE {where} ORDER BY ALL"
    ).fetchall()


def clip(i: int, at: str = "2026-01-01T10:00:00Z", **kw) -> dict:
    return {**GOOD_CLIP, "clip_id": f"c{i}", "created_at": ts(at), **kw}


def test_unreadable_file_is_quarantined_and_others_still_land(landing, tmp_path):
    landing.write("clips", [clip(1), clip(2)], name="good")
    (landing.root / "clips" / "corrupt.parquet").write_bytes(b"PAR1 not really parquet")
    wh, con = Warehouse(tmp_path / "h"), connect()
    res = ingest_day(con, wh, CLIPS, landing.root, D1, NOW)
    assert res.rows_valid == 2
    assert list(res.files_quarantined) == ["clips/corrupt.parquet"]
    (row,) = _rows(con, wh, "quarantine")
    assert row[0:2] == ("clips", "clips/corrupt.parquet")
    assert row[2].startswith("unreadable file:") and row[3] is None


def test_wrong_columns_and_wrong_types_quarantine_the_file(landing, tmp_path):
    landing.write("clips", [clip(1)], name="good")
    missing = {k: v for k, v in clip(2).items() if k != "fps"}
    landing.write("clips", [missing], name="missing_fps")
    typed = landing.write("clips", [clip(3)], name="fps_as_text")
    t = pq.read_table(typed)
    t = t.set_column(t.schema.get_field_index("fps"), "fps", t["fps"].cast("string"))
    pq.write_table(t, typed)
    wh, con = Warehouse(tmp_path / "h"), connect()
    res = ingest_day(con, wh, CLIPS, landing.root, D1, NOW)
    assert res.rows_valid == 1
    assert "missing columns: fps" in res.files_quarantined["clips/missing_fps.parquet"]
    assert "fps is VARCHAR, expected float" in res.files_quarantined["clips/fps_as_text.parquet"]


def test_duplicate_id_across_files_earliest_then_file_name_wins(landing, tmp_path):
    landing.write("clips", [clip(1, "2026-01-01T12:00:00Z", video_id="late")], name="a")
    landing.write(
        "clips",
        [clip(1, "2026-01-01T09:00:00Z", video_id="early"), clip(2, video_id="b-file")],
        name="b",
    )
    landing.write("clips", [clip(2, video_id="c-file")], name="c", fmt="csv")
    wh, con = Warehouse(tmp_path / "h"), connect()
    res = ingest_day(con, wh, CLIPS, landing.root, D1, NOW)
    assert res.rows_valid == 2 and res.rows_quarantined == 2
    kept = dict(con.execute(f"SELECT clip_id, video_id FROM {wh.scan('clips')}").fetchall())
    assert kept == {"c1": "early", "c2": "b-file"}
    q = con.execute(
        f"SELECT source_file, reason FROM {wh.scan('quarantine')} ORDER BY 1"
    ).fetchall()
    assert q == [
        ("clips/a.parquet", "duplicate clip_id: an earlier row wins"),
        ("clips/c.csv", "duplicate clip_id: an earlier row wins"),
    ]


def test_duplicate_of_a_clip_already_in_the_warehouse_loses(landing, tmp_path):
    landing.write("clips", [clip(1)], name="day1")
    landing.write(
        "clips", [clip(1, "2026-01-02T01:00:00Z"), clip(5, "2026-01-02T02:00:00Z")], name="day2"
    )
    wh, con = Warehouse(tmp_path / "h"), connect()
    ingest_day(con, wh, CLIPS, landing.root, D1, NOW)
    res = ingest_day(con, wh, CLIPS, landing.root, D2, NOW)
    assert res.rows_valid == 1 and res.reasons == {"duplicate clip_id: already in the warehouse": 1}
    # re-running the first day keeps its row: the copy in day 2 was never admitted
    assert ingest_day(con, wh, CLIPS, landing.root, D1, NOW).rows_valid == 1


def test_rerun_of_a_partition_leaves_the_same_tables(landing, tmp_path):
    landing.write("clips", [clip(1), clip(2, fps=500.0)], name="a")
    landing.write("engagement", [GOOD_ENGAGEMENT, {**GOOD_ENGAGEMENT, "views": -1}])
    (landing.root / "clips" / "broken.csv").write_text("\x00\x01garbage")
    wh, con = Warehouse(tmp_path / "h"), connect()

    def run():
        ingest_day(con, wh, CLIPS, landing.root, D1, NOW)
        ingest_day(con, wh, ENGAGEMENT, landing.root, D1, NOW)
        return [_rows(con, wh, t) for t in ("clips", "engagement", "quarantine")]

    first = run()
    assert [len(t) for t in first] == [1, 1, 3]
    assert run() == first
    assert run() == first
    assert len(list((tmp_path / "h/warehouse/clips").rglob("*.parquet"))) == 1


def test_timestamps_are_normalised_to_utc_microseconds(landing, tmp_path):
    landing.write("clips", [clip(1)], name="ns", ts_unit="ns")
    landing.write("clips", [clip(2)], name="us", ts_unit="us")
    landing.write("clips", [clip(3, "2026-01-01T12:30:00+02:00")], name="offset", fmt="csv")
    wh, con = Warehouse(tmp_path / "h"), connect()
    assert ingest_day(con, wh, CLIPS, landing.root, D1, NOW).rows_valid == 3
    (f,) = (tmp_path / "h/warehouse/clips").rglob("*.parquet")
    t = pq.read_schema(f).field("created_at").type
    assert (t.unit, t.tz) == ("us", "UTC")
    got = con.execute(f"SELECT clip_id, created_at FROM {wh.scan('clips')} ORDER BY 1").fetchall()
    assert got[2][1] == ts("2026-01-01T10:30:00Z")


def test_rows_go_to_the_day_of_their_own_timestamp(landing, tmp_path):
    landing.write("clips", [clip(1, "2026-01-01T23:59:59Z"), clip(2, "2026-01-02T00:00:00Z")])
    wh, con = Warehouse(tmp_path / "h"), connect()
    assert ingest_day(con, wh, CLIPS, landing.root, D1, NOW).rows_valid == 1
    assert ingest_day(con, wh, CLIPS, landing.root, D2, NOW).rows_valid == 1
    assert wh.partitions("clips") == ["2026-01-01", "2026-01-02"]
    assert landing_days(landing.root, [CLIPS]) == (D1, D2)


def test_new_files_are_probed_once(landing, tmp_path):
    landing.write("clips", [clip(1)], name="a")
    wh, con = Warehouse(tmp_path / "h"), connect()
    assert ingest_day(con, wh, CLIPS, landing.root, D1, NOW).files_new == ["clips/a.parquet"]
    landing.write("clips", [clip(2)], name="b")
    res = ingest_day(con, wh, CLIPS, landing.root, D1, NOW)
    assert res.files_new == ["clips/b.parquet"] and res.rows_valid == 2


def test_an_empty_day_writes_an_empty_partition(landing, tmp_path):
    landing.write("clips", [clip(1)])
    wh, con = Warehouse(tmp_path / "h"), connect()
    assert ingest_day(con, wh, CLIPS, landing.root, D2, NOW).rows_valid == 0
    assert wh.partitions("clips") == ["2026-01-02"]


def _tear(path):
    lines = path.read_text().splitlines()
    lines.append('c4,"unterminated,quote' + ",x" * 30)
    path.write_text("\n".join(lines) + "\n")


def test_a_csv_that_breaks_half_way_is_quarantined_as_a_file(landing, tmp_path):
    landing.write("clips", [clip(1)], name="good")
    _tear(landing.write("clips", [clip(2), clip(3)], name="torn", fmt="csv"))
    wh, con = Warehouse(tmp_path / "h"), connect()
    res = ingest_day(con, wh, CLIPS, landing.root, D1, NOW)
    assert res.rows_valid == 1 and res.files_read == ["clips/good.parquet"]
    assert "CSV Error" in res.files_quarantined["clips/torn.csv"]


def test_a_file_failing_after_its_probe_is_quarantined_and_the_day_goes_on(landing, tmp_path):
    landing.write("clips", [clip(1)], name="good")
    torn = landing.write("clips", [clip(2), clip(3)], name="torn", fmt="csv")
    wh, con = Warehouse(tmp_path / "h"), connect()
    assert ingest_day(con, wh, CLIPS, landing.root, D1, NOW).rows_valid == 3
    # damage the file behind the manifest's back (same size and mtime: not re-probed)
    st, text = torn.stat(), torn.read_text()
    torn.write_text(text.replace(",fps,", ",fpz,", 1))  # a column renamed under our feet
    os.utime(torn, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert torn.stat().st_size == st.st_size
    res = ingest_day(con, wh, CLIPS, landing.root, D1, NOW)
    assert res.rows_valid == 1 and list(res.files_quarantined) == ["clips/torn.csv"]
    # remembered: the next run skips the file without failing first
    res = ingest_day(con, wh, CLIPS, landing.root, D1, NOW)
    assert res.files_read == ["clips/good.parquet"] and "clips/torn.csv" in res.files_quarantined
