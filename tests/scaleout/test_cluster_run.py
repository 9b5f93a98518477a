"""The nightly on a Redis Cluster (#21): generated days through `clipflow run` with a 3-node
Redis Cluster as the online store. What an app reads through Feast's own cluster store and
through clipflow's equals the warehouse's newest rows (every clip's features and champion
score), byte for byte between the two stores; the hashes are spread over the three nodes;
the days' events are on the cluster's stream. (That the writers store the same bytes on a
cluster as on one Redis is tests/feature_repo, which runs every store test on both.)"""

from __future__ import annotations

import pytest
from faults.fault_support import SLOW, clipflow, clipflow_env, newest_rows

from models.core.names import FEATURE_COLUMNS, FEATURE_KINDS, FEATURES_VIEW
from models.integrations import events

pytestmark = SLOW
START, DAYS = "2026-02-01", 4
NUMERIC = [c for c in FEATURE_COLUMNS if FEATURE_KINDS[c] != "string"]
SCORES = ["score", "model_version"]

def hashes(client, nodes) -> dict[bytes, dict[bytes, bytes]]:
    """Every Feast hash the online store holds (not clipflow's own keys: lease, events)."""
    out = {}
    for node in nodes:
        for key in node.scan_iter(count=1000):
            if not key.startswith((b"clipflow:", b"{clipflow:")):
                out[key] = client.hgetall(key)
    return out


def test_the_nightly_on_a_cluster_serves_the_warehouses_newest_rows(
    tmp_path, redis_cluster, monkeypatch
):
    landing, home = tmp_path / "landing", tmp_path / "home"
    r = clipflow("generate", "--out", str(landing), "--days", str(DAYS), "--start", START,
                 "--clips-per-day", "800", "--users", "200", "--seed", "5",
                 env=clipflow_env())  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    cluster = redis_cluster["client"]()
    url = redis_cluster["connection_string"]
    try:
        cluster.flushall()  # the session's cluster: only this run's keys from here on
        r = clipflow("run", "--landing", str(landing), env=clipflow_env(home, CLIPFLOW_REDIS=url))
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        assert f"{DAYS}/{DAYS} days succeeded" in r.stdout

        features = newest_rows(home, "clip_features", FEATURE_COLUMNS)
        scores = newest_rows(home, "clip_scores", SCORES, "WHERE model_alias = 'champion'")
        assert len(features) >= 800 * DAYS and scores, "no champion scored the clips"
        nodes = [n.redis_connection for n in cluster.get_primaries()]
        stored = hashes(cluster, nodes)
        assert len(stored) == len(features)  # one hash per clip, nothing else
        per_node = [sum(1 for k in n.scan_iter(count=1000) if k in stored) for n in nodes]
        assert len(per_node) == 3 and min(per_node) > len(stored) / 6, per_node
        published = [e for _, e in cluster.xrange(events.STREAM)
                     if e[b"type"] == b"scores_published"]  # fmt: skip
        assert published and all(e[b"event_id"] for e in published)

        ids = sorted(features)
        monkeypatch.setenv("CLIPFLOW_HOME", str(home))
        monkeypatch.setenv("CLIPFLOW_REDIS", url)
        reads = {}
        for stock in ("1", ""):  # Feast's own cluster store, then clipflow's
            monkeypatch.setenv("CLIPFLOW_FEAST_STOCK_READ", stock)
            reads[stock] = read_online(ids)
        assert reads["1"]["type"] == "redis" and reads[""]["type"] != "redis"
        assert reads["1"]["redis_type"] == reads[""]["redis_type"] == "RedisType.redis_cluster"
        assert reads["1"]["rows"] == reads[""]["rows"]
        rows = reads["1"]["rows"]
        assert rows["clip_id"] == ids
        for i, cid in enumerate(ids):
            for c in FEATURE_COLUMNS:
                value = features[cid][c]
                expect = pytest.approx(value, rel=1e-9) if c in NUMERIC and value else value
                assert rows[c][i] == expect, (cid, c)
            held = scores.get(cid)
            assert rows["score"][i] == (pytest.approx(held["score"], rel=1e-9) if held else None)
            assert rows["model_version"][i] == (held["model_version"] if held else None)
    finally:
        cluster.flushall()
        cluster.close()


def read_online(ids: list[str]) -> dict:
    """What an app reads through Feast for `ids`, the store's type beside it."""
    from feature_repo.config import feature_store

    store = feature_store()
    refs = [f"{FEATURES_VIEW}:{c}" for c in FEATURE_COLUMNS] + [f"clip_scores:{c}" for c in SCORES]
    got = store.get_online_features(features=refs, entity_rows=[{"clip_id": i} for i in ids])
    online = store.config.online_store
    return {"type": online.type, "redis_type": str(online.redis_type), "rows": got.to_dict()}
