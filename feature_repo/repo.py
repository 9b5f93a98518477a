"""Everything this Feast repo registers: the one module `feast apply` scans.

`feast apply` imports every scanned file as a top-level module, while the repo files import
each other through the `feature_repo` package; scanning them all would find each object
twice. `.feastignore` therefore leaves only this file, and `feature_repo.config.apply()`
registers the same list.
"""

from feast import Project

from feature_repo.data_sources import (
    clip_features_push,
    clip_features_source,
    clip_scores_push,
    clip_scores_source,
)
from feature_repo.entities import clip
from feature_repo.feature_services import clip_quality_v1, clip_scores_v1
from feature_repo.feature_views import clip_features, clip_scores

clipflow = Project(
    name="clipflow",
    description="clipflow: short-video clip quality (docs/contract.md §4)",
    tags={"owner": "ml-platform@clipflow"},
    owner="ml-platform@clipflow",
)

OBJECTS = [
    clipflow,
    clip,
    clip_features_source,
    clip_features_push,
    clip_scores_source,
    clip_scores_push,
    clip_features,
    clip_scores,
    clip_quality_v1,
    clip_scores_v1,
]
