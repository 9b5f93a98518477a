"""Score clips with a loaded (or freshly trained) model, in bounded batches.

A model here is anything with `booster` and `categories` (`registry.LoadedModel`,
`training.TrainedModel`). Rows are encoded by `training.to_matrix` with the model's own
category lists and predicted with `Booster.inplace_predict` (no DMatrix copy), a batch
of `batch_rows` at a time so memory stays bounded; scores are clipped to [0, 100].
"""

from __future__ import annotations

import os
from typing import Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import xgboost as xgb

from models.features.clip_features import FEATURE_COLUMNS
from models.training.train import SCORE_RANGE, to_matrix

BATCH_ROWS = 262_144


class Model(Protocol):
    booster: xgb.Booster
    categories: dict[str, list[str]]


def score(model: Model, data: pd.DataFrame | pa.Table, batch_rows: int = BATCH_ROWS) -> np.ndarray:
    """Predicted quality_score (float32, in [0, 100]) for every row of `data`, in order."""
    n = len(data) if isinstance(data, pd.DataFrame) else data.num_rows
    out = np.empty(n, dtype=np.float32)
    for start in range(0, n, batch_rows):
        part = (
            data.slice(start, batch_rows)
            if isinstance(data, pa.Table)
            else data.iloc[start : start + batch_rows]
        )
        out[start : start + len(part)] = model.booster.inplace_predict(
            to_matrix(part, model.categories)
        )
    return np.clip(out, *SCORE_RANGE, out=out)


def score_parquet(
    model: Model,
    src: str | os.PathLike,
    dst: str | os.PathLike,
    keys: tuple[str, ...] = ("clip_id", "event_timestamp"),
    batch_rows: int = BATCH_ROWS,
) -> int:
    """Stream `src` (a Parquet file with `keys` and the features) to `dst`: `keys` plus
    `score`, a batch at a time; returns the row count."""
    reader = pq.ParquetFile(src)
    writer = None
    rows = 0
    try:
        for batch in reader.iter_batches(batch_size=batch_rows, columns=[*keys, *FEATURE_COLUMNS]):
            table = pa.Table.from_batches([batch])
            out = table.select(list(keys)).append_column("score", pa.array(score(model, table)))
            if writer is None:
                writer = pq.ParquetWriter(dst, out.schema)
            writer.write_table(out)
            rows += out.num_rows
    finally:
        if writer is not None:
            writer.close()
    if writer is None:  # an empty input still gives a readable, empty output
        empty = reader.schema_arrow.empty_table().select(list(keys))
        pq.write_table(empty.append_column("score", pa.array([], pa.float32())), dst)
    return rows
