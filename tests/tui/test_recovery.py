"""The restart summary appears only when there is something to decide, and no
startup toast covers it."""

from __future__ import annotations

from pathlib import Path

from harness import SteppedFeed, make_app, make_settings
from test_console import boot, settle

from engine.feeds.sim import SIM_EPOCH_MS
from engine.models import TradingState
from engine.runtime import Recovery
from tui.screens.main import MainScreen
from tui.screens.recovery import RecoveryScreen

LATER = SIM_EPOCH_MS + 1000 * 60_000
#: A keymap with an unknown id: the console says so in a notice at start.
ODD_KEYMAP = {"ui": {"keymap": {"no-such-binding": "z"}}}


async def first_session(tmp_path: Path, db: Path, *keys: str, **sections: dict[str, str]) -> None:
    """A session on ``db`` that trades a while, presses ``keys``, then quits leaving all open."""
    feed = SteppedFeed()
    app = make_app(tmp_path, feed, make_settings(db, **sections))
    async with app.run_test(size=(120, 40)) as pilot:
        await boot(app, pilot, feed)
        if keys:
            await pilot.press(*keys)
            await settle(app, pilot)
        await pilot.press("q", "l")
        await app.workers.wait_for_complete()
    assert app.return_code == 0


async def test_a_clean_quit_with_nothing_open_starts_straight_on_the_main_screen(
    tmp_path: Path,
) -> None:
    db = tmp_path / "cma.db"
    await first_session(tmp_path, db, approval={"on_stop": "expire"})
    again = make_app(tmp_path, SteppedFeed(seed=8, start_ts=LATER), make_settings(db, **ODD_KEYMAP))
    async with again.run_test(size=(120, 40)) as pilot:
        await again.workers.wait_for_complete()
        await pilot.pause()
        assert isinstance(again.screen, MainScreen)
        assert again.recovery is not None
        assert not again.recovery.is_fresh and not again.recovery.needs_attention
        assert again.engine is not None and again.engine.status == "running"
        # With no summary to cover, the start's notices show at once.
        assert any("no-such-binding" in str(n.message) for n in again._notifications)


async def test_pending_proposals_left_at_quit_bring_the_summary_and_toasts_wait_for_it(
    tmp_path: Path,
) -> None:
    db = tmp_path / "cma.db"
    await first_session(tmp_path, db)  # on_stop "keep": the pending proposals stay live
    again = make_app(tmp_path, SteppedFeed(seed=8, start_ts=LATER), make_settings(db, **ODD_KEYMAP))
    async with again.run_test(size=(120, 40)) as pilot:
        await again.workers.wait_for_complete()
        await pilot.pause()
        screen = again.screen
        assert isinstance(screen, RecoveryScreen) and screen.pending
        assert again.engine is not None and again.engine.status == "paused"
        assert list(again._notifications) == []  # nothing drawn over the summary
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(again.screen, MainScreen)
        assert any("no-such-binding" in str(n.message) for n in again._notifications)


async def test_a_halt_left_at_quit_brings_the_summary(tmp_path: Path) -> None:
    db = tmp_path / "cma.db"
    await first_session(tmp_path, db, "h", "y", approval={"on_stop": "expire"})
    again = make_app(tmp_path, SteppedFeed(seed=8, start_ts=LATER), make_settings(db))
    async with again.run_test(size=(120, 40)) as pilot:
        await again.workers.wait_for_complete()
        await pilot.pause()
        screen = again.screen
        assert isinstance(screen, RecoveryScreen)
        assert (screen.positions, screen.pending) == ([], [])
        assert screen.trading_state is TradingState.HALTED


def test_needs_attention_names_what_a_person_decides() -> None:
    assert not Recovery(is_fresh=True).needs_attention
    assert not Recovery(is_fresh=False).needs_attention
    assert Recovery(is_fresh=False, trading_state=TradingState.REDUCING).needs_attention
    assert Recovery(is_fresh=True, trading_state=TradingState.HALTED).needs_attention is False
