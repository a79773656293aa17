"""The HTML report draws its charts in a real browser, offline (headless Chromium)."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateways import GatewayProcess
from modelplane.cli.main import app
from modelplane.economics.charts import Charts, render_page
from reportledger import CONFIG_YAML, seed, steady_traffic
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
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={page.parent / 'chromium-profile'}",
            "--virtual-time-budget=10000",
            "--proxy-server=127.0.0.1:9",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
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


def test_report_html_draws_from_a_real_ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`modelplane report --format html` on a ledger with traffic: every chart draws."""
    config = tmp_path / "modelplane.yaml"
    config.write_text(CONFIG_YAML + f'ledger: {{url: "sqlite:///{tmp_path}/ledger.db"}}\n')
    asyncio.run(seed(f"sqlite:///{tmp_path}/ledger.db", steady_traffic()))
    monkeypatch.setenv("MODELPLANE_HOME", str(tmp_path / "home"))
    out = tmp_path / "report.html"
    result = CliRunner().invoke(app, ["report", "--config", str(config), "--format", "html", "--out", str(out)])
    assert result.exit_code == 0, result.output
    dom = rendered_dom(out)
    assert dom.count('class="main-svg"') >= 4


def test_the_dashboard_draws_for_the_admin_only(tmp_path: Path, launch_gateway: Callable[..., GatewayProcess]) -> None:
    import hashlib

    import httpx

    ledger = f"sqlite:///{tmp_path}/ledger.db"
    asyncio.run(seed(ledger, steady_traffic(days=3)))
    admin = "admin-key"
    config = tmp_path / "modelplane.yaml"
    config.write_text(
        CONFIG_YAML
        + f'ledger: {{url: "{ledger}"}}\n'
        + "keys:\n"
        + f'  - {{hash: "sha256:{hashlib.sha256(admin.encode()).hexdigest()}", tenant: ops, tier: pro, admin: true}}\n'
        + f'  - {{hash: "sha256:{hashlib.sha256(b"user").hexdigest()}", tenant: acme, tier: free}}\n'
    )
    gateway = launch_gateway(tmp_path, tmp_path / "home", config)
    refused = httpx.get(f"{gateway.url}/dashboard", headers={"authorization": "Bearer user"})
    assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Basic")
    page = httpx.get(f"{gateway.url}/dashboard", auth=("anyone", admin), timeout=60)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    saved = tmp_path / "dashboard.html"
    saved.write_text(page.text)
    assert rendered_dom(saved).count('class="main-svg"') >= 4
    assert gateway.stop() == 0
