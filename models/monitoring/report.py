"""The drift report: `<date>.json` (the report dict, as the lead's monitoring code built it)
and a self-contained `<date>.html` an ML engineer can read: the verdict in plain words, the
alerts, a table of the per-feature statistics, reference vs current distributions drawn
from the two profiles (`models.monitoring.drift.profile`; there is no raw data here) and the history
of the model's measured performance. Images are inline PNGs."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from models.core.html import (
    BLUE,
    GREY,
    ORANGE,
    RED,
    base_style,
    img,
    num,
    page,
    png,
    write_json_and_html,
)

COLUMNS, DPI, BINS, TOP = 4, 75, 40, 10
NOTE, DRIFTED = {"fontsize": 7, "va": "top", "color": GREY}, {"color": RED, "weight": "bold"}
EMPTY = NOTE | {"color": RED, "fontsize": 8, "bbox": {"fc": "white", "ec": GREY, "pad": 2}}
METHOD_SHORT = {"wasserstein": "W1/std", "psi": "PSI", "jensen_shannon": "JS"}
STYLE = base_style(1000, "3px 8px") + (
    "td.l{text-align:left}tr.drift td{background:#ffebe9}.verdict{font-size:1.1em;padding:1em;"
    "border-left:6px solid #0969da;background:#f6f8fa}.verdict.bad{border-color:#cf222e}"
    "li.pass b{color:#1a7f37}li.fail b{color:#cf222e}img{max-width:100%}"
)


def _mpl(s: str, width: int = 28) -> str:
    """A name as matplotlib text: shortened, `$` escaped (no mathtext)."""
    s = str(s)
    s = s if len(s) <= width else s[: width - 1] + "…"
    return s.replace("$", r"\$")


def _severity(entry: dict) -> tuple:
    """Sort key: drifted first, then statistic/threshold descending, no statistic last."""
    stat, thr = entry.get("statistic"), entry.get("threshold")
    if stat is None:
        return (2, 0.0)
    ratio = stat / thr if thr else stat
    return (0 if entry.get("drifted") else 1, -ratio)


def ranked(report: dict) -> list[tuple[str, dict]]:
    """The features as (name, entry), most drifted first (the table's and plots' order)."""
    return sorted(report["features"].items(), key=lambda kv: _severity(kv[1]))


# -- plots -------------------------------------------------------------------------------
def _numerical_panel(ax, ref: dict, cur: dict) -> list[str]:
    sides = [(ref.get("quantiles") or [], BLUE, "reference")]
    sides.append((cur.get("quantiles") or [], ORANGE, "current"))
    both = np.concatenate([np.asarray(q, np.float64) for q, _, _ in sides])
    if not len(both):
        return ["reference", "current"]
    lo, hi = np.quantile(both, [0.005, 0.995])
    if hi <= lo:  # a constant: one bin around it
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, BINS + 1)
    empty = []
    for q, color, label in sides:
        if not q:
            empty.append(label)
            continue
        hist, _ = np.histogram(q, edges)  # each quantile point carries 1/len of the mass
        density = np.r_[0.0, hist / len(q) / np.diff(edges), 0.0]
        ax.plot(np.r_[edges[0], edges], density, drawstyle="steps-post", color=color, lw=1.4)
    return empty


def _categorical_panel(ax, ref: dict, cur: dict, unseen: list[str]) -> list[str]:
    shares = []
    for p in (ref, cur):
        counts, total = p.get("counts") or {}, sum((p.get("counts") or {}).values())
        shares.append({str(k): v / total for k, v in counts.items()} if total else {})
    cats = set(shares[0]) | set(shares[1])
    top = sorted(cats, key=lambda k: (-max(s.get(k, 0.0) for s in shares), k))[:TOP]
    top += [k for k in unseen if k not in top]  # a new category is always shown
    other = [max(0.0, 1.0 - sum(s.get(k, 0.0) for k in top)) if s else 0.0 for s in shares]
    labels = top + (["other"] if max(other) > 1e-9 else [])
    x = np.arange(len(labels))
    for i, (s, color) in enumerate(zip(shares, (BLUE, ORANGE), strict=True)):
        vals = [s.get(k, 0.0) for k in top] + ([other[i]] if len(labels) > len(top) else [])
        # grouped bars as one filled step area per side (one artist: fast to draw)
        edges = np.ravel(np.column_stack([x + (i - 1) * 0.4, x + i * 0.4]))
        heights = np.ravel(np.column_stack([vals, np.zeros(len(vals))]))
        ax.fill_between(edges, heights, step="post", color=color, lw=0)
    names = [_mpl(k, 12) + (" (new)" if k in unseen else "") for k in labels]
    ax.set_xticks(x, names, rotation=45, ha="right", fontsize=7)
    for tick, k in zip(ax.get_xticklabels(), labels, strict=True):
        if k in unseen:
            tick.set_color(RED)
    ax.yaxis.set_major_locator(MaxNLocator(3))
    ax.set_ylabel("share", fontsize=7)
    return [lab for lab, s in zip(("reference", "current"), shares, strict=True) if not s]


def distributions_png(report: dict, reference: dict, current: dict) -> str | None:
    """One figure, a small panel per feature (drifted first) plus the prediction."""
    panels = []

    def sides(name: str, entry: dict, key: str = "features"):
        """The two profiles the verdict compared: the judged cohort's when there is one."""
        c = entry.get("cohort")
        rc, cc = (reference.get("cohorts") or {}).get(c), (current.get("cohorts") or {}).get(c)
        if rc is not None and cc is not None:
            if key == "prediction":
                return rc.get("prediction"), cc.get("prediction")
            return rc["features"].get(name), cc["features"].get(name)
        if key == "prediction":
            return reference.get("prediction"), current.get("prediction")
        return reference["features"].get(name), current["features"].get(name)

    if report.get("prediction"):
        ref, cur = sides("prediction", report["prediction"], "prediction")
        if ref is not None and cur is not None:
            panels.append(("prediction", report["prediction"], ref, cur))
    for name, entry in ranked(report):
        if entry.get("method") == "not_compared":
            continue
        ref, cur = sides(name, entry)
        if ref is not None and cur is not None:
            panels.append((name, entry, ref, cur))
    if not panels:
        return None
    rows = -(-len(panels) // COLUMNS)
    fig = Figure(figsize=(3.3 * COLUMNS, 2.4 * rows), dpi=DPI)
    axes = [fig.add_subplot(rows, COLUMNS, i + 1) for i in range(len(panels))]
    for ax, (name, entry, ref, cur) in zip(axes, panels, strict=False):
        if entry["kind"] == "categorical":
            empty = _categorical_panel(ax, ref, cur, [str(u) for u in entry.get("unseen") or []])
        else:
            empty = _numerical_panel(ax, ref, cur)
            ax.set_yticks([])  # a density's scale says little; fewer ticks render faster
            ax.xaxis.set_major_locator(MaxNLocator(4))
        if empty:
            msg = "no values: " + ", ".join(empty)
            ax.text(0.98, 0.95, msg, transform=ax.transAxes, ha="right", **EMPTY)
        drifted, method = entry.get("drifted"), entry.get("method") or ""
        stat = f"{METHOD_SHORT.get(method, method)} {num(entry.get('statistic'), '.3g')}"
        if entry.get("cohort"):
            stat += f" ({entry['cohort']})"
        # (an explicit title y skips a costly per-axes layout pass)
        title = f"{'DRIFT ' if drifted else ''}{_mpl(name)}\n{stat}"
        ax.set_title(title, fontsize=8, y=1.0, **(DRIFTED if drifted else {}))
        ax.tick_params(labelsize=7)
    handles = [axes[0].plot([], [], color=c)[0] for c in (BLUE, ORANGE)]
    fig.legend(handles, ["reference", "current"], loc="upper center", ncol=2, fontsize=9)
    height = 2.4 * rows  # inches: 0.7 for the legend and first titles, 0.6 for tick labels
    fig.subplots_adjust(
        left=0.05, right=0.99, top=1 - 0.75 / height, bottom=0.65 / height, hspace=0.75, wspace=0.25
    )
    return png(fig)


def history_png(history: list[dict]) -> str:
    """RMSE and MAE per scored day (labels per day as grey bars on a second axis)."""
    hist = sorted(history, key=lambda h: (str(h["scored_ds"]), str(h.get("model_version"))))
    x = np.arange(len(hist))
    fig = Figure(figsize=(9, 3.2), dpi=DPI + 5)
    ax = fig.add_subplot()
    labels_ax = ax.twinx()
    labels_ax.bar(x, [h.get("n_labels") or 0 for h in hist], color="#d0d7de", width=0.6)
    labels_ax.set_ylabel("labels", color=GREY)
    ax.set_zorder(labels_ax.get_zorder() + 1)
    ax.patch.set_visible(False)
    for key, color in (("rmse", BLUE), ("mae", ORANGE)):
        y = [np.nan if h.get(key) is None else h[key] for h in hist]
        ax.plot(x, y, marker="o", markersize=3, color=color, label=key.upper())
    for i in range(1, len(hist)):
        if hist[i].get("model_version") != hist[i - 1].get("model_version"):
            ax.axvline(i - 0.5, color=GREY, linestyle="--", linewidth=0.8)
            version = _mpl(f"v{hist[i].get('model_version')}")
            ax.text(i - 0.45, 0.98, version, transform=ax.get_xaxis_transform(), **NOTE)
    step = max(1, len(hist) // 12)
    days = [_mpl(h["scored_ds"]) for h in hist][::step]
    ax.set_xticks(x[::step], days, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("error")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return png(fig)


# -- html --------------------------------------------------------------------------------
def verdict_text(report: dict) -> str:
    feats = report["features"]
    judged = [f for f in feats.values() if f.get("statistic") is not None]
    drifted = report.get("drifted_features") or []
    thr = report.get("thresholds", {}).get("drift_share")
    parts = [
        f"{'Dataset drift' if report['dataset_drift'] else 'No dataset drift'}: "
        f"{len(drifted)} of {len(judged)} features drifted (share {report['drift_share']:.0%}, "
        f"threshold {'n/a' if thr is None else format(thr, '.0%')})"
        + (f": {', '.join(map(str, drifted))}." if drifted else ".")
    ]
    growth = [n for n, f in feats.items() if f.get("method") == "not_compared"]
    if growth:
        parts.append(
            f"{len(growth)} feature(s) not compared, growing by construction: "
            f"{', '.join(growth)}."
        )
    empty = len(feats) - len(judged) - len(growth)
    if empty:
        parts.append(f"{empty} feature(s) not judged (no values on a side).")
    rose = report.get("non_finite_features") or []
    if rose:
        parts.append(
            f"Non-finite values (NaN, inf) rose in {len(rose)} feature(s): "
            f"{', '.join(f'{n} ({_non_finite(feats[n])})' for n in rose)}."
        )
    pred = report.get("prediction")
    if pred is None:
        parts.append("Prediction drift: not computed (no prediction profile).")
    else:
        parts.append(
            f"Prediction drift: {'yes' if pred.get('drifted') else 'no'} "
            f"({pred.get('method')} {num(pred.get('statistic'))}, "
            f"threshold {num(pred.get('threshold'))}); missing "
            f"{num(pred.get('missing_reference'), '.1%')} -> {num(pred.get('missing_current'), '.1%')}"
            f", non-finite {_non_finite(pred)}"
            f"{' (rose)' if pred.get('non_finite_rise') else ''}."
        )
    perf = report.get("performance")
    if perf is None:
        parts.append("Performance: no labels yet.")
    else:
        parts.append(
            f"Performance: RMSE {num(perf.get('rmse'))}, MAE {num(perf.get('mae'))} "
            f"on {perf.get('n_labels', 0):,} labels."
        )
    return " ".join(parts)


def _non_finite(entry: dict) -> str:
    """Non-finite rows, reference -> current ('n/a': a reference from before the count)."""
    ref, cur = entry.get("non_finite_reference"), entry.get("non_finite_current")
    return f"{'n/a' if ref is None else format(ref, ',')} -> {'n/a' if cur is None else format(cur, ',')}"


def _feature_rows(report: dict) -> str:
    rows = []
    for name, f in ranked(report):
        unseen = [str(u) for u in f.get("unseen") or []]
        shown = ", ".join(unseen[:10]) + (
            f" (+{len(unseen) - 10} more)" if len(unseen) > 10 else ""
        )
        rose = " <b>rose</b>" if f.get("non_finite_rise") else ""
        compared = html.escape(str(f.get("population") or "all scored rows"))
        if f.get("cohort"):
            compared += f" <i>(judged on: {html.escape(str(f['cohort']))})</i>"
        rows.append(
            f"<tr class='{'drift' if f.get('drifted') or rose else 'ok'}'><td class='l'>"
            f"{html.escape(str(name))}</td><td class='l'>{html.escape(str(f.get('kind')))}</td>"
            f"<td class='l'>{html.escape(str(f.get('method')))}</td>"
            f"<td>{num(f.get('statistic'))}</td><td>{num(f.get('threshold'))}</td>"
            f"<td>{num(f.get('n_reference'), ',')} / {num(f.get('n_current'), ',')}</td>"
            f"<td class='l'>{compared}</td>"
            f"<td>{'<b>yes</b>' if f.get('drifted') else 'no'}</td>"
            f"<td>{html.escape(str(f.get('since') or ''))}</td>"
            f"<td>{num(f.get('missing_reference'), '.1%')} &rarr; "
            f"{num(f.get('missing_current'), '.1%')}</td>"
            f"<td>{html.escape(_non_finite(f))}{rose}</td>"
            f"<td class='l'>{html.escape(shown)}</td></tr>"
        )
    head = (
        "<tr><th>feature</th><th>kind</th><th>method</th><th>statistic</th><th>threshold</th>"
        "<th>rows (reference / current)</th><th>populations compared</th>"
        "<th>drifted</th><th>since</th><th>missing (reference &rarr; current)</th>"
        "<th>non-finite rows (reference &rarr; current)</th><th>unseen</th></tr>"
    )
    return f"<table>{head}{''.join(rows)}</table>"


def _changes(report: dict) -> str:
    """What changed and since when: each drifted feature (and the prediction) with the
    first day of its run of drifted days, oldest first."""
    changes = report.get("changes")
    if changes is None:  # a report made without `changes`: what drifted, since unknown
        changes = [{"feature": f, "since": "n/a"} for f in report.get("drifted_features", [])]
    if not changes:
        return "<p>Nothing drifted today.</p>"
    entries = {**report["features"], "prediction": report.get("prediction") or {}}
    items = []
    for c in changes:
        f = entries.get(c["feature"]) or {}
        items.append(
            f"<li><b>{html.escape(str(c['feature']))}</b> since "
            f"{html.escape(str(c['since']))}: {html.escape(str(f.get('method')))} "
            f"{num(f.get('statistic'))} against {num(f.get('threshold'))} on "
            f"{html.escape(str(f.get('cohort') or 'all rows'))} "
            f"({num(f.get('n_reference'), ',')} reference / {num(f.get('n_current'), ',')} "
            "current rows)</li>"
        )
    return f"<ul>{''.join(items)}</ul>"


def _by_age(report: dict) -> str:
    """The champion's error and interval coverage per age at scoring, over the labels known
    so far (`performance.by_age`): the creation-day row is the one the platform lives on."""
    rows = (report.get("performance") or {}).get("by_age") or []
    if not rows:
        return "<p>No labels yet.</p>"
    body = "".join(
        f"<tr><td class='l'>{html.escape(str(r['age_bucket']))}</td><td>{num(r['rmse'])}</td>"
        f"<td>{num(r['mae'])}</td><td>{num(r['coverage'], '.1%')}</td>"
        f"<td>{num(r['n_labels'], ',')}</td></tr>"
        for r in rows
    )
    head = ("<tr><th>age at scoring</th><th>rmse</th><th>mae</th><th>interval coverage</th>"
            "<th>labels</th></tr>")  # fmt: skip
    return f"<table>{head}{body}</table>"


def _alerts(report: dict) -> str:
    alerts = report.get("alerts") or []
    if not alerts:
        return "<p>No alerts configured.</p>"
    items = "".join(
        f"<li class='{'pass' if a.get('passed') else 'fail'}'><b>"
        f"{'PASS' if a.get('passed') else 'FAIL'}</b> {html.escape(str(a.get('name')))}: "
        f"{html.escape(str(a.get('message', '')))}</li>"
        for a in alerts
    )
    return f"<ul>{items}</ul>"


def render_html(report: dict, reference: dict, current: dict) -> str:
    """The whole report as one HTML page (images inline)."""
    esc = html.escape
    ref_w, date = report.get("reference") or {}, str(report["date"])
    dist = distributions_png(report, reference, current)
    dist_html = (
        img("reference vs current distributions", dist) if dist else "<p>No profiles to plot.</p>"
    )

    history = report.get("performance_history") or []
    hist_html = (
        img("performance history", history_png(history))
        if history
        else "<p>No performance history yet: no scored day has labels.</p>"
    )
    thresholds = ", ".join(
        f"{esc(str(k))} = {esc(str(v))}" for k, v in report.get("thresholds", {}).items()
    )
    bad = report["dataset_drift"] or bool((report.get("prediction") or {}).get("drifted"))
    bad = bad or bool(report.get("non_finite_features"))
    rows = (ref_w.get("rows"), (report.get("current") or {}).get("rows"))
    body = (
        f"<p>Model version {esc(str(report.get('model_version')))}; reference window "
        f"{esc(str(ref_w.get('start')))} to {esc(str(ref_w.get('end')))}; "
        f"{num(rows[0], ',')} reference rows, {num(rows[1], ',')} current rows.</p>"
        f"<h2>What changed, since when</h2>{_changes(report)}"
        f"<p class='verdict{' bad' if bad else ''}'>{esc(verdict_text(report))}</p>"
        f"<h2>Alerts</h2>{_alerts(report)}"
        f"<h2>Performance by age at scoring</h2>{_by_age(report)}"
        f"<h2>Features</h2><p>Sorted by statistic / threshold, highest first.</p>"
        f"{_feature_rows(report)}<h2>Distributions</h2><p>Reference (blue) vs current (orange); "
        "numerical as densities drawn from the profiles' quantiles, categorical as shares "
        "(top categories, new ones in red). Drifted features first, titles in red.</p>"
        f"{dist_html}<h2>Performance history</h2>{hist_html}"
        "<p><small>Methods: numerical features by normalised Wasserstein distance (W1 of "
        "the two quantile functions over the reference's standard deviation) or PSI on "
        "the reference's deciles; categorical features by Jensen-Shannon distance, base 2 "
        "(new categories keep their mass). Like with like: attributes on the day's new "
        "clips against the reference's clips at creation, engagement and predictions per "
        "age bucket against the reference's rows of the same age; features that grow by "
        "construction are not compared. Each threshold is the configured one or the noise "
        "bound of its two sample sizes, whichever is higher. Missing values are left out of the distributions "
        "and shown as shares; non-finite values (NaN, inf) are left out and counted, and a "
        "rise of their share is flagged (a data fault, not counted as drift). Dataset drift when the share of drifted features reaches "
        f"drift_share. Thresholds: {thresholds}.</small></p>"
    )
    return page(f"Drift report {date}", STYLE, body)


def write_report(
    report: dict, reference: dict, current: dict, out_dir: str | Path
) -> tuple[Path, Path]:
    """Write `<out_dir>/<date>.json` (the report, not the profiles) and `<date>.html`."""
    html_page = render_html(report, reference, current)
    return write_json_and_html(report, html_page, out_dir, str(report["date"]))
