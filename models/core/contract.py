"""The landing-data contract (docs/contract.md §1), declared once.

Every table is a tuple of `Field`s; every field carries its type and the rules it must
follow. The same declarations drive:

* the row-level quarantine (`models.ingest.day`), compiled to one vectorised DuckDB
  expression per rule (`Rule.sql`), and
* the Great Expectations suites run as blocking asset checks (`Rule.expectation`).

Rules that need another table (a clip must exist, a window ends after the clip was
created, one label per clip per time) are `TableRule`s: SQL over the joined row, and
checked by the ingestion itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

RESOLUTIONS = ("480p", "720p", "1080p", "1440p", "4K")
ASPECT_RATIOS = ("9:16", "1:1", "4:5", "16:9")

# DuckDB's trim strips the Unicode space separators (category Zs), nothing else
NOT_BLANK = r"[^\u0020\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]"
# A float column's values must be finite and fit float32, the models' feature type: +inf,
# -inf and finite values beyond this (which a float32 cast turns into inf) are refused.
FLOAT32_MAX = 3.4028234663852886e38
# A timestamp may lie at most this far beyond the time of ingestion (clocks of the systems
# that write landing files drift a little); `CLIPFLOW_FUTURE_SKEW_S` changes it.
DEFAULT_FUTURE_SKEW = timedelta(minutes=5)

# DuckDB type of each contract type (timestamps are UTC instants, stored as microseconds)
SQL_TYPES = {
    "string": "VARCHAR",
    "timestamp": "TIMESTAMPTZ",
    "float": "DOUBLE",
    "int": "BIGINT",
    "bool": "BOOLEAN",
}


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(value: Any) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


@dataclass(frozen=True)
class Rule:
    """A rule on one column: `sql` is true for a valid, non-null value."""

    kind: str  # non_empty | between | in_set | regex
    params: dict = field(default_factory=dict, hash=False, compare=False)

    def describe(self, column: str) -> str:
        p = self.params
        if self.kind == "non_empty":
            return f"{column} must be non-empty"
        if self.kind == "between":
            lo = (
                ""
                if p.get("min") is None
                else f"{p['min']} {'<' if p.get('strict_min') else '<='} "
            )
            hi = (
                ""
                if p.get("max") is None
                else f" {'<' if p.get('strict_max') else '<='} {p['max']}"
            )
            unbounded = p.get("float") and (p.get("min") is None or p.get("max") is None)
            finite = " and finite" if unbounded else ""  # the float32 range bounds the rest
            return f"{column} must be {lo}x{hi}{finite}".replace("  ", " ")
        if self.kind == "in_set":
            return f"{column} must be one of {', '.join(p['values'])}"
        if self.kind == "regex":
            return f"{column} must match {p['pattern']}"
        raise ValueError(self.kind)

    def sql(self, column: str) -> str:
        c, p = _q(column), self.params
        if self.kind == "non_empty":
            return f"length(trim({c})) > 0"
        if self.kind == "between":
            parts = []
            if p.get("min") is not None:
                parts.append(f"{c} {'>' if p.get('strict_min') else '>='} {_lit(p['min'])}")
            if p.get("max") is not None:
                parts.append(f"{c} {'<' if p.get('strict_max') else '<='} {_lit(p['max'])}")
            if p.get("float"):  # finite, in float32's range; NaN (> all in DuckDB) refused
                parts.append(f"{c} BETWEEN {-FLOAT32_MAX!r} AND {FLOAT32_MAX!r}")
                parts.append(f"NOT isnan({c})")
            return " AND ".join(parts)
        if self.kind == "in_set":
            return f"{c} IN ({', '.join(_lit(v) for v in p['values'])})"
        if self.kind == "regex":
            return f"regexp_full_match({c}, {_lit(p['pattern'])})"
        raise ValueError(self.kind)

    def expectation(self, column: str):
        """The Great Expectations 1.x expectation for this rule (GE imported lazily)."""
        import great_expectations.expectations as gxe

        p = self.params
        if self.kind == "non_empty":  # as `sql`: some character that trim keeps
            return gxe.ExpectColumnValuesToMatchRegex(column=column, regex=NOT_BLANK)
        if self.kind == "between":
            fl = bool(p.get("float"))  # as `sql`: a float is also within float32's range
            lo = -FLOAT32_MAX if fl and p.get("min") is None else p.get("min")
            hi = FLOAT32_MAX if fl and p.get("max") is None else p.get("max")
            if lo is None and hi is None:
                return None
            return gxe.ExpectColumnValuesToBeBetween(
                column=column,
                min_value=lo,
                max_value=hi,
                strict_min=bool(p.get("strict_min")),
                strict_max=bool(p.get("strict_max")),
            )
        if self.kind == "in_set":
            return gxe.ExpectColumnValuesToBeInSet(column=column, value_set=list(p["values"]))
        if self.kind == "regex":
            # GE searches with Python's re: anchor it to a full match, as DuckDB's is
            return gxe.ExpectColumnValuesToMatchRegex(
                column=column, regex=rf"\A(?:{p['pattern']})\Z"
            )
        raise ValueError(self.kind)


def non_empty() -> Rule:
    return Rule("non_empty")


def between(min=None, max=None, *, strict_min=False, strict_max=False, float=True) -> Rule:  # noqa: A002
    return Rule(
        "between",
        {
            "min": min,
            "max": max,
            "strict_min": strict_min,
            "strict_max": strict_max,
            "float": float,
        },
    )


def in_set(*values: str) -> Rule:
    return Rule("in_set", {"values": tuple(values)})


def regex(pattern: str) -> Rule:
    return Rule("regex", {"pattern": pattern})


@dataclass(frozen=True)
class Field:
    name: str
    type: str  # a key of SQL_TYPES
    rules: tuple[Rule, ...] = ()
    nullable: bool = False

    @property
    def sql_type(self) -> str:
        return SQL_TYPES[self.type]


@dataclass(frozen=True)
class NotAfter:
    """The upper bound of every timestamp: `now + skew`, `now` being the time of ingestion
    (wall-clock, so a backfill of a past day still refuses rows dated beyond today). A row
    dated later would be written online as the clip's newest value and block every real
    later write, so it is quarantined, with this rule's text as its reason."""

    now: datetime
    skew: timedelta = DEFAULT_FUTURE_SKEW

    def __post_init__(self):
        if self.now.tzinfo is None:
            raise ValueError(f"NotAfter: now must be timezone-aware, not {self.now!r}")
        if self.skew < timedelta(0):
            raise ValueError(f"NotAfter: skew must be >= 0, not {self.skew}")

    @property
    def bound(self) -> datetime:
        return self.now + self.skew

    def describe(self, column: str) -> str:
        secs = self.skew.total_seconds()
        at = self.bound.astimezone(UTC).isoformat().replace("+00:00", "Z")
        return f"{column} must be <= ingestion time + {secs:g} s ({at}): dated in the future"

    def sql(self, column: str) -> str:
        return f"{_q(column)} <= TIMESTAMPTZ {_lit(self.bound.astimezone(UTC).isoformat())}"

    def expectation(self, column: str):
        """The same bound as a GE expectation (on a pandas column of UTC timestamps)."""
        import great_expectations.expectations as gxe

        return gxe.ExpectColumnValuesToBeBetween(column=column, max_value=self.bound)


