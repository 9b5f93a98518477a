"""Benchmark `train` of the model (train + register), and the data of the model benchmarks
(`score` is `bench.model_score`; what both share is `bench.model_common`).

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
"""

from __future__ import annotations

import math
import shutil
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bench.common import Record, Timer, log, peak_rss_mb
from bench.feature_store import MOMENTS, TOPICS, make_clip_features
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

SINGLE_RUN_OVER_S = 90.0  # train: one repetition when the first took longer
TRAIN_ROWS = 1_000_000
TRAIN_MAX_RATIO = 1.3
SCORE_DS = date(2026, 1, 14)  # the day of the scoring partition
DAY_US = 86_400_000_000
HOUR_US = 3_600_000_000
TOPIC_EFFECT = np.array([3.0, -2.0, 1.0, 2.0, 4.0, 6.0, -1.0, -5.0, 0.0, 2.0])  # by TOPICS


def clips_for(rows: float) -> int:
    """Clips (8 rows each) for about `rows` training rows, at least MIN_ROWS rows."""
    return max(math.ceil(MIN_ROWS / MOMENTS), round(rows / MOMENTS))


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


def day_end(ds: date) -> datetime:
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


# -- train -------------------------------------------------------------------------------
def _init_store(db: Path) -> float:
    """Create an MLflow SQLite store's tables at `db`; the seconds it took."""
    from mlflow import MlflowClient

    db.parent.mkdir(parents=True, exist_ok=True)
    with Timer() as t:
        MlflowClient(store_uri(db), store_uri(db)).search_experiments()
    return t.seconds


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
    n_clips = clips_for(TRAIN_ROWS * scale)
    params = TrainParams(n_estimators=trees, early_stopping_rounds=NO_EARLY_STOP)
    path = tmp / "training_set.parquet"
    log(f"train: making {n_clips * MOMENTS:,} training rows ({n_clips:,} clips) ...")
    with Timer() as t:
        rows = make_data(n_clips * MOMENTS, write_training_set, str(path), n_clips)
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
        return store_uri(db)

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
        with Timer() as total, spy(spied) as parts:
            with Timer() as t_train:
                trained = train(df, params)
            with Timer() as t_register:
                holdout = metrics(trained.y_holdout, trained.holdout_pred)
                ho = trained.holdout
                with Timer() as t_reference:  # as clip_quality_model does before registering
                    day_end = ho["event_timestamp"] != ho["created_at"]
                    reference = reference_profile(
                        df,
                        ho.loc[day_end, "prediction"],
                        FEATURE_COLUMNS,
                        holdout_ages=ho.loc[day_end, "clip_age_hours"],
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
    record, breakdown = record_makers("train", scale, peak_rss_mb(), rows)
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


BENCHMARKS = {"train": run_train}
