"""The Iceberg warehouse's catalog (#21): pyiceberg's SQL catalog on a database, or an Iceberg
REST catalog (Polaris, Nessie, Gravitino, Glue's or Snowflake's REST endpoints), chosen by
`CLIPFLOW_ICEBERG_CATALOG` (models/core/settings.catalog_from_env).

- `postgresql+psycopg2://...` (or `sqlite://`): pyiceberg's `SqlCatalog`; PostgreSQL calls are
  bounded (settings.bounded_catalog_url).
- `https://host[:port][/path]` (`http://` for a server on loopback): pyiceberg's `RestCatalog`.
  Its secret comes from the environment when the warehouse connects, never from the URL:
  `CLIPFLOW_ICEBERG_TOKEN` (a bearer token) or `CLIPFLOW_ICEBERG_CREDENTIAL`
  (`client_id:client_secret`, exchanged for a token by OAuth2 client credentials).
  `CLIPFLOW_ICEBERG_REST_WAREHOUSE` names the catalog's warehouse when the server hosts
  several (Polaris's catalog name); unset, the `CLIPFLOW_WAREHOUSE` location is sent.
  pyiceberg 0.12 sets no timeout on its HTTP calls: every call here gets `REST_TIMEOUT_S`.
"""

from __future__ import annotations

import os
import random
import threading
import time

REST_TIMEOUT_S = 30.0  # connect and read timeout of every REST catalog call
TOKEN_ENV, CREDENTIAL_ENV = "CLIPFLOW_ICEBERG_TOKEN", "CLIPFLOW_ICEBERG_CREDENTIAL"
REST_WAREHOUSE_ENV = "CLIPFLOW_ICEBERG_REST_WAREHOUSE"


def open_catalog(name: str, uri: str, warehouse: str, props: dict[str, str]):
    """The catalog at `uri` (a database URL or an http(s) REST endpoint), namespace `name`
    created if missing; `props`: the FileIO's (S3) properties."""
    if uri.startswith(("http://", "https://")):
        catalog = _rest(name, uri, warehouse, props)
        catalog.create_namespace_if_not_exists(name)
        return catalog
    return _sql(name, uri, warehouse, props)


def _sql(name: str, uri: str, warehouse: str, props: dict[str, str]):
    from pyiceberg.catalog.sql import SqlCatalog
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    from models.core.settings import bounded_catalog_url

    uri = bounded_catalog_url(uri)
    for attempt in range(3):  # workers starting on a fresh catalog database race to create
        try:  # its tables and namespace: the loser finds them on its next try
            catalog = SqlCatalog(name, uri=uri, warehouse=warehouse, **props)
            catalog.create_namespace_if_not_exists(name)
            return catalog
        except (IntegrityError, ProgrammingError) as e:
            if attempt == 2 or "already exists" not in str(e):
                raise
            time.sleep(random.uniform(0.05, 0.2))
    raise AssertionError("unreachable")


_SESSION_SWAP = threading.Lock()


def _rest(name: str, uri: str, warehouse: str, props: dict[str, str]):
    import pyiceberg.catalog.rest as rest
    from requests import Session

    class BoundedSession(Session):
        def request(self, method, url, **kwargs):
            if kwargs.get("timeout") is None:
                kwargs["timeout"] = REST_TIMEOUT_S
            return super().request(method, url, **kwargs)

    class BoundedRestCatalog(rest.RestCatalog):
        """pyiceberg's REST catalog with a timeout on every call: its sessions (the config
        fetch's, the OAuth2 token request's, the catalog's) are made here as BoundedSession."""

        def _create_session(self):
            with _SESSION_SWAP:  # pyiceberg builds `Session()` by its module's name
                plain, rest.Session = rest.Session, BoundedSession
                try:
                    return super()._create_session()
                finally:
                    rest.Session = plain

    secrets = {}
    if token := os.environ.get(TOKEN_ENV, "").strip():
        secrets["token"] = token
    elif credential := os.environ.get(CREDENTIAL_ENV, "").strip():
        secrets["credential"] = credential
    where = os.environ.get(REST_WAREHOUSE_ENV, "").strip() or warehouse
    return BoundedRestCatalog(name, uri=uri, warehouse=where, **props, **secrets)
