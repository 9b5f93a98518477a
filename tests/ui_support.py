"""The browser-test harness: Debian's Chromium through Selenium, a GraphQL handle on a
running `clipflow ui`, and the page helpers the UI tests share (tests/e2e/test_ui_browser.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("CLIPFLOW_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("CLIPFLOW_CHROMEDRIVER", "/usr/bin/chromedriver"))
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}
# Chromium as root, headless, and quiet on a machine with no network beyond loopback
CHROME_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1800,1100",
]


def require_browser() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        why = (
            f"the browser test needs {' and '.join(missing)}: install Debian's packages "
            "with `apt-get install chromium chromium-driver` (`make install` does it as root)"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(why)
        pytest.skip(why)


def chrome(profile_dir: Path):
    """Headless Debian Chromium through Debian's chromedriver, with a fresh profile."""
    require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in CHROME_FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={profile_dir}")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    driver.set_page_load_timeout(60)
    return driver


class Ui:
    """A running `clipflow ui`: its GraphQL endpoint, its runs, and its log for failures."""

    def __init__(self, port: int, log: Path):
        self.port, self.log = port, log
        self.url = f"http://127.0.0.1:{port}"

    def gql(self, query: str, variables: dict | None = None) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        req = urllib.request.Request(
            f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=60) as r:
            out = json.load(r)
        assert not out.get("errors"), out["errors"]
        return out["data"]

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def run_ids(self) -> set[str]:
        data = self.gql("{ runsOrError(limit: 200) { ... on Runs { results { runId } } } }")
        return {r["runId"] for r in data["runsOrError"]["results"]}

    def run(self, run_id: str) -> dict:
        q = """query($id: ID!) { runOrError(runId: $id) { ... on Run {
            runId status jobName startTime endTime tags { key value } } } }"""
        return self.gql(q, {"id": run_id})["runOrError"]


def by_xpath(xpath: str):
    from selenium.webdriver.common.by import By

    return By.XPATH, xpath


def wait(driver, cond, timeout: float = 60, what: str = ""):
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.5).until(cond)
    except Exception as e:
        body = driver.find_element(*by_xpath("//body")).text[-2000:]
        raise AssertionError(f"timed out waiting for {what or cond}; page shows:\n{body}") from e


def page_text(driver) -> str:
    return driver.find_element(*by_xpath("//body")).text


def dismiss_popups(driver, wait: float = 4.0) -> None:
    """Dagster's first-visit "Join the community" dialog: Skip it if it shows within `wait`."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        buttons = driver.find_elements(*by_xpath("//button[normalize-space()='Skip']"))
        for button in buttons:
            with contextlib.suppress(Exception):  # gone already
                button.click()
        if buttons:
            time.sleep(0.5)
            return
        time.sleep(0.25)


def click(driver, element) -> None:
    """Click; if a late popup covers the page, skip it and click again."""
    from selenium.common.exceptions import ElementClickInterceptedException

    try:
        element.click()
    except ElementClickInterceptedException:
        dismiss_popups(driver, wait=10)
        element.click()


def save_small(src: Path, dest: Path, pane: tuple[int, int, int, int]) -> None:
    """The README's copy: the drawn part of the graph pane (left, top, right, bottom, in
    screenshot pixels), 64 colours."""
    import numpy as np
    from PIL import Image

    img = Image.open(src).convert("RGB")
    left, top, right, bottom = pane
    ink = np.asarray(img.convert("L"))[top:bottom, left:right] < 200  # nodes, edges, text
    ys, xs = np.nonzero(ink)
    if len(xs):
        pad = 30
        img = img.crop(
            (
                max(left + xs.min() - pad, 0),
                max(top + ys.min() - pad, 0),
                min(left + xs.max() + pad, img.width),
                min(top + ys.max() + pad, img.height),
            )
        )
    if img.width > 1200:
        img = img.resize((1200, round(img.height * 1200 / img.width)), Image.LANCZOS)
    img.quantize(colors=64).save(dest, optimize=True)
