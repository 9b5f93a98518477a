"""The A/B report: `<experiment_id>.json` (the `analyze` result, with `model_versions` and
`promotion` where the variants map to model aliases: models/experiments/promotion.py) and a
self-contained `<experiment_id>.html` a product manager can read: the decision in plain
words, the model versions that served each variant, the SRM check, and per metric an
interval plot of the relative lift of each variant (PNG inline).

Decisions: `ship`, `no_ship`, `inconclusive`, `invalid_srm`, `running` (decision.decide)
and `invalid_model_change` (a variant's served model version changed mid-experiment). The
page also shows the method, why the decision is what it is, and the look history with a
chart of the primary metric's interval narrowing over the looks."""

from __future__ import annotations

import html
import json
from pathlib import Path

import pyarrow as pa
from matplotlib.figure import Figure

from models.core.html import GREEN, GREY, RED, base_style, img, num, page, png, write_json_and_html
from models.experiments.config import ExperimentConfig
from models.experiments.decision import REASONS


def metric_label(metric: str) -> str:
    """`watch_time_s` -> `watch time (s)`, `clips_viewed` -> `clips viewed`."""
    unit = ""
    if metric.endswith("_s"):
        metric, unit = metric[:-2], " (s)"
    return metric.replace("_", " ") + unit


def _pct(v: float | None, sign: bool = True) -> str:
    if v is None:
        return "n/a"
    return f"{v:+.1%}" if sign else f"{abs(v):.1%}"


def _ci(r: dict, conf: float) -> str:
    return f"{conf:.0%} CI {_pct(r['relative_ci_low'])} to {_pct(r['relative_ci_high'])}"


def _p(p: float | None) -> str:
    if p is None:
        return "p = n/a"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _served(exp: ExperimentConfig, variant: str) -> str:
    alias = exp.model_aliases.get(variant)
    return f" (model alias '{alias}')" if alias else ""


def decision_text(result: dict, exp: ExperimentConfig) -> str:
    """The decision in one or two plain sentences."""
    conf = exp.confidence_level
    label = metric_label(exp.primary_metric)
    primary = [r for r in result["metrics"] if r["primary"]]
    srm = result["srm"]
    decision = result["decision"]
    if decision == "invalid_srm":
        shares = ", ".join(
            f"{v} {srm['observed'][v] / max(sum(srm['observed'].values()), 1):.1%} "
            f"(expected {exp.variants[v]:.1%})"
            for v in exp.variants
        )
        return (
            f"Do not trust these results: the traffic split does not match the configuration "
            f"({shares}; {_p(srm['p_value'])}). Users are being lost or mis-assigned; fix the "
            "assignment logging before reading any metric."
        )
    if decision == "invalid_model_change":
        why = (result.get("promotion") or {}).get("reason", "the served model changed")
        return (
            f"Do not trust these results: a variant's model version changed during the "
            f"experiment, so its users saw two models ({why}). Nothing was promoted; restart "
            "the experiment with the aliases held fixed."
        )
    reason = result.get("decision_reason")
    if decision == "running":
        return (
            f"Keep the experiment running: it is analysed once, at its fixed horizon "
            f"({_horizon(exp)}). The figures below are interim, not decision-grade: acting on "
            "them would raise the error rate the confidence level promises."
        )
    if decision == "inconclusive" and reason in _WAITING:
        return f"Keep the experiment running: {_WAITING[reason](result, exp)}."
    if decision == "no_ship" and reason == "guardrail_down":
        fell = [r for r in result["metrics"] if r.get("guardrail") and r["significant"]
                and r["lift"] < 0]  # fmt: skip
        parts = ", ".join(f"{metric_label(r['metric'])} {_pct(r['relative_lift'])} "
                          f"({r['variant']})" for r in fell)  # fmt: skip
        return f"Do not ship: {label} rose, but a guardrail metric fell ({parts})."
    if decision == "inconclusive":
        n = min(srm["observed"].values()) if srm["observed"] else 0
        now = "; ".join(f"{r['variant']} {_pct(r['relative_lift'])} so far" for r in primary)
        return (
            f"Keep the experiment running: the smallest variant has {n:,} of the "
            f"{exp.min_sample_size:,} users it needs ({label} per user: {now})."
        )
    if decision == "ship":
        best = max(
            (r for r in primary if r["significant"] and r["lift"] > 0),
            key=lambda r: r["relative_lift"] or 0,
        )
        return (
            f"Ship {best['variant']}{_served(exp, best['variant'])}: {label} per user up "
            f"{_pct(best['relative_lift'], sign=False)} ({_ci(best, conf)}, "
            f"{_p(best['p_value'])}). {_secondary_text(result)}"
        )
    worse = [r for r in primary if r["significant"] and r["lift"] < 0]
    if worse:
        r = worse[0]
        return (
            f"Do not ship {r['variant']}: {label} per user down "
            f"{_pct(r['relative_lift'], sign=False)} ({_ci(r, conf)}, {_p(r['p_value'])})."
        )
    details = "; ".join(
        f"{r['variant']} {_pct(r['relative_lift'])}, {_ci(r, conf)}, could detect "
        f"±{_pct(r['relative_mde'], sign=False)}"
        for r in primary
    )
    return f"Do not ship: no variant changed {label} per user significantly ({details})."


