"""The one parser of `CLIPFLOW_REDIS`, the Redis connection string, in either of two forms:

    rediss://[[username]:password@]host[:port][/db][?ssl_ca_certs=PATH&...]   (TLS)
    redis://[[username]:password@]host[:port][/db]                              (plaintext)
    host[:port][,password=...][,username=...][,db=N][,ssl=true][,ssl_ca_certs=PATH]...

    redis-cluster://[[username]:password@]host:port,host:port,...[?ssl_ca_certs=...]  (Redis
    Cluster: some of its nodes to start from; rediss-cluster:// with TLS)

The third is Feast's own form (a comma cannot be part of a value there: a password with a
comma needs the URL form, percent-encoded as `%2C`). TLS options, in the URL's query or as
`,name=value`:

* `ssl_ca_certs`: PEM file of the CA(s) the server's certificate must chain to; without it
  the system's trust store (OpenSSL's `SSL_CERT_FILE`/`SSL_CERT_DIR` override it);
* `ssl_certfile`, `ssl_keyfile`: a client certificate, for a server with `tls-auth-clients`;
* `ssl_cert_reqs`: `required` (the default) or `none`, which turns verification off and is
  never implied; `ssl_check_hostname`: `true` (the default) or `false`.

The server's certificate is verified, host name included, unless the string says otherwise.
A TLS option without TLS (`ssl=true` or `rediss://`) is an error, never silently plaintext.
Error messages name the part or option that is wrong, never a value: the string may hold a
password, which `repr` leaves out too.

A cluster has database 0 only (a `/db` path is refused). Its clients are redis-py's
`RedisCluster`, which finds every node and slot from the startup nodes; Feast's stock store
gets `redis_type: redis_cluster` and the nodes in its form (`feature_repo/config.py`).

Every Redis client of clipflow (the online writer and reader, the event stream, the live hub,
health checks) is built from it; `RedisTarget.feast_string` renders the target for Feast's
stock Redis store. redis-py is imported inside the functions.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

_NAME = "CLIPFLOW_REDIS"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
_KEY = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_HOST = re.compile(r"^[A-Za-z0-9_.\-]+$|^\[[0-9A-Fa-f:.]+\]$")
_FILES = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
_TLS_OPTIONS = {*_FILES, "ssl_cert_reqs", "ssl_check_hostname"}
_OPTIONS = {"password", "username", "db", "ssl", *_TLS_OPTIONS}
_CERT_REQS = ("required", "none")
_BOOLS = {"true": True, "false": False}
_URL_SCHEMES = {"redis": False, "rediss": True, "redis-cluster": False, "rediss-cluster": True}


@dataclass(frozen=True)
class RedisTarget:
    host: str = "127.0.0.1"
    port: int = 6379
    db: int = 0
    password: str | None = field(default=None, repr=False)
    username: str | None = None
    ssl: bool = False
    ssl_ca_certs: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_cert_reqs: str = "required"
    ssl_check_hostname: bool = True
    # a Redis Cluster's startup nodes, (host, port) each, the first being host:port; () for
    # a single server
    nodes: tuple[tuple[str, int], ...] = ()

    @property
    def cluster(self) -> bool:
        return bool(self.nodes)

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments of `redis.Redis` (and `redis.asyncio.Redis`); of a cluster,
        those of its nodes' connections, with `host`/`port`/`db` left to the client."""
        kw: dict[str, Any] = {
            "host": self.host.strip("[]"),
            "port": self.port,
            "db": self.db,
            "password": self.password,
            "username": self.username,
        }
        if self.ssl:  # verification spelled out, whatever redis-py's defaults
            kw |= {"ssl": True, **self._tls_options()}
        if self.cluster:
            del kw["host"], kw["port"], kw["db"]
        return kw

    def feast_string(self) -> str:
        """The target in Feast's form, as Feast's stock store reads it (it JSON-decodes each
        value: a value it would read as another one is refused, as is one with a comma)."""
        if self.cluster:  # Feast reads every entry without '=' as a startup node
            parts = [f"{host}:{port}" for host, port in self.nodes]
        else:
            parts = [f"{self.host}:{self.port}", f"db={self.db}"]
        named = {"username": self.username, "password": self.password}
        if self.ssl:
            named |= {"ssl": True, **self._tls_options()}
        for name, value in named.items():
            if value is None:
                continue
            text = json.dumps(value) if isinstance(value, bool) else value
            if "," in text or _json_value(text) != value:
                raise ValueError(
                    f"{_NAME}: option {name!r} cannot be written for Feast's stock Redis "
                    "store (a comma, or a value Feast reads as JSON); use clipflow's store"
                )
            parts.append(f"{name}={text}")
        return ",".join(parts)

    def _tls_options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {
            "ssl_cert_reqs": self.ssl_cert_reqs,
            "ssl_check_hostname": self.ssl_check_hostname and self.ssl_cert_reqs == "required",
        }
        return opts | {k: getattr(self, k) for k in _FILES if getattr(self, k)}

    def __repr__(self) -> str:  # never print the password
        if self.cluster:
            nodes = ",".join(f"{h}:{p}" for h, p in self.nodes)
            return f"RedisTarget(cluster {nodes}, ssl={self.ssl})"
        return f"RedisTarget({self.host}:{self.port}, db={self.db}, ssl={self.ssl})"


