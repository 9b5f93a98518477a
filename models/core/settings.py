"""The one place that decides the environment (local, ci, production) and its paths.

Read at run time, never at import: resources call `current()` when they are used, so the
Dagster UI, `clipflow run` and the tests all resolve the same variables the same way.

| variable | default | meaning |
|---|---|---|
| `CLIPFLOW_ENV` | `ci` when `CI=true`, else `local` | which environment this is |
| `CLIPFLOW_HOME` | `.clipflow` | warehouse, reports, MLflow store, Dagster instance |
| `CLIPFLOW_LANDING_DIR` | `data/landing` | the landing directory (docs/contract.md §1) |
| `CLIPFLOW_REDIS` | unset | Feast Redis connection string; unset: SQLite online store |
| `CLIPFLOW_RETRAIN_COOLDOWN_DAYS` | 7 | retrain on drift at most once per this many partition days |
| `CLIPFLOW_NIGHTLY_AT` | `02:00` | when (UTC) `nightly_schedule` fires; read when the code location loads |
| `MLFLOW_TRACKING_URI` | `sqlite:///$CLIPFLOW_HOME/mlflow.db` (`%?#` encoded) | the MLflow tracking/registry store |
| `DAGSTER_HOME` | `$CLIPFLOW_HOME/dagster` | the Dagster instance the CLI and the UI share |
| `CLIPFLOW_WEBHOOKS` | `$CLIPFLOW_HOME/webhooks.yaml` | webhook subscribers |
| `CLIPFLOW_METADATA_URL` | unset | the video metadata API; unset: `video_metadata` does nothing |
| `CLIPFLOW_FEAST_STOCK_READ` | unset | `1`: Feast's own Redis reads instead of the fast path |
| `CLIPFLOW_FUTURE_SKEW_S` | 300 | seconds a landing timestamp may lie beyond ingestion time (0 to 86400) |
| `CLIPFLOW_MLFLOW_ARTIFACTS` | unset | `s3://bucket[/prefix]`: where new MLflow experiments keep their artifacts (models, plots); unset: `mlartifacts/` under the home |
| `CLIPFLOW_WAREHOUSE` | unset | `s3://bucket[/prefix]`: the warehouse as Apache Iceberg tables there (models/core/iceberg.py), catalog in `CLIPFLOW_ICEBERG_CATALOG`; unset: Parquet under the home |
| `CLIPFLOW_ICEBERG_CATALOG` | unset | the Iceberg catalog: a SQL catalog's database (`postgresql+psycopg2://user@host:port/db`) or a REST catalog (`https://host/path`, token in `CLIPFLOW_ICEBERG_TOKEN` or OAuth2 `CLIPFLOW_ICEBERG_CREDENTIAL`); read when the warehouse connects, never shown |
| `CLIPFLOW_ICEBERG_TOKEN` / `_CREDENTIAL` | unset | a REST catalog's bearer token or OAuth2 `client_id:client_secret` (models/core/iceberg_catalog.py); never shown |
| `CLIPFLOW_RUN_SLOTS` | 2 with `CLIPFLOW_WAREHOUSE`, else 1 | runs at once in the Dagster instance `clipflow` creates (written into its `dagster.yaml` once) |
| `CLIPFLOW_ICEBERG_CACHE_GB` | 20 | local copies of the Iceberg warehouse's data files (0: read S3 directly) |
| `AWS_ENDPOINT_URL_S3` | unset | an S3-compatible server (`http(s)://host:port`) for the warehouse and, through boto3, MLflow; unset: AWS |

Secrets (`CLIPFLOW_METADATA_API_KEY`, webhook secrets, passwords inside `CLIPFLOW_REDIS`,
the S3 keys `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` that boto3 reads) are read by the resource that sends them, when it sends them, and are never part of
`Settings`, run config or logs.

The variables above are deployment configuration and trusted. A run's config (the
launchpad) may also name paths and a local MLflow store; `check_path` and
`check_sqlite_uri` say which values it may take (one line, absolute, no `..`).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote, urlsplit

# Telemetry of the libraries we use would try to reach the internet: off by default.
_QUIET = {
    "GX_ANALYTICS_ENABLED": "false",
    "FEAST_USAGE": "False",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "DAGSTER_DISABLE_TELEMETRY": "true",
    "ITERATIVE_DO_NOT_TRACK": "1",  # Evidently's telemetry (iterative-telemetry)
    # OpenMP threads that spin while waiting starve each other on a busy 2-core machine:
    # XGBoost with 2 threads measured 10x slower than with 1 under load; passive waits fix it
    "OMP_WAIT_POLICY": "PASSIVE",
}

# The instance `clipflow` creates: no telemetry; `run_slots` runs at once; each lane of a day
# (assets.constants DATA_LANE, MODEL_LANE) is a pool of one run, so the days of a backfill
# keep date order within a lane (see pipelines.jobs).
_DAGSTER_YAML = """\
telemetry:
  enabled: false
