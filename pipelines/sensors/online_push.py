"""The online push: a sensor that watches the landing dir for new engagement files and a
small job that pushes their fresh features into the online store.

A file is known by its path, size and mtime: a file that changes is a new file (pushed
again), and a file moved in with an older mtime is seen all the same (no mtime watermark).
A file is taken only once it is stable: it must have the same size and mtime at two
ticks in a row, so a file seen half-written waits until it stops changing, and is then
pushed whole. The cursor holds the digests of the files handed on (those still in the
landing dir) and the files waiting to settle.

On stable new files the sensor first checks that the online store answers: when Redis is
down it skips the tick and hands nothing on, so the next tick retries the same files;
otherwise it requests one `online_push_job` run whose `run_key` is the hash of the files'
paths, sizes and mtimes (the same files never trigger twice; a changed file does). The job
recomputes the early-engagement features of the clips in those files
(models/features/fresh.py) and writes them through the `clip_features_push` push source's
feature view, never over a newer row. Freshness: a landed file is online within two sensor
intervals (30 s each) plus the push. The first tick only records the files already there
(the nightly run materializes history).
"""

import hashlib
import json

import dagster as dg

from assets.resources import FeastResource, LandingResource
from models.core.contract import ENGAGEMENT
from models.ingest.landing import LandingFile, list_files
from pipelines.jobs import online_push_job

SENSOR_INTERVAL_S = 30


def file_key(f: LandingFile) -> str:
    """What identifies a landing file's content: path, size, mtime."""
    return f"{f.path}\t{f.size}\t{f.mtime_ns}"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _cursor(raw: str, files: list[LandingFile]) -> tuple[set[str], dict[str, list[int]]]:
    """(digests of the files handed on, path -> [size, mtime] of files settling); a cursor
    of the earlier form (an mtime watermark) counts the files up to its mark as handed on."""
    cur = json.loads(raw)
    if "done" in cur:
        return set(cur["done"]), cur["pending"]
    mark, names = cur["mtime_ns"], set(cur["names"])
    done = {
        _digest(file_key(f))
        for f in files
        if f.mtime_ns < mark or (f.mtime_ns == mark and f.path in names)
    }
    return done, {}


def _save(context, files: list[LandingFile], done: set[str], pending: dict) -> None:
    present = {_digest(file_key(f)) for f in files}  # forget files no longer there
    context.update_cursor(json.dumps({"done": sorted(done & present), "pending": pending}))


@dg.sensor(
    job=online_push_job,
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.STOPPED,
)
def online_push_sensor(
    context: dg.SensorEvaluationContext, landing: LandingResource, feast: FeastResource
):
    """New or changed landing engagement files, once stable -> one push run per file set
    (see module docstring)."""
    files = [f for f in list_files(landing.path, ENGAGEMENT) if not f.refused]
    if context.cursor is None:  # first tick: start from now; history is the nightly job's
        _save(context, files, {_digest(file_key(f)) for f in files}, {})
        return dg.SkipReason(f"started: {len(files)} existing file(s) left to the nightly run")
    done, pending = _cursor(context.cursor, files)
    new = [f for f in files if _digest(file_key(f)) not in done]
    stable = [f for f in new if pending.get(f.path) == [f.size, f.mtime_ns]]
    seen = {f.path: [f.size, f.mtime_ns] for f in new}
    if not stable:
        _save(context, files, done, seen)
        if new:
            return dg.SkipReason(f"{len(new)} new file(s) settling: taken once unchanged")
        return dg.SkipReason("no new engagement files")
    problem = feast.ping_online()
    if problem:
        _save(context, files, done, seen)  # the stable ones stay stable for the next tick
        return dg.SkipReason(f"{problem}; {len(stable)} new file(s) kept for the next tick")
    done |= {_digest(file_key(f)) for f in stable}
    _save(
        context, files, done, {p: v for p, v in seen.items() if p not in {f.path for f in stable}}
    )
    paths = sorted(f.path for f in stable)
    key = _digest("\n".join(sorted(file_key(f) for f in stable)))
    return dg.RunRequest(
        run_key=f"online-push-{key}",
        run_config={"ops": {"push_fresh_features": {"config": {"files": paths}}}},
        tags={"clipflow/files": str(len(paths)), "clipflow/settling": str(len(new) - len(stable))},
    )
