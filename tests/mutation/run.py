"""Mutation testing of the decision modules, one module at a time (`make mutate`).

mutmut's config is global ([tool.mutmut] in pyproject.toml), so each module runs in its own
work dir, `.mutmut/<module>/`: links to the code and the tests, and a pyproject.toml that is
the repo's plus the module's files to mutate and its fast tests. The run starts fresh (a
stale copy of an unmutated module would test old code), then every surviving mutant is
checked against `tests/mutation/baseline.md`: a survivor listed there is explained, any
other fails the run (a timeout counts as caught). Mutant names number the mutants of a function in order, so an edit to
a listed function renumbers them: rerun, and kill or re-explain what survives.

    python tests/mutation/run.py                  # every module
    python tests/mutation/run.py gate alerts      # some
    cd .mutmut/gate && mutmut show <mutant>       # a survivor's diff
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / ".mutmut"
BASELINE = Path(__file__).with_name("baseline.md")
LINKED = ["models", "feature_repo", "bench", "tests"]

COHORT_TESTS = "tests/models/monitoring/test_drift_cohorts.py"
NOISE_TESTS = "tests/models/monitoring/test_drift_noise.py"
# module -> (files to mutate, the fast tests that judge them: no e2e, no Dagster assets)
MODULES: dict[str, tuple[list[str], list[str]]] = {
    "gate": (["models/training/evaluation.py"], ["tests/models/training/test_evaluation.py"]),
    "alerts": (["models/monitoring/alerts.py"], ["tests/models/monitoring/test_alerts.py"]),
    "promotion": (
        ["models/training/aliases.py", "models/experiments/promotion.py"],
        ["tests/models/training/test_registry.py", "tests/models/experiments/test_promotion.py"],
    ),
    # the A/B decision under each method and the confidence sequence (#18)
    "abdecision": (
        ["models/experiments/decision.py", "models/experiments/sequential.py"],
        [
            "tests/models/experiments/test_decision.py",
            "tests/models/experiments/test_sequential.py",
            "tests/models/experiments/test_stats_methods.py",
        ],
    ),
    # ingestion's two-step clips lookup (#19)
    "keys": (
        ["models/ingest/keys.py"],
        ["tests/models/ingest/test_key_lookup.py", "tests/models/ingest/test_day.py"],
    ),
    # the online publish's streamed newest rows per key (#20)
    "stream": (["models/core/stream.py"], ["tests/models/core/test_stream.py"]),
    # the S3 files DuckDB reads on the Iceberg warehouse (#21): each thread its own position
    "object_store": (["models/core/object_store.py"], ["tests/models/core/test_object_store.py"]),
    "contract": (
        ["models/core/contract.py"],
        [
            "tests/models/ingest/test_contract_rules.py",
            "tests/models/ingest/test_contract_compile.py",
            "tests/models/ingest/test_day.py",
        ],
    ),
    "drift": (
        ["models/monitoring/drift.py"],
        [
            "tests/models/monitoring/test_drift.py",
            "tests/models/monitoring/test_drift_exact.py",
            "tests/models/monitoring/test_drift_reference.py",
            # the sample-size-aware thresholds (#17): the fast tests of the noise bound
            f"{NOISE_TESTS}::test_the_same_wasserstein_statistic_means_drift_at_200k_rows_and_noise_at_200",
            f"{NOISE_TESTS}::test_jensen_shannon_and_psi_bounds_are_the_chi_square_quantiles",
            f"{NOISE_TESTS}::test_a_statistic_just_above_its_noise_bound_drifts_and_just_below_does_not",
            f"{NOISE_TESTS}::test_the_wasserstein_bound_is_in_the_reference_s_units",
        ],
    ),
    # like with like (#17): the simulation's tests at 2,000 new clips a day (a 200,000 one
    # profiles a 1.4M-row day, ~10 s: `make test` runs them)
    "cohorts": (
        ["models/monitoring/cohorts.py"],
        [
            f"{COHORT_TESTS}::test_thirty_stable_days_at_2k_new_clips_give_at_most_3_false_flags",
            *(
                f"{COHORT_TESTS}::test_a_planted_shift_is_flagged_on_its_first_day_and_nothing_else[{k}-2000]"
                for k in (1, 2, 3)
            ),
            f"{COHORT_TESTS}::test_the_old_all_rows_comparison_is_what_cried_wolf",
            f"{COHORT_TESTS}::test_growing_features_never_flag_on_growth_and_say_why",
            f"{COHORT_TESTS}::test_engagement_and_predictions_are_judged_per_age_bucket",
            f"{COHORT_TESTS}::test_compare_cohorts_field_by_field",
            f"{COHORT_TESTS}::test_the_worst_bucket_is_the_one_furthest_over_its_threshold",
            "tests/models/monitoring/test_drift_reference.py",  # the reference's own cohorts
        ],
    ),
    "intervals": (
        ["models/training/intervals.py", "models/monitoring/performance.py"],
        ["tests/models/training/test_intervals.py", "tests/models/monitoring/test_performance.py"],
    ),
    "stats": (
        ["models/experiments/stats.py"],
        [
            "tests/models/experiments/test_stats.py",
            "tests/models/experiments/test_stats_edges.py",
            "tests/models/experiments/test_stats_summary.py",
            "tests/models/experiments/test_stats_methods.py",
            "tests/models/experiments/test_sequential.py",
        ],
    ),
    "scorer": (
        ["models/serving/scorer.py"],
        ["tests/models/serving/test_scorer.py", "tests/models/serving/test_scorer_faults.py"],
    ),
    "redis_cluster": (
        ["feature_repo/redis_cluster.py"],
        [
            "tests/scaleout/test_cluster_routes.py",  # a real 3-node cluster, #21
            "tests/feature_repo/test_fast_read.py",  # reads on one Redis and on the cluster
        ],
    ),
    "online_write": (
        ["feature_repo/online_write.py"],
        [
            "tests/feature_repo/test_online.py",
            "tests/feature_repo/test_online_rerun.py",
            "tests/feature_repo/test_online_views.py",  # write_views_fast, write_stream (#20)
            "tests/feature_repo/test_write_properties.py",
        ],
    ),
}


def _toml_list(values: list[str]) -> str:
    return "[" + ", ".join(f'"{v}"' for v in values) + "]"


def prepare(module: str, fresh: bool = True) -> Path:
    """`.mutmut/<module>/` (fresh unless asked): links to the tree and the module's own
    pyproject.toml."""
    files, tests = MODULES[module]
    work = WORK / module
    if fresh:
        shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    for name in LINKED:
        if not (work / name).is_symlink():
            (work / name).symlink_to(ROOT / name, target_is_directory=True)
    text = (ROOT / "pyproject.toml").read_text()
    assert "[tool.mutmut]" in text, "pyproject.toml lost its [tool.mutmut] table"
    extra = (
        f"only_mutate = {_toml_list(files)}\n"
        f"pytest_add_cli_args_test_selection = {_toml_list(tests)}\n"
    )
    (work / "pyproject.toml").write_text(text.replace("[tool.mutmut]\n", "[tool.mutmut]\n" + extra))
    return work


def mutmut(work: Path, *args: str, capture: bool = False) -> subprocess.CompletedProcess:
    binary = Path(sys.executable).with_name("mutmut")
    # one thread per OpenMP/BLAS pool: a mutant is forked from a process that has scored
    # with xgboost, and a forked OpenMP pool deadlocks (a false "timeout")
    threads = {v: "1" for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    env = {**os.environ, **threads, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [str(binary), *args], cwd=work, env=env, text=True, capture_output=capture, check=False
    )


def results(work: Path) -> dict[str, str]:
    """mutant name -> status (killed, survived, timeout, no tests, ...)."""
    out = mutmut(work, "results", "--all", "true", capture=True).stdout
    return dict(re.findall(r"^\s+(\S+): (.+)$", out, flags=re.M))


def explained() -> list[str]:
    """The survivors the baseline explains: the `name` (or `glob*`) in a table row's first
    cell."""
    return re.findall(r"^\|\s*`([^`]+__mutmut_[^`]+)`", BASELINE.read_text(), flags=re.M)


def run(module: str, max_children: int, survivors_only: bool = False) -> bool:
    """Mutate `module` from scratch, or (survivors_only) rerun only the last run's
    survivors, with the tests as they are now (the module's code must be unchanged)."""
    work = prepare(module, fresh=not survivors_only)
    again = [n for n, s in results(work).items() if s != "killed"] if survivors_only else []
    start = time.monotonic()
    proc = mutmut(work, "run", "--max-children", str(max_children), *again)
    wall = time.monotonic() - start
    status = results(work)
    counts: dict[str, int] = {}
    for s in status.values():
        counts[s] = counts.get(s, 0) + 1
    # a timeout is caught: the mutant made the tests run past mutmut's limit
    survivors = sorted(n for n, s in status.items() if s not in ("killed", "timeout"))
    known = explained()
    unexplained = [n for n in survivors if not any(fnmatch.fnmatchcase(n, k) for k in known)]
    print(
        f"\n== {module}: {len(status)} mutants, {counts} in {wall:.0f}s (mutmut rc {proc.returncode})"
    )
    for name in survivors:
        print(
            f"   {'explained ' if name not in unexplained else 'UNEXPLAINED'} {name}: {status[name]}"
        )
    if unexplained:
        print(
            f"   see: cd {work.relative_to(ROOT)} && {Path(sys.executable).parent}/mutmut show <name>"
        )
    return proc.returncode == 0 and bool(status) and not unexplained


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help=f"some of: {' '.join(MODULES)} (default: all)")
    parser.add_argument("--max-children", type=int, default=2)
    parser.add_argument(
        "--survivors-only",
        action="store_true",
        help="rerun only the last run's survivors (after adding tests; the code unchanged)",
    )
    args = parser.parse_args()
    unknown = set(args.modules) - set(MODULES)
    if unknown:
        parser.error(f"unknown module(s) {sorted(unknown)}; known: {' '.join(MODULES)}")
    ok = [run(m, args.max_children, args.survivors_only) for m in args.modules or MODULES]
    return 0 if all(ok) else 1


if __name__ == "__main__":
    sys.exit(main())
