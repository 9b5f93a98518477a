"""The house is checked, not just written: the import-linter contracts of pyproject.toml
(pipelines -> assets -> feature_repo -> models, the library free of Dagster) hold, they
fail on a planted upward import, and no product file passes 400 lines."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipelines", "assets", "feature_repo", "models")
PRODUCT = (*PACKAGES, "bench")
MAX_LINES = 400


def _lint_imports(root: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("lint-imports")
    return subprocess.run(
        [str(exe), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def _copy_tree(tmp_path: Path) -> Path:
    dst = tmp_path / "house"
    dst.mkdir()
    shutil.copy(ROOT / "pyproject.toml", dst)
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, dst / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


def test_the_layer_contracts_hold():
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("models/core/names.py", "import pipelines.definitions", "One-way house"),
        ("feature_repo/entities.py", "from assets import resources", "One-way house"),
        ("models/ingest/landing.py", "import dagster", "free of Dagster"),
    ],
)
def test_a_planted_upward_import_breaks_the_contract(tmp_path, module, line, contract):
    house = _copy_tree(tmp_path)
    path = house / module
    path.write_text(path.read_text() + f"\n{line}  # planted\n")
    result = _lint_imports(house)
    assert result.returncode != 0, result.stdout
    broken = [ln for ln in result.stdout.splitlines() if ln.endswith("BROKEN")]
    assert any(contract in ln for ln in broken), result.stdout  # (the Dagster rule may break too)


def test_no_product_file_passes_400_lines():
    files = [p for pkg in PRODUCT for p in (ROOT / pkg).rglob("*.py")]
    assert len(files) > 50  # the walk found the tree
    long = {
        str(p.relative_to(ROOT)): n
        for p in files
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}
