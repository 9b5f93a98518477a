"""The drift report files: JSON equal to the report, HTML with the verdict, table and plots."""

from __future__ import annotations

import base64
import html
import json
import re

import numpy as np
import pyarrow as pa
import pytest

from models.monitoring import drift
from models.monitoring.report import verdict_text, write_report

N = 5_000
WEIRD = "<b>x</b>"  # a feature name that must come out escaped
NEW = "<i>new</i>"  # an unseen category of it
FEATURES = ["duration_s", "views_7d", "score", "language", WEIRD]
PNG = b"\x89PNG\r\n\x1a\n"


def table(rng, shifted: bool) -> pa.Table:
    languages = rng.choice(["en", "es", "pt", "de"], N, p=[0.5, 0.2, 0.2, 0.1])
    weird = rng.choice(["a", "b", "c"], N).astype(object)
    if shifted:
        weird[rng.random(N) < 0.3] = NEW
    score = rng.normal(0, 1, N)
    return pa.table(
        {
            "duration_s": rng.lognormal(3 + 0.6 * shifted, 0.5, N),  # moved by > 1 std
            "views_7d": rng.lognormal(5, 1, N),
            "score": pa.nulls(N, pa.float64()) if shifted else pa.array(score),
            "language": languages,
            WEIRD: weird.tolist(),
        }
    )


@pytest.fixture(scope="module")
def profiles() -> tuple[dict, dict]:
    rng = np.random.default_rng(0)
    ref = drift.profile(table(rng, False), FEATURES, predictions=rng.normal(0, 1, N))
    cur = drift.profile(table(rng, True), FEATURES, predictions=rng.normal(0.3, 1, N))
    return ref, cur


def make_report(ref: dict, cur: dict, **overrides) -> dict:
    t = drift.DriftThresholds()
    cmp = drift.compare(ref, cur, t)
    report = {
        "date": "2026-01-14",
        "model_version": "3",
        "reference": {"start": "2026-01-01T00:00:00+00:00", "end": "2026-01-10T00:00:00+00:00",
                      "rows": ref["rows"]},
        "current": {"rows": cur["rows"]},
        **cmp,
        "performance": {"rmse": 1.234, "mae": 0.987, "n_labels": 1500},
        "performance_history": [
            {"scored_ds": f"2026-01-{d:02d}", "model_version": "2" if d < 11 else "3",
             "rmse": 1.2 + 0.01 * d, "mae": 0.9 + 0.01 * d, "n_labels": 1000 + 10 * d}
            for d in range(5, 14)
        ],
        "alerts": [
            {"name": "dataset_drift", "passed": False, "message": "2 of 4 features drifted"},
            {"name": "rmse", "passed": True, "message": "RMSE 1.234 <= 2.0 & fine"},
        ],
        "thresholds": t.asdict() | {"rmse_max": 2.0},
    }  # fmt: skip
    return report | overrides


def images(page: str) -> list[bytes]:
    return [
        base64.b64decode(m)
        for m in re.findall(r'<img [^>]*src="data:image/png;base64,([^"]+)"', page)
    ]


def test_compare_sees_the_planted_shifts(profiles):
    report = make_report(*profiles)
    assert report["drifted_features"] == sorted(["duration_s", WEIRD])
    assert report["features"]["score"]["statistic"] is None
    assert report["features"][WEIRD]["unseen"] == [NEW]


@pytest.fixture(scope="module")
def written(profiles, tmp_path_factory):
    """(report, out_dir, json path, html path) of the full report, written once."""
    report = make_report(*profiles)
    out = tmp_path_factory.mktemp("drift") / "reports"
    return report, out, *write_report(report, *profiles, out)


def test_write_report_files(written):
    report, out, json_path, html_path = written
    assert (json_path, html_path) == (out / "2026-01-14.json", out / "2026-01-14.html")
    text = json_path.read_text()
    assert json.loads(text) == report
    assert "NaN" not in text and "Infinity" not in text
    assert "quantiles" not in text  # the profiles are not in the JSON
    assert html_path.read_text().startswith("<!doctype html>")


def test_html_content(written, profiles):
    report, _, _, html_path = written
    page = html_path.read_text()
    pngs = images(page)
    assert len(pngs) == 2  # distributions and performance history
    assert all(p.startswith(PNG) for p in pngs)
    assert "Drift report 2026-01-14" in page
    for name in FEATURES:
        assert f"<td class='l'>{html.escape(name)}</td>" in page
    drifted = re.findall(r"<tr class='drift'><td class='l'>([^<]*)</td>", page)
    assert sorted(html.unescape(n) for n in drifted) == sorted(report["drifted_features"])
    assert "<tr class='ok'><td class='l'>views_7d</td>" in page
    # the table is sorted: drifted first, the unjudged (all-null) feature last
    order = re.findall(r"<tr class='(?:drift|ok)'><td class='l'>([^<]*)</td>", page)
    assert order[-1] == "score" and set(order[:2]) == {"duration_s", html.escape(WEIRD)}
    assert "0.0% &rarr; 100.0%" in page  # score: missing share reference -> current
    for alert in report["alerts"]:
        assert html.escape(alert["message"]) in page
    assert "FAIL</b> dataset_drift" in page and "PASS</b> rmse" in page
    assert WEIRD not in page and NEW not in page  # escaped everywhere
    assert html.escape(WEIRD) in page and html.escape(NEW) in page
    assert "RMSE 1.234, MAE 0.987 on 1,500 labels" in page
    assert "rmse_max = 2.0" in page


def test_verdict_in_plain_words(profiles):
    text = verdict_text(make_report(*profiles))
    assert text.startswith("Dataset drift: 2 of 4 features drifted (share 50%, threshold 50%)")
    assert "duration_s" in text and WEIRD in text
    assert "1 feature(s) not judged" in text
    assert "Prediction drift: yes" in text


