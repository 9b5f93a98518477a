"""Paths that hold anything a file system allows. A home such as `it's a "home" 50% env=prod
[x]*?` works end to end and reads only itself (a `*`, `?` or `[` is a character, not a
glob that would reach the sibling `... x-decoy`; `env=prod` adds no Hive column), landing
file names are data, and hostile file names and experiment ids are refused by name while
the rest still runs."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from assets.feature_store import feast_registry
from assets.features import clip_features, feature_checks
from assets.ingest import ingest_assets, ingest_checks
from assets.online_store import online_store
from assets.resources import EventsResource, FeastResource, LandingResource, WarehouseResource
from models.core.warehouse import Warehouse, connect
from models.experiments.config import load_experiments
from models.synthetic.landing import generate_landing

HOME = """it's a "home" 50% env=prod [x]*?"""
DECOY = """it's a "home" 50% env=prod x-decoy"""  # what the home, read as a glob, matches
DAY = "2026-03-01"
ROWS = pa.table({"clip_id": ["a", "b'; DROP TABLE x; --"], "score": [1.0, 2.0]})


@pytest.mark.parametrize(
    ("name", "decoy_name"), [(HOME, DECOY), ("env=prod [x]*", "env=prod x-decoy")]
)
def test_the_warehouse_of_a_hostile_home_reads_only_itself(tmp_path, name, decoy_name):
    wh, decoy = Warehouse(tmp_path / name), Warehouse(tmp_path / decoy_name)
    decoy.write("clip_scores", DAY, pa.table({"clip_id": ["decoy"], "score": [9.0]}))
    decoy.write("quarantine", DAY, pa.table({"clip_id": ["decoy"]}), name="clips")
    assert wh.write("clip_scores", DAY, ROWS) == 2
    assert wh.write("quarantine", DAY, ROWS.select(["clip_id"]), name="clips") == 2

    assert wh.read("clip_scores", DAY).sort_by("clip_id").to_pylist() == ROWS.to_pylist()
    assert wh.read("quarantine", DAY).num_rows == 2
    scanned = wh.con.sql(f"SELECT * FROM {wh.scan('clip_scores')} ORDER BY clip_id")
    assert scanned.columns == ["clip_id", "score", "ds"]  # no `env` column from the path
    assert [r[0] for r in scanned.fetchall()] == ROWS.column("clip_id").to_pylist()
    assert wh.read("clip_scores", DAY).column_names == ["clip_id", "score"]
    assert wh.partitions("clip_scores") == [DAY] and (tmp_path / name / "warehouse").is_dir()


def test_feast_s_offline_store_reads_the_hostile_home_s_files_only(tmp_path):
    """What Feast's DuckDB offline store does with a FileSource path: ibis.read_parquet."""
    import ibis

    from feature_repo.data_sources import warehouse_glob

    Warehouse(tmp_path / HOME).write("clip_features", DAY, pa.table({"clip_id": ["real"]}))
    Warehouse(tmp_path / DECOY).write("clip_features", DAY, pa.table({"clip_id": ["decoy"]}))
    rows = ibis.read_parquet(warehouse_glob("clip_features", tmp_path / HOME)).to_pyarrow()
    assert rows.column("clip_id").to_pylist() == ["real"]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> dict[str, Path]:
    """A landing dir and a home with hostile names, hostile landing file names, and a
    decoy home holding clips that a glob would pick up."""
    root = tmp_path_factory.mktemp("paths")
    # no glob character in the landing dir's name: DuckDB reads a pattern that matches
    # nothing as a literal path, which would hide the file names' globs
    landing, home = root / 'landing it\'s a "landing" 50% env=prod', root / HOME
    generate_landing(
        landing, days=1, start=date(2026, 3, 1), clips_per_day=40, users=30, seed=3, bad_row_rate=0
    )
    (src,) = (landing / "clips").rglob("*.parquet")
    clips = pq.read_table(src)
    folder = src.parent
    for name in ["x'; DROP TABLE y; --.parquet", "*.parquet", "[0-9].parquet"]:
        renamed = pa.array([f"{name}-{c}" for c in clips.column("clip_id").to_pylist()[:2]])
        pq.write_table(clips.slice(0, 2).set_column(0, "clip_id", renamed), folder / name)
    pq.write_table(clips.slice(2, 2), folder / "evil\nname.parquet")
    os.symlink("/etc/passwd", folder / "passwd.csv")
    decoy = clips.slice(0, 1).set_column(0, "clip_id", pa.array(["decoy"]))
    Warehouse(root / DECOY).write("clips", DAY, decoy)
    return {"root": root, "landing": landing, "home": home, "valid": clips.num_rows + 6}


