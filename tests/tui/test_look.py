"""What the console draws: no glued or cut text at 80×24 and 120×40, every main-screen key
visible in the footer, readable charts, and a detail screen that holds still.

Each test reads what a real app rendered (a widget's lines, a chart's text, which
widget is on screen at a cell), not the data behind it.
"""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from harness import SteppedFeed, make_app, make_settings
from hypothesis import given
from hypothesis import strategies as st
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.geometry import Region
from textual.pilot import Pilot
from textual.widget import Widget
from textual.widgets import Footer, Static
from textual.widgets._footer import FooterKey

from engine.models import Position, Proposal, Side, q_cash
from tui import format as fmt
from tui.app import CmaApp
from tui.screens.detail import ProposalDetailScreen
from tui.screens.help import HelpScreen
from tui.screens.main import MainScreen
from tui.widgets.panes import (
    POSITION_COLUMNS,
    PROPOSAL_COLUMNS,
    EquityPane,
    EquitySeries,
    PositionsPane,
    proposal_cells,
)
from tui.widgets.status import StatusBar
from tui.widgets.table import VirtualTable

SMALL = (80, 24)
WIDE = (120, 40)
T0 = 1_767_225_600_000  # 2026-01-01 00:00 UTC
MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR


def widget_lines(widget: Widget) -> list[str]:
    """Every line ``widget`` draws (all of it, scrolled into view or not), as text."""
    region = Region(0, 0, widget.size.width, widget.size.height)
    return [strip.text for strip in widget.render_lines(region)]


def table_lines(table: VirtualTable) -> list[str]:
    return [table.render_line(y).text for y in range(table.size.height)]


async def booted(pilot: Pilot[Any], feed: SteppedFeed, batches: int = 300) -> CmaApp:
    app = pilot.app
    assert isinstance(app, CmaApp)
    await app.workers.wait_for_complete()
    if batches:
        await feed.advance(batches)
    app.redraw(force=True)
    await pilot.pause()
    return app


def console(tmp_path: Path) -> tuple[CmaApp, SteppedFeed]:
    feed = SteppedFeed()
    return make_app(tmp_path, feed, make_settings(tmp_path / "cma.db")), feed


# ---- the proposal detail -----------------------------------------------------------


@pytest.mark.parametrize("size", [SMALL, WIDE])
async def test_detail_fields_keep_a_space_between_every_label_and_its_value(
    tmp_path: Path, size: tuple[int, int]
) -> None:
    app, feed = console(tmp_path)
    async with app.run_test(size=size) as pilot:
        await booted(pilot, feed)
        await pilot.press("enter")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, ProposalDetailScreen)
        text = "\n".join(widget_lines(screen.query_one("#detail-fields", Widget)))
        for label in ("Market time left", "Reward : risk", "Take-profit", "Risk manager"):
            assert re.search(rf"(^|\s){re.escape(label)}\s+\S", text, re.M), (label, text)
        left = fmt.duration(screen.proposal.expires_at - app.market_ts)
        assert re.search(rf"Market time left\s+{left}\b", text), text
        assert screen.proposal.id in text  # whole, never cut
        assert "…" not in text


async def test_the_detail_shows_its_votes_at_80x24(tmp_path: Path) -> None:
    # The fields used to take the whole screen: the votes box was one blank line.
    app, feed = console(tmp_path)
    async with app.run_test(size=SMALL) as pilot:
        await booted(pilot, feed)
        await pilot.press("enter")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, ProposalDetailScreen)
        assert screen.proposal.votes
        for selector in (".vote-head", ".vote-rationale"):
            widget = screen.query(selector).first(Static)
            region = widget.region
            assert region.height > 0, selector
            assert screen.get_widget_at(region.x, region.y)[0] is widget, selector


async def test_the_detail_footer_is_not_rebuilt_while_nothing_changes(tmp_path: Path) -> None:
    # The app redraws a live screen every second (the session clock). The detail screen
    # used to refresh its bindings on each redraw, and the footer rebuilt all its keys
    # every time: a screenshot (or a person) could catch it empty.
    app, feed = console(tmp_path)
    async with app.run_test(size=WIDE) as pilot:
        await booted(pilot, feed)
        await pilot.press("enter")
        await pilot.pause()
        await pilot.pause()
        footer = app.screen.query_one(Footer)
        keys = list(footer.query(FooterKey))
        assert keys
        for _ in range(5):
            app.redraw(force=True)
            await pilot.pause()
        assert list(footer.query(FooterKey)) == keys
        # A real change (the proposal is approved) still updates the keys.
        await pilot.press("a")
        await app.workers.wait_for_complete()
        app.redraw(force=True)
        await pilot.pause()
        await pilot.pause()
        disabled = {key.action for key in footer.query(FooterKey) if key.has_class("-disabled")}
        assert {"approve", "reject", "resize"} <= disabled


