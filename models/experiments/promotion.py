"""What an experiment's `ship` does to the model aliases, bound to the versions that served.

Which version served a variant comes from the alias log (models/training/aliases.py: every
alias move made by clipflow, and the A/B asset's daily stamp, kept as tags of the
registered model in the registry itself). A variant is served by its alias's version, or
by the champion's while its alias is not set (the scorer's fallback,
models/serving/scorer.py), so the binding sees what the API served.

When a move took effect: an entry with `as_of` (the end of the data day it was made for)
at `as_of`; one without (a training run does not say) at the earlier of when it happened
and the next stamped `as_of` after it, so a move made during the night's run for day d
counts from the end of day d in a backfill as in real time; never before a day already
stamped. A move at or after the end of the analysed day did not serve its data.

`bind_versions` is the record (JSON `model_versions` in the report); `promote_from_experiment`
acts on a decision with it: a `ship` promotes exactly the version that served the shipped
variant (not whatever holds `challenger` now), tagged `promoted_by_experiment`; a served
version that changed during the experiment makes the decision `invalid_model_change`
(after `invalid_srm`, before every other) and nothing is promoted. After its own
promotion an experiment's binding ends: the moves that promotion made are not changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from models.core.names import CHAMPION
from models.experiments.config import ExperimentConfig, parse_timestamp

INVALID_MODEL_CHANGE = "invalid_model_change"
DECISIONS = ("ship", "no_ship", "inconclusive", "invalid_srm", INVALID_MODEL_CHANGE)


def shipped_variant(result: dict) -> str | None:
    """The variant whose primary metric is significantly up (the largest lift, no guardrail
    down), when the decision is `ship`."""
    if result.get("decision") != "ship":
        return None
    ups = [m for m in result["metrics"] if m.get("primary") and m["significant"]
           and m["lift"] > 0 and not m.get("guardrail_blocked")]  # fmt: skip
    return max(ups, key=lambda m: m["lift"])["variant"] if ups else None


def effective_times(log: list[dict]) -> list[datetime]:
    """When each entry of the alias log took effect (see the module doc)."""
    stamps = [parse_timestamp(e["as_of"]) if e.get("as_of") else None for e in log]
    out, floor = [], None
    for i, entry in enumerate(log):
        when = stamps[i]
        if when is None:
            later = next((s for s in stamps[i + 1 :] if s is not None), None)
            at = parse_timestamp(entry["at"])
            when = at if later is None else min(at, later)
        if floor is not None:
            when = max(when, floor)
        if stamps[i] is not None:
            floor = when
        out.append(when)
    return out


def served_version(exp: ExperimentConfig, variant: str, held: dict) -> str | None:
    """The version serving `variant` under the aliases `held`: its alias's, else the
    champion's (the scorer's fallback); None when neither is set."""
    return held.get(exp.model_aliases.get(variant, CHAMPION)) or held.get(CHAMPION)


@dataclass(frozen=True)
class Binding:
    """Per variant, the versions that served it, each with when it began (None: already
    at the start); `known_from`: the start, or the first logged time when the log begins
    later (nothing before it is known); `shipped`: this experiment's own promotion entry."""

    versions: dict[str, list[tuple[str | None, datetime | None]]]
    known_from: datetime | None
    shipped: dict | None = None
    changed: list[str] = field(default_factory=list)

    def served(self, variant: str) -> str | None:
        seen = [v for v, _ in self.versions.get(variant, []) if v is not None]
        return seen[-1] if seen else None

    def to_dict(self) -> dict:
        return {
            "known_from": self.known_from.isoformat() if self.known_from else None,
            "changed": list(self.changed),
            "variants": {
                k: [{"version": v, "from": t.isoformat() if t else None} for v, t in vs]
                for k, vs in self.versions.items()
            },
        }


