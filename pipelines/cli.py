"""The `clipflow` command: generate, run, demo, ui.

Kept light on imports so that `clipflow --help` answers at once: Dagster, Feast and
Great Expectations load only inside the commands that need them.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _date(s: str) -> date:
    try:
        return date.fromisoformat(s)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {s!r}") from e


def _yesterday() -> date:
    return datetime.now(UTC).date() - timedelta(days=1)


def cmd_generate(a: argparse.Namespace) -> int:
    from models.synthetic.landing import generate_landing

    start = a.start or (_yesterday() - timedelta(days=a.days - 1))
    summary = generate_landing(
        a.out,
        days=a.days,
        start=start,
        clips_per_day=a.clips_per_day,
        users=a.users,
        seed=a.seed,
        drift_start=a.drift_start,
        drift_strength=a.drift_strength,
        ab_lift=a.ab_lift,
        srm=a.srm,
        bad_row_rate=a.bad_row_rate,
    )
    print(f"wrote landing data to {Path(a.out).resolve()}")
    for k, v in summary.items():
        print(f"  {k}: {v}")
    return 0


def cmd_run(a: argparse.Namespace) -> int:
    from pipelines.runner import print_summary, resolve_days, run_days

    got = resolve_days(a, "run", _yesterday())
    if isinstance(got, int):
        return got
    s, days = got
    summary = run_days(days, job_name=a.job, out=sys.stdout)
    print_summary(summary, sys.stdout)
    print(f"\nwarehouse: {s.home / 'warehouse'}\nrun history: clipflow ui --home {s.home}")
    return 0 if summary.success else 1


def cmd_backfill(a: argparse.Namespace) -> int:
    from pipelines.backfill import print_summary, run_backfill
    from pipelines.runner import resolve_days

    got = resolve_days(a, "backfill", _yesterday())
    if isinstance(got, int):
        return got
    s, days = got
    say = lambda m: print(m, flush=True)  # noqa: E731
    try:
        summary = run_backfill(days, say)
    except KeyboardInterrupt as e:
        print(f"clipflow backfill: stopped ({e or 'interrupted'})", file=sys.stderr)
        return 130
    print_summary(summary, say)
    print(f"run history: clipflow ui --home {s.home}")
    return 0 if summary.success else 1


def demo_landing(home: Path | None) -> Path:
    """Where `clipflow demo` keeps its generated landing files: `<home>/demo/landing`."""
    home = Path(home or os.environ.get("CLIPFLOW_HOME") or ".clipflow").resolve()
    return home / "demo" / "landing"


def cmd_demo(a: argparse.Namespace) -> int:
    landing = demo_landing(a.home)
    home = landing.parents[1]
    end = _yesterday()
    start = end - timedelta(days=a.days - 1)
    if not landing.is_dir():
        gen = argparse.Namespace(
            out=landing,
            days=a.days,
            start=start,
            clips_per_day=a.clips_per_day,
            users=a.users,
            seed=a.seed,
            drift_start=end - timedelta(days=max(1, a.days // 4) - 1),
            drift_strength=1.0,
            ab_lift=0.03,
            srm=0.0,
            bad_row_rate=0.002,
        )
        cmd_generate(gen)
    else:
        print(f"reusing demo landing data in {landing}")
    run = argparse.Namespace(landing=landing, home=home, start=None, end=None, job="nightly_job")
    return cmd_run(run)


def ui_landing(home: Path | None, landing: Path | None) -> Path | None:
    """The landing dir `clipflow ui` gives its runs: the one asked for; else, when neither
    `CLIPFLOW_LANDING_DIR` nor `data/landing` exists, the demo's (`make demo` then
    `make ui` launches nightly runs on the demo data); else the settings' default."""
    if landing is not None or os.environ.get("CLIPFLOW_LANDING_DIR"):
        return landing
    demo = demo_landing(home)
    return demo if demo.is_dir() and not Path("data/landing").is_dir() else None


def cmd_ui(a: argparse.Namespace) -> int:
    from models.core.settings import prepare_process
    from pipelines.backfill import ensure_lane_pools

    s = prepare_process(home=a.home, landing_dir=ui_landing(a.home, a.landing))
    ensure_lane_pools()
    cmd = [
        sys.executable,
        "-m",
        "dagster",
        "dev",
        "-w",
        str(PROJECT_ROOT / "workspace.yaml"),
        "-h",
        a.host,
        "-p",
        str(a.port),
    ]
    print(
        f"Dagster UI on http://{a.host}:{a.port} (home {s.home}, landing {s.landing_dir}); "
        "Ctrl-C stops it"
    )
    return supervise(cmd)


