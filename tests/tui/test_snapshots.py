"""Snapshots of the console, grouped by screen.

Every snapshot runs the real engine on a real SQLite file in ``tmp_path``,
fed by the seeded demo market one batch at a time (``SteppedFeed``), with a
fixed wall clock and session start, seeded ids, no cursor blink, and waits on
workers rather than sleeping. Update with ``make snapshots`` and look at the
report before committing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from harness import SteppedFeed, make_app, make_settings
from textual.pilot import Pilot
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

from engine.feeds.sim import SIM_EPOCH_MS
from engine.runtime import Engine
from persistence.store import Store
from tui.app import CmaApp

pytestmark = pytest.mark.usefixtures("seeded_ids")

Snap = Callable[..., bool]
WARM_UP = 300
WIDE = (120, 40)
SMALL = (80, 24)


def trading_session(
    feed: SteppedFeed, *, approve: int = 2
) -> Callable[[Pilot[int]], Awaitable[None]]:
    """A run_before: play the market, approve the ``approve`` newest proposals, let them fill."""

    async def run(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, CmaApp)
        await app.workers.wait_for_complete()
        await feed.advance(WARM_UP)
        app.redraw(force=True)
        await pilot.pause()
        for _ in range(approve):
            await pilot.press("end", "a")
            await pilot.pause()
            await app.workers.wait_for_complete()
        if approve:
            await feed.advance(2)
        await settle(pilot)

    return run


async def settle(pilot: Pilot[Any]) -> None:
    app = pilot.app
    assert isinstance(app, CmaApp)
    await app.workers.wait_for_complete()
    app.redraw(force=True)
    await pilot.pause()
    await pilot.wait_for_scheduled_animations()
    await footer_settled(pilot)


async def footer_settled(pilot: Pilot[Any]) -> None:
    """Wait (bounded, not a sleep) until the footer's keys are laid out and stay put.

    The footer rebuilds all its keys a refresh after any change of bindings (a screen
    pushed, focus moved, a key enabled), so on a loaded machine a snapshot could catch
    it empty: it did, for the proposal detail, whose every redraw refreshed its bindings
    and so rebuilt the footer each second. Done when every key has a size on screen and
    the same keys are there one refresh later.
    """
    app = pilot.app
    previous: list[FooterKey] | None = None
    for _ in range(200):
        await pilot.pause()
        footers = app.screen.query(Footer)
        if not footers:
            return
        keys = list(footers.first().query(FooterKey))
        laid_out = bool(keys) and all(key.region.width > 0 for key in keys)
        if laid_out and keys == previous:
            return
        previous = keys if laid_out else None
    raise AssertionError("the footer never settled")


def session_app(tmp_path: Path, **hooks: Any) -> tuple[CmaApp, SteppedFeed]:
    feed = SteppedFeed()
    return make_app(tmp_path, feed, make_settings(tmp_path / "cma.db"), **hooks), feed


class TestMainScreen:
    def test_wide_layout_at_120x40(self, snap_compare: Snap, tmp_path: Path) -> None:
        app, feed = session_app(tmp_path)
        assert snap_compare(app, terminal_size=WIDE, run_before=trading_session(feed))

    def test_tabs_at_80x24(self, snap_compare: Snap, tmp_path: Path) -> None:
        app, feed = session_app(tmp_path)
        assert snap_compare(app, terminal_size=SMALL, run_before=trading_session(feed))

    def test_positions_tab_at_80x24(self, snap_compare: Snap, tmp_path: Path) -> None:
        app, feed = session_app(tmp_path)
        assert snap_compare(
            app, press=["tab"], terminal_size=SMALL, run_before=trading_session(feed)
        )

    def test_before_the_market_opens(self, snap_compare: Snap, tmp_path: Path) -> None:
        app, _ = session_app(tmp_path)

        async def started(pilot: Pilot[Any]) -> None:
            await pilot.app.workers.wait_for_complete()
            await settle(pilot)

        assert snap_compare(app, terminal_size=WIDE, run_before=started)


class TestProposalDetail:
    def test_detail_of_the_selected_proposal(self, snap_compare: Snap, tmp_path: Path) -> None:
        app, feed = session_app(tmp_path)
        session = trading_session(feed, approve=0)

        async def detail(pilot: Pilot[Any]) -> None:
            # Open the detail inside run_before and settle, so the snapshot never
            # races the detail screen's first draw on a loaded machine.
            await session(pilot)
            await pilot.press("down", "enter")
            await settle(pilot)

        assert snap_compare(app, terminal_size=WIDE, run_before=detail)


class TestHelp:
    def test_help_of_the_main_screen(self, snap_compare: Snap, tmp_path: Path) -> None:
        app, feed = session_app(tmp_path)
        assert snap_compare(
            app, press=["question_mark"], terminal_size=WIDE, run_before=trading_session(feed)
        )

    def test_help_of_the_reject_dialog(self, snap_compare: Snap, tmp_path: Path) -> None:
        app, feed = session_app(tmp_path)
        assert snap_compare(
            app,
            press=["r", "question_mark"],
            terminal_size=WIDE,
            run_before=trading_session(feed, approve=0),
        )


class TestDialogs:
    def test_reject_reasons(self, snap_compare: Snap, tmp_path: Path) -> None:
        app, feed = session_app(tmp_path)
        assert snap_compare(
            app, press=["r"], terminal_size=SMALL, run_before=trading_session(feed, approve=0)
        )

    def test_resize_with_a_bad_quantity(self, snap_compare: Snap, tmp_path: Path) -> None:
        app, feed = session_app(tmp_path)
        assert snap_compare(
            app,
            press=["s", "ctrl+a", "ctrl+k", "minus", "2", "enter"],
            terminal_size=SMALL,
            run_before=trading_session(feed, approve=0),
        )

    def test_quit_asks_about_open_positions(self, snap_compare: Snap, tmp_path: Path) -> None:
        app, feed = session_app(tmp_path)
        assert snap_compare(app, press=["q"], terminal_size=WIDE, run_before=trading_session(feed))


class TestRisk:
    def test_halted_trading(self, snap_compare: Snap, tmp_path: Path) -> None:
        app, feed = session_app(tmp_path)
        session = trading_session(feed)

        async def halted(pilot: Pilot[Any]) -> None:
            await session(pilot)
            await pilot.press("h", "y")
            await settle(pilot)

        assert snap_compare(app, terminal_size=WIDE, run_before=halted)


async def _earlier_session(db: Path) -> None:
    """A first session, straight on the engine: two positions left open, proposals pending."""
    settings = make_settings(db)
    store = await Store.open(db)
    feed = SteppedFeed()
    engine = Engine(settings, store, feed, clock=lambda: 0.0)
    try:
        await engine.start()
        await feed.advance(WARM_UP)
        for _ in range(2):
            newest = engine.pending()[-1]
            await engine.approve(newest.id)
        await feed.advance(1)
        await engine.stop(close_positions=False)
    finally:
        await store.close()


class TestRestart:
    def test_restart_summary(self, snap_compare: Snap, tmp_path: Path) -> None:
        db = tmp_path / "cma.db"
        asyncio.run(_earlier_session(db))
        feed = SteppedFeed(seed=8, start_ts=SIM_EPOCH_MS + 1000 * 60_000)
        app = make_app(tmp_path, feed, make_settings(db))

        async def recovered(pilot: Pilot[Any]) -> None:
            await settle(pilot)

        assert snap_compare(app, terminal_size=WIDE, run_before=recovered)


class TestThemes:
    @pytest.mark.parametrize("theme", ["cma-dark", "cma-light", "cma-contrast"])
    def test_main_screen_in_theme(self, snap_compare: Snap, tmp_path: Path, theme: str) -> None:
        app, feed = session_app(tmp_path, theme=theme)
        assert snap_compare(app, terminal_size=WIDE, run_before=trading_session(feed))
