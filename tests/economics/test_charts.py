"""The HTML report draws its charts in a real browser, offline (headless Chromium)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from modelplane.economics.charts import Charts, render_page
from services import unavailable

CHARTS = Charts(
    title="modelplane unit economics",
    cost_over_time={"support-reply": [("2026-11-01", 0.0021), ("2026-11-02", 0.0018)], "chat": [("2026-11-01", 0.0)]},
    margin_by_tier={"support-reply / pro": 0.047, "chat / free": -0.001},
    model_mix={"small": 0.7, "large": 0.3},
    projection={"support-reply": [(1_000, 2.0, 48.0), (1_000_000, 1_900.0, 48_100.0), (10_000_000, 18_000.0, None)]},
    notes=("cache hit rate grows with volume: h(N) = 0.4·N/(N + 20,000)",),
)


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    unavailable("headless Chromium is not installed (Debian package `chromium`; .ci/run installs it)")


def rendered_dom(page: Path) -> str:
    """The DOM after the page's scripts ran, with no network (the page must be self-contained)."""
    result = subprocess.run(
        [
            chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={page.parent / 'chromium-profile'}", "--virtual-time-budget=10000",
            "--proxy-server=127.0.0.1:9", "--dump-dom", page.as_uri(),
        ],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_the_page_is_self_contained(tmp_path: Path) -> None:
    page = render_page(CHARTS)
    assert "<script src=" not in page and "<link" not in page  # plotly.js is inlined, nothing is fetched
    assert page.count("Plotly.newPlot") == 4


def test_every_chart_draws_in_headless_chromium(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(render_page(CHARTS))
    dom = rendered_dom(page)
    for chart in ("cost-over-time", "margin-by-tier", "model-mix", "projection"):
        section = re.search(rf'<section class="chart" id="{chart}">(.*?)</section>', dom, re.S)
        assert section is not None, chart
        assert 'class="main-svg"' in section.group(1), f"{chart} did not draw"
    assert "Projected monthly cost and margin" in dom and "support-reply" in dom
