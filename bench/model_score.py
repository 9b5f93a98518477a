"""Benchmark `score` of the model: the day's batch scoring.

The `clip_scores` path for 1,000,000 clips (times `scale`): one `clip_features`
partition (each clip's day-end row plus the creation rows of the clips created that day,
which the filter drops) read with the asset's DuckDB query into Arrow, `score(model,
rows)`, the asset's output table (one alias), written with `Warehouse.write_partition`;
rows/s, best of 2; also CPU seconds. Floor: bare `booster.inplace_predict` of the same
rows' model matrix (pandas, built beforehand), best of 2, interleaved; the two sides' scores
must agree clip by clip, or the benchmark fails. The model (`n_trees(scale)` trees, depth 6,
trained on 200,000 rows times `scale` with learning rate 0.02, so that the cut at the
best iteration keeps its trees) is registered, promoted to `champion` and loaded with
`load_by_alias`; the load is timed on its own (`model_load_seconds`, no target). A
breakdown (read, `score()` against the floor, its `to_matrix`, write) has no target.

The data and what the model benchmarks share: `bench.model`, `bench.model_common`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bench.common import Record, Timer, log, peak_rss_mb
from bench.model import (
    MOMENTS,
    SCORE_DS,
    clips_for,
    day_end,
    write_scoring_partition,
    write_training_set,
)
from bench.model_common import (
    MEMORY_LIMIT,
    MIN_ROWS,
    NO_EARLY_STOP,
    NO_TARGET,
    THREADS,
    TRAIN_REPEATS,
    make_data,
    n_trees,
    record_makers,
    spy,
    store_uri,
)
from models.core.settings import quiet_telemetry
from models.core.warehouse import Warehouse, connect, sql_str

SCORE_CLIPS = 1_000_000
SCORE_MODEL_ROWS = 200_000
SCORE_MODEL_ETA = 0.02
SCORE_MAX_RATIO = 2.0
SCORE_TARGET = f"within {SCORE_MAX_RATIO:g}x of the floor"
REPEATS = 2


def _register_champion(tmp: Path, scale: float, trees: int) -> str:
    """Train a model on a synthetic training set, register it, promote it to champion;
    the store's URI."""
    from models.training.evaluation import metrics
    from models.training.registry import _client, log_and_register, promote
    from models.training.train import TrainParams, train

    path = tmp / "model_training_set.parquet"
    n_clips = clips_for(SCORE_MODEL_ROWS * scale)
    rows = make_data(n_clips * MOMENTS, write_training_set, str(path), n_clips, 3)
    con = connect(threads=THREADS, memory_limit=MEMORY_LIMIT)
    df = con.sql(f"SELECT * FROM read_parquet({sql_str(path)})").df()
    con.close()
    # a low learning rate: the validation rmse still improves at the last round, so the cut
    # at the best iteration keeps (nearly) every tree, as on a champion trained on more data
    params = TrainParams(
        n_estimators=trees, learning_rate=SCORE_MODEL_ETA, early_stopping_rounds=NO_EARLY_STOP
    )
    with Timer() as t:
        trained = train(df, params)
    uri = store_uri(tmp / "mlflow" / "mlflow.db")
    (tmp / "mlflow").mkdir()
    version = log_and_register(
        trained, metrics(trained.y_holdout, trained.holdout_pred), None, None, uri
    )
    if not promote(_client(uri), version, "benchmark", expected_champion=None, tracking_uri=uri):
        raise RuntimeError(f"could not promote version {version} to champion")
    log(f"score: model trained on {rows:,} rows in {t.seconds:.1f} s, version {version} champion")
    return uri


