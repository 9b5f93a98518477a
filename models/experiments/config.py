"""A/B experiments: the `experiments.yaml` config and deterministic variant assignment.

Assignment (also what the synthetic generator, `models.synthetic.experiments`, uses):
a user's bucket is the first 8 bytes of sha256(f"{experiment_id}:{user_id}"), big-endian,
divided by 2**64, and the user gets the first variant whose cumulative weight exceeds it.
The bucket depends on the experiment id, so two experiments split users independently.

`load_experiments` validates each experiment on its own: a bad one becomes a `ConfigError`
naming the experiment and the field, and the others still load. Keys the contract does not
name (an `owner`, a `description`) are ignored. Timestamps without an offset are UTC.

The analysis method (models/experiments/decision.py; README "A/B experiments"): `method`
`sequential` (the default: always-valid confidence sequences, a decision may come on any day
after `min_runtime_days`, default 7; `sequential_tuning_n`, the users of all arms together
where the sequence is tightest, defaults to `min_sample_size` times the number of variants)
or `fixed_horizon` (one decision at the horizon: `end`, or the first day every variant has
`horizon_users` users, if set; before it the decision is `running`). `guardrail_metrics`
must not fall: one significantly down blocks a `ship`.

An `experiment_id` names report files, so it is letters, digits, `_`, `-` and `.` (not
first), at most 128: `../x`, `a/b` or a quote are refused. Variant and metric names are
data (quoted where they reach SQL) but one line of printable text; an MLflow alias is
letters, digits, `_` and `-` (MLflow's own rule).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

REQUIRED = (
    "experiment_id",
    "name",
    "variants",
    "start",
    "end",
    "primary_metric",
    "min_sample_size",
    "confidence_level",
)
WEIGHT_TOLERANCE = 1e-9
SAFE_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")  # fullmatch
ALIAS = re.compile(r"[A-Za-z0-9_-]{1,255}")  # fullmatch
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
METHODS = ("sequential", "fixed_horizon")
MIN_RUNTIME_DAYS = 7  # one weekly cycle


@dataclass(frozen=True)
class ExperimentConfig:
    experiment_id: str
    name: str
    variants: dict[str, float]  # ordered; the first is the control
    start: datetime
    end: datetime
    primary_metric: str
    min_sample_size: int
    confidence_level: float
    secondary_metrics: list[str] = field(default_factory=list)
    model_aliases: dict[str, str] = field(default_factory=dict)
    method: str = "sequential"
    min_runtime_days: int = MIN_RUNTIME_DAYS
    guardrail_metrics: list[str] = field(default_factory=list)
    sequential_tuning_n: int | None = None  # None: min_sample_size x variants
    horizon_users: int | None = None  # fixed_horizon: users per variant that end it early

    @property
    def tuning_n(self) -> int:
        """The users (all arms) where the confidence sequence is tightest."""
        return self.sequential_tuning_n or self.min_sample_size * len(self.variants)

    @property
    def control(self) -> str:
        return next(iter(self.variants))

    @property
    def treatments(self) -> list[str]:
        return list(self.variants)[1:]

    @property
    def metrics(self) -> list[str]:
        return [self.primary_metric, *self.secondary_metrics, *self.guardrail_metrics]

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], known_metrics: set[str] | None = None):
        """A validated config; raises `ValueError` listing every bad field."""
        errors: list[ConfigError] = []
        exp = _parse(raw, raw.get("experiment_id", "?"), known_metrics, errors)
        if exp is None:
            raise ValueError("; ".join(str(e) for e in errors))
        return exp

    def to_dict(self) -> dict:
        return {
            "experiment_id": self.experiment_id,
            "name": self.name,
            "variants": dict(self.variants),
            "model_aliases": dict(self.model_aliases),
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "primary_metric": self.primary_metric,
            "secondary_metrics": list(self.secondary_metrics),
            "min_sample_size": self.min_sample_size,
            "confidence_level": self.confidence_level,
            "method": self.method,
            "min_runtime_days": self.min_runtime_days,
            "guardrail_metrics": list(self.guardrail_metrics),
            "sequential_tuning_n": self.sequential_tuning_n,
            "horizon_users": self.horizon_users,
        }


@dataclass(frozen=True)
class ConfigError:
    experiment: str | int  # the experiment_id, or its index in the list when it has none
    field: str  # the offending key, or the file name for a file that cannot be read
    message: str

    def __str__(self) -> str:
        return f"experiment {self.experiment!r}, field {self.field!r}: {self.message}"


# -- loading ----------------------------------------------------------------------------
def load_experiments(
    path: str | Path, known_metrics: set[str] | None = None
) -> tuple[list[ExperimentConfig], list[ConfigError]]:
    """The valid experiments of `experiments.yaml` and one error per bad field.

    A missing or empty file means no experiments. A file that is not YAML, or not a mapping
    with a list under `experiments`, is one `ConfigError` naming the file."""
    path = Path(path)
    if not path.exists():
        return [], []
    try:
        doc = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        return [], [ConfigError(path.name, str(path), f"not valid YAML: {e}")]
    if doc is None:
        return [], []
    items = doc.get("experiments") if isinstance(doc, dict) else None
    if items is None and isinstance(doc, dict) and "experiments" in doc:
        items = []
    if not isinstance(items, list):
        return [], [ConfigError(path.name, str(path), "expected a list under `experiments`")]

    configs: list[ExperimentConfig] = []
    errors: list[ConfigError] = []
    seen: set[str] = set()
    for i, raw in enumerate(items):
        if not isinstance(raw, dict):
            errors.append(ConfigError(i, "experiment", "each experiment must be a mapping"))
            continue
        eid = raw.get("experiment_id")
        label = eid if isinstance(eid, str) and eid.strip() else i
        if isinstance(label, str) and label in seen:
            errors.append(ConfigError(label, "experiment_id", "duplicate experiment_id"))
            continue
        exp = _parse(raw, label, known_metrics, errors)
        if exp is not None:
            seen.add(exp.experiment_id)
            configs.append(exp)
    return configs, errors


def _parse(raw: Mapping, label, known_metrics, errors: list[ConfigError]):
    """An `ExperimentConfig`, or None after appending this experiment's errors."""
    before = len(errors)

    def bad(name: str, message: str) -> None:
        errors.append(ConfigError(label, name, message))

    for name in REQUIRED:
        if raw.get(name) is None:
            bad(name, "required")
    for name in ("experiment_id", "name", "primary_metric"):
        if raw.get(name) is not None and not _text(raw[name]):
            bad(name, "must be a non-empty string")
    eid = raw.get("experiment_id")
    if _text(eid) and not SAFE_ID.fullmatch(eid):
        bad(
            "experiment_id",
            "use letters, digits, '_', '-' and '.' (not first), at most 128 "
            "(it names report files)",
        )
    for name in ("name", "primary_metric"):
        if _text(raw.get(name)) and _CONTROL.search(raw[name]):
            bad(name, "must be one line of printable text")

    variants = _variants(raw.get("variants"), bad) if raw.get("variants") is not None else None
    start = _timestamp(raw.get("start"), "start", bad)
    end = _timestamp(raw.get("end"), "end", bad)
    if start is not None and end is not None and not start < end:
        bad("end", "end must be after start")

    conf = raw.get("confidence_level")
    if conf is not None and not (_number(conf) and 0 < conf < 1):
        bad("confidence_level", "must be a number strictly between 0 and 1")
    mss = raw.get("min_sample_size")
    if mss is not None and not (_int(mss) and mss >= 1):
        bad("min_sample_size", "must be an integer >= 1 (users per variant)")

    secondary = raw.get("secondary_metrics") or []
    if not (isinstance(secondary, list) and all(_line(m) for m in secondary)):
        bad("secondary_metrics", "must be a list of metric names")
        secondary = []
    elif len(set(secondary)) != len(secondary) or raw.get("primary_metric") in secondary:
        bad("secondary_metrics", "metrics must be distinct and differ from primary_metric")
    guardrails = raw.get("guardrail_metrics") or []
    if not (isinstance(guardrails, list) and all(_line(m) for m in guardrails)):
        bad("guardrail_metrics", "must be a list of metric names")
        guardrails = []
    elif len(set(guardrails)) != len(guardrails) or set(guardrails) & {
        raw.get("primary_metric"),
        *secondary,
    }:
        bad("guardrail_metrics", "metrics must be distinct and not primary or secondary ones")
    method = raw.get("method", "sequential")
    if method not in METHODS:
        bad("method", f"must be one of {list(METHODS)}, got {method!r}")
    runtime = raw.get("min_runtime_days", MIN_RUNTIME_DAYS)
    if not (_int(runtime) and runtime >= 0):
        bad("min_runtime_days", "must be an integer >= 0 (days)")
    for name in ("sequential_tuning_n", "horizon_users"):
        if raw.get(name) is not None and not (_int(raw[name]) and raw[name] >= 1):
            bad(name, "must be an integer >= 1 (users)")
    if raw.get("horizon_users") is not None and method != "fixed_horizon":
        bad("horizon_users", "only a fixed_horizon experiment has a horizon")
    if known_metrics is not None:
        pm = raw.get("primary_metric")
        if _text(pm) and pm not in known_metrics:
            bad("primary_metric", f"unknown metric {pm!r}; known: {sorted(known_metrics)}")
        for name, listed in (("secondary_metrics", secondary), ("guardrail_metrics", guardrails)):
            unknown = [m for m in listed if m not in known_metrics]
            if unknown:
                bad(name, f"unknown metrics {unknown}; known: {sorted(known_metrics)}")

    aliases = raw.get("model_aliases") or {}
    if not isinstance(aliases, dict) or not all(_text(v) for v in aliases.values()):
        bad("model_aliases", "must map variant -> MLflow alias (string)")
    elif not all(ALIAS.fullmatch(v) for v in aliases.values()):
        bad("model_aliases", "an MLflow alias is letters, digits, '_' and '-'")
    elif variants is not None and set(aliases) - set(variants):
        bad(
            "model_aliases",
            f"keys {sorted(map(str, set(aliases) - set(variants)))} are not variants",
        )

    if len(errors) > before:
        return None
    return ExperimentConfig(
        experiment_id=raw["experiment_id"],
        name=raw["name"],
        variants=variants,
        start=start,
        end=end,
        primary_metric=raw["primary_metric"],
        min_sample_size=int(mss),
        confidence_level=float(conf),
        secondary_metrics=list(secondary),
        model_aliases=dict(aliases),
        method=method,
        min_runtime_days=int(runtime),
        guardrail_metrics=list(guardrails),
        sequential_tuning_n=raw.get("sequential_tuning_n"),
        horizon_users=raw.get("horizon_users"),
    )


