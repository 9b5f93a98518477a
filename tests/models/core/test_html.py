"""The report pieces: an escaped page, numbers as text, inline images, the JSON + HTML pair."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from matplotlib.figure import Figure

from models.core.html import base_style, img, num, page, png, write_json_and_html


def test_page_escapes_the_title_and_keeps_the_body():
    out = page("A <b> & c", "td{x:1}", "<p>body</p>")
    assert out.startswith("<!doctype html><html><head><meta charset='utf-8'>")
    assert out.count("A &lt;b&gt; &amp; c") == 2  # title and heading
    assert "<style>td{x:1}</style>" in out and out.endswith("<p>body</p></body></html>")


def test_base_style_sets_width_and_cell_padding():
    css = base_style(980, "4px 8px")
    assert "max-width:980px" in css and "padding:4px 8px" in css
    assert css.count("{") == css.count("}")


def test_num_and_img():
    assert num(None) == "n/a" and num(1234.5678) == "1235" and num(0.25, ".1%") == "25.0%"
    assert img('a "b"', "QUJD") == '<img alt="a &quot;b&quot;" src="data:image/png;base64,QUJD">'
    fig = Figure(figsize=(1, 1))
    fig.add_subplot().plot([0, 1])
    assert base64.b64decode(png(fig)).startswith(b"\x89PNG\r\n\x1a\n")


def test_write_json_and_html(tmp_path):
    doc = {"n": np.int64(3), "x": np.float32(0.5), "s": "ok"}
    json_path, html_path = write_json_and_html(doc, "<p>hi</p>", tmp_path / "out", "2026-01-01")
    assert json_path.name == "2026-01-01.json" and html_path.name == "2026-01-01.html"
    assert json.loads(json_path.read_text()) == {"n": 3, "x": 0.5, "s": "ok"}
    assert html_path.read_text() == "<p>hi</p>"
    with pytest.raises(ValueError):
        write_json_and_html({"x": float("nan")}, "", tmp_path, "nan")
    with pytest.raises(TypeError):
        write_json_and_html({"x": object()}, "", tmp_path, "object")