concurrency:
  runs:
    max_concurrent_runs: {slots}
  pools:
    granularity: run
    default_limit: 1
"""
MAX_RUN_SLOTS = 64


def run_slots(s: Settings) -> int:
    """How many runs the instance `clipflow` creates runs at once: `CLIPFLOW_RUN_SLOTS`
    (1 to 64), by default 2 on the Iceberg warehouse (concurrent writers are safe: a day's
    data lane runs beside the day before's model lane) and 1 on the local one (one writer
    per home: a second run would only wait for the writer lock)."""
    raw = os.environ.get("CLIPFLOW_RUN_SLOTS", "").strip()
    if not raw:
        return 2 if s.warehouse_uri else 1
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_RUN_SLOTS:
        raise ValueError(
            f"CLIPFLOW_RUN_SLOTS={raw[:20]!r}: expected a whole number, 1 to {MAX_RUN_SLOTS}"
        )
    return int(raw)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # NUL, newline, tab, escape, DEL, C1
MAX_PATH = 4096
SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")


def check_path(value: str, suffixes: tuple[str, ...] = ()) -> str:
    """`value` if a run may point at it, else ValueError: one line of printable characters
    (no NUL or newline), absolute (a relative path would depend on the worker's directory),
    without a `..` step (the path shown is the path used) and, for a file, ending in one
    of `suffixes`. Quotes, spaces, `%`, `*`, `?`, `[` are fine. Empty passes: the default."""
    if value == "":
        return value
    if _CONTROL.search(value):
        raise ValueError(f"{value!r}: a control character (NUL, newline, ...) in a path")
    if len(value) > MAX_PATH:
        raise ValueError(f"a path of {len(value)} characters (at most {MAX_PATH})")
    path = Path(value)
    if not path.is_absolute():
        raise ValueError(f"{value!r}: expected an absolute path")
    if ".." in path.parts:
        raise ValueError(f"{value!r}: a `..` step in a path")
    if suffixes and path.suffix.lower() not in suffixes:
        raise ValueError(f"{value!r}: expected a file name ending in {' or '.join(suffixes)}")
    return value


_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")  # S3's bucket name rules
_PREFIX = re.compile(r"^[A-Za-z0-9._\-/]*$")


def check_artifact_uri(value: str, name: str = "CLIPFLOW_MLFLOW_ARTIFACTS") -> str:
    """`value` if it is `s3://bucket[/prefix]` (an S3 bucket name; a prefix of letters,
    digits, `._-/`, no `..`) or empty, else ValueError naming the variable `name`.
    Credentials never go in it: they come from the environment (`AWS_ACCESS_KEY_ID`, ...)."""
    if value == "":
        return value
    if not value.startswith("s3://"):
        raise ValueError(f"{name}: expected s3://bucket[/prefix]")
    bucket, _, prefix = value.removeprefix("s3://").partition("/")
    if not _BUCKET.match(bucket) or ".." in bucket:
        # the value is not echoed: a mistaken `s3://key:secret@bucket` would show its secret
        raise ValueError(f"{name}: the bucket is not an S3 bucket name (3-63 of a-z 0-9 . -)")
    if not _PREFIX.match(prefix) or ".." in prefix.split("/"):
        raise ValueError(f"{name}: the prefix may hold letters, digits, '.', '_', '-', '/' "
                         "and no '..' segment")  # fmt: skip
    return value.rstrip("/")


def check_sqlite_uri(value: str) -> str:
    """`value` if it names a local SQLite MLflow store (`sqlite:////abs/path.db`, the path
    as `check_path` wants it, without `%`, `?` or `#`), else ValueError. A server or
    database URI is refused: the MLflow client sends the deployment's credentials
    (`MLFLOW_TRACKING_TOKEN`, a password in the URI) to it, so it is deployment config."""
    if value == "":
        return value
    if not value.startswith("sqlite:///"):
        raise ValueError(
            f"{value[:80]!r}: only a local store, sqlite:////abs/path.db, may be set at launch; "
            "a tracking server or database is deployment config (MLFLOW_TRACKING_URI)"
        )
    path = value.removeprefix("sqlite:///")
    if any(c in path for c in "%?#"):
        raise ValueError(f"{value!r}: `%`, `?` and `#` are URI syntax, not part of the path")
    check_path(path, SQLITE_SUFFIXES)
    return value


def sqlite_uri(path: Path) -> str:
    """The SQLAlchemy URI of a SQLite file: `%`, `?` and `#` in the path percent-encoded
    (unencoded, SQLAlchemy would cut the path at `?` or decode a `%41`); other paths plain."""
    text = str(path)
    if any(c in text for c in "%?#"):
        text = quote(text, safe="/ '\"[]*!$&()+,;=@~:")
    return f"sqlite:///{text}"


@dataclass(frozen=True)
class Settings:
    env: str
    home: Path
    landing_dir: Path
    redis: str | None
    mlflow_uri: str
    dagster_home: Path
    retrain_cooldown_days: int = 7  # retrain-on-drift: at most once per this many days
    nightly_at: str = "02:00"  # HH:MM UTC of the nightly schedule
    webhooks_file: Path | None = None  # CLIPFLOW_WEBHOOKS; None: $CLIPFLOW_HOME/webhooks.yaml
    metadata_url: str = ""  # CLIPFLOW_METADATA_URL; empty: no metadata API
    feast_stock_read: bool = False  # CLIPFLOW_FEAST_STOCK_READ=1: Feast's own Redis reads
    future_skew_s: float = 300.0  # CLIPFLOW_FUTURE_SKEW_S: a later timestamp is quarantined
    mlflow_artifacts: str = ""  # CLIPFLOW_MLFLOW_ARTIFACTS: s3://bucket[/prefix]; "": local
    warehouse_uri: str = ""  # CLIPFLOW_WAREHOUSE: s3://bucket[/prefix] (Iceberg); "": local

    @property
    def future_skew(self) -> timedelta:
        return timedelta(seconds=self.future_skew_s)


MAX_FUTURE_SKEW_S = 86_400.0


def future_skew_s(value: str) -> float:
    """`CLIPFLOW_FUTURE_SKEW_S` as seconds (empty: 300), else ValueError naming it: a
    finite number from 0 to one day (a larger skew would let next week's rows online)."""
    if not value.strip():
        return 300.0
    try:
        secs = float(value)
    except ValueError:
        raise ValueError(
            f"CLIPFLOW_FUTURE_SKEW_S={value[:40]!r}: not a number of seconds"
        ) from None
    if not (math.isfinite(secs) and 0 <= secs <= MAX_FUTURE_SKEW_S):
        raise ValueError(
            f"CLIPFLOW_FUTURE_SKEW_S={value[:40]!r}: expected 0 to {MAX_FUTURE_SKEW_S:g} seconds"
        )
    return secs


def current(home: str | os.PathLike | None = None) -> Settings:
    """Resolve the environment from the process environment (call at run time). `home`
    overrides `CLIPFLOW_HOME`, and every path derived from the home follows it."""
    env = os.environ.get("CLIPFLOW_ENV") or (
        "ci" if os.environ.get("CI", "").lower() == "true" else "local"
    )
    home = Path(home or os.environ.get("CLIPFLOW_HOME") or ".clipflow").resolve()
    landing = Path(os.environ.get("CLIPFLOW_LANDING_DIR") or "data/landing").resolve()
    mlflow_uri = os.environ.get("MLFLOW_TRACKING_URI") or sqlite_uri(home / "mlflow.db")
    dagster_home = Path(os.environ.get("DAGSTER_HOME") or home / "dagster").resolve()
    cooldown = int(os.environ.get("CLIPFLOW_RETRAIN_COOLDOWN_DAYS") or 7)
    return Settings(
        env,
        home,
        landing,
        os.environ.get("CLIPFLOW_REDIS") or None,
        mlflow_uri,
        dagster_home,
        cooldown,
        os.environ.get("CLIPFLOW_NIGHTLY_AT", "").strip() or "02:00",
        Path(os.environ["CLIPFLOW_WEBHOOKS"]).resolve()
        if os.environ.get("CLIPFLOW_WEBHOOKS")
        else None,
        os.environ.get("CLIPFLOW_METADATA_URL", "").strip(),
        os.environ.get("CLIPFLOW_FEAST_STOCK_READ") == "1",
        future_skew_s(os.environ.get("CLIPFLOW_FUTURE_SKEW_S", "")),
        check_artifact_uri(os.environ.get("CLIPFLOW_MLFLOW_ARTIFACTS", "").strip()),
        check_artifact_uri(os.environ.get("CLIPFLOW_WAREHOUSE", "").strip(), "CLIPFLOW_WAREHOUSE"),
    )


def quiet_telemetry() -> None:
    """Process defaults, unless the user set them: library telemetry off, passive OpenMP."""
    for k, v in _QUIET.items():
        os.environ.setdefault(k, v)


def prepare_process(
    home: str | os.PathLike | None = None, landing_dir: str | os.PathLike | None = None
) -> Settings:
    """Set the process environment for a CLI command and create the Dagster home.

    Explicit arguments win over the environment; the result is exported so that Dagster
    resources, subprocesses (`dagster dev`) and Feast see the same values.
    """
    quiet_telemetry()
    if home is not None:
        os.environ["CLIPFLOW_HOME"] = str(Path(home).resolve())
    if landing_dir is not None:
        os.environ["CLIPFLOW_LANDING_DIR"] = str(Path(landing_dir).resolve())
    s = current()
    os.environ["CLIPFLOW_HOME"] = str(s.home)
    os.environ["CLIPFLOW_LANDING_DIR"] = str(s.landing_dir)
    os.environ["DAGSTER_HOME"] = str(s.dagster_home)
    s.dagster_home.mkdir(parents=True, exist_ok=True)
    cfg = s.dagster_home / "dagster.yaml"
    if not cfg.exists():
        cfg.write_text(_DAGSTER_YAML.format(slots=run_slots(s)))
    return s


class IcebergConfigError(ValueError):
    """The Iceberg warehouse is configured wrongly (the message names the variable)."""


def endpoint_from_env() -> str:
    """`AWS_ENDPOINT_URL_S3` (else `AWS_ENDPOINT_URL`) if it is `http(s)://host[:port]`;
    "" when neither is set (AWS itself). Else IcebergConfigError naming the variable."""
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):
        value = os.environ.get(name, "").strip()
        if not value:
            continue
        parts = urlsplit(value)
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.username
            or parts.path not in ("", "/")
            or parts.query
            or parts.fragment
        ):
            raise IcebergConfigError(f"{name}: expected http(s)://host[:port]")
        return value.rstrip("/")
    return ""