def _text(v) -> bool:
    return isinstance(v, str) and bool(v.strip())


def _line(v) -> bool:
    """A non-empty string of one line of printable text."""
    return _text(v) and not _CONTROL.search(v)


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _variants(v, bad) -> dict[str, float] | None:
    if not isinstance(v, dict):
        bad("variants", "must be a mapping variant -> traffic weight")
        return None
    if len(v) < 2:
        bad("variants", "needs at least 2 variants (the first is the control)")
        return None
    if not all(_line(k) for k in v):
        bad("variants", "variant names must be non-empty strings of one printable line")
        return None
    if not all(_number(w) and w > 0 for w in v.values()):
        bad("variants", "weights must be positive numbers")
        return None
    total = math.fsum(float(w) for w in v.values())
    if abs(total - 1.0) > WEIGHT_TOLERANCE:
        bad("variants", f"weights must sum to 1 (they sum to {total!r})")
        return None
    return {k: float(w) for k, w in v.items()}


def _timestamp(v, name: str, bad) -> datetime | None:
    if v is None:
        return None
    try:
        return parse_timestamp(v)
    except (TypeError, ValueError):
        bad(name, f"not a timestamp: {v!r}")
        return None


def parse_timestamp(v: str | date | datetime) -> datetime:
    """A UTC-aware datetime from an ISO string (`Z` or offset), a date or a datetime;
    a value without an offset is taken as UTC."""
    if isinstance(v, datetime):
        ts = v
    elif isinstance(v, date):
        ts = datetime(v.year, v.month, v.day)
    elif isinstance(v, str):
        ts = datetime.fromisoformat(v.strip().replace("Z", "+00:00"))
    else:
        raise TypeError(f"not a timestamp: {v!r}")
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