def bind_versions(log: list[dict], exp: ExperimentConfig, as_of: datetime) -> Binding:
    """Which versions served each variant of `exp` from its start to `as_of` (or its end,
    or its own promotion, whichever is first), from the alias log."""
    when = effective_times(log)
    end = min(as_of, exp.end)
    own = next((i for i, e in enumerate(log) if e.get("experiment") == exp.experiment_id), None)
    if own is not None and when[own] < end:
        end = when[own]
    before = [i for i, t in enumerate(when) if t <= exp.start]
    during = [i for i, t in enumerate(when) if exp.start < t < end]
    versions: dict[str, list] = {v: [] for v in exp.variants}
    known_from = exp.start if before else (when[during[0]] if during else None)
    for i in before[-1:] + during:
        since = None if when[i] <= exp.start else when[i]
        for variant, served in versions.items():
            version = served_version(exp, variant, log[i]["aliases"])
            if not served or served[-1][0] != version:
                served.append((version, since))
    changed = [v for v, vs in versions.items() if len({x for x, _ in vs if x is not None}) > 1]
    return Binding(versions, known_from, log[own] if own is not None else None, changed)


@dataclass(frozen=True)
class Promotion:
    """What an experiment's result did to the aliases: `version` became champion when
    `promoted`; `reason` says what happened, in words, either way; `decision` is the
    result's decision after the binding (`invalid_model_change` when a served version
    changed); `binding` the record of the served versions (None: no model aliases)."""

    promoted: bool
    version: str | None
    reason: str
    decision: str | None = None
    binding: Binding | None = None

    def report_fields(self) -> dict:
        """What the A/B JSON gains: the decision, `model_versions` and `promotion`."""
        fields = {"promotion": {"promoted": self.promoted, "version": self.version,
                                "reason": self.reason}}  # fmt: skip
        if self.binding is not None:
            fields["model_versions"] = self.binding.to_dict()
        return {**fields, "decision": self.decision} if self.decision else fields


def _changes(binding: Binding) -> str:
    parts = []
    for variant in binding.changed:
        steps = [f"v{v}" + (f" from {t:%Y-%m-%d %H:%M}" if t else "")
                 for v, t in binding.versions[variant] if v is not None]  # fmt: skip
        parts.append(f"{variant} was served by {', then '.join(steps)}")
    return "; ".join(parts)


def promote_from_experiment(client, exp, result, uri: str, as_of=None) -> Promotion:
    """Bind the result to the versions that served (alias log up to `as_of`, default the
    result's `analyzed_at`), then act on its decision (see the module doc)."""
    from models.training import registry

    decision = result.get("decision")
    if not exp.model_aliases:
        return Promotion(False, None, "no promotion", decision)
    as_of = parse_timestamp(as_of or result["analyzed_at"])
    binding = bind_versions(registry.alias_log(client), exp, as_of)
    if binding.changed and decision != "invalid_srm":
        why = f"served model changed mid-experiment: {_changes(binding)}; nothing promoted"
        return Promotion(False, None, why, INVALID_MODEL_CHANGE, binding)
    variant = shipped_variant(result)
    if variant is None:
        return Promotion(False, None, "no promotion", decision, binding)
    if binding.shipped is not None:
        why = f"already shipped by this experiment: {binding.shipped['why']}"
        return Promotion(False, None, why, decision, binding)
    version, control = binding.served(variant), binding.served(exp.control)
    if version is None:
        why = f"no logged model version served {variant} (alias log from {binding.known_from})"
        return Promotion(False, None, why, decision, binding)
    if version == control:
        why = f"{variant} was served by v{version}, as the control: nothing to promote"
        return Promotion(False, None, why, decision, binding)
    reason = f"A/B experiment {exp.experiment_id}: ship"
    if exp.model_aliases.get(exp.control, CHAMPION) == CHAMPION:
        expected = control  # the champion the treatment was compared with
    else:
        expected = (registry.aliases(client) or {}).get(CHAMPION)
    if not registry.promote(client, version, reason, expected, tracking_uri=uri, as_of=as_of,
                            experiment=exp.experiment_id):  # fmt: skip
        why = f"promotion lost a race: champion is no longer v{expected}; nothing promoted"
        return Promotion(False, None, why, decision, binding)
    client.set_model_version_tag(
        registry.MODEL_NAME, version, "promoted_by_experiment", exp.experiment_id
    )
    return Promotion(True, version, f"champion <- v{version}", decision, binding)
