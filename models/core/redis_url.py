"""The one parser of `CLIPFLOW_REDIS`, a Feast-style Redis connection string:
`host:port[,password=...][,username=...][,db=N][,ssl=true][,ssl_ca_certs=PATH]`.

Every Redis client of clipflow (the online writer, the event stream, the live hub, health
checks) is built from it, so the database, the password and TLS are kept everywhere; Feast
parses the same string for its own reads. redis-py is imported inside the functions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_HOST = re.compile(r"^[A-Za-z0-9_.\-]+$|^\[[0-9A-Fa-f:.]+\]$")
_OPTIONS = {"password", "username", "db", "ssl", "ssl_ca_certs"}


@dataclass(frozen=True)
class RedisTarget:
    host: str = "127.0.0.1"
    port: int = 6379
    db: int = 0
    password: str | None = None
    username: str | None = None
    ssl: bool = False
    ssl_ca_certs: str | None = None

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments of `redis.Redis` (and `redis.asyncio.Redis`)."""
        kw: dict[str, Any] = {
            "host": self.host.strip("[]"),
            "port": self.port,
            "db": self.db,
            "password": self.password,
            "username": self.username,
        }
        if self.ssl:
            kw["ssl"] = True
            if self.ssl_ca_certs:
                kw["ssl_ca_certs"] = self.ssl_ca_certs
        return kw

    def __repr__(self) -> str:  # never print the password
        return f"RedisTarget({self.host}:{self.port}, db={self.db}, ssl={self.ssl})"


def parse(connection: str) -> RedisTarget:
    """The target of a connection string; ValueError naming the part that is wrong."""
    host_port, *opts = [p.strip() for p in connection.strip().split(",")]
    host, sep, port = host_port.rpartition(":")
    if not sep:
        host, port = host_port, ""
    if host and not _HOST.match(host):
        raise ValueError(f"CLIPFLOW_REDIS: invalid host {host!r}")
    options: dict[str, str] = {}
    for opt in filter(None, opts):
        key, eq, value = opt.partition("=")
        if not eq or key not in _OPTIONS:
            raise ValueError(
                f"CLIPFLOW_REDIS: unknown option {key!r}; known: {', '.join(sorted(_OPTIONS))}"
            )
        options[key] = value
    try:
        port_n = int(port or 6379)
        db = int(options.get("db") or 0)
    except ValueError as e:
        raise ValueError(f"CLIPFLOW_REDIS: port and db must be integers ({e})") from None
    if not 0 < port_n < 65536 or db < 0:
        raise ValueError(f"CLIPFLOW_REDIS: port {port_n} or db {db} out of range")
    return RedisTarget(
        host=host or "127.0.0.1",
        port=port_n,
        db=db,
        password=options.get("password") or None,
        username=options.get("username") or None,
        ssl=options.get("ssl", "false").lower() == "true",
        ssl_ca_certs=options.get("ssl_ca_certs") or None,
    )


def redis_client(connection: str, **kwargs):
    """A redis-py client for `connection`; `kwargs` add timeouts, retries and the like."""
    import redis

    return redis.Redis(**parse(connection).kwargs(), **kwargs)


def async_redis_client(connection: str, **kwargs):
    """The same target as `redis_client`, for asyncio code (the API's live hub)."""
    from redis import asyncio as aioredis

    return aioredis.Redis(**parse(connection).kwargs(), **kwargs)
