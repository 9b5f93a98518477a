"""Feast feature views of the clipflow repo.

No TTL (`ttl=timedelta(0)`): Feast applies a view's TTL to historical retrieval but not to
online reads, so a TTL would make training and serving disagree. A clip's newest row stays
its features after its 7 engagement days.
"""

from __future__ import annotations

from datetime import timedelta

from feast import FeatureView, Field
from feast.types import Bool, Float64, Int64, String

from feature_repo.data_sources import clip_features_push, clip_scores_push
from feature_repo.entities import OWNER_TAGS, clip

# Every model feature of the warehouse table clip_features, in a stable order.
CLIP_FEATURE_FIELDS = [
    # clip attributes (CONTRACT §1 clips)
    Field(name="duration_s", dtype=Float64),
    Field(name="resolution", dtype=String),
    Field(name="bitrate_kbps", dtype=Float64),
    Field(name="fps", dtype=Float64),
    Field(name="aspect_ratio", dtype=String),
    Field(name="has_captions", dtype=Bool),
    Field(name="speech_ratio", dtype=Float64),
    Field(name="scene_cuts_per_min", dtype=Float64),
    Field(name="hook_strength", dtype=Float64),
    Field(name="language", dtype=String),
    Field(name="topic", dtype=String),
    # derived
    Field(name="duration_min", dtype=Float64),
    Field(name="resolution_rank", dtype=Int64),
    Field(name="bitrate_per_pixel", dtype=Float64),
    Field(name="is_vertical", dtype=Int64),
    Field(name="clip_age_hours", dtype=Float64),
    # engagement over the clip's first 1, 3 and 7 days
    *(
        field
        for window in ("1d", "3d", "7d")
        for field in (
            Field(name=f"views_{window}", dtype=Int64),
            Field(name=f"completion_rate_{window}", dtype=Float64),
            Field(name=f"engagement_rate_{window}", dtype=Float64),
            Field(name=f"watch_ratio_{window}", dtype=Float64),
        )
    ),
    # creator history known at the row's event_timestamp
    Field(name="creator_clip_count", dtype=Int64),
    Field(name="creator_label_count", dtype=Int64),
    Field(name="creator_label_mean", dtype=Float64),
    Field(name="creator_mean_early_views", dtype=Float64),
]

CLIP_FEATURE_NAMES = [f.name for f in CLIP_FEATURE_FIELDS]

clip_features = FeatureView(
    name="clip_features",
    entities=[clip],
    ttl=timedelta(0),
    schema=[Field(name="clip_id", dtype=String), *CLIP_FEATURE_FIELDS],
    source=clip_features_push,
    online=True,
    description="The model's features of a clip as known at each scoring moment.",
    tags={**OWNER_TAGS, "grain": "clip_id x event_timestamp"},
    owner="ml-platform@clipflow",
)

clip_scores = FeatureView(
    name="clip_scores",
    entities=[clip],
    ttl=timedelta(0),
    schema=[
        Field(name="clip_id", dtype=String),
        Field(name="score", dtype=Float64),
        Field(name="model_version", dtype=String),
    ],
    source=clip_scores_push,
    online=True,
    description="The newest quality score of a clip (0-100) and the model version behind it.",
    tags=OWNER_TAGS,
    owner="ml-platform@clipflow",
)