def parse(connection: str, *, cluster: bool = False) -> RedisTarget:
    """The target of a connection string; ValueError naming the part that is wrong.

    `cluster`: the string names a Redis Cluster whatever its form (Feast's `redis_type:
    redis_cluster`): in Feast's form every leading `host:port` is a startup node."""
    text = connection.strip()
    scheme = _SCHEME.match(text)
    name = scheme.group(1).lower() if scheme else ""
    cluster = cluster or name.endswith("-cluster")
    nodes, options = _url_parts(text, name, cluster) if scheme else _feast_parts(text, cluster)
    targets = [_target(host, port, options) for host, port in nodes]
    if not cluster:
        return targets[0]
    if targets[0].db:
        raise ValueError(f"{_NAME}: a Redis Cluster has database 0 only")
    nodes_ = tuple((t.host, t.port) for t in targets)
    if len(set(nodes_)) < len(nodes_):
        raise ValueError(f"{_NAME}: a cluster node is named twice")
    return dataclasses.replace(targets[0], nodes=nodes_)


def is_url(connection: str) -> bool:
    """Whether `connection` is in the URL form (`redis://`, `rediss://`, another scheme)."""
    return bool(_SCHEME.match(connection.strip()))


def redis_client(connection: str, *, cluster: bool = False, **kwargs):
    """A redis-py client for `connection` (`RedisCluster` for a cluster, see `parse`);
    `kwargs` add timeouts, retries and the like."""
    import redis
    from redis.cluster import ClusterNode, RedisCluster

    target = parse(connection, cluster=cluster)
    if target.cluster:
        nodes = [ClusterNode(host.strip("[]"), port) for host, port in target.nodes]
        return RedisCluster(startup_nodes=nodes, **target.kwargs(), **kwargs)
    return redis.Redis(**target.kwargs(), **kwargs)


def ping(client) -> None:
    """Raise unless the Redis of `client` answers: a server its PING; a cluster every
    primary's PING and a `cluster_state:ok` (all slots served). A cluster client's plain
    `ping()` asks one node only, which says nothing of the others."""
    import redis
    from redis.cluster import RedisCluster

    if not isinstance(client, RedisCluster):
        client.ping()
        return
    client.ping(target_nodes=RedisCluster.PRIMARIES)
    state = client.cluster_info().get("cluster_state")
    if state != "ok":
        raise redis.ConnectionError(f"the Redis Cluster's state is {state!r}, not 'ok'")


def async_redis_client(connection: str, *, cluster: bool = False, **kwargs):
    """The same target as `redis_client`, for asyncio code (the API's live hub)."""
    from redis import asyncio as aioredis
    from redis.asyncio.cluster import ClusterNode, RedisCluster

    target = parse(connection, cluster=cluster)
    if target.cluster:
        nodes = [ClusterNode(host.strip("[]"), port) for host, port in target.nodes]
        return RedisCluster(startup_nodes=nodes, **target.kwargs(), **kwargs)
    return aioredis.Redis(**target.kwargs(), **kwargs)


# -- the two forms -------------------------------------------------------------------------


def _feast_parts(text: str, cluster: bool) -> tuple[list[tuple[str, str]], dict[str, str]]:
    entries = [p.strip() for p in text.split(",")]
    n_nodes = 1
    if cluster:  # every leading entry without '=' is a node, as Feast reads a cluster's
        while n_nodes < len(entries) and "=" not in entries[n_nodes]:
            n_nodes += 1
    nodes = []
    for host_port in entries[:n_nodes]:
        host, sep, port = host_port.rpartition(":")
        nodes.append((host, port) if sep else (host_port, ""))
    opts = entries[n_nodes:]
    options: dict[str, str] = {}
    for i, opt in enumerate(filter(None, opts), start=1):
        key, eq, value = opt.partition("=")
        if not eq:  # e.g. the rest of a password with a comma: never echoed
            raise ValueError(
                f"{_NAME}: option {i} is not name=value (a comma in a password needs the "
                "rediss:// form with %2C)"
            )
        _add(options, key, value)
    return nodes, options