# ---- tables ---------------------------------------------------------------------------


@given(st.integers(min_value=-DAY, max_value=99 * DAY))
def test_every_duration_fits_the_age_and_expiry_columns(ms: int) -> None:
    widths = {c.key: c.width for c in (*POSITION_COLUMNS, *PROPOSAL_COLUMNS)}
    text = fmt.duration(ms)
    assert len(text) <= widths["age"], text
    assert len(text) <= widths["expires"], text


class PositionsApp(App[None]):
    def compose(self) -> ComposeResult:
        yield PositionsPane()


@pytest.mark.parametrize("age", [14 * MINUTE, 59 * MINUTE + 59_000, 23 * HOUR + 59 * MINUTE])
async def test_a_position_age_is_drawn_whole_at_80_columns(age: int) -> None:
    position = Position(
        symbol="BTC/USDT",
        side=Side.LONG,
        qty=Decimal("0.012345"),
        entry_price=Decimal("96200.8"),
        cost_basis=q_cash(Decimal("1187.6")),
        stop=Decimal("95978.1"),
        take_profit=Decimal("96646.3"),
        opened_at=T0,
    )
    app = PositionsApp()
    async with app.run_test(size=SMALL) as pilot:
        pane = app.query_one(PositionsPane)
        pane.show([position], {"BTC/USDT": Decimal("96300")}, T0 + age)
        await pilot.pause()
        row = next(line for line in table_lines(pane.table) if line.startswith("BTC/USDT"))
        assert row.rstrip().endswith(" " + fmt.duration(age)), row
        assert "…" not in row


async def test_the_first_activity_line_has_a_time_before_the_market_opens(
    tmp_path: Path,
) -> None:
    app, feed = console(tmp_path)
    async with app.run_test(size=WIDE) as pilot:
        await booted(pilot, feed, batches=0)
        lines = [line for line in table_lines(app.query_one("#activity-table", VirtualTable))]
        engine_line = next(line for line in lines if "engine running" in line)
        assert not engine_line.startswith("--"), engine_line
        assert engine_line.startswith("pre-open"), engine_line
        await feed.advance(5)
        app.redraw(force=True)
        await pilot.pause()
        lines = table_lines(app.query_one("#activity-table", VirtualTable))
        assert not any(line.startswith("--") for line in lines), lines


# ---- help and footer --------------------------------------------------------------------


@pytest.mark.parametrize("size", [SMALL, WIDE])
async def test_help_shows_every_key_description_and_id_uncut(
    tmp_path: Path, size: tuple[int, int]
) -> None:
    app, feed = console(tmp_path)
    async with app.run_test(size=size) as pilot:
        await booted(pilot, feed)
        await pilot.press("question_mark")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, HelpScreen)
        table = screen.query_one("#help-table", Widget)
        assert table.region.right <= size[0]
        lines = widget_lines(table)
        assert "…" not in "".join(lines)
        # Read the three columns back from where the header puts them.
        header, *body = lines
        middle, right = header.index("What it does"), header.index("Id (ui.keymap)")
        keys_column = [line[:middle].strip() for line in body]
        ids_column = [line[right:].strip() for line in body]
        descriptions = " ".join(" ".join(line[middle:right].split()) for line in body)
        for _, row in screen.rows:
            keys, description, ident = (c[0] for c in row)
            assert keys in keys_column, keys
            assert ident in ids_column, ident
            # Wrapped or not, the whole description is there.
            assert " ".join(description.split()) in descriptions, description


def shown_main_bindings(app: CmaApp) -> set[str]:
    """The actions the main screen's footer must show: its own visible keys, and quit."""
    shown = {b.action for b in MainScreen.BINDINGS if isinstance(b, Binding) and b.show and b.id}
    return shown | {"request_quit", "app.help"}