def _horizon(exp: ExperimentConfig) -> str:
    users = f", or {exp.horizon_users:,} users in every variant" if exp.horizon_users else ""
    return f"{exp.end:%Y-%m-%d %H:%M} UTC{users}"


_WAITING = {
    "min_runtime": lambda res, exp: (
        f"no decision before its minimum runtime of {exp.min_runtime_days} days "
        f"(from {exp.start:%Y-%m-%d}), whatever the figures say"
    ),
    "no_outcome_data": lambda res, exp: (
        "no outcome has been observed since assignment yet, so there is nothing to compare"
    ),
    "no_effect_yet": lambda res, exp: (
        f"no significant change yet; the {exp.confidence_level:.0%} confidence sequence "
        "stays valid however often it is looked at, so it may decide on any later day"
    ),
}


def _secondary_text(result: dict) -> str:
    moved = [r for r in result["metrics"] if not r["primary"] and r["significant"]]
    if not moved:
        return "No secondary metric moved significantly."
    parts = [
        f"{metric_label(r['metric'])} {_pct(r['relative_lift'])} ({r['variant']})" for r in moved
    ]
    return "Secondary metrics that moved significantly: " + ", ".join(parts) + "."


def _plot(rows: list[dict], metric: str, conf: float) -> str:
    """A base64 PNG: relative lift with its CI per variant, a line at zero."""
    fig = Figure(figsize=(6.4, 0.9 + 0.55 * len(rows)), dpi=100)
    ax = fig.add_subplot()
    for i, r in enumerate(rows):
        lift, lo, hi = (r["relative_lift"], r["relative_ci_low"], r["relative_ci_high"])
        if lift is None or lo is None or hi is None:
            continue
        color = GREY if not r["significant"] else (GREEN if r["lift"] > 0 else RED)
        ax.errorbar(
            [100 * lift],
            [i],
            xerr=[[100 * (lift - lo)], [100 * (hi - lift)]],
            fmt="o",
            color=color,
            capsize=4,
        )
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(rows)), [r["variant"] for r in rows])
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlabel(f"relative lift of {metric_label(metric)} vs control (%), {conf:.0%} CI")
    fig.tight_layout()
    return png(fig)


