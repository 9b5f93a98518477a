"""A/B experiments: cumulative daily analysis, reports, and promotion from a `ship`.

Each day, every experiment of `experiments/experiments.yaml` that has started is analysed
on everything known by the end of the day (models/experiments/stats.py: SRM, lifts with
confidence sequences or Welch intervals by the experiment's method, CUPED,
Benjamini-Hochberg on secondaries, guardrails, power), and decided under its method with
its earlier looks (models/experiments/decision.py: a final decision stands; the history
is read back from `ab_results`). A bad experiment config is a warning
naming the field; the others still run. For an experiment whose variants map to model
aliases, the result is bound to the versions that served each variant (the alias log,
stamped here once a day: models/experiments/promotion.py): a `ship` promotes exactly the
version that served the shipped variant, tagged with the experiment id, and a served
version that changed mid-experiment makes the decision `invalid_model_change`. The asset
runs after the day's training (a dependency), so a move that training makes counts from
the end of the day, in a backfill as in real time.
"""

import dagster as dg

from assets.constants import DAILY_PARTITIONS, EXPERIMENTS, MODEL_LANE, OWNERS, day_end
from assets.markdown import head_md
from assets.resources import (
    EventsResource,
    LandingResource,
    MlflowResource,
    WarehouseResource,
)
from models.experiments.promotion import promote_from_experiment

PREVIEW_COLUMNS = ["experiment_id", "metric", "variant", "relative_lift", "p_value", "decision"]


@dg.asset(
    group_name=EXPERIMENTS,
    owners=OWNERS[EXPERIMENTS],
    partitions_def=DAILY_PARTITIONS,
    deps=["assignments", "user_metrics", "clip_quality_model"],
    pool=MODEL_LANE,
    kinds={"duckdb", "scipy"},
    description="Per experiment, cumulative to the end of the day: SRM, lifts with intervals, "
    "CUPED, power and a decision bound to the model versions that served; JSON + HTML "
    "reports; a `ship` promotes the version that served the shipped variant.",
)
def ab_results(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    landing: LandingResource,
    mlflow: MlflowResource,
    events: EventsResource,
) -> dg.MaterializeResult:
    from models.experiments.aggregate import ANALYSIS_MEMORY_LIMIT, analyze, load_history
    from models.experiments.config import load_experiments
    from models.experiments.report import result_rows, result_table, write_report

    as_of = day_end(context.partition_key)
    configs, errors = load_experiments(landing.path / "experiments" / "experiments.yaml")
    for e in errors:
        context.log.warning(f"experiment config {e.experiment}: {e.field}: {e.message}")
    wh = warehouse.get()
    con = wh.connect(memory_limit=ANALYSIS_MEMORY_LIMIT)
    reports = wh.home / "reports" / "ab"
    client = mlflow.client()
    from models.training import registry

    existing = registry.aliases(client) or {}
    registry.stamp(client, as_of, tracking_uri=mlflow.uri)  # the day's mark in the alias log
    rows, decisions = [], {}
    for exp in configs:
        missing = sorted(a for a in exp.model_aliases.values() if a not in existing)
        if missing:
            context.log.warning(
                f"{exp.experiment_id}: model aliases not set in the registry: {missing} "
                "(the champion serves their users; the analysis does not need them)"
            )
        if exp.start > as_of or not (wh.exists("assignments") and wh.exists("user_metrics")):
            continue
        result = analyze(con, wh, exp, as_of, history=load_history(con, wh, exp, as_of))
        promotion = promote_from_experiment(client, exp, result, mlflow.uri)
        result = {**result, **promotion.report_fields()}
        json_path, html_path = write_report(result, exp, reports)
        events.publish(
            "experiment_decided",
            {"experiment_id": exp.experiment_id, "decision": result["decision"],
             "final": result["final"], "method": exp.method,
             "as_of": result["analyzed_at"], "promotion": promotion.reason},
        )  # fmt: skip
        if promotion.promoted:
            events.publish(
                "model_promoted",
                {"version": promotion.version,
                 "reason": f"A/B experiment {exp.experiment_id}: ship"},
            )  # fmt: skip
        decisions[exp.experiment_id] = f"{result['decision']} ({promotion.reason}) {html_path}"
        rows += result_rows(result)
    table = result_table(rows) if rows else None
    n = wh.write("ab_results", context.partition_key, table) if table is not None else 0
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": n,
            "experiments": len(decisions),
            "config_errors": len(errors),
            "decisions": dg.MetadataValue.md(
                "\n".join(f"- **{k}**: {v}" for k, v in decisions.items()) or "none active"
            ),
            "reports": dg.MetadataValue.path(str(reports)),
            "preview": dg.MetadataValue.md(
                head_md(table, PREVIEW_COLUMNS) if table is not None else "no experiment analysed"
            ),
        }
    )


experiment_assets = [ab_results]