def run_score(scale: float, tmp: Path) -> list[Record]:
    quiet_telemetry()  # before xgboost is imported
    import models.serving.scoring as scoring
    from models.serving.scoring import score
    from models.training.registry import CHAMPION, MODEL_NAME, load_by_alias
    from models.training.train import SCORE_RANGE, TrainParams, to_matrix

    trees = n_trees(scale)
    n_clips = max(MIN_ROWS, round(SCORE_CLIPS * scale))
    home = tmp / "home"
    log(f"score: making the clip_features partition of {n_clips:,} clips ...")
    with Timer() as t:
        made = make_data(n_clips, write_scoring_partition, str(home), n_clips)
    log(f"score: {made['rows']:,} rows written in {t.seconds:.1f} s")
    uri = _register_champion(tmp, scale, trees)
    with Timer() as t_load:
        model = load_by_alias(CHAMPION, uri)
    if model is None:
        raise RuntimeError("no champion to load")
    log(
        f"score: load_by_alias({CHAMPION!r}) {t_load.seconds:.3f} s: version {model.version}, "
        f"{model.booster.num_boosted_rounds()} trees of depth <= {TrainParams().max_depth}"
    )

    # the champion's interval calibration, as logged with a model (intervals.json): made here
    # from a synthetic holdout, since only its cost is measured (#17)
    from models.training import intervals

    rng = np.random.default_rng(5)
    ho_age, ho_pred = rng.uniform(0, 168, 20_000), rng.uniform(0, 100, 20_000)
    calibration = intervals.calibrate(ho_age, ho_pred + rng.normal(0, 8, 20_000), ho_pred)

    wh = Warehouse(home)
    end = day_end(SCORE_DS)
    part = wh.partition_dir("clip_features", SCORE_DS)
    query = (  # the clip_scores asset's query (assets/scoring.py)
        f"SELECT * EXCLUDE (ds) FROM read_parquet('{part}/*.parquet') "
        f"WHERE event_timestamp = TIMESTAMPTZ '{end.isoformat()}'"
    )

    def clipflow() -> tuple[Timer, dict[str, float], tuple[pa.ChunkedArray, np.ndarray]]:
        """What clip_scores does for one alias, after loading the model."""
        parts = {}
        with Timer() as total:
            with Timer() as t:
                con = connect(threads=THREADS, memory_limit=MEMORY_LIMIT)
                rows = con.sql(query).to_arrow_table()
            parts["read"] = t.seconds
            with Timer() as t, spy([("encode", scoring, "to_matrix")]) as spent:
                preds = score(model, rows)
            parts["score"], parts["encode"] = t.seconds, spent["encode"]
            with Timer() as t:  # the prediction interval by age, as the asset makes it
                low, high = intervals.bounds(calibration, rows.column("clip_age_hours"), preds)
            parts["intervals"] = t.seconds
            with Timer() as t:
                n = rows.num_rows
                table = pa.table(
                    {
                        "clip_id": rows.column("clip_id"),
                        "score": pa.array(preds.astype("float64")),
                        "score_low": pa.array(low),
                        "score_high": pa.array(high),
                        "interval_level": pa.array([intervals.DEFAULT_LEVEL] * n, pa.float64()),
                        "model_name": pa.array([MODEL_NAME] * n),
                        "model_version": pa.array([str(model.version)] * n),
                        "model_alias": pa.array([CHAMPION] * n),
                        "scored_at": pa.array([end] * n, pa.timestamp("us", tz="UTC")),
                        "event_timestamp": pa.array([end] * n, pa.timestamp("us", tz="UTC")),
                    }
                )
                con.register("_scores", table)
                written = wh.write_partition(con, "clip_scores", SCORE_DS, "SELECT * FROM _scores")
                con.unregister("_scores")
                con.close()
            parts["write"] = t.seconds
        if n != n_clips or written != n_clips:
            raise RuntimeError(f"read {n}, wrote {written} rows, expected {n_clips}")
        return total, parts, (rows.column("clip_id"), preds)

    # the floor's input: the same rows' model matrix, built beforehand
    con = connect(threads=THREADS, memory_limit=MEMORY_LIMIT)
    floor_rows = con.sql(query).to_arrow_table()
    con.close()
    matrix = to_matrix(floor_rows, model.categories)
    if len(matrix) != n_clips:
        raise RuntimeError(f"the query gave {len(matrix)} rows, expected {n_clips}")

    def floor() -> tuple[Timer, np.ndarray]:
        with Timer() as t:
            preds = model.booster.inplace_predict(matrix)
        return t, preds

    floors, runs = [], []
    for rep in range(TRAIN_REPEATS):  # interleaved: a noisy moment hits both sides alike
        floors.append(floor())
        runs.append(clipflow())
        total, parts, _ = runs[-1]
        bare = floors[-1][0]
        log(
            f"score: rep {rep + 1} floor (bare inplace_predict) {bare.seconds:.3f} s "
            f"({bare.cpu:.2f} s CPU); clipflow {total.seconds:.3f} s ({total.cpu:.2f} s CPU): "
            + ", ".join(f"{k} {v:.3f}" for k, v in parts.items())
        )
    # the same scores on both sides, clip by clip (DuckDB's row order varies from read to read)
    ids, preds = runs[0][2]
    a, b = pc.sort_indices(ids).to_numpy(), pc.sort_indices(floor_rows["clip_id"]).to_numpy()
    if not (
        ids.take(a).equals(floor_rows["clip_id"].take(b))
        and np.allclose(preds[a], np.clip(floors[0][1][b], *SCORE_RANGE), atol=1e-3)
    ):
        raise RuntimeError("score() and the bare inplace_predict disagree")

    total, parts, _ = min(runs, key=lambda r: r[0].seconds)
    value, bare = total.seconds, min(t.seconds for t, _ in floors)
    cpu, bare_cpu = min(r[0].cpu for r in runs), min(t.cpu for t, _ in floors)
    record, breakdown = record_makers("score", scale, peak_rss_mb(), n_clips)
    return [
        record(
            "score_rows_per_s", n_clips / value, "rows/s", "bare_inplace_predict_rows_per_s",
            n_clips / bare, SCORE_TARGET, SCORE_MAX_RATIO, rate=True,
        ),
        record(
            "score_seconds", value, "s", "bare_inplace_predict_seconds", bare, SCORE_TARGET,
            SCORE_MAX_RATIO,
        ),
        record(
            "score_cpu_seconds", cpu, "s", "bare_inplace_predict_cpu_seconds", bare_cpu,
            SCORE_TARGET, SCORE_MAX_RATIO,
        ),
        # score() alone (model matrix + inplace_predict in batches + clip) vs the floor
        record("score_predict_seconds", parts["score"], "s", "bare_inplace_predict_seconds",
               bare, NO_TARGET),
        breakdown("score_encode_seconds", parts["encode"]),
        # the nightly cost of the prediction intervals (#17): bounds by age for every row
        record("score_intervals_seconds", max(parts["intervals"], 1e-6), "s",
               "score_predict_seconds", parts["score"], NO_TARGET),
        breakdown("score_read_seconds", parts["read"]),
        breakdown("score_write_seconds", parts["write"]),
        breakdown("model_load_seconds", t_load.seconds, n=1),
    ]  # fmt: skip


BENCHMARKS = {"score": run_score}
