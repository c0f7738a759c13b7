"""deploy/prometheus-alerts.yml and deploy/grafana-dashboard.json name metrics cma serves.

The names come from a real /metrics: a session on the demo market with metrics on,
scraped over HTTP. The alert rules go through ``promtool check rules`` where promtool
is installed (Debian's ``prometheus`` package); otherwise they are parsed as YAML and
checked for their shape.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.config import Settings
from engine.feeds.sim import SimFeed
from tui.session import ConsoleSession

ROOT = Path(__file__).resolve().parents[1]
ALERTS = ROOT / "deploy" / "prometheus-alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana-dashboard.json"
_NAME = re.compile(r"\bcma_[a-z0-9_]+\b")
_DURATION = re.compile(r"^\d+[smhd]$")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Every metric name a real /metrics exposes (sample names and # TYPE names)."""
    path = tmp_path_factory.mktemp("served") / "cma.db"

    async def scrape() -> str:
        settings = Settings(
            store={"path": path},
            feed={"symbols": ["BTC/USDT", "ETH/USDT"]},
            approval={"policy": "auto"},
            metrics={"enabled": True, "port": 0},
        )
        feed = SimFeed(symbols=settings.feed.symbols, speed=None, limit=600)
        session = ConsoleSession(settings, feed=feed)
        try:
            await session.start(paused_if_recovered=False)
            assert session.engine is not None and session.metrics_url is not None
            await session.engine.wait()
            url = session.metrics_url
            return await asyncio.to_thread(lambda: urllib.request.urlopen(url).read().decode())
        finally:
            await session.stop()

    text = asyncio.run(scrape())
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            names.add(line.split()[2])
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    assert "cma_equity" in names and "cma_candle_seconds_bucket" in names
    return names


def _check_names(expr: str, served: set[str], where: str) -> None:
    names = set(_NAME.findall(expr))
    assert names, f"{where}: {expr!r} names no cma metric"
    unknown = sorted(names - served)
    assert unknown == [], f"{where}: {expr!r} names {unknown}, which /metrics does not serve"
    assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), where


def test_the_alert_rules_cover_halts_stale_feeds_drawdown_and_the_breaker(
    served: set[str],
) -> None:
    rules = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    [group] = rules["groups"]
    by_name = {r["alert"]: r for r in group["rules"]}
    for needed in (
        "CmaTradingHalted",
        "CmaFeedStale",
        "CmaDrawdownNearLimit",
        "CmaCircuitBreakerOpen",
    ):
        assert needed in by_name, f"no {needed} alert"
    assert "cma_drawdown_limit_ratio" in by_name["CmaDrawdownNearLimit"]["expr"]
    for name, rule in by_name.items():
        _check_names(rule["expr"], served, name)
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"], name
        assert "for" not in rule or _DURATION.match(rule["for"]), name
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, name


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_checks_the_alert_rules() -> None:
    done = subprocess.run(
        ["promtool", "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 6 rules found" in done.stdout + done.stderr


def test_every_dashboard_panel_queries_metrics_cma_serves(served: set[str]) -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    panels: list[dict[str, Any]] = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len(panels) >= 15
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    seen: set[str] = set()
    for panel in panels:
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            _check_names(target["expr"], served, f"panel {panel['title']!r}")
            assert 'instance=~"$instance"' in target["expr"], panel["title"]
            seen |= set(_NAME.findall(target["expr"]))
    # The list, each on some panel.
    for family in (
        "cma_proposals_total",
        "cma_approval_latency_seconds_bucket",
        "cma_orders_total",
        "cma_fills_total",
        "cma_order_denials_total",
        "cma_equity",
        "cma_drawdown_ratio",
        "cma_exposure_ratio",
        "cma_open_positions",
        "cma_pending_proposals",
        "cma_trading_state",
        "cma_exchange_errors_total",
        "cma_rate_limit_waits_total",
        "cma_candle_seconds_bucket",
        "cma_store_commit_seconds_bucket",
        "cma_store_commit_size_sum",
        "cma_event_loop_lag_seconds_bucket",
    ):
        assert family in seen, f"no panel shows {family}"