@pytest.mark.parametrize("size", [SMALL, (110, 24), WIDE, (80, 40)])
async def test_every_main_screen_key_is_visible_in_the_footer(
    tmp_path: Path, size: tuple[int, int]
) -> None:
    app, feed = console(tmp_path)
    async with app.run_test(size=size) as pilot:
        await booted(pilot, feed)
        await pilot.pause()
        screen = app.screen
        footer = screen.query_one(Footer)
        seen: set[str] = set()
        for key in footer.query(FooterKey):
            region = key.region
            assert region.width > 0, key.action
            # Every cell of the key is on screen, and it is that key that is drawn there
            # (not the palette key docked over it, not scrolled away).
            assert Region(0, 0, *size).contains_region(region), (key.action, region)
            for x in range(region.x, region.right):
                widget, _ = screen.get_widget_at(x, region.y)
                assert widget is key, (key.action, x, widget)
            seen.add(key.action)
        assert shown_main_bindings(app) <= seen, shown_main_bindings(app) - seen
        # The footer leaves the panes most of the screen.
        assert footer.region.height <= 2


# ---- the equity charts -------------------------------------------------------------------


class EquityApp(App[None]):
    def __init__(self, series: EquitySeries) -> None:
        super().__init__()
        self.series = series

    def compose(self) -> ComposeResult:
        yield EquityPane(self.series)


def series_of(span: int, points: int, drawdowns: list[float]) -> EquitySeries:
    series = EquitySeries()
    for i in range(points):
        dd = drawdowns[i % len(drawdowns)]
        series.add(T0 + span * i // (points - 1), 100_000 * (1 - dd), dd)
    return series


async def chart_text(series: EquitySeries, size: tuple[int, int], selector: str) -> list[str]:
    app = EquityApp(series)
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        await pilot.pause()
        pane = app.query_one(EquityPane)
        pane.replot(force=True)
        await pilot.pause()
        chart = app.query_one(selector, Widget)
        return str(chart.render()).splitlines()


def y_labels(lines: list[str]) -> list[str]:
    return [m.group(1).strip() for line in lines if (m := re.match(r"^\s*(\S+)\s*┤", line))]


@pytest.mark.parametrize("size", [SMALL, (40, 30)])
async def test_drawdown_is_charted_as_a_positive_percent_from_zero(size: tuple[int, int]) -> None:
    series = series_of(5 * HOUR, 120, [0.0, 0.004, 0.012, 0.02, 0.007])
    lines = await chart_text(series, size, "#drawdown-chart")
    labels = y_labels(lines)
    assert labels, lines
    assert all(label.endswith("%") for label in labels), labels
    values = [float(label.rstrip("%")) for label in labels]
    assert min(values) == 0, labels
    assert all(v >= 0 for v in values), labels
    assert max(values) >= 2.0, labels  # the deepest drawdown (2 %) is on the scale


@pytest.mark.parametrize(
    ("span", "pattern"),
    [
        (5 * HOUR, r"\b\d\d:\d\d\b"),
        (45 * MINUTE, r"\b00:\d\d\b"),
        (10 * DAY, r"\b(Jan|Feb) \d\d\b"),
    ],
)
@pytest.mark.parametrize("selector", ["#equity-chart", "#drawdown-chart"])
async def test_charts_label_the_x_axis_with_market_time(
    span: int, pattern: str, selector: str
) -> None:
    series = series_of(span, 100, [0.0, 0.01])
    lines = await chart_text(series, SMALL, selector)
    axis = lines[-1]
    labels = re.findall(pattern, axis)
    assert len(labels) >= 2, lines[-3:]
    assert not re.search(r"\b\d+\.\d\b", axis), axis  # no bare hour fractions


# ---- the status bar ------------------------------------------------------------------


class StatusApp(App[None]):
    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")


@pytest.mark.parametrize("engine", ["running", "stopping"])
async def test_the_status_bar_keeps_live_mode_and_the_session_clock_at_80_columns(
    engine: str,
) -> None:
    app = StatusApp()
    async with app.run_test(size=SMALL) as pilot:
        bar = app.query_one(StatusBar)
        bar.set_mode("LIVE")
        bar.set_market(T0)
        bar.set_engine(engine)
        bar.set_policy("auto", 0.6)
        bar.set_session(3723)
        await pilot.pause()
        (line,) = widget_lines(bar)
        assert "LIVE — REAL MONEY" in line
        assert engine in line
        assert "auto ≥ 60%" in line
        assert line.rstrip().endswith("01:02:03"), line
        assert "…" not in line
        # With room, the words stay.
        await pilot.resize_terminal(120, 24)
        await pilot.pause()
        (line,) = widget_lines(bar)
        assert "policy auto ≥ 60%" in line and "session 01:02:03" in line, line


amounts = st.decimals(min_value=-(10**14), max_value=10**14, places=2, allow_nan=False)


@given(amounts, st.integers(min_value=7, max_value=12))
def test_a_table_amount_fits_its_column_and_keeps_its_sign(value: Decimal, width: int) -> None:
    text = fmt.money_in(value, width)
    assert len(text) <= width, text
    if value:
        assert text.startswith("-") == (value < 0), text
    signed = fmt.pnl_in(value, width + 2)
    assert len(signed) <= width + 2, signed
    assert signed[0] == {"up": fmt.UP, "down": fmt.DOWN, "flat": fmt.FLAT}[fmt.direction(value)]


@given(amounts)
def test_a_small_amount_is_shown_to_the_cent(value: Decimal) -> None:
    if abs(value) < 10**5:
        assert fmt.money_in(value, 9) == f"{value:.2f}"


@given(
    st.decimals(min_value=0, max_value=10**9, places=2),
    st.floats(min_value=0, max_value=1),
    st.booleans(),
)
def test_proposal_cells_fit_their_columns(
    notional: Decimal, confidence: float, merged: bool
) -> None:
    p = Proposal(
        id="prp-1",
        symbol="BTC/USDT",
        side=Side.LONG,
        entry=Decimal("96200.8"),
        stop=Decimal("95978.1"),
        take_profit=Decimal("96646.3"),
        confidence=confidence,
        size=notional / Decimal("96200.8"),
        created_at=T0,
        expires_at=T0 + HOUR,
        merged=int(merged),
        votes=(),
    )
    for column, (text, _) in zip(PROPOSAL_COLUMNS, proposal_cells(p), strict=False):
        if column.key in ("conf", "notional"):
            assert len(text) <= column.width, (column.key, text)


# ---- the restart summary ----------------------------------------------------------------


async def test_the_restart_summary_tables_are_whole_at_80x24(tmp_path: Path) -> None:
    from test_snapshots import _earlier_session

    from engine.feeds.sim import SIM_EPOCH_MS
    from tui.screens.recovery import RecoveryScreen

    db = tmp_path / "cma.db"
    await _earlier_session(db)
    feed = SteppedFeed(seed=8, start_ts=SIM_EPOCH_MS + 1000 * 60_000)
    app = make_app(tmp_path, feed, make_settings(db))
    async with app.run_test(size=SMALL) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, RecoveryScreen)
        for selector, last in (("#recovery-positions", "Age"), ("#recovery-pending", "Expires")):
            table = screen.query_one(selector, VirtualTable)
            assert table.row_count
            header, first = (line.rstrip() for line in table_lines(table)[:2])
            assert header.endswith(last), (selector, header)
            assert re.search(r"\d+[smhd]$", first), (selector, first)


