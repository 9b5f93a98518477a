"""The Iceberg warehouse (#21, models/core/iceberg.py) on a real S3 server (SeaweedFS) and a
real catalog database (PostgreSQL): the table seam behaves as the local backend does (the
same rows, the same file bytes), a re-run replaces a day, writers of different days commit
at once, and a writer killed at any moment leaves the day at the previous or the next
snapshot, never between."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pyarrow as pa
import pytest

from models.core import settings
from models.core.iceberg import IcebergWarehouse, warehouse_for
from models.core.settings import IcebergConfigError
from models.core.warehouse import Warehouse

ROOT = Path(__file__).resolve().parents[2]
D1, D2 = "2026-03-01", "2026-03-02"


def rows(n: int, seed: int, ds: str | None = None) -> pa.Table:
    ts = pa.array(
        [1_767_225_600_000_000 + i * 1_000_000 for i in range(n)], pa.timestamp("us", "UTC")
    )
    return pa.table({
        "clip_id": [f"c{seed}-{i:05d}" for i in range(n)],
        "views": [(i * 7 + seed) % 97 for i in range(n)],
        "score": [((i * 13 + seed) % 101) / 7 for i in range(n)],
        "created_at": ts,
    })  # fmt: skip


def content(wh: Warehouse, table: str, ds: str) -> list[tuple]:
    return sorted(wh.read(table, ds).to_pylist(), key=lambda r: r["clip_id"])


@pytest.fixture
def ice(iceberg_env, tmp_path) -> IcebergWarehouse:
    wh = warehouse_for(settings.current(tmp_path / "home"))
    assert isinstance(wh, IcebergWarehouse) and wh.uri == iceberg_env["location"]
    return wh


@pytest.mark.parametrize("cache_gb", ["", "0"])  # reads through the local cache; from S3
def test_a_day_written_reads_back_and_a_rewrite_replaces_it(ice, tmp_path, monkeypatch, cache_gb):
    monkeypatch.setenv("CLIPFLOW_ICEBERG_CACHE_GB", cache_gb)
    assert (ice.cache.budget > 0) == (cache_gb == "")
    local = Warehouse(tmp_path / "local")
    assert not ice.exists("clips") and ice.partitions("clips") == [] and not ice.has("clips", D1)
    for wh in (ice, local):
        assert wh.write("clips", D1, rows(500, 1), keys=["clip_id"], metadata={"built": "x"}) == 500
        assert wh.write("clips", D2, rows(300, 2), keys=["clip_id"]) == 300
    assert ice.partitions("clips") == [D1, D2] and ice.exists("clips") and ice.has("clips", D2)
    assert content(ice, "clips", D1) == sorted(rows(500, 1).to_pylist(), key=lambda r: r["clip_id"])
    assert ice.kv_metadata("clips", D1) == {"built": "x"}
    # the same rows give the same file, byte for byte, as the local backend's
    (f_ice,), (f_local,) = ice.files("clips", D1), local.files("clips", D1)
    with ice.fs.open_input_stream(f_ice.removeprefix("s3://")) as f:
        assert (
            hashlib.sha256(f.read()).digest() == hashlib.sha256(Path(f_local).read_bytes()).digest()
        )
    # every SQL of the library runs on a connection of either backend
    q = "SELECT count(*), sum(views), min(ds), max(ds) FROM {}"
    assert ice.connect().execute(q.format(ice.scan("clips"))).fetchall() == \
        local.connect().execute(q.format(local.scan("clips"))).fetchall()  # fmt: skip
    before = ice.version("clips", D1)
    ice.write("clips", D1, rows(40, 3))  # a re-run replaces the day, never appends
    assert len(ice.files("clips", D1)) == 1
    assert [r["clip_id"] for r in content(ice, "clips", D1)] == [f"c3-{i:05d}" for i in range(40)]
    assert ice.version("clips", D1) > before and ice.version("clips", D2) < ice.version("clips", D1)
    assert len(content(ice, "clips", D2)) == 300  # the other day untouched
    assert ice.version("clips", "2026-03-09") is None
    cached = sorted((ice.root / "_cache").glob("*.parquet"))
    assert len(cached) == (3 if cache_gb == "" else 0)  # each file written, kept locally once


def test_named_files_of_several_writers_share_a_day(ice):
    con = ice.connect()
    assert ice.write("quarantine", D1, rows(5, 1), name="clips") == 5
    assert ice.write("quarantine", D1, rows(3, 2), name="engagement") == 3
    assert ice.write("quarantine", D1, rows(2, 4), name="clips") == 2  # replaces its own only
    got = con.execute(f"SELECT clip_id FROM {ice.partition_scan('quarantine', D1)}").fetchall()
    assert sorted(r[0] for r in got) == ["c2-00000", "c2-00001", "c2-00002", "c4-00000", "c4-00001"]
    assert ice.write("quarantine", D1, rows(0, 5), name="engagement") == 0  # empty: removed
    assert len(ice.files("quarantine", D1)) == 1
    snapshots = len(ice._table("quarantine").snapshots())
    assert ice.write("quarantine", D2, rows(0, 5), name="labels") == 0  # nothing, no table row
    assert ice.partitions("quarantine") == [D1]
    assert len(ice._table("quarantine").snapshots()) == snapshots  # and no empty commit
    # an empty day is a written day (no labels yet): it has its (empty) file
    assert ice.write("labels", D2, rows(0, 5)) == 0 and ice.has("labels", D2)
    assert ice.partitions("labels") == [D2] and ice.read("labels", D2).num_rows == 0


def test_a_new_column_on_a_later_day_reads_as_null_on_the_earlier(ice):
    ice.write("clips", D1, rows(3, 1))
    ice.write("clips", D2, rows(2, 2).append_column("lang", pa.array(["en", "fr"])))
    con = ice.connect()  # a column DuckDB writes as JSON (Arrow's json extension type)
    ice.write_partition(con, "quarantine", D1, "SELECT 'c1' AS clip_id, '{\"a\": 1}'::JSON AS raw")
    assert ice.read("quarantine", D1).column("raw").to_pylist() == ['{"a": 1}']
    got = (
        ice.connect()
        .execute(
            f"SELECT ds, count(lang), count(*) FROM {ice.scan('clips')} GROUP BY ds ORDER BY ds"
        )
        .fetchall()
    )
    assert got == [(date(2026, 3, 1), 0, 3), (date(2026, 3, 2), 2, 2)]
    assert "lang" in [f.name for f in ice._table("clips").schema().fields]


WRITER = """
import sys, time
from pathlib import Path
sys.path[:0] = [{root!r}, {tests!r}]
from models.core import settings
from models.core.iceberg import warehouse_for
from scaleout.test_iceberg_warehouse import rows
wh = warehouse_for(settings.current({home!r}))
mode, ds = sys.argv[1], sys.argv[2]
if mode == "once":
    wh.write("clips", ds, rows(2000, int(ds[-2:])), keys=["clip_id"])
