"""What an experiment's `ship` does to the model aliases: when the shipped variant is served
by `challenger`, the challenger becomes champion through the checked alias move, tagged
`promoted_by_experiment` with the experiment id."""

from __future__ import annotations

from dataclasses import dataclass


def shipped_variant(result: dict) -> str | None:
    """The variant whose primary metric is significantly up, when the decision is `ship`."""
    if result.get("decision") != "ship":
        return None
    ups = [m for m in result["metrics"] if m.get("primary") and m["significant"] and m["lift"] > 0]
    return max(ups, key=lambda m: m["lift"])["variant"] if ups else None


@dataclass(frozen=True)
class Promotion:
    """What an experiment's result did to the aliases: `version` became champion when
    `promoted`; `reason` says what happened, in words, either way."""

    promoted: bool
    version: str | None
    reason: str


def promote_from_experiment(client, exp, result, uri: str) -> Promotion:
    """Move champion to the challenger when the shipped variant is served by `challenger`."""
    from models.training import registry

    variant = shipped_variant(result)
    if variant is None or exp.model_aliases.get(variant) != registry.CHALLENGER:
        return Promotion(False, None, "no promotion")
    current = registry.aliases(client) or {}
    challenger, champion = current.get(registry.CHALLENGER), current.get(registry.CHAMPION)
    if challenger is None:
        return Promotion(False, None, "no challenger to promote")
    if not registry.promote(
        client, challenger, f"A/B experiment {exp.experiment_id}: ship", champion, tracking_uri=uri
    ):
        return Promotion(False, None, "promotion lost a race: champion moved meanwhile")
    client.set_model_version_tag(
        registry.MODEL_NAME, challenger, "promoted_by_experiment", exp.experiment_id
    )
    return Promotion(True, challenger, f"champion <- v{challenger}")