@dataclass(frozen=True)
class TableRule:
    """A rule over a row joined with other tables: `sql` is true for a valid row.

    Column names in `sql` refer to the row itself; `clip_created_at` is the clip's
    creation time from the clips warehouse (NULL when the clip is unknown).
    """

    name: str
    sql: str
    needs_clips: bool = False


@dataclass(frozen=True)
class Table:
    name: str  # the landing folder, relative to the landing dir
    warehouse: str  # the warehouse table it lands in
    fields: tuple[Field, ...]
    partition_by: str  # the timestamp column whose UTC date is the partition `ds`
    unique: tuple[str, ...] = ()  # a key that must be unique across all files
    order_by: tuple[str, ...] = ()  # which duplicate wins: first by these, then file name
    table_rules: tuple[TableRule, ...] = ()

    @property
    def columns(self) -> list[str]:
        return [f.name for f in self.fields]

    def field(self, name: str) -> Field:
        return next(f for f in self.fields if f.name == name)


_NON_NEG = between(0)
_NON_NEG_INT = between(0, float=False)

CLIPS = Table(
    name="clips",
    warehouse="clips",
    partition_by="created_at",
    unique=("clip_id",),
    order_by=("created_at",),
    fields=(
        Field("clip_id", "string", (non_empty(),)),
        Field("video_id", "string", (non_empty(),)),
        Field("creator_id", "string", (non_empty(),)),
        Field("created_at", "timestamp"),
        Field("duration_s", "float", (between(0, 600, strict_min=True),)),
        Field("resolution", "string", (in_set(*RESOLUTIONS),)),
        Field("bitrate_kbps", "float", (between(0, strict_min=True),)),
        Field("fps", "float", (between(0, 120, strict_min=True),)),
        Field("aspect_ratio", "string", (in_set(*ASPECT_RATIOS),)),
        Field("has_captions", "bool"),
        Field("speech_ratio", "float", (between(0, 1),)),
        Field("scene_cuts_per_min", "float", (_NON_NEG,)),
        Field("hook_strength", "float", (between(0, 1),)),
        Field("language", "string", (regex("^[a-z]{2}$"),)),
        Field("topic", "string", (non_empty(),)),
    ),
)

