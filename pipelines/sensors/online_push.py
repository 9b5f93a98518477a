"""The online push: a sensor that watches the landing dir for new engagement files and a
small job that pushes their fresh features into the online store.

The sensor's cursor remembers the newest landing file it handed on (mtime, and the names
sharing that mtime). On new files it first checks that the online store answers: when
Redis is down it skips the tick and keeps its cursor, so the next tick retries the same
files; otherwise it requests one `online_push_job` run whose `run_key` is the hash of the
file set (the same files never trigger twice) and advances the cursor. The job recomputes
the early-engagement features of the clips in those files (models/features/fresh.py) and writes
them through the `clip_features_push` push source's feature view, never over a newer row.
Freshness: a landed file is online within one sensor interval (30 s) plus the push. The
first tick only records the files already there (the nightly run materializes history).
"""

import hashlib
import json

import dagster as dg

from assets.resources import FeastResource, LandingResource
from models.core.contract import ENGAGEMENT
from models.ingest.landing import LandingFile, list_files
from pipelines.jobs import online_push_job

SENSOR_INTERVAL_S = 30


def _cursor(raw: str | None) -> dict:
    return json.loads(raw) if raw else {"mtime_ns": 0, "names": []}


@dg.sensor(
    job=online_push_job,
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.STOPPED,
)
def online_push_sensor(
    context: dg.SensorEvaluationContext, landing: LandingResource, feast: FeastResource
):
    """New landing engagement files -> one push run per file set (see module docstring)."""
    files: list[LandingFile] = list_files(landing.path, ENGAGEMENT)
    if context.cursor is None:  # first tick: start from now; history is the nightly job's
        newest = max((f.mtime_ns for f in files), default=0)
        context.update_cursor(
            json.dumps(
                {"mtime_ns": newest, "names": sorted(f.path for f in files if f.mtime_ns == newest)}
            )
        )
        return dg.SkipReason(f"started: {len(files)} existing file(s) left to the nightly run")
    cur = _cursor(context.cursor)
    new = [
        f
        for f in files
        if f.mtime_ns > cur["mtime_ns"]
        or (f.mtime_ns == cur["mtime_ns"] and f.path not in cur["names"])
    ]
    if not new:
        return dg.SkipReason("no new engagement files")
    problem = feast.ping_online()
    if problem:
        return dg.SkipReason(f"{problem}; {len(new)} new file(s) kept for the next tick")
    newest = max(f.mtime_ns for f in new)
    names = sorted(
        {f.path for f in new if f.mtime_ns == newest}
        | (set(cur["names"]) if newest == cur["mtime_ns"] else set())
    )
    context.update_cursor(json.dumps({"mtime_ns": newest, "names": names}))
    paths = sorted(f.path for f in new)
    key = hashlib.sha256("\n".join(paths).encode()).hexdigest()[:16]
    return dg.RunRequest(
        run_key=f"online-push-{key}",
        run_config={"ops": {"push_fresh_features": {"config": {"files": paths}}}},
        tags={"clipflow/files": str(len(paths))},
    )
