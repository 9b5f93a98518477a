"""`python -m bench [--only NAME] [--scale F] [--out DIR]`: run the benchmarks, print a table.

Each benchmark runs in a fresh subprocess (`python -m bench --child NAME ...`), so its
`peak_rss_mb` is that process's own peak, not the runner's. Its records are written as one
JSON-lines file per run, `<out>/<name>-<UTC time>.jsonl`. The exit status is non-zero only
when a benchmark crashed; a missed target is reported (`met` = NO), never an error.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import bench
from bench.common import Benchmark, format_table, log, read_records, write_records

ROOT = Path(bench.__file__).resolve().parent.parent  # the repository (`-m bench` runs here)
DEFAULT_OUT = Path(bench.__file__).resolve().parent / "results"


def discover() -> dict[str, Benchmark]:
    """Every `BENCHMARKS` dict (name -> function) of the modules of the `bench` package."""
    found: dict[str, Benchmark] = {}
    for mod in pkgutil.iter_modules(bench.__path__):
        if mod.name.startswith("_") or mod.name == "common":
            continue
        module = importlib.import_module(f"bench.{mod.name}")
        for name, fn in getattr(module, "BENCHMARKS", {}).items():
            if name in found:
                raise RuntimeError(f"benchmark {name!r} is declared twice")
            found[name] = fn
    return dict(sorted(found.items()))


def _child(name: str, scale: float, records_path: Path) -> int:
    fn = discover()[name]
    with tempfile.TemporaryDirectory(prefix=f"clipflow-bench-{name}-") as tmp:
        records = fn(scale, Path(tmp))
    write_records(records_path, records)
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument(
        "--only",
        metavar="NAME",
        action="append",
        help="run only this benchmark (repeatable); default: all",
    )
    p.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="size factor: 1.0 is the real size, 0.001 a smoke run (default 1.0)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"where the JSON-lines records go (default {DEFAULT_OUT})",
    )
    p.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    p.add_argument("--child", metavar="NAME", help=argparse.SUPPRESS)
    p.add_argument("--records", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not args.scale > 0:
        p.error("--scale must be > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.child:
        return _child(args.child, args.scale, args.records)

    registry = discover()
    if args.list:
        print("\n".join(registry))
        return 0
    names = args.only or list(registry)
    unknown = [n for n in names if n not in registry]
    if unknown:
        print(
            f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(registry)}",
            file=sys.stderr,
        )
        return 2

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    records: list[dict] = []
    crashed: list[str] = []
    for name in names:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        path = out / f"{name}-{stamp}.jsonl"
        log(f"{name}: scale {args.scale:g}, fresh subprocess")
        cmd = [
            sys.executable,
            "-m",
            "bench",
            "--child",
            name,
            "--scale",
            repr(args.scale),
            "--records",
            str(path),
        ]
        rc = subprocess.run(cmd, cwd=ROOT).returncode
        if rc != 0 or not path.exists():
            crashed.append(f"{name} (exit {rc})")
            log(f"{name}: CRASHED with exit status {rc}")
            continue
        got = read_records(path)
        records += got
        log(f"{name}: {len(got)} record(s) -> {path}")

    print()
    if records:
        print(format_table(records))
    if crashed:
        print(f"\ncrashed: {', '.join(crashed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
