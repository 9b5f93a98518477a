"""The registered model's aliases: read them, move them checked, promote, gate.

Aliases: `champion` serves; `challenger` is the newest validated version that has not
replaced the champion. MLflow aliases are last-writer-wins: `set_registered_model_alias`
has no compare-and-set. `set_alias_checked` narrows the race: it reads the alias, moves it
only if it still points where the caller's decision assumed, and re-reads afterwards.
Moves made through clipflow are also serialised by a lock (an `fcntl` lock file beside
a SQLite store, a PostgreSQL advisory lock for a PostgreSQL store); writers that bypass
clipflow, or stores behind an HTTP server, are not covered by the lock.
"""

from __future__ import annotations

import fcntl
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from models.core.names import CHALLENGER, CHAMPION, MODEL_NAME

if TYPE_CHECKING:
    from models.training.evaluation import GateResult

_READ_NOW = object()  # promote(): take the champion as it is when the lock is held


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///` store URI; None for other stores and in-memory."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///") :].split("?")[0]
    return None if path in ("", ":memory:") else Path(path)


def aliases(client, name: str = MODEL_NAME) -> dict[str, str] | None:
    """alias -> version of a registered model; None when the model is not registered."""
    from mlflow.exceptions import MlflowException

    try:
        model = client.get_registered_model(name)
    except MlflowException as e:
        if e.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    return {k: str(v) for k, v in model.aliases.items()}


@contextmanager
def promotion_lock(uri: str) -> Iterator[None]:
    """Serialise alias moves made through clipflow on one store (see the module doc)."""
    db = sqlite_path(uri)
    if db is not None:
        with open(f"{db}.aliases.lock", "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
    elif uri.startswith(("postgresql", "postgres:")):
        import sqlalchemy as sa

        key = int.from_bytes(
            hashlib.sha256(b"clipflow:model-aliases").digest()[:8], "big", signed=True
        )
        engine = sa.create_engine(uri, poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as con:
                con.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": key})
                try:
                    yield
                finally:
                    con.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
        finally:
            engine.dispose()
    else:
        yield


def _store_uri(client, tracking_uri: str | None) -> str:
    return tracking_uri or getattr(client, "_registry_uri", None) or ""


def set_alias_checked(
    client,
    name: str,
    alias: str,
    version: str | int,
    expected_current: str | int | None,
    tracking_uri: str | None = None,
) -> bool:
    """Point `alias` at `version` only if it now points at `expected_current` (None: the
    alias must be absent). Returns True when, re-read after the move, the alias points at
    `version`; False when it was stale or another writer won. `tracking_uri` picks the lock
    (default: the client's registry URI)."""
    with promotion_lock(_store_uri(client, tracking_uri)):
        return _checked_move(client, name, alias, str(version), expected_current)


def _checked_move(client, name: str, alias: str, version: str, expected) -> bool:
    current = (aliases(client, name) or {}).get(alias)
    if current != (None if expected is None else str(expected)):
        return False
    client.set_registered_model_alias(name, alias, version)
    return (aliases(client, name) or {}).get(alias) == version


def promote(
    client,
    version: str | int,
    reason: str,
    expected_champion=_READ_NOW,
    name: str = MODEL_NAME,
    tracking_uri: str | None = None,
) -> bool:
    """champion <- version, checked against `expected_champion` (the champion the decision
    was made against; None: there was none). Tags the version `promoted_reason` and clears
    `challenger` if it pointed at this version. Returns whether the move happened."""
    version = str(version)
    with promotion_lock(_store_uri(client, tracking_uri)):
        current = aliases(client, name) or {}
        expected = current.get(CHAMPION) if expected_champion is _READ_NOW else expected_champion
        if not _checked_move(client, name, CHAMPION, version, expected):
            return False
        client.set_model_version_tag(name, version, "promoted_reason", reason)
        if current.get(CHALLENGER) == version:
            client.delete_registered_model_alias(name, CHALLENGER)
        return True


def set_challenger(
    client, version: str | int, reason: str, name: str = MODEL_NAME, tracking_uri: str | None = None
) -> bool:
    """challenger <- version, unless the champion is this version or the challenger is
    already this or a newer version. Tags the version `challenger_reason`."""
    version = str(version)
    with promotion_lock(_store_uri(client, tracking_uri)):
        current = aliases(client, name) or {}
        held = current.get(CHALLENGER)
        if current.get(CHAMPION) == version or (held is not None and int(held) >= int(version)):
            return False
        if not _checked_move(client, name, CHALLENGER, version, held):
            return False
        client.set_model_version_tag(name, version, "challenger_reason", reason)
        return True


def apply_gate(
    client,
    version: str | int,
    result: GateResult,
    expected_champion: str | int | None,
    name: str = MODEL_NAME,
    tracking_uri: str | None = None,
) -> str:
    """Act on a gate result for a registered version: `champion` (passed and clearly better,
    or there was no champion), `challenger` (passed; or better but the champion moved
    meanwhile), `passed` (passed, but a newer challenger exists), `rejected` (failed).
    Tags the version `validation_status` and `gate` (the gate's sentences)."""
    version = str(version)
    text = " ".join(result.details.get("checks", result.reasons))[:5000]
    client.set_model_version_tag(name, version, "gate", text)
    if not result.passed:
        client.set_model_version_tag(name, version, "validation_status", "rejected")
        return "rejected"
    client.set_model_version_tag(name, version, "validation_status", "passed")
    if (expected_champion is None or result.better_than_champion) and promote(
        client, version, text, expected_champion, name, tracking_uri
    ):
        return CHAMPION
    return CHALLENGER if set_challenger(client, version, text, name, tracking_uri) else "passed"