def catalog_from_env() -> str:
    """`CLIPFLOW_ICEBERG_CATALOG`: a SQLAlchemy database URL, or an Iceberg REST catalog's
    `http(s)://host[:port][/path]` (no user or password in it: its token comes from
    `CLIPFLOW_ICEBERG_TOKEN`/`_CREDENTIAL`); IcebergConfigError (without the value, which
    may hold a password) when unset or neither."""
    value = os.environ.get("CLIPFLOW_ICEBERG_CATALOG", "").strip()
    if not value:
        raise IcebergConfigError(
            "CLIPFLOW_ICEBERG_CATALOG is not set: the Iceberg warehouse (CLIPFLOW_WAREHOUSE) "
            "needs its catalog: a database, e.g. postgresql+psycopg2://user@host:5432/iceberg, "
            "or a REST catalog, https://host/api/catalog"
        )
    if value.startswith(("http://", "https://")):
        parts = urlsplit(value)
        if not parts.hostname or "@" in parts.netloc or parts.query or parts.fragment:
            raise IcebergConfigError(
                "CLIPFLOW_ICEBERG_CATALOG: a REST catalog is http(s)://host[:port][/path], "
                "without user, password, query or fragment (the token: CLIPFLOW_ICEBERG_TOKEN)"
            )
        return value.rstrip("/")
    if not re.match(r"^(postgresql|sqlite)(\+\w+)?://", value):
        raise IcebergConfigError(
            "CLIPFLOW_ICEBERG_CATALOG: expected a postgresql:// (or sqlite://) database URL "
            "or a REST catalog's http(s):// URL"
        )
    return value


