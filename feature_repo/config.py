"""The one place that builds the Feast configuration of clipflow (docs/contract.md §4).

Everything comes from a `Settings` (models/core/settings.py; the current environment when
none is given, as for the `feast` CLI): the registry and the SQLite online store live under
`<home>/feast/`; the online store is Redis when `CLIPFLOW_REDIS` is set. `feast` is imported
inside the functions (it takes seconds to import), so importing this module is cheap.

A Redis Cluster (`CLIPFLOW_REDIS=redis-cluster://host:port,host:port`) sets Feast's
`redis_type: redis_cluster`; clipflow's store reads and writes it grouped by node.

`CLIPFLOW_REDIS` is checked here by `models.core.redis_url` (a bad one fails now, naming the
wrong part), and clipflow's store builds its clients with it, so either of its forms works,
TLS included (`rediss://...?ssl_ca_certs=...` or `host:port,ssl=true,ssl_ca_certs=...`).
Feast's stock store (`CLIPFLOW_FEAST_STOCK_READ=1`) gets the same target in Feast's form.

The `feast` CLI reads the same configuration from a generated YAML file:

    python -c "from feature_repo.config import write_feature_store_yaml as w; w()"
    feast -c feature_repo -f $CLIPFLOW_HOME/feast/feature_store.yaml apply   # or serve
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from models.core.names import FEAST_PROJECT
from models.core.redis_url import is_url
from models.core.redis_url import parse as parse_redis
from models.core.settings import Settings, current

if TYPE_CHECKING:
    from feast import FeatureStore, RepoConfig

PROJECT = FEAST_PROJECT
STORE_TYPE = "feature_repo.online_store.FastRedisOnlineStore"
REPO_DIR = Path(__file__).resolve().parent
REGISTRY_CACHE_TTL_S = 60
_REDIS_VAR = "${CLIPFLOW_REDIS}"


def feast_dir(s: Settings | None = None) -> Path:
    """`<home>/feast`: the registry, the SQLite online store, the CLI's YAML."""
    return (s or current()).home / "feast"


def _config_dict(settings: Settings, *, redis_placeholder: bool = False) -> dict[str, Any]:
    home = settings.home / "feast"
    if settings.redis:
        # Feast's Redis store with a faster read path on the same data (online_store.py);
        # CLIPFLOW_FEAST_STOCK_READ=1 selects Feast's own ("redis"), e.g. to compare.
        kind = "redis" if settings.feast_stock_read else STORE_TYPE
        online: dict[str, Any] = {
            "type": kind,
            "connection_string": _REDIS_VAR
            if redis_placeholder
            else _connection_string(settings.redis, stock=settings.feast_stock_read),
        }
        if parse_redis(settings.redis).cluster:  # redis-cluster://: Feast's cluster type
            online["redis_type"] = "redis_cluster"
    else:
        online = {"type": "sqlite", "path": str(home / "online.db")}
    return {
        "project": PROJECT,
        "provider": "local",
        "registry": {
            "registry_type": "file",
            "path": str(home / "registry.db"),
            "cache_ttl_seconds": REGISTRY_CACHE_TTL_S,
        },
        "offline_store": {"type": "duckdb"},
        "online_store": online,
        "entity_key_serialization_version": 3,
    }


def _connection_string(redis: str, *, stock: bool) -> str:
    """`redis` as the online store reads it: as written for clipflow's store (after a check),
    in Feast's form for Feast's stock store."""
    target = parse_redis(redis)
    return target.feast_string() if stock else redis


def repo_config(s: Settings | None = None) -> RepoConfig:
    """The Feast `RepoConfig` of `s` (default: the current environment)."""
    from feast import RepoConfig

    return RepoConfig(**_config_dict(s or current()), repo_path=REPO_DIR)


def feature_store(s: Settings | None = None) -> FeatureStore:
    """A `FeatureStore` on the home of `s` (creates `<home>/feast/`)."""
    from feast import FeatureStore

    s = s or current()
    feast_dir(s).mkdir(parents=True, exist_ok=True)
    return FeatureStore(repo_path=str(REPO_DIR), config=repo_config(s))


def write_feature_store_yaml(path: str | Path | None = None, s: Settings | None = None) -> Path:
    """Write the same configuration as `feature_store.yaml` for the `feast` CLI.

    Default path `$CLIPFLOW_HOME/feast/feature_store.yaml`. A Redis connection string is
    written as `'${CLIPFLOW_REDIS}'` (it may hold a password), so the CLI must run with
    that variable set; Feast expands it when it loads the file.
    """
    s = s or current()
    if s.redis:
        _connection_string(s.redis, stock=s.feast_stock_read)  # fails now, not in the CLI
        if s.feast_stock_read and is_url(s.redis):
            raise ValueError(
                "CLIPFLOW_REDIS: Feast's stock Redis store (CLIPFLOW_FEAST_STOCK_READ=1) reads "
                "only the host:port,name=value form from feature_store.yaml"
            )
    path = Path(path) if path else feast_dir(s) / "feature_store.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(_config_dict(s, redis_placeholder=True), sort_keys=False)
    # single-quoted, so that the expanded string stays one YAML string (`#`, `: `)
    text = text.replace(f": {_REDIS_VAR}\n", f": '{_REDIS_VAR}'\n")
    path.write_text(text)
    return path


def repo_objects(home: Path | None = None) -> list:
    """The Feast objects of `feature_repo.repo`, with data-source paths on `home` (default:
    the current environment's).

    The objects are module-level (Feast's layout), so their paths were fixed at first import
    from the environment; for another home (tests, `clipflow run --home`, a resource's
    `home`) the sources are pointed at its warehouse.
    """
    from feature_repo import data_sources, repo

    home = home or current().home
    for source in (data_sources.clip_features_source, data_sources.clip_scores_source):
        table = source.name.removesuffix("_source")
        source.file_options.uri = data_sources.warehouse_glob(table, home)
    return list(repo.OBJECTS)


def apply(store: FeatureStore | None = None) -> dict[str, list[str]]:
    """A programmatic `feast apply`: register every object of the repo and delete from the
    registry (and the online store) what the code no longer defines.

    Returns the names applied per kind, and `deleted`.
    """
    from feast import Entity, FeatureService, FeatureView, Project
    from feast.data_source import DataSource
    from feast.feature_view import DUMMY_ENTITY
    from feast.repo_contents import RepoContents
    from feast.repo_operations import extract_objects_for_apply_delete

    store = store or feature_store()
    objects = repo_objects(Path(store.config.registry.path).parent.parent)  # <home>/feast/
    contents = RepoContents(
        projects=[o for o in objects if isinstance(o, Project)],
        data_sources=[o for o in objects if isinstance(o, DataSource)],
        feature_views=[o for o in objects if isinstance(o, FeatureView)],
        on_demand_feature_views=[],
        stream_feature_views=[],
        label_views=[],
        # `feast apply` always registers Feast's placeholder entity of entityless views
        entities=[*(o for o in objects if isinstance(o, Entity)), DUMMY_ENTITY],
        feature_services=[o for o in objects if isinstance(o, FeatureService)],
        permissions=[],
    )
    _, to_delete, _, _ = extract_objects_for_apply_delete(PROJECT, store.registry, contents)
    store.apply(objects, objects_to_delete=to_delete, partial=False)
    return {
        "entities": sorted(o.name for o in objects if isinstance(o, Entity)),
        "data_sources": sorted(o.name for o in contents.data_sources),
        "feature_views": sorted(o.name for o in contents.feature_views),
        "feature_services": sorted(o.name for o in contents.feature_services),
        "deleted": sorted(o.name for o in to_delete),
    }