def _url_parts(
    text: str, scheme: str, cluster: bool
) -> tuple[list[tuple[str, str]], dict[str, str]]:
    if scheme not in _URL_SCHEMES:
        raise ValueError(f"{_NAME}: scheme {scheme!r} is not one of "
                         f"{', '.join(s + '://' for s in _URL_SCHEMES)}")  # fmt: skip
    url = urlsplit(text)
    if url.fragment:
        raise ValueError(f"{_NAME}: a URL fragment ('#...') is not allowed")
    userinfo, at, host_port = url.netloc.rpartition("@")
    options: dict[str, str] = {"ssl": "true" if _URL_SCHEMES[scheme] else "false"}
    if at:
        user, colon, password = userinfo.partition(":")
        if user:
            options["username"] = unquote(user)
        if colon and password:
            options["password"] = unquote(password)
    nodes = [_host_port(part) for part in host_port.split(",")]
    if len(nodes) > 1 and not cluster:
        raise ValueError(f"{_NAME}: several hosts need redis-cluster:// (or rediss-cluster://)")
    db = url.path.removeprefix("/")
    if db:
        options["db"] = db
    try:
        query = parse_qsl(url.query, keep_blank_values=True, strict_parsing=bool(url.query))
    except ValueError:
        raise ValueError(f"{_NAME}: the query is not name=value&...") from None
    for key, value in query:
        if key in ("password", "username", "db", "ssl"):
            raise ValueError(f"{_NAME}: option {key!r} belongs in the URL, not its query")
        _add(options, key, value)
    return nodes, options


def _host_port(text: str) -> tuple[str, str]:
    if text.startswith("["):
        host, _, port = text[1:].partition("]")
        return f"[{host}]", port.removeprefix(":")
    host, _, port = text.partition(":")
    return host, port


def _add(options: dict[str, str], key: str, value: str) -> None:
    if key not in _OPTIONS:
        # named when it looks like an option name, not like a piece of a password
        name = repr(key) if _KEY.match(key) else "(not shown)"
        raise ValueError(f"{_NAME}: unknown option {name}; known: {', '.join(sorted(_OPTIONS))}")
    if key in options:
        raise ValueError(f"{_NAME}: option {key!r} given twice")
    options[key] = value


def _target(host: str, port: str, options: dict[str, str]) -> RedisTarget:
    if host and not _HOST.match(host):
        raise ValueError(f"{_NAME}: invalid host (letters, digits, '.', '-', '_', or [IPv6])")
    try:
        port_n = int(port or 6379)
        db = int(options.get("db") or 0)
    except ValueError:
        raise ValueError(f"{_NAME}: port and db must be integers") from None
    if not 0 < port_n < 65536 or db < 0:
        raise ValueError(f"{_NAME}: port {port_n} or db {db} out of range")
    ssl = _bool(options, "ssl", False)
    tls_given = sorted(_TLS_OPTIONS & options.keys())
    if tls_given and not ssl:
        raise ValueError(
            f"{_NAME}: {', '.join(tls_given)} given without TLS (ssl=true or rediss://)"
        )
    cert_reqs = options.get("ssl_cert_reqs", "required").lower()
    if cert_reqs not in _CERT_REQS:
        raise ValueError(f"{_NAME}: ssl_cert_reqs must be one of {', '.join(_CERT_REQS)}")
    files = {k: options.get(k) or None for k in _FILES}
    if bool(files["ssl_certfile"]) != bool(files["ssl_keyfile"]):
        raise ValueError(f"{_NAME}: ssl_certfile and ssl_keyfile go together")
    return RedisTarget(
        host=host or "127.0.0.1",
        port=port_n,
        db=db,
        password=options.get("password") or None,
        username=options.get("username") or None,
        ssl=ssl,
        ssl_cert_reqs=cert_reqs,
        ssl_check_hostname=_bool(options, "ssl_check_hostname", True),
        **files,
    )


def _bool(options: dict[str, str], name: str, default: bool) -> bool:
    value = options.get(name)
    if value is None:
        return default
    if value.lower() not in _BOOLS:
        raise ValueError(f"{_NAME}: {name} must be true or false")
    return _BOOLS[value.lower()]


def _json_value(text: str) -> Any:
    """`text` as Feast's connection-string parser reads it."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text
