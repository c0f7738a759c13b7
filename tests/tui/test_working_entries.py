"""Close all and quit cover entry orders approved a moment ago and not yet filled.

An approved entry fills at the next candle of its symbol. Left working, it
would fill after "close all" (or on the next start, after "close all, then
quit") and open a position the person just asked to be rid of.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from harness import SteppedFeed, make_app, make_settings, query
from test_console import boot, settle

from engine.feeds.sim import SIM_EPOCH_MS
from engine.runtime import Engine
from persistence.store import Store
from tui.screens.modals import ConfirmDialog, QuitDialog


def entry_statuses(db: Path) -> list[tuple[str, str]]:
    return query(
        db,
        "SELECT i.status, o.status FROM order_intents i JOIN orders o USING (client_order_id)"
        " WHERE i.purpose = 'entry'",
    )


async def restart_and_trade(db: Path, batches: int = 5) -> Engine:
    """A new engine on the same store that plays ``batches`` candles past the old ones."""
    store = await Store.open(db)
    feed = SteppedFeed(seed=8, start_ts=SIM_EPOCH_MS + 2000 * 60_000)
    engine = Engine(make_settings(db), store, feed)
    try:
        await engine.start(paused_if_recovered=False)
        await feed.advance(batches)
        await engine.stop(close_positions=False)
    finally:
        await store.close()
    return engine


async def test_close_all_cancels_an_entry_approved_just_before(tmp_path: Path) -> None:
    db = tmp_path / "cma.db"
    feed = SteppedFeed()
    app = make_app(tmp_path, feed, make_settings(db))
    async with app.run_test(size=(120, 40)) as pilot:
        await boot(app, pilot, feed)
        await pilot.press("end", "a")  # approved; it fills at the next candle
        await settle(app, pilot)
        assert app.engine is not None and len(app.engine.working_entries()) == 1
        await pilot.press("X")
        dialog = app.screen
        assert isinstance(dialog, ConfirmDialog)
        text = str(dialog.query_one("#confirm-message").render())
        assert "You have no open positions and 1 working entry order." in text
        assert "Cancel the working entry order?" in text
        await pilot.press("y")
        await settle(app, pilot)
        assert app.engine.working_entries() == []
        await feed.advance(3)  # the candle that would have filled it
        await settle(app, pilot)
        assert app.engine.positions() == []
        await pilot.press("q")
        assert isinstance(app.screen, QuitDialog)
        await pilot.press("l")
        await app.workers.wait_for_complete()
    assert entry_statuses(db) == [("cancelled", "cancelled")]
    again = await restart_and_trade(db)
    assert again.positions() == [] and again.working_entries() == []
    assert query(db, "SELECT COUNT(*) FROM positions") == [(0,)]


async def test_quit_closing_all_cancels_a_working_entry_so_the_next_start_opens_nothing(
    tmp_path: Path,
) -> None:
    db = tmp_path / "cma.db"
    feed = SteppedFeed()
    app = make_app(tmp_path, feed, make_settings(db))
    async with app.run_test(size=(120, 40)) as pilot:
        await boot(app, pilot, feed)
        await pilot.press("end", "a")
        await settle(app, pilot)
        await pilot.press("q")
        dialog = app.screen
        assert isinstance(dialog, QuitDialog)
        text = str(dialog.query_one("Static").render())
        assert "You have no open positions and 1 working entry order." in text
        options = dialog.query_one("#quit-choices")
        assert "entry orders working" in str(options.get_option("leave").prompt)  # type: ignore[attr-defined]
        await pilot.press("c")
        await app.workers.wait_for_complete()
    assert app.return_code == 0
    assert entry_statuses(db) == [("cancelled", "cancelled")]
    again = await restart_and_trade(db)
    assert again.positions() == []
    assert query(db, "SELECT COUNT(*) FROM positions") == [(0,)]


async def test_quit_leaving_all_open_keeps_the_entry_working_and_says_so(tmp_path: Path) -> None:
    db = tmp_path / "cma.db"
    feed = SteppedFeed()
    app = make_app(tmp_path, feed, make_settings(db))
    async with app.run_test(size=(120, 40)) as pilot:
        await boot(app, pilot, feed)
        await pilot.press("end", "a")
        await settle(app, pilot)
        await pilot.press("q", "l")
        await app.workers.wait_for_complete()
    assert entry_statuses(db) == [("sent", "open")]
    await restart_and_trade(db)
    # The order stayed working and filled on the next start (the position it opened
    # may have met its stop since: the restarted market is far from the old one).
    assert entry_statuses(db) == [("filled", "filled")]
    assert query(db, "SELECT COUNT(*) FROM positions") == [(1,)]


async def test_close_all_waits_for_an_approval_being_stored_and_cancels_it(
    tmp_path: Path,
) -> None:
    db = tmp_path / "cma.db"
    store = await Store.open(db)
    feed = SteppedFeed()
    engine = Engine(make_settings(db), store, feed)
    try:
        await engine.start()
        await feed.advance(300)
        proposal = engine.pending()[-1]
        approving = asyncio.create_task(engine.approve(proposal.id))
        await asyncio.sleep(0)  # claimed; its unit of work is being written
        # The paper market has the order from the decision on; it is stored next.
        assert [o.proposal_id for o in engine.working_entries()] == [proposal.id]
        cancelled = await engine.cancel_entries("cancelled by hand (close all)")
        await approving
        assert [o.proposal_id for o in cancelled] == [proposal.id]
        assert engine.working_entries() == []
        await feed.advance(3)
        assert engine.positions() == []
        await engine.stop(close_positions=False)
    finally:
        await store.close()
    assert entry_statuses(db) == [("cancelled", "cancelled")]
