"""Benchmarks of the model: `train` (train + register) and `score` (the day's batch scoring).

The data: synthetic `clip_features` rows (`bench.feature_store.make_clip_features`: the key
columns and the 32 features with their exact types, categoricals as strings, nulls where
the warehouse has them), made in a spawned process (its memory stays out of this process's
peak RSS; in this one below 100,000 rows) and handed over as Parquet. The training set adds `quality_score`, one per clip,
a nonlinear function of the clip's latent quality (which the engagement features reflect)
and of its attributes (topic, format x duration, speech, hook x captions), plus noise.

XGBoost is imported only after `models.core.settings.quiet_telemetry()` (OMP_WAIT_POLICY
PASSIVE: with spinning waits, 2-thread XGBoost measured up to 10x slower on a loaded box).
Trees: 300 at scale >= 1, fewer below (300 x scale, at least 5); rows at least 2,000.

* `train`: a training set of 1,000,000 rows (125,000 clips x 8 moments, times `scale`),
  TrainParams defaults (depth 6, nthread 2, ...) with the trees above and early stopping
  that cannot trigger (`early_stopping_rounds` = 10**6), so both sides build every tree.
  Floor: a bare `xgb.train` of the same params and rounds on a prebuilt `QuantileDMatrix`
  of the same train slice (no eval set). Measured: what clipflow does, `train(table, params)`
  on the training set read into Arrow as the asset reads it
  (time split, category maps, model matrices, the QuantileDMatrix and the validation
  DMatrix, boosting with the
  per-round validation eval, holdout predictions, fingerprint), the holdout `metrics`, and
  the drift reference profile (`models.monitoring.drift.reference_profile`, as the asset computes it
  before registering), and `log_and_register` (plots drawn there, signature, UBJ model, the
  profile as a JSON artifact, MLflow run and version) into
  a fresh SQLite store under the scratch dir. Before the clock starts: the store's tables
  are created once (reported as `mlflow_store_init_seconds`; each repetition gets an empty
  copy of the file), and a tiny train + register pays MLflow's first-call costs (lazy
  imports, the first matplotlib figure).
  3 pairs (floor, then clipflow, interleaved), or one pair when the first clipflow run took
  over 90 s; the target is judged on the pair with the median ratio (the wall time of the
  same 2-thread run on this shared machine varies by up to 65% from minute to minute, so a
  best-of-each ratio mostly compares two lucky moments); best-of-each comes beside it. Also CPU seconds (steadier than the wall clock on a shared
  machine) and ms per tree. A breakdown of the measured side (by timing wrappers put
  around the functions `train` calls for the run) comes as records with no target.
* `score`: the `clip_scores` path for 1,000,000 clips (times `scale`): one `clip_features`
  partition (each clip's day-end row plus the creation rows of the clips created that day,
  which the filter drops) read with the asset's DuckDB query into Arrow, `score(model,
  rows)`, the asset's output table (one alias), written with `Warehouse.write_partition`;
  rows/s, best of 2; also CPU seconds. Floor: bare `booster.inplace_predict` of the same
  rows' model matrix (pandas, built beforehand), best of 2, interleaved; the two sides' scores
  must agree clip by clip, or the benchmark fails. The model (the trees above, depth 6,
  trained on 200,000 rows times `scale` with learning rate 0.02, so that the cut at the
  best iteration keeps its trees) is registered, promoted to `champion` and loaded with
  `load_by_alias`; the load is timed on its own (`model_load_seconds`, no target). A
  breakdown (read, `score()` against the floor, its `to_matrix`, write) has no target.
"""

from __future__ import annotations

import math
import multiprocessing
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bench.common import Record, Timer, log, peak_rss_mb, ratio_to_floor
from bench.feature_store import MOMENTS, TOPICS, make_clip_features
from models.core.settings import quiet_telemetry
from models.core.warehouse import Warehouse, connect, sql_str