# -- assignment -------------------------------------------------------------------------
def _id_and_weights(experiment: ExperimentConfig | Mapping) -> tuple[str, Mapping[str, float]]:
    if isinstance(experiment, ExperimentConfig):
        return experiment.experiment_id, experiment.variants
    return str(experiment["experiment_id"]), experiment["variants"]


def assign_buckets(experiment_id: str, user_ids: Iterable[str]) -> np.ndarray:
    """Each user's bucket in [0, 1): sha256(f"{experiment_id}:{user_id}")[:8] / 2**64."""
    prefix = f"{experiment_id}:"
    raw = b"".join(hashlib.sha256(f"{prefix}{u}".encode()).digest()[:8] for u in user_ids)
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64) / 2.0**64


def variants_for_buckets(buckets: np.ndarray, variants: Mapping[str, float]) -> np.ndarray:
    """The variant of each bucket: the first whose cumulative weight exceeds it."""
    names = list(variants)
    cumulative = np.cumsum([float(variants[n]) for n in names])
    idx = np.minimum(np.searchsorted(cumulative, buckets, side="right"), len(names) - 1)
    return np.array(names, dtype=object)[idx]


def assign_variants(experiment: ExperimentConfig | Mapping, user_ids: Iterable[str]) -> np.ndarray:
    """The variant of every user in `user_ids` (an object array of variant names)."""
    experiment_id, weights = _id_and_weights(experiment)
    return variants_for_buckets(assign_buckets(experiment_id, user_ids), weights)


def assign_variant(experiment: ExperimentConfig | Mapping, user_id: str) -> str:
    """The variant serving `user_id` in `experiment` (a config or a mapping with
    `experiment_id` and `variants`); the same answer on every call and every machine."""
    return str(assign_variants(experiment, [user_id])[0])
