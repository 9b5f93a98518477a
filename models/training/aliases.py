"""The registered model's aliases: read them, move them checked, promote, gate.

Aliases: `champion` serves; `challenger` is the newest validated version that has not
replaced the champion. MLflow aliases are last-writer-wins: `set_registered_model_alias`
has no compare-and-set. `set_alias_checked` narrows the race: it reads the alias, moves it
only if it still points where the caller's decision assumed, and re-reads afterwards.
Moves made through clipflow are also serialised by a lock (an `fcntl` lock file beside
a SQLite store, a PostgreSQL advisory lock for a PostgreSQL store); writers that bypass
clipflow, or stores behind an HTTP server, are not covered by the lock.

Every move made here is also written to the alias log (`alias_log`), and the A/B asset
stamps it once a day (`stamp`), so an experiment can tell which version served each of its
variants, at its start and after every move during it (models/experiments/promotion.py).
The log lives in the registry it describes, as tags of the registered model
(`alias_log.00000001` ...): the same store, the same backups, written under the same lock as
the move it records, and visible in the MLflow UI and API to anyone who can see the
aliases. A file under one clipflow home would miss the moves another home makes on a
shared registry (PostgreSQL in production), and would not follow the store when it moves.
An entry: `aliases` (the whole alias -> version map after the move), `at` (wall-clock UTC,
when it happened), `as_of` (the end of the data day the move was made for, when the caller
knows it, else null), `why`, and `experiment` for a promotion by an A/B experiment.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from models.core.names import CHALLENGER, CHAMPION, MODEL_NAME

if TYPE_CHECKING:
    from models.training.evaluation import GateResult

_READ_NOW = object()  # promote(): take the champion as it is when the lock is held
LOG_TAG = "alias_log."  # registered-model tags holding the alias log, numbered from 1


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///` store URI; None for other stores and in-memory."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///") :].split("?")[0]
    return None if path in ("", ":memory:") else Path(path)


def aliases(client, name: str = MODEL_NAME) -> dict[str, str] | None:
    """alias -> version of a registered model; None when the model is not registered."""
    model = _registered(client, name)
    return None if model is None else {k: str(v) for k, v in model.aliases.items()}


def _registered(client, name: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(name)
    except MlflowException as e:
        if e.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise


def alias_log(client, name: str = MODEL_NAME) -> list[dict]:
    """The alias log (see the module doc), oldest entry first; [] when nothing is logged."""
    model = _registered(client, name)
    tags = {} if model is None else model.tags
    return [json.loads(tags[k]) for k in sorted(k for k in tags if k.startswith(LOG_TAG))]


def _append(client, name: str, why: str, as_of: datetime | None, **extra) -> dict:
    """Log the aliases as they are now (call it holding the lock, after the move)."""
    model = client.get_registered_model(name)
    seq = 1 + sum(k.startswith(LOG_TAG) for k in model.tags)
    entry = {
        "aliases": {k: str(v) for k, v in sorted(model.aliases.items())},
        "at": datetime.now(UTC).isoformat(),
        "as_of": as_of.isoformat() if as_of is not None else None,
        "why": why[:300],
        **extra,
    }
    client.set_registered_model_tag(name, f"{LOG_TAG}{seq:08d}", json.dumps(entry))
    return entry


def stamp(
    client, as_of: datetime, name: str = MODEL_NAME, tracking_uri: str | None = None
) -> dict | None:
    """The A/B asset's daily mark: log the aliases as of the end of the data day `as_of`
    when the log does not say so yet (it is empty, its last entry has no `as_of`, or the
    aliases moved without it, e.g. by hand in the MLflow UI). The entry, or None."""
    with promotion_lock(_store_uri(client, tracking_uri)):
        current = aliases(client, name)
        if current is None:
            return None
        log = alias_log(client, name)
        if log and log[-1]["as_of"] is not None and log[-1]["aliases"] == current:
            return None
        return _append(client, name, "observed", as_of)


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
    as_of: datetime | None = None,
) -> bool:
    """Point `alias` at `version` only if it now points at `expected_current` (None: the
    alias must be absent). Returns True when, re-read after the move, the alias points at
    `version`; False when it was stale or another writer won. `tracking_uri` picks the lock
    (default: the client's registry URI); `as_of` goes to the alias log."""
    with promotion_lock(_store_uri(client, tracking_uri)):
        moved = _checked_move(client, name, alias, str(version), expected_current)
        if moved:
            _append(client, name, f"{alias} <- v{version}", as_of)
        return moved


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
    as_of: datetime | None = None,
    experiment: str | None = None,
) -> bool:
    """champion <- version, checked against `expected_champion` (the champion the decision
    was made against; None: there was none). Tags the version `promoted_reason` and clears
    `challenger` if it pointed at this version. Returns whether the move happened. `as_of`
    and `experiment` (the A/B experiment that shipped it) go to the alias log."""
    version = str(version)
    with promotion_lock(_store_uri(client, tracking_uri)):
        current = aliases(client, name) or {}
        expected = current.get(CHAMPION) if expected_champion is _READ_NOW else expected_champion
        if not _checked_move(client, name, CHAMPION, version, expected):
            return False
        client.set_model_version_tag(name, version, "promoted_reason", reason)
        if current.get(CHALLENGER) == version:
            client.delete_registered_model_alias(name, CHALLENGER)
        extra = {} if experiment is None else {"experiment": experiment}
        _append(client, name, f"champion <- v{version}: {reason}", as_of, **extra)
        return True


def set_challenger(
    client,
    version: str | int,
    reason: str,
    name: str = MODEL_NAME,
    tracking_uri: str | None = None,
    as_of: datetime | None = None,
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
        _append(client, name, f"challenger <- v{version}: {reason}", as_of)
        return True


def apply_gate(
    client,
    version: str | int,
    result: GateResult,
    expected_champion: str | int | None,
    name: str = MODEL_NAME,
    tracking_uri: str | None = None,
    as_of: datetime | None = None,
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
        client, version, text, expected_champion, name, tracking_uri, as_of
    ):
        return CHAMPION
    moved = set_challenger(client, version, text, name, tracking_uri, as_of)
    return CHALLENGER if moved else "passed"