def test_without_labels_history_or_prediction(profiles, tmp_path):
    ref, cur = profiles
    ref = ref | {"prediction": None}
    report = make_report(ref, cur, performance=None, performance_history=[], alerts=[])
    assert report["prediction"] is None
    json_path, html_path = write_report(report, ref, cur, tmp_path)
    assert json.loads(json_path.read_text()) == report
    page = html_path.read_text()
    assert len(images(page)) == 1
    assert "no labels yet" in page
    assert "Prediction drift: not computed" in page
    assert "No performance history yet" in page


def test_a_side_without_values_and_numpy_numbers(tmp_path):
    rng = np.random.default_rng(1)
    ref_t = pa.table({"v": rng.normal(0, 1, 200), "c": ["a$", "$b$"] * 100})  # no mathtext
    cur_t = pa.table({"v": pa.nulls(50, pa.float64()), "c": pa.nulls(50, pa.string())})
    ref, cur = drift.profile(ref_t, ["v", "c"]), drift.profile(cur_t, ["v", "c"])
    report = make_report(ref, cur, drift_share=np.float64(0.0), performance=None)
    json_path, html_path = write_report(report, ref, cur, tmp_path)
    assert json.loads(json_path.read_text())["drift_share"] == 0.0
    pngs = images(html_path.read_text())
    assert len(pngs) == 2  # distributions (the reference side) and performance history
    assert all(p.startswith(PNG) for p in pngs)


def test_non_finite_values_and_null_scores_are_counted_in_json_and_html(tmp_path):
    """Per feature, the non-finite rows on both sides, a rise flagged; null scores count as
    missing predictions (#16, case 5: both were dropped without a trace)."""
    rng = np.random.default_rng(2)
    ref_v, cur_v = rng.normal(0, 1, 400), rng.normal(0, 1, 200)
    ref_v[:2] = np.inf
    cur_v[rng.choice(200, 30, replace=False)] = rng.choice([np.nan, np.inf, -np.inf], 30)
    steady = rng.normal(0, 1, 200)
    steady[:1] = np.nan  # 1/200 now, 2/400 before: the same share, no rise
    ref_s = np.r_[rng.normal(0, 1, 398), np.nan, np.nan]
    scores = pa.chunked_array([pa.array([None if i % 8 == 0 else 50.0 + i for i in range(200)])])
    ref_t = pa.table({"v": ref_v, "s": ref_s})
    cur_t = pa.table({"v": cur_v, "s": steady})
    ref = drift.profile(ref_t, ["v", "s"], predictions=rng.normal(50, 5, 400))
    cur = drift.profile(cur_t, ["v", "s"], predictions=scores)
    report = make_report(ref, cur)
    json_path, html_path = write_report(report, ref, cur, tmp_path)
    got = json.loads(json_path.read_text())
    want_cur = int(np.count_nonzero(~np.isfinite(cur_v)))
    assert want_cur == 30
    assert {k: got["features"]["v"][k] for k in ("non_finite_reference", "non_finite_current",
                                                 "non_finite_rise")} == {
        "non_finite_reference": 2, "non_finite_current": 30, "non_finite_rise": True
    }  # fmt: skip
    assert got["features"]["s"]["non_finite_rise"] is False
    assert got["non_finite_features"] == ["v"]
    assert got["prediction"]["missing_current"] == 25 / 200  # every 8th score is null
    assert got["prediction"]["missing_reference"] == 0.0
    page = html_path.read_text()
    assert "<th>non-finite rows (reference &rarr; current)</th>" in page
    assert "<td>2 -&gt; 30 <b>rose</b></td>" in page
    assert "<td>2 -&gt; 1</td>" in page  # s: counted, not flagged
    assert "<tr class='drift'><td class='l'>v</td>" in page
    assert "Non-finite values (NaN, inf) rose in 1 feature(s): v (2 -&gt; 30)." in page
    assert "missing 0.0% -&gt; 12.5%, non-finite 0 -&gt; 0." in page
    assert "class='verdict bad'" in page


def test_performance_by_age_and_what_changed_lead_the_page(profiles):
    from models.monitoring.report import render_html

    by_age = [
        {"age_bucket": "creation_day", "rmse": 9.5, "mae": 7.25, "n_labels": 1200,
         "coverage": 0.781},
        {"age_bucket": "7d", "rmse": 3.5, "mae": 2.75, "n_labels": 300, "coverage": None},
    ]  # fmt: skip
    report = make_report(*profiles)
    report["performance"] = {**report["performance"], "by_age": by_age}
    report["changes"] = [{"feature": "duration_s", "since": "2026-01-12", "population": "p"}]
    page = render_html(report, *profiles)
    assert ("<tr><td class='l'>creation_day</td><td>9.5</td><td>7.25</td><td>78.1%</td>"
            "<td>1,200</td></tr>") in page  # fmt: skip
    assert "<tr><td class='l'>7d</td><td>3.5</td><td>2.75</td><td>n/a</td><td>300</td></tr>" in page
    changed = page.index("What changed, since when")
    assert changed < page.index("<h2>Alerts</h2>") < page.index("Performance by age at scoring")
    assert "<b>duration_s</b> since 2026-01-12" in page
    quiet = render_html(make_report(*profiles, changes=[], performance=None), *profiles)
    assert "Nothing drifted today." in quiet and "No labels yet." in quiet
    # a report made without `changes` still lists what drifted, never "nothing"
    legacy = render_html(make_report(*profiles), *profiles)
    assert "Nothing drifted today." not in legacy and "<b>duration_s</b> since n/a" in legacy
