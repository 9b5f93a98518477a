"""Feast entities of the clipflow repo."""

from feast import Entity, ValueType

OWNER_TAGS = {"owner": "ml-platform@clipflow", "team": "clip-quality"}

clip = Entity(
    name="clip",
    join_keys=["clip_id"],
    value_type=ValueType.STRING,
    description="A generated short-video clip (docs/contract.md §1 clips.clip_id).",
    tags=OWNER_TAGS,
    owner="ml-platform@clipflow",
)