def _metric_section(metric: str, rows: list[dict], conf: float) -> str:
    head = (
        "<tr><th>variant</th><th>control mean</th><th>variant mean</th><th>lift</th>"
        "<th>relative lift</th><th>CI (relative)</th><th>p</th><th>p (BH)</th>"
        "<th>significant</th><th>CUPED</th><th>n control</th><th>n variant</th></tr>"
    )
    body = "".join(
        f"<tr><td>{html.escape(r['variant'])}</td><td>{num(r['control_mean'])}</td>"
        f"<td>{num(r['variant_mean'])}</td><td>{num(r['lift'], '+.4g')}</td>"
        f"<td>{_pct(r['relative_lift'])}</td>"
        f"<td>{_pct(r['relative_ci_low'])} to {_pct(r['relative_ci_high'])}</td>"
        f"<td>{num(r['p_value'], '.3g')}</td><td>{num(r['p_value_adjusted'], '.3g')}</td>"
        f"<td>{'yes' if r['significant'] else 'no'}</td>"
        f"<td>{'yes, variance -' + _pct(r['variance_reduction'], False) if r['cuped'] else 'no'}"
        f"</td><td>{r['n_control']:,}</td><td>{r['n_variant']:,}</td></tr>"
        for r in rows
    )
    first = rows[0] if rows else {}
    kind = ("primary" if first.get("primary") else "guardrail: must not fall"
            if first.get("guardrail") else "secondary, BH-corrected")  # fmt: skip
    return (
        f"<h2>{html.escape(metric_label(metric))} per user <small>({kind})</small></h2>"
        f"{img(f'lift of {metric}', _plot(rows, metric, conf))}<table>{head}{body}</table>"
    )


def _history_plot(history: list[dict], metric: str, conf: float) -> str:
    """A base64 PNG: per variant, the relative lift and its interval at each look."""
    fig = Figure(figsize=(6.4, 2.6), dpi=100)
    ax = fig.add_subplot()
    days = [h["analyzed_at"][:10] for h in history]
    variants = sorted({i["variant"] for h in history for i in h["intervals"]})
    for variant in variants:
        pts = [(k, i) for k, h in enumerate(history) for i in h["intervals"]
               if i["variant"] == variant and None not in (i["relative_lift"],
               i["relative_ci_low"], i["relative_ci_high"])]  # fmt: skip
        if not pts:
            continue
        x = [k for k, _ in pts]
        ax.fill_between(x, [100 * i["relative_ci_low"] for _, i in pts],
                        [100 * i["relative_ci_high"] for _, i in pts], alpha=0.25)  # fmt: skip
        ax.plot(x, [100 * i["relative_lift"] for _, i in pts], marker="o", label=variant)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(days)), days, rotation=45, fontsize=7)
    ax.set_ylabel(f"{metric_label(metric)} lift (%)", fontsize=8)
    ax.set_title(f"relative lift with its {conf:.0%} interval at each look", fontsize=9)
    if variants:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return png(fig)


def _history_section(result: dict, exp: ExperimentConfig) -> str:
    """The method, why the decision is what it is, and the looks so far."""
    history = result.get("history") or []
    method = result.get("method", exp.method)
    how = (
        f"sequential: always-valid {exp.confidence_level:.0%} confidence sequences "
        f"(tightest near {exp.tuning_n:,} users), a decision on any day after "
        f"{exp.min_runtime_days} days"
        if method == "sequential"
        else f"fixed horizon: one decision at {_horizon(exp)}, Welch intervals"
    )
    decided = result.get("decided_on")
    why = html.escape(REASONS.get(result.get("decision_reason"), "") or "")
    rows = "".join(
        f"<tr><td>{html.escape(h['analyzed_at'][:10])}</td><td>{html.escape(h['decision'])}"
        f"{' (final)' if h.get('final') else ''}</td>"
        f"<td>{html.escape(REASONS.get(h.get('decision_reason'), '') or '')}</td></tr>"
        for h in history
    )
    plot = img("lift over time", _history_plot(history, exp.primary_metric,
                                               exp.confidence_level)) if history else ""  # fmt: skip
    return (
        f"<h2>Method and decision history</h2><p>Method: {html.escape(how)}. Why: {why}"
        + (f"; final since {html.escape(decided[:10])}" if decided else "")
        + f".</p>{plot}<table><tr><th>look</th><th>decision</th><th>why</th></tr>{rows}</table>"
    )


def _versions_section(result: dict) -> str:
    """Which model version served each variant, and what the result did to the aliases."""
    bound = result.get("model_versions")
    if not bound:
        return ""
    rows = "".join(
        f"<tr><td>{html.escape(variant)}</td><td>"
        + ", then ".join(
            f"v{html.escape(str(s['version']))}"
            + (f" from {html.escape(s['from'])}" if s["from"] else "")  # fmt: skip
            for s in steps
        )
        + "</td></tr>"
        for variant, steps in bound["variants"].items()
    )
    promotion = html.escape((result.get("promotion") or {}).get("reason", ""))
    return (
        "<h2>Model versions served</h2><table><tr><th>variant</th><th>versions</th></tr>"
        f"{rows}</table><p>Known from {html.escape(str(bound['known_from']))}. "
        f"Promotion: {promotion}.</p>"
    )