def supervise(cmd: list[str], grace_s: float = 15.0) -> int:
    """Run `cmd` in its own process group until it exits or we get SIGINT/SIGTERM, then stop
    the whole group (SIGTERM, then SIGKILL after `grace_s`: `dagster dev` ignores SIGTERM
    for over 10 s). Signals that arrive during that clean-up are ignored, so a second
    Ctrl-C never leaves the webserver and daemon running."""
    proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, start_new_session=True)

    def _terminate(signum, frame):  # SIGTERM: stop dagster dev and its children too
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGINT, _stopping)
        signal.signal(signal.SIGTERM, _stopping)
        try:
            stop_process_group(proc, grace_s)
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, previous)


def _stopping(signum, frame) -> None:
    print("clipflow: stopping the process group, please wait", file=sys.stderr, flush=True)


def cmd_feast(a: argparse.Namespace) -> int:
    """`feast` on the clipflow repo and home: the same configuration the pipeline uses."""
    from feature_repo.config import write_feature_store_yaml
    from models.core.settings import prepare_process

    prepare_process(home=a.home)
    yaml_path = write_feature_store_yaml()
    feast = Path(sys.executable).with_name("feast")
    cmd = [
        str(feast),
        "-c",
        str(PROJECT_ROOT / "feature_repo"),
        "-f",
        str(yaml_path),
        *a.feast_args,
    ]
    return subprocess.call(cmd, cwd=PROJECT_ROOT)


def cmd_serve(a: argparse.Namespace) -> int:
    """The scoring API (pipelines/serve/app.py) with uvicorn, on the pipeline's environment."""
    from models.core.settings import prepare_process

    prepare_process(home=a.home, landing_dir=a.landing)
    import uvicorn

    from models.core.settings import current
    from models.serving import api_keys as ak
    from pipelines.serve.app import create_app

    active = [k for k in ak.list_keys(ak.db_path(current().home)) if k.revoked_at is None]
    if not active:
        print("no API key yet: every request but /healthz gets 401 (clipflow api-keys create)",
              file=sys.stderr)  # fmt: skip
    if not os.environ.get(ak.PEPPER_ENV):
        print(f"warning: {ak.PEPPER_ENV} is unset: key hashes are not peppered", file=sys.stderr)
    print(f"clipflow API on http://{a.host}:{a.port} (docs at /docs); Ctrl-C stops it")
    uvicorn.run(create_app(), host=a.host, port=a.port, log_level="warning", access_log=False)
    return 0


def cmd_api_keys(a: argparse.Namespace) -> int:
    """API keys of `clipflow serve` (models/serving/api_keys.py): only hashes are stored."""
    import json as _json

    from models.core.settings import current
    from models.serving import api_keys as ak

    path = ak.db_path(current(a.home).home)
    try:
        if a.action == "create":
            key, row = ak.create(path, a.name, ak.parse_scopes(a.scopes), a.rate, a.burst)
            print(key)
            print(f"created key {row.key_id} ({row.name}: {','.join(row.scopes)}) in {path};"
                  " the key is shown once, keep it in your secret store", file=sys.stderr)  # fmt: skip
        elif a.action == "list":
            for row in ak.list_keys(path):
                print(_json.dumps(row.public()))
        elif a.action == "revoke":
            if not ak.revoke(path, a.key_id):
                print(f"no active key {a.key_id} in {path}", file=sys.stderr)
                return 1
            print(f"revoked {a.key_id}", file=sys.stderr)
        else:  # user-token
            token, exp = ak.mint_token(a.user, a.ttl)
            print(token)
            print(f"event token for {a.user}, expires at {exp} (unix s)", file=sys.stderr)
    except ak.ApiKeyError as e:
        print(f"clipflow api-keys {a.action}: {e}", file=sys.stderr)
        return 2
    return 0


