"""Online scoring for apps: experiment routing, precomputed scores, on-the-fly fallback.

`Scorer.scores(clip_ids, user_id)`:
1. routing: the active experiment (one whose variants map to model aliases and whose
   [start, end) holds now; the latest-starting one when several do) assigns the user a
   variant with `models.experiments.config.assign_variant`; the variant's alias serves. Without
   an active experiment, or without a user, `champion` serves.
2. the score: the pipeline's precomputed champion score from the online feature view
   `clip_scores` (one Feast lookup for all ids) when the alias is `champion` and the
   score was made by the version the alias holds now; otherwise the clip's online
   features (feature service `clip_quality_v1`) scored with the alias's model, loaded from
   the registry by alias, cached, and reloaded when the alias moves (the alias is
   re-read at most every `alias_check_s` seconds).
3. a clip with neither an online score nor online features is unknown.

Faults: an alias that is not set (a challenger deleted by a promotion mid-experiment) falls
back to `champion`, and the route says so (`fallback`). A registry that does not answer is
not an unset alias: the alias keeps what it was last seen holding (the last model loaded,
or unset, so its users keep the champion's fallback), `registry_error` says why, and a
variant's alias never seen before is served by the champion, the route saying why. With
no champion loaded yet `ModelUnavailable` is raised (the API answers 503). A version whose
artifact does not load is quarantined: the last good model keeps serving, and that version
is not tried again until the alias moves. The experiment's analysis binds each variant to
the version its alias (or, unset, the champion's) held: what this routing served
(models/experiments/promotion.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from models.core.names import CHAMPION, FEATURE_SERVICE, MODEL_NAME, SCORES_VIEW
from models.experiments.config import ExperimentConfig, assign_variant

INTERVAL_FIELDS = ("score_low", "score_high", "interval_level")  # null: no interval known
SCORE_FEATURES = [
    "clip_scores:score", "clip_scores:model_version", *(f"clip_scores:{f}" for f in INTERVAL_FIELDS)
]  # fmt: skip
_log = logging.getLogger("clipflow.scorer")


class ModelUnavailable(RuntimeError):
    """No model can serve the alias: the registry does not answer and none is loaded yet."""


def active_experiment(experiments: Sequence[ExperimentConfig], now: datetime):
    live = [e for e in experiments if e.model_aliases and e.start <= now < e.end]
    return max(live, key=lambda e: e.start) if live else None


@dataclass
class Route:
    experiment_id: str | None
    variant: str | None
    alias: str
    fallback: str | None = None  # why another alias than the variant's serves


class Scorer:
    def __init__(
        self,
        store,
        tracking_uri: str,
        experiments: Sequence[ExperimentConfig] = (),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        alias_check_s: float = 10.0,
    ):
        self.store = store
        self.service = store.get_feature_service(FEATURE_SERVICE, allow_cache=True)
        # a Feast registry applied before the view had the interval fields (#17) serves the
        # score without them until the pipeline re-applies it: ask only for what it has
        view = store.get_feature_view(SCORES_VIEW, allow_registry_cache=True)
        have = {f.name for f in view.features}
        self.score_features = [f for f in SCORE_FEATURES if f.split(":")[1] in have]
        self.tracking_uri = tracking_uri
        self.experiments = list(experiments)
        self.clock = clock
        self.alias_check_s = alias_check_s
        self._models: dict[str, tuple] = {}  # alias -> (model or None, checked at)
        self._bad: dict[str, str] = {}  # alias -> the version whose artifact did not load
        self._unknown: set[str] = set()  # aliases the registry was down for before any answer
        self._intervals: dict[str, dict | None] = {}  # version -> its intervals.json (or None)
        self.registry_error: str | None = None
        self._lock = threading.Lock()

    # -- routing and models --------------------------------------------------------------
    def route(self, user_id: str | None) -> Route:
        exp = active_experiment(self.experiments, self.clock()) if user_id else None
        if exp is None:
            return Route(None, None, CHAMPION)
        variant = assign_variant(exp, user_id)
        return Route(exp.experiment_id, variant, exp.model_aliases.get(variant, CHAMPION))

    def due(self, alias: str) -> bool:
        """Whether `model(alias)` would ask the registry now (the API then calls it off the
        event loop)."""
        cached = self._models.get(alias)
        return cached is None or time.monotonic() - cached[1] >= self.alias_check_s

    def model(self, alias: str):
        """The alias's model (None when the alias is not set), reloaded when it moved; the
        last good one while the registry is down or the new version does not load."""
        now = time.monotonic()
        cached = self._models.get(alias)
        if cached and now - cached[1] < self.alias_check_s:
            return cached[0]
        with self._lock:
            cached = self._models.get(alias)
            if cached and now - cached[1] < self.alias_check_s:
                return cached[0]
            last = cached[0] if cached else None
            try:
                version = _alias_version(self.tracking_uri, alias)
            except Exception as e:  # noqa: BLE001 - the registry is down, not the alias unset
                self.registry_error = f"{type(e).__name__}"
                if cached is None and alias == CHAMPION:
                    raise ModelUnavailable(
                        f"model registry unavailable ({type(e).__name__})"
                    ) from e
                if cached is None:
                    self._unknown.add(alias)  # not known to be set: the champion serves
                kept = f"keeps serving v{last.version}" if last else "unset: the champion serves"
                _log.warning("registry unavailable (%s): %s %s", type(e).__name__, alias, kept)
                self._models[alias] = (last, now)
                return last
            self.registry_error = None
            self._unknown.discard(alias)
            model = last
            if version is None:
                model = None
            elif (model is None or str(model.version) != version) and (
                self._bad.get(alias) != version
            ):
                model = self._load(alias, version, last)
            self._models[alias] = (model, now)
            return model

    def _load(self, alias: str, version: str, last):
        from models.training.registry import load_by_alias

        try:
            model = load_by_alias(alias, self.tracking_uri)
        except Exception as e:  # noqa: BLE001 - a corrupt artifact: quarantine that version
            self._bad[alias] = version
            _log.error("version %s of %s does not load (%s): quarantined, %s", version, alias,
                       type(e).__name__, f"v{last.version} keeps serving" if last else "no model")  # fmt: skip
            if last is None:
                raise ModelUnavailable(f"{alias} version {version} does not load") from e
            return last
        if model is not None:
            self._intervals[str(model.version)] = self._load_intervals(str(model.version))
        return model

    def _load_intervals(self, version: str) -> dict | None:
        """The version's interval calibration (None: registered without one, or unreadable:
        its computed scores then carry no interval, never a made-up one)."""
        from models.training.intervals import INTERVALS_FILE
        from models.training.registry import load_document

        try:
            return load_document(version, INTERVALS_FILE, self.tracking_uri)
        except Exception as e:  # noqa: BLE001 - the model serves; only its intervals are lost
            _log.warning("intervals of version %s unreadable (%s): computed scores carry none",
                         version, type(e).__name__)  # fmt: skip
            return None

    def registry_status(self) -> str:
        """`ok` when the registry answers now (not from the cache), else `down`."""
        try:
            _alias_version(self.tracking_uri, CHAMPION)
            return "ok"
        except Exception:  # noqa: BLE001
            return "down"

    def versions(self) -> dict[str, str]:
        return {a: str(m.version) for a, (m, _) in self._models.items() if m is not None}

    # -- scores --------------------------------------------------------------------------
    def scores(self, clip_ids: Sequence[str], user_id: str | None = None) -> tuple[Route, list]:
        """(route, one dict or None per clip id): {clip_id, score, model_version, source}."""
        route = self.route(user_id)
        model = self.model(route.alias)
        if model is None and route.alias != CHAMPION:  # e.g. the challenger was promoted
            why = ("is not known (model registry unavailable)" if route.alias in self._unknown
                   else "is not set")  # fmt: skip
            route = Route(route.experiment_id, route.variant, CHAMPION,
                          f"alias {route.alias!r} {why}: champion serves")  # fmt: skip
            model = self.model(CHAMPION)
        out: list[dict | None] = [None] * len(clip_ids)
        todo = list(range(len(clip_ids)))
        if route.alias == CHAMPION:
            online = self.store.get_online_features(
                features=self.score_features, entity_rows=[{"clip_id": c} for c in clip_ids]
            ).to_dict()
            todo = []
            nulls = [None] * len(clip_ids)
            low, high, level = (online.get(f) or nulls for f in INTERVAL_FIELDS)
            for i, (s, v) in enumerate(zip(online["score"], online["model_version"], strict=True)):
                fresh = s is not None and (model is None or v == str(model.version))
                if fresh:
                    out[i] = _entry(clip_ids[i], s, v, "online", low[i], high[i], level[i])
                else:
                    todo.append(i)
        if todo and model is not None:
            self._compute(clip_ids, todo, model, out)
        return route, out

    def _compute(self, clip_ids: Sequence[str], idx: list[int], model, out: list) -> None:
        """Score the clips at `idx` from their online features (unknown ones stay None)."""
        from models.serving.scoring import score

        feats = self.store.get_online_features(
            features=self.service, entity_rows=[{"clip_id": clip_ids[i]} for i in idx]
        ).to_arrow()
        known = np.array([_has_features(feats, k) for k in range(feats.num_rows)], dtype=bool)
        if not known.any():
            return
        rows = feats.filter(pa.array(known))
        preds = score(model, rows)
        n, version = len(preds), str(model.version)
        low = high = [None] * n
        cal, level = self._intervals.get(version), None
        if cal is not None and "clip_age_hours" in rows.column_names:
            from models.training.intervals import DEFAULT_LEVEL, bounds

            lo, hi = bounds(cal, rows.column("clip_age_hours"), preds, DEFAULT_LEVEL)
            low, high, level = lo.tolist(), hi.tolist(), DEFAULT_LEVEL
        kept = [i for i, k in zip(idx, known, strict=True) if k]
        for j, (i, value) in enumerate(zip(kept, preds, strict=True)):
            out[i] = _entry(clip_ids[i], float(value), version, "computed", low[j], high[j], level)


def _has_features(table: pa.Table, row: int) -> bool:
    # the online store answers every id; an unknown clip has every feature missing
    return any(
        table.column(name)[row].is_valid for name in ("duration_s", "resolution", "views_1d")
    )


def _entry(clip_id: str, score, version, source: str, low=None, high=None, level=None) -> dict:
    return {
        "clip_id": clip_id,
        "score": float(score),
        "model_version": version,
        "source": source,
        "score_low": None if low is None else float(low),
        "score_high": None if high is None else float(high),
        "interval_level": None if level is None else float(level),
    }


def _alias_version(tracking_uri: str, alias: str) -> str | None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        return str(client.get_model_version_by_alias(MODEL_NAME, alias).version)
    except MlflowException as e:  # only "no such alias or model" means unset; the rest raises
        if e.error_code in ("INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST"):
            return None
        raise
