"""What a training reads (#19): the window of clips created before the cutoff, sampled by
whole clips to a row budget, with tags that say so; and a day that does not train reads
nothing."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest
from support import tiny_training_set

from models.core.warehouse import Warehouse, connect
from models.features.training_set import read_window

DS = "2026-04-10"
CUTOFF = datetime(2026, 4, 10, 23, 59, 59, 999999, tzinfo=UTC)
WINDOW = 5
START = CUTOFF - timedelta(days=WINDOW)
US = timedelta(microseconds=1)


def _partition(tmp_path) -> tuple[Warehouse, dict[str, int]]:
    """40 clips created from 9 days before the cutoff on (two of them at the window's start
    and 1 us before it), each with 1 to 5 scoring moments; rows per clip."""
    created = {f"c{i:03d}": CUTOFF - timedelta(hours=5 * i + 1) for i in range(38)}
    created |= {"edge_in": START, "edge_out": START - US}
    rows, per_clip = [], {}
    for n, (cid, at) in enumerate(sorted(created.items())):
        k = 1 + n % 5
        per_clip[cid] = k
        for j in range(k):
            rows.append({"clip_id": cid, "event_timestamp": at + timedelta(hours=j),
                         "created_at": at, "creator_id": "k1", "quality_score": float(n)})  # fmt: skip
    wh = Warehouse(tmp_path / "home")
    wh.write("training_set", DS, pa.Table.from_pylist(rows), keys=("clip_id", "event_timestamp"))
    in_window = {c: k for c, k in per_clip.items() if created[c] >= START}
    return wh, in_window


def _clips(table: pa.Table) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in table.column("clip_id").to_pylist():
        out[c] = out.get(c, 0) + 1
    return out


def test_the_window_starts_at_cutoff_minus_its_days_inclusive(tmp_path):
    wh, in_window = _partition(tmp_path)
    total = sum(in_window.values())
    rows, tags = read_window(connect(), wh, DS, CUTOFF, WINDOW, total)
    got = _clips(rows)
    assert "edge_in" in got and "edge_out" not in got
    assert got == in_window
    assert tags == {
        "train_window_days": "5",
        "train_window_start": START.isoformat(),
        "train_rows_in_window": str(total),
        "train_rows_used": str(total),
        "train_sample": "none",
    }
    keys = list(
        zip(*(rows.column(k).to_pylist() for k in ("clip_id", "event_timestamp")), strict=True)
    )
    assert keys == sorted(keys)


@pytest.mark.parametrize("under", [1, 17])
def test_over_the_budget_whole_clips_in_md5_order_while_they_fit(tmp_path, under):
    wh, in_window = _partition(tmp_path)
    total = sum(in_window.values())
    budget = total - under
    rows, tags = read_window(connect(), wh, DS, CUTOFF, WINDOW, budget)
    want, used = {}, 0  # independently: md5 order (hex text sorts as the digest bytes)
    for cid in sorted(in_window, key=lambda c: (hashlib.md5(c.encode()).hexdigest(), c)):
        if used + in_window[cid] > budget:
            break
        want[cid], used = in_window[cid], used + in_window[cid]
    got = _clips(rows)
    assert got == want and 0 < rows.num_rows == used <= budget
    assert tags["train_sample"] == f"whole clips by md5(clip_id) up to {budget} rows"
    assert (tags["train_rows_in_window"], tags["train_rows_used"]) == (str(total), str(used))
    again, _ = read_window(connect(), wh, DS, CUTOFF, WINDOW, budget)
    assert again.equals(rows)  # the same sample on every run


def test_a_day_that_does_not_train_never_reads_its_rows(tmp_path):
    from models.training.lifecycle import Policy, run_day
    from models.training.params import TrainParams

    # a champion trained on data ending at this cutoff: not due again for 7 days
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    calls = []

    def rows():
        calls.append(1)
        df = tiny_training_set(400)
        return pa.Table.from_pandas(df, preserve_index=False), {"train_window_days": "90"}

    policy = Policy(min_labeled_clips=50, gate_bootstrap_samples=50)
    args = dict(cutoff=datetime(2026, 2, 1, tzinfo=UTC), tracking_uri=uri,
                artifact_location=None, run_id="r1", plots_dir=tmp_path / "plots")  # fmt: skip
    first = run_day(rows, TrainParams(n_estimators=20), policy, **args)
    assert calls == [1] and first.version == "1" and first.window == {"train_window_days": "90"}
    from mlflow import MlflowClient

    tags = MlflowClient(tracking_uri=uri).get_model_version("clip_quality", "1").tags
    assert tags["train_window_days"] == "90"
    second = run_day(rows, TrainParams(n_estimators=20), policy, **args)
    assert calls == [1] and not second.trained  # not due: nothing read
