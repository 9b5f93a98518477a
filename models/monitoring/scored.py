"""The rows the drift report compares, and the `drift_metrics` rows it writes."""

from __future__ import annotations

from datetime import date, datetime

import pyarrow as pa

from models.core.names import CHAMPION
from models.core.warehouse import Warehouse


def scored_rows(warehouse: Warehouse, ds: str | date, end: datetime) -> pa.Table:
    """The day-end `clip_features` rows of the clips the champion scored on `ds`, with
    `score` and `model_version` (an empty table when either partition is missing)."""
    if not (warehouse.has("clip_features", ds) and warehouse.has("clip_scores", ds)):
        return pa.table({"model_version": pa.array([], pa.string())})
    feats = warehouse.partition_scan("clip_features", ds)
    scores = warehouse.partition_scan("clip_scores", ds)
    return warehouse.con.sql(
        f"""
        SELECT f.*, s.score, s.model_version
        FROM {feats} f
        JOIN (SELECT clip_id, score, model_version FROM {scores} WHERE model_alias = $alias) s
          USING (clip_id)
        WHERE f.event_timestamp = $end
        """,
        params={"alias": CHAMPION, "end": end},
    ).to_arrow_table()


def metrics_table(result: dict, model_version: str) -> pa.Table:
    """One `drift_metrics` row per feature (and the prediction) of a drift result."""
    entries = {
        **result["features"],
        **({"prediction": result["prediction"]} if result["prediction"] else {}),
    }
    return pa.Table.from_pylist(
        [
            {
                "feature": name,
                "kind": r["kind"],
                "method": r["method"],
                "statistic": r["statistic"],
                "threshold": float(r["threshold"]),
                "drifted": r["drifted"],
                "missing_reference": float(r["missing_reference"]),
                "missing_current": float(r["missing_current"]),
                "model_version": model_version,
            }
            for name, r in entries.items()
        ]
    )
