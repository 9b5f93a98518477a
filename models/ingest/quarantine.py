"""Rows for the `quarantine` table from items that failed outside a landing file (an API's
answer for a video, say): one row each, with the item's key as JSON (docs/contract.md §2)."""

from __future__ import annotations

import json
from datetime import datetime

import pyarrow as pa

SCHEMA = pa.schema(
    [
        ("table_name", pa.string()),
        ("source_file", pa.string()),
        ("reason", pa.string()),
        ("row", pa.string()),
        ("detected_at", pa.timestamp("us", tz="UTC")),
    ]
)


def quarantine_rows(
    table_name: str, source: str, failures: dict[str, str], key: str, detected_at: datetime
) -> pa.Table:
    """`failures` maps an item's key value to why it failed."""
    n = len(failures)
    return pa.table(
        {
            "table_name": [table_name] * n,
            "source_file": [source] * n,
            "reason": list(failures.values()),
            "row": [json.dumps({key: k}, separators=(",", ":")) for k in failures],
            "detected_at": [detected_at] * n,
        },
        schema=SCHEMA,
    )