def bounded_catalog_url(uri: str) -> str:
    """A PostgreSQL catalog URL with a connect timeout and a statement timeout (unless the
    URL sets them): every call to the catalog is bounded."""
    from sqlalchemy.engine import make_url

    url = make_url(uri)
    if url.get_backend_name() != "postgresql":
        return uri
    bounds = {"connect_timeout": "10", "options": "-c statement_timeout=60000"}  # 10 s, 60 s
    url = url.update_query_dict({k: v for k, v in bounds.items() if k not in url.query})
    return url.render_as_string(hide_password=False)


def iceberg_cache_bytes() -> int:
    """`CLIPFLOW_ICEBERG_CACHE_GB` (default 20) in bytes: the local copies of the Iceberg
    warehouse's data files (models/core/object_store.FileCache); 0 reads S3 directly."""
    raw = os.environ.get("CLIPFLOW_ICEBERG_CACHE_GB", "").strip() or "20"
    try:
        gb = float(raw)
    except ValueError:
        raise ValueError(f"CLIPFLOW_ICEBERG_CACHE_GB={raw[:40]!r}: not a number of GB") from None
    if not 0 <= gb <= 1e6 or math.isnan(gb):
        raise ValueError(f"CLIPFLOW_ICEBERG_CACHE_GB={raw[:40]!r}: expected 0 to 1000000 GB")
    return int(gb * 2**30)
