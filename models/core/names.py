"""Every public name of clipflow, defined once (docs/contract.md): the MLflow model and its
aliases, the Feast project, views and service, and the model's features with their types.

Light on purpose (no imports): the API, the CLI and Feast's repo import it at no cost.
"""

from __future__ import annotations

# MLflow (docs/contract.md §3)
MODEL_NAME = "clip_quality"
EXPERIMENT_NAME = "clip_quality"
CHAMPION = "champion"
CHALLENGER = "challenger"
ALIASES = (CHAMPION, CHALLENGER)

# Feast (docs/contract.md §4)
FEAST_PROJECT = "clipflow"
ENTITY = "clip"
JOIN_KEY = "clip_id"
FEATURE_SERVICE = "clip_quality_v1"
FEATURES_VIEW = "clip_features"
SCORES_VIEW = "clip_scores"
FEATURES_PUSH_SOURCE = "clip_features_push"
SCORES_PUSH_SOURCE = "clip_scores_push"

WINDOW_DAYS = (1, 3, 7)

# The model's features in a stable order, with their value kind (Feast dtype / Arrow type).
ATTRIBUTE_FEATURES = {
    "duration_s": "float",
    "resolution": "string",
    "bitrate_kbps": "float",
    "fps": "float",
    "aspect_ratio": "string",
    "has_captions": "bool",
    "speech_ratio": "float",
    "scene_cuts_per_min": "float",
    "hook_strength": "float",
    "language": "string",
    "topic": "string",
}
DERIVED_FEATURES = {
    "duration_min": "float",
    "resolution_rank": "int",
    "bitrate_per_pixel": "float",
    "is_vertical": "int",
    "clip_age_hours": "float",
}
ENGAGEMENT_FEATURES = {
    f"{metric}_{k}d": kind
    for k in WINDOW_DAYS
    for metric, kind in (
        ("views", "int"),
        ("completion_rate", "float"),
        ("engagement_rate", "float"),
        ("watch_ratio", "float"),
    )
}
CREATOR_FEATURES = {
    "creator_clip_count": "int",
    "creator_label_count": "int",
    "creator_label_mean": "float",
    "creator_mean_early_views": "float",
}
FEATURE_KINDS: dict[str, str] = {
    **ATTRIBUTE_FEATURES,
    **DERIVED_FEATURES,
    **ENGAGEMENT_FEATURES,
    **CREATOR_FEATURES,
}
FEATURE_COLUMNS: list[str] = list(FEATURE_KINDS)
CATEGORICAL_FEATURES: list[str] = [n for n, k in FEATURE_KINDS.items() if k == "string"]

# How drift monitoring compares each feature (#17; models/monitoring/drift.py). Like with
# like: what a clip *is* is compared as it arrives (the day's new clips against the
# reference's clips at creation); what the audience does with it at matched ages (rows of
# the same age bucket on both sides). A feature that grows by construction is not compared
# at all, and the report says why: its distribution moves with time whatever happens.
ARRIVAL, BY_AGE, GROWTH = "arrival", "by_age", "growth"
GROWTH_FEATURES: dict[str, str] = {
    "clip_age_hours": "an age: grows with time by construction",
    "creator_clip_count": "a cumulative count: grows with the creator's history",
    "creator_label_count": "a cumulative count: grows with the creator's history",
}
FEATURE_MONITORING: dict[str, str] = {
    **{n: ARRIVAL for n in (*ATTRIBUTE_FEATURES, *DERIVED_FEATURES)},
    **{n: BY_AGE for n in (*ENGAGEMENT_FEATURES, *CREATOR_FEATURES)},
    **{n: GROWTH for n in GROWTH_FEATURES},
}