def _srm_section(srm: dict) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(v)}</td><td>{srm['expected'][v]:,.0f}</td>"
        f"<td>{srm['observed'][v]:,}</td></tr>"
        for v in srm["expected"]
    )
    verdict = (
        "MISMATCH: the observed split is too far from the configured weights to be chance"
        if srm["detected"]
        else "OK: the observed split matches the configured weights"
    )
    return (
        f"<h2>Traffic split (sample-ratio check)</h2><p>{verdict} ({_p(srm['p_value'])}, "
        "chi-square; flagged below p = 0.001).</p>"
        f"<table><tr><th>variant</th><th>expected users</th><th>observed users</th></tr>"
        f"{rows}</table>"
    )


STYLE = base_style(980, "4px 8px") + (
    ".decision{font-size:1.2em;padding:1em;border-left:6px solid #0969da;background:#f6f8fa}"
)


def render_html(result: dict, exp: ExperimentConfig) -> str:
    """The whole report as one HTML page (images inline)."""
    conf = exp.confidence_level
    sections = []
    for metric in exp.metrics:
        rows = [r for r in result["metrics"] if r["metric"] == metric]
        if rows:
            sections.append(_metric_section(metric, rows, conf))
    body = (
        f"<p>Analyzed as of {html.escape(result['analyzed_at'])}; experiment "
        f"{exp.start.isoformat()} to {exp.end.isoformat()}; control: "
        f"{html.escape(exp.control)}.</p>"
        f"<p class='decision'><b>Decision: {html.escape(result['decision'])}.</b> "
        f"{html.escape(decision_text(result, exp))}</p>"
        f"{_history_section(result, exp)}"
        f"{_versions_section(result)}{_srm_section(result['srm'])}{''.join(sections)}"
        "<p><small>Per-user totals since assignment, compared with the method's intervals "
        "(confidence sequences, or Welch t-tests at a fixed horizon); CUPED uses each "
        "user's pre-assignment total, so with CUPED the means shown are adjusted (the raw "
        "ones are in the JSON). The primary metric is uncorrected; secondary metrics "
        "use Benjamini-Hochberg. Intervals are not corrected for multiple testing."
        "</small></p>"
    )
    return page(f"A/B test {exp.experiment_id}: {exp.name}", STYLE, body)


def write_report(result: dict, exp: ExperimentConfig, out_dir: str | Path) -> tuple[Path, Path]:
    """Write `<out_dir>/<experiment_id>.json` and `.html`; returns both paths."""
    return write_json_and_html(result, render_html(result, exp), out_dir, exp.experiment_id)


ROW_FIELDS = ("experiment_id", "analyzed_at", "decision", "decision_reason", "decision_grade",
              "final", "decided_on", "method")  # fmt: skip


def result_rows(result: dict) -> list[dict]:
    """The `ab_results` table rows (experiment x metric x variant) of one result."""
    srm = result["srm"]
    keep = {k: result.get(k) for k in ROW_FIELDS}
    return [
        {
            **keep,
            **r,
            "srm_p_value": srm["p_value"],
            "srm_detected": srm["detected"],
            "srm_expected": json.dumps(srm["expected"]),
            "srm_observed": json.dumps(srm["observed"]),
        }
        for r in result["metrics"]
    ]


def result_table(rows: list[dict]) -> pa.Table:
    """`ab_results` rows as Arrow, a column that is empty on every row (`decided_on` before
    any final decision) typed as a string rather than Arrow's null type, so that every day's
    file has the same column types (and an Iceberg table, which has no null type, takes it)."""
    table = pa.Table.from_pylist(rows)
    return table.cast(pa.schema([
        f.with_type(pa.string()) if pa.types.is_null(f.type) else f for f in table.schema
    ]))  # fmt: skip
