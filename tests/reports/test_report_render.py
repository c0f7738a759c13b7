"""The four formats of a real backtest's report, checked against the report and the store."""

from __future__ import annotations

import csv
import io
import json
import re
import sqlite3
import zipfile
from contextlib import closing
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from reports import build_report, default_report_path, write_report
from reports.model import Report
from reports.render import render, render_html, render_json, render_markdown
from reports.svg import MAX_POINTS, downsample, line_chart

#: Elements HTML allows without an end tag.
VOID = {"meta", "br", "hr", "img", "input", "link", "col", "area", "base", "wbr", "source"}
#: SVG elements this module writes self-closed.
SELF_CLOSED = {"line", "path"}


class Balanced(HTMLParser):
    """Checks that every element is closed in order; collects ids and attributes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.ids: dict[str, str] = {}
        self.attrs: list[tuple[str, str, str]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            self.attrs.append((tag, name, value or ""))
            if name == "id" and value:
                self.ids[value] = tag
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            self.attrs.append((tag, name, value or ""))
        if tag not in VOID | SELF_CLOSED:
            self.errors.append(f"<{tag}/> self-closed")

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> Balanced:
    p = Balanced()
    p.feed(html)
    p.close()
    return p


@pytest.fixture(scope="module")
def report(stores: dict[str, Path]) -> Report:
    return build_report(stores["mixed"], 1)


def test_html_is_well_formed_self_contained_and_has_both_charts(report: Report) -> None:
    html = render_html(report)
    p = parse(html)
    assert not p.errors, p.errors[:5]
    assert p.stack == [], p.stack
    assert p.ids.get("equity-chart") == "svg" and p.ids.get("drawdown-chart") == "svg"
    assert "http" not in html.lower()
    assert not [a for a in p.attrs if a[1] in ("src", "href") or "//" in a[2]]
    assert "<script" not in html.lower() and "<link" not in html.lower()
    assert "@media (prefers-color-scheme: dark)" in html
    # The charts are drawn from the data: one path point per equity point (no downsampling
    # at this size), inside the chart's box.
    line = re.search(r'<svg id="equity-chart".*?<path class="line" fill="none" d="M([^"]+)"', html)
    assert line is not None
    assert len(line.group(1).split()) == len(report.equity)


def test_the_human_edge_comes_right_after_the_headline(report: Report) -> None:
    for text in (render_markdown(report), render_html(report)):
        order = [text.index(h) for h in ("Headline", "The human edge", "By agent", "Trades (")]
        assert order == sorted(order)
    md = render_markdown(report)
    row = report.edge.overall
    assert f"| all agents | {row.approved.mean_return * 100:+.2f} % ({row.approved.count}," in md
    assert f"({row.rejected.count}) |" in md
    assert "fees are not included" in md


def test_markdown_lists_every_trade_decision_and_denial(report: Report) -> None:
    md = render_markdown(report)
    for t in report.trades:
        assert re.search(rf"^\| {t.position_id} \| {re.escape(t.symbol)} \|", md, re.M)
    for d in report.decisions:
        assert f"| {d.proposal_id} |" in md
    for x in report.denials:
        assert f"| {x.client_order_id} |" in md and x.reason in md
    assert f"## Trades ({len(report.trades)})" in md


def test_data_is_escaped_in_html_and_markdown(mixed_copy: Path) -> None:
    evil = "<script>alert(1)</script> | x"
    with closing(sqlite3.connect(mixed_copy)) as conn:
        traded = "(SELECT proposal_id FROM positions WHERE proposal_id IS NOT NULL LIMIT 1)"
        votes_json = conn.execute(f"SELECT votes_json FROM proposals WHERE id = {traded}")
        votes = json.loads(votes_json.fetchone()[0])
        votes[0]["rationale"] = evil
        votes[0]["agent"] = "<b>agent</b>"
        conn.execute(
            f"UPDATE proposals SET votes_json = ? WHERE id = {traded}", (json.dumps(votes),)
        )
        conn.commit()
    report = build_report(mixed_copy, 1)
    html = render_html(report)
    at = html.find("<script>")
    assert at < 0, html[at - 200 : at + 100]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>agent</b>" not in html
    assert not parse(html).errors
    md = render_markdown(report)
    assert r"</script> \| x" in md  # a pipe in data does not split the table's cell


def test_the_csv_zip_round_trips_the_rows(report: Report, tmp_path: Path) -> None:
    [path] = write_report(report, "csv", tmp_path / "r.zip")
    with zipfile.ZipFile(path) as z:
        assert sorted(z.namelist()) == ["decisions.csv", "denials.csv", "trades.csv"]
        trades = list(csv.DictReader(io.StringIO(z.read("trades.csv").decode())))
        decisions = list(csv.DictReader(io.StringIO(z.read("decisions.csv").decode())))
        denials = list(csv.DictReader(io.StringIO(z.read("denials.csv").decode())))
    assert [int(r["position_id"]) for r in trades] == [t.position_id for t in report.trades]
    for row, t in zip(trades, report.trades, strict=True):
        assert Decimal(row["net_pnl"]) == t.net_pnl
        assert Decimal(row["fees"]) == t.fees
        assert row["agents"].split(";") == list(t.agents)
        assert float(row["return"]) == t.ret
    assert [r["proposal_id"] for r in decisions] == [d.proposal_id for d in report.decisions]
    assert [r["decided_by"] for r in decisions] == [d.decided_by or "" for d in report.decisions]
    assert [r["reason"] for r in denials] == [x.reason for x in report.denials]


def test_json_holds_everything_with_its_schema_version(report: Report) -> None:
    data = json.loads(render_json(report))
    assert data["schema_version"] == 1
    assert set(data) >= {"session", "results", "edge", "trades", "decisions", "denials", "equity"}
    assert len(data["trades"]) == len(report.trades)
    assert len(data["equity"]) == len(report.equity)
    assert report.results is not None
    assert Decimal(data["results"]["net_pnl"]) == report.results.net_pnl
    assert sum(Decimal(t["net_pnl"]) for t in data["trades"]) == report.results.net_pnl
    assert data["edge"]["overall"]["approved"]["count"] == report.edge.overall.approved.count
    assert data["session"]["symbols"] == ["ETH/BTC", "LTC/BTC"]


def test_write_report_makes_the_folder_and_a_private_file(report: Report, tmp_path: Path) -> None:
    target = default_report_path(tmp_path / "a" / "reports", "bt:1", "html")
    assert target.name.startswith("session-bt-1-") and target.suffix == ".html"
    [path] = write_report(report, "html", target)
    assert path == target and path.read_bytes() == render(report, "html")
    assert path.stat().st_mode & 0o077 == 0
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # no temporary left
    with pytest.raises(ValueError, match="format must be one of"):
        render(report, "pdf")


def test_downsampling_keeps_at_most_the_limit_and_the_extremes() -> None:
    rng = np.random.default_rng(3)
    x = np.arange(100_000, dtype=np.float64)
    y = np.cumsum(rng.normal(size=100_000))
    dx, dy = downsample(x, y)
    assert len(dx) <= MAX_POINTS
    assert dy.max() == y.max() and dy.min() == y.min()
    assert dx[0] == x[0] and dx[-1] == x[-1]
    assert bool(np.all(np.diff(dx) > 0))


def test_a_chart_of_one_point_or_none_still_draws_an_svg() -> None:
    one = line_chart("equity-chart", "Equity", [1_000], [5.0])
    assert one.startswith('<svg id="equity-chart"') and 'class="line"' in one
    none = line_chart("drawdown-chart", "Drawdown", [], [])
    assert "no data" in none and not parse(none).errors


def test_latencies_read_as_people_say_them() -> None:
    from reports.render import latency

    assert [latency(x) for x in (None, 0, 850, 12_500, 1_200_000, 3_725_000)] == [
        "", "0 ms", "850 ms", "12.5 s", "20m 0s", "1h 2m 5s",
    ]  # fmt: skip