THREADS, MEMORY_LIMIT = 2, "4GB"  # assets.resources.WarehouseResource defaults
TREES = 300  # TrainParams.n_estimators
NO_EARLY_STOP = 10**6
MIN_ROWS, MIN_TREES = 2_000, 5
IN_PROCESS_BELOW = 100_000  # rows: smaller data is made in this process
SINGLE_RUN_OVER_S = 90.0  # train: one repetition when the first took longer
TRAIN_REPEATS = 3
NO_TARGET = "breakdown, no target"

# train
TRAIN_ROWS = 1_000_000
TRAIN_MAX_RATIO = 1.3
# score
SCORE_CLIPS = 1_000_000
SCORE_MODEL_ROWS = 200_000
SCORE_MODEL_ETA = 0.02
SCORE_MAX_RATIO = 2.0
SCORE_TARGET = f"within {SCORE_MAX_RATIO:g}x of the floor"
SCORE_DS = date(2026, 1, 14)
REPEATS = 2

DAY_US = 86_400_000_000
HOUR_US = 3_600_000_000
TOPIC_EFFECT = np.array([3.0, -2.0, 1.0, 2.0, 4.0, 6.0, -1.0, -5.0, 0.0, 2.0])  # by TOPICS


def n_trees(scale: float) -> int:
    return max(MIN_TREES, min(TREES, round(TREES * scale)))


def _clips_for(rows: float) -> int:
    """Clips (8 rows each) for about `rows` training rows, at least MIN_ROWS rows."""
    return max(math.ceil(MIN_ROWS / MOMENTS), round(rows / MOMENTS))


