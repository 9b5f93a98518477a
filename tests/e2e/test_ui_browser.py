"""The Dagster UI as people use it, proven in a real browser.

A small `clipflow run` makes a home with a champion model; `clipflow ui` (webserver + daemon)
serves it; Debian's Chromium, driven by Selenium through Debian's chromedriver (never a
downloaded browser), opens the asset graph, the model's page, and launches a
materialization and watches it succeed. The same launch is then driven through Dagster's
GraphQL client, as a script would, and a UI-style partition backfill of `nightly_job` runs
its days one at a time, in date order. Screenshots land in the test's temp dir (the path is
printed); with `CLIPFLOW_SCREENSHOTS=DIR` the asset graph is also saved there, small, as
`asset-graph.png` (how the README's picture is made).

Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian's `chromium` and
`chromium-driver`; `make install` installs them when it runs as root). Without them the
test fails under `CI=true` and is skipped elsewhere, saying what to install.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest
from support import free_port
from ui_support import (
    TERMINAL,
    Ui,
    by_xpath,
    chrome,
    click,
    dismiss_popups,
    page_text,
    save_small,
    wait,
)

from assets.constants import GROUPS
from pipelines.definitions import defs

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
LOCATION = "pipelines.definitions"
REPO = {"repositoryLocationName": LOCATION, "repositoryName": "__repository__"}
DAYS = ["2026-02-01", "2026-02-02", "2026-02-03", "2026-02-04"]


def _env() -> dict[str, str]:
    """The test's environment without anything that would point clipflow elsewhere: the
    online store is the home's SQLite one, no metadata API."""
    drop = {"CLIPFLOW_HOME", "DAGSTER_HOME", "CLIPFLOW_REDIS", "CLIPFLOW_METADATA_URL"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def _clipflow(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> tuple[Path, Path]:
    """(home, landing) after `clipflow run` of 4 generated days: a champion on the last."""
    root = tmp_path_factory.mktemp("uihome")
    landing, home = root / "landing", root / "home"
    gen = _clipflow(
        "generate", "--out", str(landing), "--days", "4", "--start", DAYS[0],
        "--clips-per-day", "800", "--users", "200", "--seed", "3",
    )  # fmt: skip
    assert gen.returncode == 0, gen.stderr[-3000:]
    run = _clipflow("run", "--landing", str(landing), "--home", str(home))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return home, landing


@pytest.fixture(scope="module")
def ui(home, tmp_path_factory):
    """`clipflow ui` on the home: webserver and daemon, stopped as a process group."""
    home_dir, landing = home
    port, log = free_port(), tmp_path_factory.mktemp("uilog") / "ui.log"
    cmd = [sys.executable, "-m", "pipelines.cli", "ui", "--home", str(home_dir)]
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*cmd, "--landing", str(landing), "--port", str(port)],
            cwd=ROOT, env=_env(), stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    server = Ui(port, log)
    try:
        deadline, loaded = time.monotonic() + 180, False
        while time.monotonic() < deadline and not loaded:
            assert proc.poll() is None, f"clipflow ui exited\n{server.log_tail()}"
            try:
                ws = server.gql(
                    "{ workspaceOrError { ... on Workspace { locationEntries { loadStatus "
                    "locationOrLoadError { __typename } } } } }"
                )
                [entry] = ws["workspaceOrError"]["locationEntries"]
                loaded = (
                    entry["loadStatus"] == "LOADED"
                    and entry["locationOrLoadError"]["__typename"] == "RepositoryLocation"
                )
            except OSError:
                pass
            if not loaded:
                time.sleep(1)
        assert loaded, f"the code location did not load\n{server.log_tail()}"
        yield server
    finally:
        proc.send_signal(signal.SIGTERM)  # clipflow ui stops dagster dev's whole group
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("screenshots")
    print(f"screenshots: {d}")
    return d


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = chrome(tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield driver
    finally:
        driver.quit()


# --- what the UI shows -------------------------------------------------------------------


def test_every_asset_shows_row_count_preview_and_key_figures(home):
    """Each asset's latest materialization: a row count; table assets a Markdown preview
    of their head; the model, drift report and experiments their key figures and paths."""
    home_dir, _ = home
    instance = dg.DagsterInstance.from_config(str(home_dir / "dagster"))
    try:
        graph = defs.get_repository_def().asset_graph
        meta = {}
        for key in graph.get_all_asset_keys():
            event = instance.get_latest_materialization_event(key)
            assert event is not None, key
            meta[key.to_user_string()] = event.asset_materialization.metadata
    finally:
        instance.dispose()
    for name, m in meta.items():
        assert "dagster/row_count" in m, name
    tables = set(meta) - {"clip_quality_model", "drift_report", "video_metadata"}
    for name in tables:
        preview = getattr(meta[name].get("preview"), "value", "")
        assert preview.startswith("| ") and "|---|" in preview, (name, preview)
    assert meta["video_metadata"]["note"].value.startswith("skipped: CLIPFLOW_METADATA_URL")
    model = meta["clip_quality_model"]
    assert model["gate"].value == "passed" and model["alias"].value == "champion"
    assert 0 < model["rmse"].value < 40 and model["dagster/row_count"].value > 1000
    assert "| rmse |" in model["metrics_vs_champion"].value
    drift = meta["drift_report"]
    assert Path(drift["report"].value).is_file() and "dataset_drift" in drift
    assert "| feature |" in drift["features"].value
    assert Path(meta["ab_results"]["reports"].value).is_dir()
    assert "exp_ranker_v2" in meta["ab_results"]["preview"].value


def test_asset_graph_shows_every_group_and_asset(ui, browser, shots):
    expanded = ",".join(f"global@global:{g}" for g in GROUPS)
    browser.get(f"{ui.url}/asset-groups?expanded={urllib.parse.quote(expanded)}")
    dismiss_popups(browser)
    assets = [
        k.to_user_string() for k in defs.get_repository_def().asset_graph.get_all_asset_keys()
    ]

    def shown(d, n):
        return d.find_elements(*by_xpath(f"//*[normalize-space(text())='{n}']"))

    for name in GROUPS:
        wait(browser, lambda d, n=name: shown(d, n), what=f"{name} in the asset graph")
    # The graph draws only the nodes inside its viewport (Dagster's `isNodeOffscreen`), and
    # its first view of this graph leaves the top and bottom rows out: zoomed out (the
    # control under the zoom slider, down the right edge) until every asset is drawn.
    size = browser.get_window_size()
    controls = sorted(  # the graph's controls down the right edge: zoom in, zoom out, ...
        (
            b
            for b in browser.find_elements(*by_xpath("//button"))
            if b.location["x"] > size["width"] - 120 and b.location["y"] > size["height"] / 3
        ),
        key=lambda b: b.location["y"],
    )
    assert len(controls) >= 2, "the graph's zoom controls"
    for _ in range(4):
        if all(shown(browser, a) for a in assets):
            break
        click(browser, controls[1])
        time.sleep(1)
    assert assets and [a for a in assets if not shown(browser, a)] == []
    time.sleep(1.5)
    shot = shots / "asset-graph.png"
    assert browser.save_screenshot(str(shot))
    if os.environ.get("CLIPFLOW_SCREENSHOTS"):
        out = Path(os.environ["CLIPFLOW_SCREENSHOTS"])
        out.mkdir(parents=True, exist_ok=True)
        search = browser.find_element(
            *by_xpath("//*[normalize-space(text())='Search and filter assets']")
        )
        top = search.location["y"] + search.size["height"] + 40  # below the toolbar
        save_small(
            shot,
            out / "asset-graph.png",
            (search.location["x"], top, size["width"] - 130, size["height"]),
        )


def test_model_page_shows_its_metadata(ui, browser, shots):
    browser.get(f"{ui.url}/assets/clip_quality_model")
    dismiss_popups(browser)
    wait(browser, lambda d: "metrics_vs_champion" in page_text(d), what="the model metadata")
    assert browser.save_screenshot(str(shots / "clip_quality_model.png"))
    text = page_text(browser)
    for expected in ["rmse", "model_version", "gate", "champion", "models:/clip_quality/1"]:
        assert expected in text, expected
    definition = text[text.index("Definition") :]
    assert "Group\ntraining" in definition and "Owners\nml" in definition, definition
    assert "xgboost" in definition.lower(), definition


def test_launch_a_materialization_from_the_ui_and_watch_it_succeed(ui, browser, shots):
    from selenium.webdriver.common.keys import Keys

    before = ui.run_ids()
    browser.get(f"{ui.url}/assets/feast_registry")
    dismiss_popups(browser)
    materialize = wait(
        browser,
        lambda d: d.find_elements(
            *by_xpath("//button[starts-with(normalize-space(), 'Materialize')]")
        ),
        what="Materialize",
    ).pop()
    click(browser, materialize)  # fmt: skip
    dialog = wait(browser, lambda d: d.find_element(*by_xpath("//*[@role='dialog']")), what="the launch dialog")  # fmt: skip
    for b in dialog.find_elements(*by_xpath(".//button[normalize-space()='Show all partitions']")):
        b.click()
    box = wait(browser, lambda d: d.find_elements(*by_xpath("//*[@role='dialog']//input[@type='text']")),
               what="the launch dialog's partition box")[0]  # it renders after the dialog  # fmt: skip
    box.click()
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(DAYS[-1])
    box.send_keys(Keys.TAB)
    launch = wait(browser, lambda d: d.find_element(*by_xpath("//*[@role='dialog']//button[normalize-space()='Launch 1 run']")), what="Launch 1 run")  # fmt: skip
    browser.save_screenshot(str(shots / "launch-dialog.png"))
    launch.click()

    deadline, new = time.monotonic() + 60, set()
    while time.monotonic() < deadline and not new:
        new = ui.run_ids() - before
        time.sleep(0.5)
    assert len(new) == 1, f"the UI launched {len(new)} runs"
    run_id = new.pop()
    # watch it in the UI, as a person would, until the run page says Success
    browser.get(f"{ui.url}/runs/{run_id}")
    wait(
        browser,
        lambda d: "Success" in page_text(d) or "Failure" in page_text(d),
        timeout=300,
        what="the run to finish",
    )
    browser.save_screenshot(str(shots / "run.png"))
    run = ui.run(run_id)
    assert run["status"] == "SUCCESS", ui.log_tail()
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert tags["dagster/partition"] == DAYS[-1] and tags.get("dagster/from_ui") == "true"
    assert "Success" in page_text(browser)


# --- as a script would: GraphQL -------------------------------------------------------------


def _final_status(client, run_id: str, timeout_s: float = 300) -> dg.DagsterRunStatus | None:
    """The run's status once it ends (or the last seen after `timeout_s`)."""
    deadline, status = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        status = client.get_run_status(run_id)
        if status.value in TERMINAL:
            break
        time.sleep(1)
    return status


def test_graphql_client_launches_a_job_and_watches_it(ui):
    from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

    client = DagsterGraphQLClient("127.0.0.1", port_number=ui.port)
    run_id = client.submit_job_execution(
        "ingest_job",
        repository_location_name=LOCATION,
        tags={"dagster/partition": DAYS[-1], "launched_by": "test"},
    )
    status = _final_status(client, run_id)
    assert status == dg.DagsterRunStatus.SUCCESS, ui.log_tail()
    assert ui.run(run_id)["jobName"] == "ingest_job"
    with pytest.raises(DagsterGraphQLClientError):  # a job that does not exist is an error
        client.submit_job_execution("no_such_job", repository_location_name=LOCATION)


def test_a_hostile_launchpad_value_through_the_webserver_executes_nothing(ui, tmp_path):
    """The issue's launchpad injection, sent to the running webserver as an attacker would
    (#15): the run fails naming `memory_limit`, and the COPY never runs."""
    from dagster_graphql import DagsterGraphQLClient

    owned = tmp_path / "owned.csv"
    hostile = f"1GB'; COPY (SELECT 42) TO '{owned}'; SELECT '"
    client = DagsterGraphQLClient("127.0.0.1", port_number=ui.port)
    run_id = client.submit_job_execution(
        "ingest_job", repository_location_name=LOCATION, tags={"dagster/partition": DAYS[-1]},
        run_config={"resources": {"warehouse": {"config": {"memory_limit": hostile}}}},
    )  # fmt: skip
    status = _final_status(client, run_id)
    assert status == dg.DagsterRunStatus.FAILURE, ui.log_tail()
    q = """query($id: ID!) { logsForRun(runId: $id) { ... on EventConnection { events {
        __typename ... on MessageEvent { message }
        ... on ErrorEvent { error { message causes { message } } } } } } }"""
    events = ui.gql(q, {"id": run_id})["logsForRun"]["events"]
    messages = json.dumps(events)
    assert "memory_limit" in messages, messages[-2000:]
    assert not owned.exists()


def test_a_partition_backfill_runs_its_days_one_at_a_time_in_date_order(ui):
    """What the UI's "Launch backfill" of nightly_job sends; the instance's run queue (one
    run at a time) makes the days run in date order, each after the one before."""
    days = DAYS[1:3]
    before = ui.run_ids()
    q = """mutation($p: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $p) {
        __typename ... on LaunchBackfillSuccess { backfillId }
        ... on PythonError { message } } }"""
    params = {
        "selector": {"partitionSetName": "nightly_job_partition_set", "repositorySelector": REPO},
        "partitionNames": days,
    }
    out = ui.gql(q, {"p": params})["launchPartitionBackfill"]
    assert out["__typename"] == "LaunchBackfillSuccess", out
    deadline, runs = time.monotonic() + 420, []
    while time.monotonic() < deadline:
        runs = [ui.run(r) for r in ui.run_ids() - before]
        if len(runs) == len(days) and all(r["status"] in TERMINAL for r in runs):
            break
        time.sleep(2)
    assert len(runs) == len(days), f"{len(runs)} runs\n{ui.log_tail()}"
    by_day = {
        next(t["value"] for t in r["tags"] if t["key"] == "dagster/partition"): r for r in runs
    }
    assert sorted(by_day) == days
    assert all(r["status"] == "SUCCESS" and r["jobName"] == "nightly_job" for r in runs), runs
    first, second = by_day[days[0]], by_day[days[1]]
    assert first["endTime"] <= second["startTime"], (first, second)


def test_the_daemon_ticks_the_schedule_and_sensors(ui):
    health = ui.gql(
        "{ instance { daemonHealth { allDaemonStatuses { daemonType healthy required } } } }"
    )["instance"]["daemonHealth"]["allDaemonStatuses"]
    healthy = {d["daemonType"] for d in health if d["healthy"]}
    assert {"SCHEDULER", "SENSOR", "QUEUED_RUN_COORDINATOR", "BACKFILL"} <= healthy, health

    sel = {**REPO, "scheduleName": "nightly_schedule"}
    q = """query($s: ScheduleSelector!) { scheduleOrError(scheduleSelector: $s) { ... on Schedule {
        cronSchedule executionTimezone scheduleState { status }
        futureTicks(limit: 1) { results { timestamp } } } } }"""
    sched = ui.gql(q, {"s": sel})["scheduleOrError"]
    assert sched["scheduleState"]["status"] == "RUNNING"
    assert (sched["cronSchedule"], sched["executionTimezone"]) == ("0 2 * * *", "UTC")
    nxt = datetime.fromtimestamp(sched["futureTicks"]["results"][0]["timestamp"], UTC)
    assert (nxt.hour, nxt.minute) == (2, 0) and nxt > datetime.now(UTC)

    q = """query($s: SensorSelector!) { sensorOrError(sensorSelector: $s) { ... on Sensor {
        sensorState { status ticks(limit: 5) { status } } } } }"""
    deadline, state = time.monotonic() + 150, None
    while time.monotonic() < deadline:  # the daemon evaluates it every minute
        state = ui.gql(q, {"s": {**REPO, "sensorName": "retrain_on_drift_sensor"}})
        state = state["sensorOrError"]["sensorState"]
        if state["ticks"]:
            break
        time.sleep(3)
    assert state["status"] == "RUNNING" and state["ticks"], state
    assert all(t["status"] != "FAILURE" for t in state["ticks"]), state
