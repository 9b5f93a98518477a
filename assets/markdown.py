"""Markdown for asset metadata (tables shown in the Dagster UI)."""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa

PREVIEW_ROWS = 5


def md_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v).replace("|", "\\|") for v in r) + " |" for r in rows]
    return "\n".join(lines)


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, datetime):
        return v.isoformat(sep=" ", timespec="seconds")
    return str(v)


def head_md(table: pa.Table, columns: list[str] | None = None, n: int = PREVIEW_ROWS) -> str:
    """The first `n` rows of an Arrow table (or of some of its columns) as Markdown: the
    `preview` every table-writing asset shows in the UI. Floats to 4 significant digits."""
    cols = [c for c in (columns or table.column_names) if c in table.column_names]
    head = table.select(cols).slice(0, n).to_pylist()
    return md_table(cols, [[_cell(r[c]) for c in cols] for r in head])