else:
    i = 0
    while True:  # rewrite the day with content A, B, A, ... until killed
        print(i % 2, flush=True)
        wh.write("clips", ds, rows(3000 if i % 2 else 1000, i % 2), keys=["clip_id"])
        i += 1
"""


def _writer(tmp_path, *args) -> subprocess.Popen:
    code = WRITER.format(root=str(ROOT), tests=str(ROOT / "tests"), home=str(tmp_path / "home"))
    return subprocess.Popen([sys.executable, "-c", code, *args], env=os.environ.copy(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def test_writers_of_different_days_commit_at_once(ice, tmp_path):
    days = [f"2026-04-{d:02d}" for d in range(1, 5)]
    procs = [_writer(tmp_path, "once", d) for d in days]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]
    assert ice.partitions("clips") == days
    for d in days:
        assert content(ice, "clips", d) == sorted(
            rows(2000, int(d[-2:])).to_pylist(), key=lambda r: r["clip_id"]
        )


def test_a_writer_killed_mid_commit_leaves_the_previous_or_the_next_snapshot(ice, tmp_path):
    ice.write("clips", D1, rows(1000, 0), keys=["clip_id"])
    expected = {n: sorted(rows(n, n // 3000).to_pylist(), key=lambda r: r["clip_id"])
                for n in (1000, 3000)}  # fmt: skip
    seen = set()
    for k in range(6):
        proc = _writer(tmp_path, "loop", D1)
        for _ in range(2 + k % 3):  # let it start a few writes, then kill it in the middle
            assert proc.stdout.readline(), proc.stderr.read()[-2000:]
        time.sleep(0.05 * k)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        now = content(ice, "clips", D1)
        assert now in expected.values(), len(now)
        assert len(ice.files("clips", D1)) == 1
        seen.add(len(now))
    assert seen  # the loop ran


def test_a_bad_configuration_is_named_without_its_secret(monkeypatch, tmp_path):
    monkeypatch.setenv("CLIPFLOW_WAREHOUSE", "s3://bucket/wh")
    monkeypatch.delenv("CLIPFLOW_ICEBERG_CATALOG", raising=False)
    wh = warehouse_for(settings.current(tmp_path))
    with pytest.raises(IcebergConfigError, match="CLIPFLOW_ICEBERG_CATALOG is not set"):
        _ = wh.catalog
    monkeypatch.setenv("CLIPFLOW_ICEBERG_CATALOG", "mysql://u:hunter2@h/db")
    with pytest.raises(IcebergConfigError, match="CLIPFLOW_ICEBERG_CATALOG") as e:
        _ = wh.catalog
    assert "hunter2" not in str(e.value)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://key:hunter2@127.0.0.1:1/x")
    with pytest.raises(IcebergConfigError, match="AWS_ENDPOINT_URL_S3") as e:
        _ = IcebergWarehouse(tmp_path, "s3://bucket/wh").fs
    assert "hunter2" not in str(e.value)
    monkeypatch.setenv("CLIPFLOW_WAREHOUSE", "s3://key:hunter2@bucket")
    with pytest.raises(ValueError, match="CLIPFLOW_WAREHOUSE") as e:
        settings.current(tmp_path)
    assert "hunter2" not in str(e.value)
    monkeypatch.delenv("CLIPFLOW_WAREHOUSE")
    assert type(warehouse_for(settings.current(tmp_path))) is Warehouse


def test_every_catalog_call_is_bounded_unless_the_url_says_otherwise():
    from models.core.settings import bounded_catalog_url as _bounded

    url = _bounded("postgresql+psycopg2://u:p%40ss@db:5432/iceberg")
    assert url == ("postgresql+psycopg2://u:p%40ss@db:5432/iceberg?connect_timeout=10"
                   "&options=-c+statement_timeout%3D60000")  # fmt: skip
    assert "connect_timeout=3&" in _bounded("postgresql://u@db/iceberg?connect_timeout=3")
    assert _bounded("sqlite:////tmp/catalog.db") == "sqlite:////tmp/catalog.db"


def test_feasts_mirror_follows_the_current_snapshot_and_copies_only_new_files(ice, tmp_path):
    from feature_repo.data_sources import warehouse_glob
    from models.core.iceberg import mirror_dir

    ice.write("clip_features", D1, rows(30, 1))
    ice.write("clip_features", D2, rows(20, 2))
    assert ice.feast_offline(["clip_features"]) == 2
    mirror = mirror_dir(ice.home, "clip_features")
    glob = warehouse_glob("clip_features", ice.home)  # what Feast's file source reads
    assert glob == f"{mirror}/**/*.parquet"

    def mirrored() -> list[tuple]:
        con = ice.connect()
        return sorted(
            con.execute(f"SELECT ds, clip_id, views FROM read_parquet('{glob}')").fetchall()
        )

    def current() -> list[tuple]:
        q = f"SELECT ds, clip_id, views FROM {ice.scan('clip_features')}"
        return sorted(ice.connect().execute(q).fetchall())

    assert mirrored() == current() and len(current()) == 50
    assert ice.feast_offline(["clip_features"]) == 0  # nothing new: nothing copied
    ice.write("clip_features", D2, rows(5, 3))  # a re-run of D2: its old file leaves the mirror
    assert ice.feast_offline(["clip_features"]) == 1
    assert mirrored() == current() and len(current()) == 35
    assert [p.parent.name for p in sorted(mirror.rglob("*.parquet"))] == [f"ds={D1}", f"ds={D2}"]
    assert not list(mirror.rglob("*.part"))
    assert Warehouse(tmp_path / "local").feast_offline(["clip_features"]) == 0


def test_the_warehouse_on_a_rest_catalog_commits_and_reads_through_it(
    iceberg_env, tmp_path, monkeypatch
):
    """`CLIPFLOW_ICEBERG_CATALOG=http(s)://...`: pyiceberg's REST catalog, against a loopback
    REST server (tests/scaleout/rest_catalog.py); its token from CLIPFLOW_ICEBERG_TOKEN; a
    wrong token is refused and never shown."""
    from scaleout.rest_catalog import rest_catalog

    props = {"py-io-impl": "pyiceberg.io.pyarrow.PyArrowFileIO",
             **IcebergWarehouse(tmp_path / "x", iceberg_env["location"])._s3_props()}  # fmt: skip
    with rest_catalog(tmp_path, iceberg_env["location"], props, token="t0ken") as server:
        monkeypatch.setenv("CLIPFLOW_ICEBERG_CATALOG", server.uri + "/")
        monkeypatch.setenv("CLIPFLOW_ICEBERG_TOKEN", "t0ken")
        ice = warehouse_for(settings.current(tmp_path / "home"))
        assert ice.write("clips", D1, rows(50, 1), keys=["clip_id"]) == 50
        assert ice.write("clips", D1, rows(30, 2), keys=["clip_id"]) == 30  # replaces it
        assert ice.write("clips", D2, rows(20, 3), keys=["clip_id"]) == 20
        want = sorted(rows(30, 2).to_pylist(), key=lambda r: r["clip_id"])
        assert content(ice, "clips", D1) == want and ice.partitions("clips") == [D1, D2]
        assert server.calls["create_table"] == 1 and server.calls["commit_table"] >= 3
        other = warehouse_for(settings.current(tmp_path / "home2"))  # another run's view
        assert content(other, "clips", D1) == want and content(other, "clips", D2)
        monkeypatch.setenv("CLIPFLOW_ICEBERG_TOKEN", "hunter2")
        with pytest.raises(Exception) as e:
            _ = warehouse_for(settings.current(tmp_path / "home3")).catalog
        assert "NotAuthorized" in str(e.value) and "hunter2" not in str(e.value)
        # OAuth2 client credentials instead of a token: exchanged at the catalog's endpoint
        monkeypatch.delenv("CLIPFLOW_ICEBERG_TOKEN")
        monkeypatch.setenv("CLIPFLOW_ICEBERG_CREDENTIAL", ":".join(server.client))
        assert content(warehouse_for(settings.current(tmp_path / "home4")), "clips", D1) == want
        monkeypatch.setenv("CLIPFLOW_ICEBERG_CREDENTIAL", "clipflow:hunter2")
        with pytest.raises(Exception) as e:
            _ = warehouse_for(settings.current(tmp_path / "home5")).catalog
        assert "invalid_client" in str(e.value) and "hunter2" not in str(e.value)


def test_a_rest_catalog_that_does_not_answer_fails_within_its_timeout(monkeypatch, tmp_path):
    import socket

    from models.core import iceberg_catalog

    monkeypatch.setattr(iceberg_catalog, "REST_TIMEOUT_S", 1.0)
    with socket.socket() as mute:  # accepts connections (the backlog), never answers
        mute.bind(("127.0.0.1", 0))
        mute.listen(8)
        monkeypatch.setenv("CLIPFLOW_WAREHOUSE", "s3://bucket/wh")
        monkeypatch.setenv("CLIPFLOW_ICEBERG_CATALOG", f"http://127.0.0.1:{mute.getsockname()[1]}")
        wh = warehouse_for(settings.current(tmp_path))
        t0 = time.monotonic()
        with pytest.raises(Exception, match="(?i)timed? ?out"):
            _ = wh.catalog
        assert time.monotonic() - t0 < 30  # a hang guard, far above the 1 s timeout


@pytest.mark.parametrize(
    ("value", "ok"),
    [("https://catalog.example.com/api/catalog", True), ("http://127.0.0.1:8181", True),
     ("https://u:hunter2@catalog.example.com", False), ("https://h/api?token=hunter2", False),
     ("https://", False), ("ftp://h/x", False)],
)  # fmt: skip
def test_a_rest_catalog_url_holds_no_secret(monkeypatch, value, ok):
    monkeypatch.setenv("CLIPFLOW_ICEBERG_CATALOG", value)
    if ok:
        assert settings.catalog_from_env() == value
        return
    with pytest.raises(IcebergConfigError, match="CLIPFLOW_ICEBERG_CATALOG") as e:
        settings.catalog_from_env()
    assert "hunter2" not in str(e.value)