@given(
    st.integers(min_value=0, max_value=4_000_000_000_000),
    st.integers(min_value=1, max_value=400 * DAY),
    st.integers(min_value=1, max_value=8),
)
def test_time_ticks_are_round_distinct_times_inside_the_span(
    start: int, span: int, most: int
) -> None:
    ticks = fmt.time_ticks(start, start + span, most)
    assert len(ticks) <= most
    times = [ts for ts, _ in ticks]
    assert times == sorted(set(times))
    assert all(start <= ts <= start + span for ts in times)
    assert all(ts % MINUTE == 0 for ts in times)
    labels = [label for _, label in ticks]
    assert len(set(labels)) == len(labels), labels
    shape = r"[A-Z][a-z]{2} \d\d" if span > DAY else r"\d\d:\d\d"
    assert all(re.fullmatch(shape, label) for label in labels), labels
    if most >= 2 and span >= 10 * MINUTE and span <= DAY:
        assert len(ticks) >= 2, (span, most, labels)


async def test_an_equity_series_without_a_span_draws_no_axis() -> None:
    series = EquitySeries()
    series.add(T0, 100_000, 0.0)
    series.add(T0, 100_000, 0.0)
    lines = await chart_text(series, SMALL, "#drawdown-chart")
    assert any("drawdown" in line for line in lines)