ENGAGEMENT = Table(
    name="engagement",
    warehouse="engagement",
    partition_by="event_timestamp",
    fields=(
        Field("clip_id", "string", (non_empty(),)),
        Field("event_timestamp", "timestamp"),
        Field("views", "int", (_NON_NEG_INT,)),
        Field("likes", "int", (_NON_NEG_INT,)),
        Field("shares", "int", (_NON_NEG_INT,)),
        Field("comments", "int", (_NON_NEG_INT,)),
        Field("completions", "int", (_NON_NEG_INT,)),
        Field("watch_time_s", "float", (_NON_NEG,)),
    ),
    table_rules=(
        TableRule("completions must be <= views", "completions <= views"),
        TableRule("clip_id must exist in clips", "clip_created_at IS NOT NULL", needs_clips=True),
        TableRule(
            "event_timestamp must be >= the clip's created_at",
            "clip_created_at IS NULL OR event_timestamp >= clip_created_at",
            needs_clips=True,
        ),
    ),
)

LABELS = Table(
    name="labels",
    warehouse="labels",
    partition_by="labeled_at",
    unique=("clip_id", "labeled_at"),
    order_by=(),
    fields=(
        Field("clip_id", "string", (non_empty(),)),
        Field("labeled_at", "timestamp"),
        Field("quality_score", "float", (between(0, 100),)),
    ),
    table_rules=(
        TableRule("clip_id must exist in clips", "clip_created_at IS NOT NULL", needs_clips=True),
        TableRule(
            "labeled_at must be >= the clip's created_at",
            "clip_created_at IS NULL OR labeled_at >= clip_created_at",
            needs_clips=True,
        ),
    ),
)

ASSIGNMENTS = Table(
    name="experiments/assignments",
    warehouse="assignments",
    partition_by="assigned_at",
    unique=("experiment_id", "user_id"),
    order_by=("assigned_at",),
    fields=(
        Field("experiment_id", "string", (non_empty(),)),
        Field("user_id", "string", (non_empty(),)),
        Field("variant", "string", (non_empty(),)),
        Field("assigned_at", "timestamp"),
    ),
)

USER_METRICS = Table(
    name="experiments/user_metrics",
    warehouse="user_metrics",
    partition_by="event_timestamp",
    fields=(
        Field("user_id", "string", (non_empty(),)),
        Field("event_timestamp", "timestamp"),
        Field("metric", "string", (non_empty(),)),
        Field("value", "float", (between(),)),
    ),
)

TABLES: dict[str, Table] = {
    t.warehouse: t for t in (CLIPS, ENGAGEMENT, LABELS, ASSIGNMENTS, USER_METRICS)
}
