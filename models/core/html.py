"""The pieces of the self-contained HTML reports (A/B and drift): one page with its style,
inline PNG figures, numbers as text, and the JSON + HTML pair written side by side."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

GREEN, RED, GREY, BLUE, ORANGE = "#1a7f37", "#cf222e", "#57606a", "#0969da", "#bc4c00"


def base_style(max_width_px: int, cell_padding: str) -> str:
    """The reports' shared CSS: page width, font, bordered right-aligned tables."""
    return (
        f"body{{font-family:system-ui,sans-serif;max-width:{max_width_px}px;margin:2em auto;"
        "color:#1f2328}table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px "
        f"solid #d0d7de;padding:{cell_padding};text-align:right}}th{{background:#f6f8fa}}"
    )


def page(title: str, style: str, body: str) -> str:
    """A whole HTML page: `title` as the title and the first heading, then `body`."""
    t = html.escape(title)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{t}</title>"
        f"<style>{style}</style></head><body><h1>{t}</h1>{body}</body></html>"
    )


def png(fig: Figure) -> str:
    """The figure as a base64 PNG."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode()


def img(alt: str, png_base64: str) -> str:
    """An inline image tag for a base64 PNG."""
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{png_base64}">'


def num(v, fmt: str = ".4g") -> str:
    """A number formatted with `fmt`; `n/a` for None."""
    return "n/a" if v is None else format(v, fmt)


def _json_default(v):
    if isinstance(v, np.generic):
        return v.item()
    raise TypeError(f"not JSON serialisable: {type(v).__name__}")


def write_json_and_html(
    doc: dict, page_html: str, out_dir: str | Path, stem: str
) -> tuple[Path, Path]:
    """Write `<out_dir>/<stem>.json` (`doc`, NaN refused, numpy scalars as numbers) and
    `<out_dir>/<stem>.html`; returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out / f"{stem}.json", out / f"{stem}.html"
    json_path.write_text(json.dumps(doc, indent=2, allow_nan=False, default=_json_default) + "\n")
    html_path.write_text(page_html)
    return json_path, html_path