def stop_process_group(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """Stop `dagster dev` and everything it started (it can leave children behind)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc.poll()  # reap the leader so that it stops counting as a member
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="clipflow",
        description="Batch ML workflow for short-video clip quality (Dagster, Feast, MLflow).",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    g = sub.add_parser("generate", help="write a realistic, seeded landing directory")
    g.add_argument("--out", required=True, type=Path, help="landing directory to write")
    g.add_argument("--days", type=int, default=14, help="number of days (default 14)")
    g.add_argument("--start", type=_date, help="first day, YYYY-MM-DD (default: DAYS ago)")
    g.add_argument("--clips-per-day", type=int, default=2000, help="default 2000")
    g.add_argument("--users", type=int, default=5000, help="experiment users (default 5000)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument(
        "--drift-start", type=_date, help="clips from this day on have drifted attributes"
    )
    g.add_argument(
        "--drift-strength", type=float, default=1.0, help="size of the drift (default 1)"
    )
    g.add_argument(
        "--ab-lift",
        type=float,
        default=0.03,
        help="planted relative lift of the treatment on the primary metric",
    )
    g.add_argument(
        "--srm",
        type=float,
        default=0.0,
        help="share of treatment assignments dropped (a sample-ratio mismatch)",
    )
    g.add_argument(
        "--bad-row-rate",
        type=float,
        default=0.002,
        help="share of rows that break a contract rule (default 0.002)",
    )
    g.set_defaults(fn=cmd_generate)

    days = argparse.ArgumentParser(add_help=False)
    days.add_argument("--landing", type=Path, help="landing dir (default $CLIPFLOW_LANDING_DIR)")
    days.add_argument(
        "--home", type=Path, help="clipflow home (default $CLIPFLOW_HOME or .clipflow)"
    )
    days.add_argument("--start", type=_date, help="first day (default: first day in landing data)")
    days.add_argument("--end", type=_date, help="last day (default: last day in landing data)")
    r = sub.add_parser("run", parents=[days], help="run the asset graph in-process, day by day")
    r.add_argument("--job", default="nightly_job", help="job to run per day (default nightly_job)")
    r.set_defaults(fn=cmd_run)

    b = sub.add_parser("backfill", parents=[days], help="the days as one Dagster backfill, "
                       "runs in parallel where the asset graph allows")  # fmt: skip
    b.set_defaults(fn=cmd_backfill)

    d = sub.add_parser("demo", help="generate demo data and run on it")
    d.add_argument("--home", type=Path, help="clipflow home (default .clipflow)")
    d.add_argument("--days", type=int, default=14)
    d.add_argument("--clips-per-day", type=int, default=1000)
    d.add_argument("--users", type=int, default=3000)
    d.add_argument("--seed", type=int, default=7)
    d.set_defaults(fn=cmd_demo)

    f = sub.add_parser(
        "feast",
        help="the feast CLI on this home (e.g. `clipflow feast serve -p 6566`)",
        description="Runs `feast -c feature_repo -f $CLIPFLOW_HOME/feast/feature_store.yaml "
        "ARGS`, the YAML written from the same environment the pipeline uses "
        "(CLIPFLOW_HOME, CLIPFLOW_REDIS).",
    )
    f.add_argument("--home", type=Path)
    f.add_argument("feast_args", nargs=argparse.REMAINDER, help="arguments for feast")
    f.set_defaults(fn=cmd_feast)

    u = sub.add_parser("ui", help="the Dagster UI on the same home (dagster dev)")
    u.add_argument("--home", type=Path)
    u.add_argument("--landing", type=Path)
    u.add_argument("--host", default="127.0.0.1")
    u.add_argument("--port", type=int, default=3000)
    u.set_defaults(fn=cmd_ui)

    v = sub.add_parser("serve", help="the scoring API for apps (FastAPI + uvicorn)")
    v.add_argument("--home", type=Path)
    v.add_argument("--landing", type=Path, help="where experiments/experiments.yaml lives")
    v.add_argument("--host", default="127.0.0.1")
    v.add_argument("--port", type=int, default=8000)
    v.set_defaults(fn=cmd_serve)

    k = sub.add_parser("api-keys", help="create, list and revoke the API's keys")
    ks = k.add_subparsers(dest="action", required=True, metavar="ACTION")
    kc = ks.add_parser("create", help="a new key, printed once (only its hash is stored)")
    kc.add_argument("--name", required=True, help="who holds it, e.g. 'feed-service'")
    kc.add_argument(
        "--scopes", required=True, help="comma-separated: score, events, tokens, metrics, admin"
    )
    kc.add_argument("--rate", type=float, default=100.0, help="requests/s, 0 = unlimited")
    kc.add_argument("--burst", type=int, default=200, help="requests above the rate at once")
    ks.add_parser("list", help="the keys (id, name, scopes, limits, revoked): never secrets")
    kr = ks.add_parser("revoke", help="revoke a key by its id")
    kr.add_argument("key_id")
    kt = ks.add_parser("user-token", help="an event token bound to one user")
    kt.add_argument("--user", required=True)
    kt.add_argument("--ttl", type=int, default=3600, help="seconds, at most 86400")
    for q in (kc, kr, kt, ks.choices["list"]):
        q.add_argument("--home", type=Path)
    k.set_defaults(fn=cmd_api_keys)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