def test_ingest_and_the_feature_assets_run_on_a_hostile_home(hostile, monkeypatch):
    monkeypatch.setenv("CLIPFLOW_HOME", str(hostile["home"]))
    monkeypatch.delenv("CLIPFLOW_REDIS", raising=False)
    home, io = str(hostile["home"]), hostile["root"] / "io manager"
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [*ingest_assets, *ingest_checks, clip_features, *feature_checks],
            partition_key=DAY,
            resources={
                "warehouse": WarehouseResource(home=home),
                "landing": LandingResource(landing_dir=str(hostile["landing"])),
                "io_manager": dg.FilesystemIOManager(base_dir=str(io)),
            },
            instance=instance,
        )
        assert result.success
        online = dg.materialize(
            [feast_registry, online_store],
            partition_key=DAY,
            resources={
                "warehouse": WarehouseResource(home=home),
                "feast": FeastResource(home=home),
                "events": EventsResource(home=home),
            },
            instance=instance,
        )
        assert online.success
    assert not io.exists()  # no output goes through the IO manager: its base_dir is unused
    (check,) = [e for e in result.get_asset_check_evaluations() if e.check_name == "features_sane"]
    assert check.passed

    wh, con = Warehouse(hostile["home"]), connect()
    ids = [r[0] for r in con.sql(f"SELECT clip_id FROM {wh.scan('clips')}").fetchall()]
    assert len(ids) == len(set(ids)) == hostile["valid"]  # every valid row, each once
    assert sum(i.startswith("*.parquet-") for i in ids) == 2  # that file, once, not a glob
    assert sum(i.startswith("x'; DROP TABLE y; --.parquet-") for i in ids) == 2
    assert "decoy" not in "".join(ids)
    quarantine = con.sql(f'SELECT source_file, reason, "row" FROM {wh.scan("quarantine")}')
    rows = quarantine.fetchall()
    assert "root:" not in str(rows)  # nothing of /etc/passwd was read
    assert [r for r in rows if r[2] is not None] == []  # no row quarantined (no duplicate)
    files = {r[0]: r[1] for r in rows if r[2] is None}
    assert files["clips/2026-03-01/passwd.csv"].endswith("outside the landing directory: not read")
    evil = files["clips/2026-03-01/evil\nname.parquet"]
    assert "'clips/2026-03-01/evil\\nname.parquet' has a control character" in evil
    assert len(files) == 2  # `[0-9].parquet` and the others were read
    features = wh.read("clip_features", DAY, columns=["clip_id"]).num_rows
    assert features >= len(ids) > 40


@pytest.mark.parametrize(
    "bad_id", ["x'; DROP TABLE y; --", "../../etc/passwd", "a/b", "a\x00b", ".hidden", "a" * 129]
)
def test_a_hostile_experiment_id_is_refused_by_name_and_the_others_load(tmp_path, bad_id):
    good = {
        "experiment_id": "thumbs_v2",
        "name": "Thumbnails",
        "variants": {"control": 0.5, "treatment": 0.5},
        "start": "2026-03-01",
        "end": "2026-03-10",
        "primary_metric": "watch_time",
        "min_sample_size": 10,
        "confidence_level": 0.95,
    }
    hostile_ones = [
        {**good, "experiment_id": bad_id},
        {**good, "experiment_id": "v", "variants": {"a\nb": 0.5, "c": 0.5}},
        {**good, "experiment_id": "w", "model_aliases": {"control": "champion'; DROP"}},
    ]
    path = tmp_path / "experiments.yaml"
    path.write_text(yaml.safe_dump({"experiments": [*hostile_ones, good]}))
    configs, errors = load_experiments(path)
    assert [c.experiment_id for c in configs] == ["thumbs_v2"]
    assert {(e.field, e.experiment) for e in errors} == {
        ("experiment_id", bad_id),
        ("variants", "v"),
        ("model_aliases", "w"),
    }