def _make(rows: int, fn: Callable, *args):
    """`fn(*args)`, in a spawned process (its memory stays out of this one's peak RSS)
    unless `rows` is small enough for its memory not to matter (smoke runs)."""
    if rows < IN_PROCESS_BELOW:
        return fn(*args)
    with ProcessPoolExecutor(1, multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


# -- the data ----------------------------------------------------------------------------
def _col(table: pa.Table, name: str) -> np.ndarray:
    return table.column(name).to_numpy()


def make_training_set(n_clips: int, seed: int = 0) -> pa.Table:
    """Every moment of `n_clips` clips (8 rows each) with a learnable `quality_score`."""
    table, z = make_clip_features(n_clips, all_moments=True, seed=seed)
    rng = np.random.default_rng(seed + 7)
    duration, speech = _col(table, "duration_s"), _col(table, "speech_ratio")
    effect = TOPIC_EFFECT[pc.index_in(table.column("topic"), pa.array(TOPICS)).to_numpy()]
    quality = (
        52.0
        + 15.0 * np.tanh(0.8 * z)
        + effect
        + 7.0 * ((_col(table, "is_vertical") == 1) & (duration < 45.0))
        - 6.0 * (duration > 120.0)
        + 4.0 * np.sin(2 * np.pi * speech)
        + 5.0 * ((_col(table, "hook_strength") > 0.6) & _col(table, "has_captions"))
        + np.repeat(rng.normal(0.0, 4.0, n_clips), MOMENTS)  # rows of a clip: one label
    )
    return table.append_column("quality_score", pa.array(np.round(np.clip(quality, 0, 100), 2)))


def write_training_set(path: str, n_clips: int, seed: int = 0) -> int:
    table = make_training_set(n_clips, seed)
    pq.write_table(table, path)
    return table.num_rows


def _day_end(ds: date) -> datetime:
    return datetime.combine(ds + timedelta(days=1), datetime.min.time(), tzinfo=UTC) - timedelta(
        microseconds=1
    )


def write_scoring_partition(home: str, n_clips: int, seed: int = 1) -> dict[str, int]:
    """Partition SCORE_DS of `clip_features` under `home` (ds column, as write_partition
    lays it out): the day-end row of `n_clips` clips created in the 7 days up to SCORE_DS,
    and the creation row of those created on SCORE_DS."""
    table, _ = make_clip_features(n_clips, all_moments=False, seed=seed, prefix="s")
    rng = np.random.default_rng(seed + 7)
    start = (SCORE_DS - date(1970, 1, 1)).days * DAY_US
    created = start - 6 * DAY_US + np.sort(rng.integers(0, 7 * DAY_US, n_clips))
    end = start + DAY_US - 1
    ts = pa.timestamp("us", tz="UTC")

    def moment(rows: pa.Table, created: np.ndarray, event: np.ndarray) -> pa.Table:
        for name, values in (
            ("created_at", pa.array(created, ts)),
            ("event_timestamp", pa.array(event, ts)),
            ("clip_age_hours", pa.array((event - created) / HOUR_US)),
        ):
            rows = rows.set_column(rows.schema.get_field_index(name), name, values)
        return rows

    day_end = moment(table, created, np.full(n_clips, end))
    new = np.flatnonzero(created >= start)
    creation = moment(table.take(pa.array(new)), created[new], created[new])
    rows = pa.concat_tables([creation, day_end])
    rows = rows.append_column("ds", pa.array(np.full(rows.num_rows, SCORE_DS), pa.date32()))
    out = Warehouse(home).partition_dir("clip_features", SCORE_DS)
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(rows, out / "part-0.parquet", row_group_size=122_880)
    return {"rows": rows.num_rows, "day_end_rows": n_clips}


# -- helpers -----------------------------------------------------------------------------
@contextmanager
def _spy(targets: list[tuple[str, object, str]]) -> Iterator[dict[str, float]]:
    """Wrap `owner.attr` for each (label, owner, attr) so that the wall seconds spent in
    its calls add up under `label`; the originals are put back on exit."""
    spent = {label: 0.0 for label, _, _ in targets}
    saved = []
    for label, owner, attr in targets:
        real = getattr(owner, attr)

        def timed(*args, _real=real, _label=label, **kwargs):
            t0 = time.perf_counter()
            try:
                return _real(*args, **kwargs)
            finally:
                spent[_label] += time.perf_counter() - t0

        saved.append((owner, attr, real))
        setattr(owner, attr, timed)
    try:
        yield spent
    finally:
        for owner, attr, real in reversed(saved):
            setattr(owner, attr, real)


def _store(path: Path) -> str:
    return f"sqlite:///{path}"


def _init_store(db: Path) -> float:
    """Create an MLflow SQLite store's tables at `db`; the seconds it took."""
    from mlflow import MlflowClient

    db.parent.mkdir(parents=True, exist_ok=True)
    with Timer() as t:
        MlflowClient(_store(db), _store(db)).search_experiments()
    return t.seconds


def _records(benchmark: str, scale: float, peak: float, rows: int):
    def record(metric, value, unit, floor_metric, floor, target, limit=None, rate=False, n=rows):
        ratio = ratio_to_floor(value, floor, higher_is_better=rate)
        return Record(
            benchmark=benchmark,
            metric=metric,
            value=round(value, 4),
            unit=unit,
            floor_metric=floor_metric,
            floor_value=round(floor, 4),
            ratio=round(ratio, 3),
            target=target,
            met=True if limit is None else ratio <= limit,
            rows=n,
            peak_rss_mb=peak,
            scale=scale,
        )

    def breakdown(metric, value, unit="s", n=rows):  # no floor: the floor is itself
        value = max(value, 1e-6)
        return record(metric, value, unit, metric, value, NO_TARGET, n=n)

    return record, breakdown


# -- train -------------------------------------------------------------------------------
def run_train(scale: float, tmp: Path) -> list[Record]:
    quiet_telemetry()  # before xgboost is imported
    import xgboost as xgb

    import models.training.train as training
    from models.features.clip_features import FEATURE_COLUMNS
    from models.monitoring.drift import REFERENCE_FILE, reference_profile
    from models.training.evaluation import metrics
    from models.training.registry import log_and_register
    from models.training.train import (
        TARGET,
        TrainParams,
        category_maps,
        time_split,
        to_matrix,
        train,
    )

    trees = n_trees(scale)
    n_clips = _clips_for(TRAIN_ROWS * scale)
    params = TrainParams(n_estimators=trees, early_stopping_rounds=NO_EARLY_STOP)
    path = tmp / "training_set.parquet"
    log(f"train: making {n_clips * MOMENTS:,} training rows ({n_clips:,} clips) ...")
    with Timer() as t:
        rows = _make(n_clips * MOMENTS, write_training_set, str(path), n_clips)
    log(f"train: training set written in {t.seconds:.1f} s")
    con = connect(threads=THREADS, memory_limit=MEMORY_LIMIT)  # as the asset reads it
    df = con.sql(f"SELECT * FROM read_parquet({sql_str(path)})").to_arrow_table()  # as the asset
    con.close()

    # the floor's input: the same train slice, encoded the same way, prebuilt
    tr, _, _ = time_split(df, params)
    dtrain = xgb.QuantileDMatrix(
        to_matrix(tr, category_maps(tr)),
        label=tr.column(TARGET).to_numpy().astype(np.float32),
        enable_categorical=True,
        nthread=params.nthread,
    )
    n_train = len(tr)
    del tr

    template = tmp / "store-template" / "mlflow.db"
    init_s = _init_store(template)

    def fresh_store(name: str) -> str:
        db = tmp / name / "mlflow.db"
        db.parent.mkdir()
        shutil.copyfile(template, db)  # an empty copy: no repetition pays for the tables
        return _store(db)

    # a tiny train + register first, so that no repetition pays for first-call costs
    # (MLflow's lazy imports, the first matplotlib figure, ...)
    small = train(df.slice(0, MIN_ROWS), replace(params, n_estimators=2))
    log_and_register(
        small, metrics(small.y_holdout, small.holdout_pred), None, None, fresh_store("warm-up")
    )
    log(
        f"train: {rows:,} rows ({n_train:,} in the train slice), {trees} trees, depth "
        f"{params.max_depth}, nthread {params.nthread}; MLflow store tables {init_s:.2f} s"
    )

    def floor() -> Timer:
        with Timer() as t:
            booster = xgb.train(params.xgb_params(), dtrain, num_boost_round=trees)
        if booster.num_boosted_rounds() != trees:
            raise RuntimeError(f"floor built {booster.num_boosted_rounds()} trees, not {trees}")
        return t

    def measured(rep: int) -> tuple[Timer, dict[str, float]]:
        uri = fresh_store(f"store-{rep}")
        spied = [
            ("split", training, "split_sides"),
            ("matrix", training, "to_matrix"),
            ("matrix", xgb, "QuantileDMatrix"),
            ("matrix", xgb, "DMatrix"),
            ("boost", xgb, "train"),
            ("fingerprint", training, "fingerprint"),
        ]
        with Timer() as total, _spy(spied) as parts:
            with Timer() as t_train:
                trained = train(df, params)
            with Timer() as t_register:
                holdout = metrics(trained.y_holdout, trained.holdout_pred)
                ho = trained.holdout
                with Timer() as t_reference:  # as clip_quality_model does before registering
                    reference = reference_profile(
                        df,
                        ho.loc[ho["event_timestamp"] != ho["created_at"], "prediction"],
                        FEATURE_COLUMNS,
                    )
                version = log_and_register(
                    trained, holdout, None, None, uri, documents={REFERENCE_FILE: reference}
                )
        if trained.best_iteration >= trees:
            raise RuntimeError(f"best_iteration {trained.best_iteration} of {trees} rounds")
        parts["other"] = t_train.seconds - sum(parts.values())
        parts["train"], parts["register"] = t_train.seconds, t_register.seconds
        parts["reference"] = t_reference.seconds
        log(
            f"train: rep {rep + 1} clipflow {total.seconds:.2f} s ({total.cpu:.2f} s CPU): "
            + ", ".join(f"{k} {v:.2f}" for k, v in parts.items())
            + f"; v{version}, best_iteration {trained.best_iteration}, "
            f"holdout rmse {holdout['rmse']:.3f} r2 {holdout['r2']:.3f}"
        )
        return total, parts

    floors, runs = [], []
    for rep in range(TRAIN_REPEATS):  # interleaved: a noisy moment hits both sides alike
        floors.append(floor())
        log(
            f"train: rep {rep + 1} floor (bare xgb.train) {floors[-1].seconds:.2f} s "
            f"({floors[-1].cpu:.2f} s CPU)"
        )
        runs.append(measured(rep))
        if runs[-1][0].seconds > SINGLE_RUN_OVER_S:
            log(f"train: one repetition only (it took over {SINGLE_RUN_OVER_S:.0f} s)")
            break

    # the pair (floor, clipflow) with the median ratio: on this shared machine the same
    # 2-thread run varies by up to 65% from minute to minute (bare xgb.train measured
    # 25-42 s in one run), so a best-of-each ratio mostly compares two lucky moments;
    # the best-of-each figures are reported beside it, without a target
    pairs = sorted(zip(floors, runs, strict=False), key=lambda p: p[1][0].seconds / p[0].seconds)
    bare_t, (best, parts) = pairs[len(pairs) // 2]
    reps = (
        f"median of {len(pairs)} interleaved pairs"
        if len(pairs) > 1
        else f"1 pair: over {SINGLE_RUN_OVER_S:g} s"
    )
    target = f"<= {TRAIN_MAX_RATIO:g}x bare training ({reps})"
    value, bare, cpu, bare_cpu = best.seconds, bare_t.seconds, best.cpu, bare_t.cpu
    best_value, best_bare = min(r[0].seconds for r in runs), min(t.seconds for t in floors)
    record, breakdown = _records("train", scale, peak_rss_mb(), rows)
    return [
        record(
            "train_register_seconds", value, "s", "bare_xgb_train_seconds", bare, target,
            TRAIN_MAX_RATIO,
        ),
        record(
            "train_register_cpu_seconds", cpu, "s", "bare_xgb_train_cpu_seconds", bare_cpu,
            target, TRAIN_MAX_RATIO,
        ),
        record(
            "train_register_ms_per_tree", 1000 * value / trees, "ms", "bare_xgb_ms_per_tree",
            1000 * bare / trees, target, TRAIN_MAX_RATIO,
        ),
        record(
            "train_register_best_seconds", best_value, "s", "bare_xgb_train_best_seconds",
            best_bare, f"best of each side, no target ({len(runs)} runs)",
        ),
        # the boosting inside train() (with its per-round validation eval) vs the floor
        record("train_boost_seconds", parts["boost"], "s", "bare_xgb_train_seconds", bare,
               NO_TARGET),
        breakdown("train_matrix_seconds", parts["matrix"]),
        breakdown("train_fingerprint_seconds", parts["fingerprint"]),
        breakdown("train_split_seconds", parts["split"]),
        breakdown("train_other_seconds", parts["other"]),
        breakdown("log_and_register_seconds", parts["register"]),  # with the reference
        breakdown("reference_profile_seconds", parts["reference"]),
        breakdown("mlflow_store_init_seconds", init_s),
    ]  # fmt: skip


# -- score -------------------------------------------------------------------------------
def _register_champion(tmp: Path, scale: float, trees: int) -> str:
    """Train a model on a synthetic training set, register it, promote it to champion;
    the store's URI."""
    from models.training.evaluation import metrics
    from models.training.registry import _client, log_and_register, promote
    from models.training.train import TrainParams, train

    path = tmp / "model_training_set.parquet"
    n_clips = _clips_for(SCORE_MODEL_ROWS * scale)
    rows = _make(n_clips * MOMENTS, write_training_set, str(path), n_clips, 3)
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
    uri = _store(tmp / "mlflow" / "mlflow.db")
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
        made = _make(n_clips, write_scoring_partition, str(home), n_clips)
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

    wh = Warehouse(home)
    end = _day_end(SCORE_DS)
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
            with Timer() as t, _spy([("encode", scoring, "to_matrix")]) as spent:
                preds = score(model, rows)
            parts["score"], parts["encode"] = t.seconds, spent["encode"]
            with Timer() as t:
                n = rows.num_rows
                table = pa.table(
                    {
                        "clip_id": rows.column("clip_id"),
                        "score": pa.array(preds.astype("float64")),
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
    record, breakdown = _records("score", scale, peak_rss_mb(), n_clips)
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
        breakdown("score_read_seconds", parts["read"]),
        breakdown("score_write_seconds", parts["write"]),
        breakdown("model_load_seconds", t_load.seconds, n=1),
    ]  # fmt: skip


BENCHMARKS = {"train": run_train, "score": run_score}
