"""The `online_store` step (assets/online_store.py): `online_features` and `online_scores`
from the warehouse's partitions, together or alone, on Redis and on SQLite, read back
through the Feast SDK."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg
import pyarrow as pa
import pytest
from support import clip_feature_rows, newest_per_clip

from assets.online_store import online_store
from assets.resources import EventsResource, FeastResource, WarehouseResource
from feature_repo.feature_views import CLIP_FEATURE_NAMES
from models.core.warehouse import Warehouse

DS = "2026-05-02"
END = datetime(2026, 5, 2, 23, 59, 59, 999_999, tzinfo=UTC)


def _day(home, prefix: str, *, intervals: bool) -> tuple[pa.Table, dict]:
    """A clip_features partition (several moments per clip) and a clip_scores one (each
    clip by the champion and the challenger); (the features, {clip: champion row})."""
    feats = clip_feature_rows(6, prefix, seed=4)
    wh = Warehouse(home)
    wh.write("clip_features", DS, feats)
    ids = sorted(set(feats.column("clip_id").to_pylist()))
    rows = []
    for alias, base in (("champion", 10.0), ("challenger", 60.0)):
        for i, c in enumerate(ids):
            row = {"clip_id": c, "score": base + i, "model_version": "3" if alias == "champion"
                   else "4", "model_alias": alias, "event_timestamp": END}  # fmt: skip
            if intervals:
                row |= {
                    "score_low": base + i - 2,
                    "score_high": base + i + 2,
                    "interval_level": 0.8,
                }
            rows.append(row)
    wh.write("clip_scores", DS, pa.Table.from_pylist(rows))
    return feats, {r["clip_id"]: r for r in rows if r["model_alias"] == "champion"}


def _materialize(selection: list[str]):
    resources = {"warehouse": WarehouseResource(), "feast": FeastResource(),
                 "events": EventsResource()}  # fmt: skip
    with dg.instance_for_test() as instance:
        result = dg.materialize([online_store], partition_key=DS, resources=resources,
                                instance=instance, selection=selection)  # fmt: skip
        assert result.success
        return {m.asset_key.to_user_string(): m.metadata
                for m in result.asset_materializations_for_node("online_store")}  # fmt: skip


def _served(store, ids: list[str]) -> dict[str, list]:
    return store.get_online_features(
        features=[*(f"clip_features:{f}" for f in CLIP_FEATURE_NAMES), "clip_scores:score",
                  "clip_scores:model_version", "clip_scores:score_low"],
        entity_rows=[{"clip_id": c} for c in ids],
    ).to_dict()  # fmt: skip


@pytest.mark.parametrize("store_kind", ["redis_store", "sqlite_store"])
def test_both_views_are_published_from_the_warehouse(store_kind, online_redis, request, home,
                                                     prefix):
    store = request.getfixturevalue(store_kind)
    feats, champion = _day(home, prefix, intervals=True)
    meta = _materialize(["online_features", "online_scores"])
    ids = sorted(champion)
    newest = newest_per_clip(feats)
    got = _served(store, ids)
    for name in CLIP_FEATURE_NAMES:
        assert got[name] == [newest[c][name] for c in ids], name
    assert got["score"] == [champion[c]["score"] for c in ids]  # not the challenger's
    assert got["model_version"] == ["3"] * len(ids)
    assert got["score_low"] == [champion[c]["score_low"] for c in ids]
    assert meta["online_features"]["clips"].value == len(ids)
    assert meta["online_features"]["source_rows"].value == feats.num_rows
    assert meta["online_scores"]["dagster/row_count"].value == len(ids)
    again = _materialize(["online_features", "online_scores"])
    assert again["online_features"]["skipped_not_newer"].value == len(ids)
    assert again["online_scores"]["skipped_not_newer"].value == len(ids)


def test_scores_alone_leave_the_features_and_old_partitions_get_null_intervals(
    redis_store, home, prefix
):
    _, champion = _day(home, prefix, intervals=False)
    meta = _materialize(["online_scores"])
    assert set(meta) == {"online_scores"}
    ids = sorted(champion)
    got = _served(redis_store, ids)
    assert got["score"] == [champion[c]["score"] for c in ids]
    assert got["score_low"] == [None] * len(ids)
    assert got[CLIP_FEATURE_NAMES[0]] == [None] * len(ids)


def test_features_alone_leave_the_scores(redis_store, home, prefix):
    feats, champion = _day(home, prefix, intervals=True)
    meta = _materialize(["online_features"])
    assert set(meta) == {"online_features"}
    ids = sorted(champion)
    got = _served(redis_store, ids)
    assert got["score"] == [None] * len(ids)
    assert got["fps"] == [newest_per_clip(feats)[c]["fps"] for c in ids]
