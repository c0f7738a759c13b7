"""Pilot tests: keys pressed in the real console, with a real engine on a real SQLite file.

Each test checks what the store holds afterwards (decisions, orders, positions),
read through a separate connection as ``cma db`` would.
"""

from __future__ import annotations

import os
import signal
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest
from harness import SteppedFeed, make_app, make_settings, query
from textual.pilot import Pilot

from engine.feeds.sim import SIM_EPOCH_MS
from engine.models import Position, RejectReason, Side
from engine.runtime import CommandError
from persistence.store import Store
from tui.app import CmaApp
from tui.screens.help import HelpScreen
from tui.screens.main import MainScreen
from tui.screens.modals import (
    FloorConfirmDialog,
    PolicyDialog,
    QuitDialog,
    RejectDialog,
    ResizeDialog,
)
from tui.screens.recovery import RecoveryScreen
from tui.widgets.status import StatusBar

WARM_UP = 300  # batches of the demo market before the test presses anything


async def boot(app: CmaApp, pilot: Pilot[int], feed: SteppedFeed, batches: int = WARM_UP) -> None:
    """Wait for the engine to start, play ``batches`` of the market, and draw."""
    await app.workers.wait_for_complete()
    assert app.engine is not None
    await feed.advance(batches)
    app.redraw(force=True)
    await pilot.pause()


async def settle(app: CmaApp, pilot: Pilot[int]) -> None:
    """Let commands finish and the screen catch up."""
    await pilot.pause()
    await app.workers.wait_for_complete()
    app.redraw(force=True)
    await pilot.pause()


async def test_a_approves_the_selected_proposal_and_the_store_has_the_order(
    tmp_path: Path,
) -> None:
    db = tmp_path / "cma.db"
    feed = SteppedFeed()
    app = make_app(tmp_path, feed, make_settings(db))
    async with app.run_test(size=(120, 40)) as pilot:
        await boot(app, pilot, feed)
        # The newest proposal: an older one the market has run past is denied, not filled.
        await pilot.press("end")
        proposal = app.selected_proposal()
        assert proposal is not None
        assert app.engine is not None
        assert proposal.id == app.engine.pending()[-1].id
        await pilot.press("a")
        await settle(app, pilot)
        assert app.engine is not None
        assert proposal.id not in {p.id for p in app.engine.pending()}
        assert proposal.id not in app.main.proposals.table.keys
    decisions = query(
        db, "SELECT action, decided_by FROM decisions WHERE proposal_id = ?", proposal.id
    )
    assert decisions == [("approve", "human")]
    orders = query(
        db,
        "SELECT o.status, i.purpose FROM orders o JOIN order_intents i USING (client_order_id)"
        " WHERE i.proposal_id = ?",
        proposal.id,
    )
    assert orders == [("open", "entry")]


async def test_r_asks_a_reason_and_stores_the_rejection(tmp_path: Path) -> None:
    db = tmp_path / "cma.db"
    feed = SteppedFeed()
    app = make_app(tmp_path, feed, make_settings(db))
    async with app.run_test(size=(120, 40)) as pilot:
        await boot(app, pilot, feed)
        await pilot.press("down")
        proposal = app.selected_proposal()
        assert proposal is not None
        await pilot.press("r")
        assert isinstance(app.screen, RejectDialog)
        await pilot.press("3")
        await settle(app, pilot)
        assert isinstance(app.screen, MainScreen)
    rows = query(db, "SELECT action, reason FROM decisions WHERE proposal_id = ?", proposal.id)
    assert rows == [("reject", RejectReason.TOO_MUCH_RISK.value)]
    assert query(db, "SELECT COUNT(*) FROM order_intents WHERE proposal_id = ?", proposal.id) == [
        (0,)
    ]


async def test_escape_in_the_reject_dialog_leaves_the_proposal_pending(tmp_path: Path) -> None:
    db = tmp_path / "cma.db"
    feed = SteppedFeed()
    app = make_app(tmp_path, feed, make_settings(db))
    async with app.run_test(size=(120, 40)) as pilot:
        await boot(app, pilot, feed)
        proposal = app.selected_proposal()
        assert proposal is not None
        await pilot.press("r", "escape")
        await settle(app, pilot)
        assert app.find_pending(proposal.id) is not None
    assert query(db, "SELECT COUNT(*) FROM decisions WHERE proposal_id = ?", proposal.id) == [(0,)]


async def test_s_with_a_bad_size_shows_an_error_then_approves_a_good_one(tmp_path: Path) -> None:
    db = tmp_path / "cma.db"
    feed = SteppedFeed()
    app = make_app(tmp_path, feed, make_settings(db))
    async with app.run_test(size=(120, 40)) as pilot:
        await boot(app, pilot, feed)
        # The newest proposal: the risk limits would deny one the market has run past,
        # and the dialog would say so first.
        await pilot.press("end")
        proposal = app.selected_proposal()
        assert proposal is not None
        await pilot.press("s")
        dialog = app.screen
        assert isinstance(dialog, ResizeDialog)
        await pilot.press("ctrl+a", "ctrl+k", *"-1", "enter")
        await pilot.pause()
        assert app.screen is dialog
        assert "above zero" in str(dialog.query_one("#resize-error").render())
        await pilot.press("ctrl+a", "ctrl+k", *"abc", "enter")
        await pilot.pause()
        assert "not a number" in str(dialog.query_one("#resize-error").render())
        smaller = (proposal.size / 2).quantize(Decimal("0.000001"))
        await pilot.press("ctrl+a", "ctrl+k", *str(smaller), "enter")
        await settle(app, pilot)
        assert isinstance(app.screen, MainScreen)
    rows = query(
        db, "SELECT action, size, resized FROM decisions WHERE proposal_id = ?", proposal.id
    )
    assert len(rows) == 1
    action, size, resized = rows[0]
    assert (action, resized) == ("approve", 1)
    assert Decimal(size) <= smaller


async def test_a_store_failure_is_shown_and_the_proposal_stays_pending(tmp_path: Path) -> None:
    db = tmp_path / "cma.db"
    feed = SteppedFeed()
    app = make_app(tmp_path, feed, make_settings(db))
    async with app.run_test(size=(120, 40)) as pilot:
        await boot(app, pilot, feed)
        proposal = app.selected_proposal()
        assert proposal is not None
        # A real failure of the real store: a trigger makes SQLite refuse the decision.
        conn = sqlite3.connect(db)
        conn.execute(
            "CREATE TRIGGER no_decisions BEFORE INSERT ON decisions"
            " BEGIN SELECT RAISE(ABORT, '[@click=app.quit]disk says no[/]'); END"
        )
        conn.commit()
        conn.close()
        await pilot.press("a")
        await settle(app, pilot)
        errors = [n for n in app._notifications if "Could not approve" in str(n.message)]
        assert len(errors) == 1
        # The store's message is shown as it is, never parsed as markup (no click actions).
        assert "[@click=app.quit]disk says no[/]" in str(errors[0].message)
        assert errors[0].markup is False
        assert app.find_pending(proposal.id) is not None
        assert proposal.id in app.main.proposals.table.keys
    assert query(db, "SELECT COUNT(*) FROM decisions WHERE proposal_id = ?", proposal.id) == [(0,)]


async def test_x_closes_the_selected_position_after_confirmation(tmp_path: Path) -> None:
    db = tmp_path / "cma.db"
    feed = SteppedFeed()
    app = make_app(tmp_path, feed, make_settings(db))
    async with app.run_test(size=(120, 40)) as pilot:
        await boot(app, pilot, feed)
        await pilot.press("end", "a")  # the newest proposal: its entry is near the market
        await settle(app, pilot)
        await feed.advance(1)  # the entry fills at the next candle
        await settle(app, pilot)
        position = app.selected_position()
        assert position is not None
        await pilot.press("x")
        await pilot.press("n")  # declined: nothing happens
        await settle(app, pilot)
        assert query(db, "SELECT COUNT(*) FROM positions WHERE closed_at IS NULL") == [(1,)]
        await pilot.press("x", "y")
        await settle(app, pilot)
        await feed.advance(1)  # the exit fills at the next candle
        await settle(app, pilot)
        assert app.selected_position() is None
    rows = query(db, "SELECT symbol, close_reason FROM positions WHERE closed_at IS NOT NULL")
    assert rows == [(position.symbol, "closed by hand")]
    exits = query(db, "SELECT status FROM order_intents WHERE purpose = 'exit'")
    assert exits == [("filled",)]


async def test_q_then_close_all_closes_positions_and_exits(tmp_path: Path) -> None:
    db = tmp_path / "cma.db"
    feed = SteppedFeed()
    app = make_app(tmp_path, feed, make_settings(db))
    async with app.run_test(size=(120, 40)) as pilot:
        await boot(app, pilot, feed)
        await pilot.press("end", "a")  # the newest proposal: its entry is near the market
        await settle(app, pilot)
        await feed.advance(1)
        await settle(app, pilot)
        assert query(db, "SELECT COUNT(*) FROM positions WHERE closed_at IS NULL") == [(1,)]
        await pilot.press("q")
        assert isinstance(app.screen, QuitDialog)
        await pilot.press("c")
        await app.workers.wait_for_complete()
    assert app.return_code == 0
    assert query(db, "SELECT COUNT(*) FROM positions WHERE closed_at IS NULL") == [(0,)]
    assert query(db, "SELECT close_reason FROM positions") == [("closed on stop",)]
    assert query(db, "SELECT COUNT(*) FROM sessions WHERE ended_at IS NULL") == [(0,)]


async def test_q_then_leave_open_keeps_positions_and_restart_shows_them(tmp_path: Path) -> None:
    db = tmp_path / "cma.db"
    feed = SteppedFeed()
    app = make_app(tmp_path, feed, make_settings(db))
    async with app.run_test(size=(120, 40)) as pilot:
        await boot(app, pilot, feed)
        await pilot.press("end", "a")  # the newest proposal: its entry is near the market
        await settle(app, pilot)
        await feed.advance(1)
        await settle(app, pilot)
        await pilot.press("q", "l")
        await app.workers.wait_for_complete()
    assert app.return_code == 0
    open_rows = query(db, "SELECT symbol FROM positions WHERE closed_at IS NULL")
    assert len(open_rows) == 1

    feed2 = SteppedFeed(seed=8, start_ts=SIM_EPOCH_MS + 1000 * 60_000)
    again = make_app(tmp_path, feed2, make_settings(db))
    async with again.run_test(size=(120, 40)) as pilot:
        await again.workers.wait_for_complete()
        await pilot.pause()
        screen = again.screen
        assert isinstance(screen, RecoveryScreen)
        assert [p.symbol for p in screen.positions] == [open_rows[0][0]]
        assert again.engine is not None and again.engine.status == "paused"
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(again.screen, MainScreen)
        assert str(again.engine.status) == "running"


@pytest.mark.parametrize(
    ("sig", "close_on_stop"),
    [(signal.SIGHUP, False), (signal.SIGTERM, True)],
    ids=["SIGHUP-leaves-positions-open", "SIGTERM-closes-them-as-configured"],
)
async def test_a_signal_shuts_down_like_q_with_positions_as_configured(
    tmp_path: Path, sig: signal.Signals, close_on_stop: bool
) -> None:
    db = tmp_path / "cma.db"
    feed = SteppedFeed()
    settings = make_settings(db, engine={"close_positions_on_stop": close_on_stop})
    app = make_app(tmp_path, feed, settings, signal_handlers=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await boot(app, pilot, feed)
        await pilot.press("end", "a")  # the newest proposal: its entry is near the market
        await settle(app, pilot)
        await feed.advance(1)
        await settle(app, pilot)
        assert query(db, "SELECT COUNT(*) FROM positions WHERE closed_at IS NULL") == [(1,)]
        os.kill(os.getpid(), sig)
        await pilot.pause()
        await app.workers.wait_for_complete()
    assert app.return_code == 0
    open_after = 0 if close_on_stop else 1
    assert query(db, "SELECT COUNT(*) FROM positions WHERE closed_at IS NULL") == [(open_after,)]
    assert query(db, "SELECT COUNT(*) FROM sessions WHERE ended_at IS NULL") == [(0,)]


async def test_p_pauses_and_resumes_the_engine(tmp_path: Path) -> None:
    feed = SteppedFeed()
    app = make_app(tmp_path, feed, make_settings(tmp_path / "cma.db"))
    async with app.run_test(size=(120, 40)) as pilot:
        await boot(app, pilot, feed)
        assert app.engine is not None
        await pilot.press("p")
        assert app.engine.status == "paused"
        pending = len(app.engine.pending())
        await feed.advance(30)
        assert len(app.engine.pending()) <= pending  # paused: nothing new is proposed
        await pilot.press("p")
        assert str(app.engine.status) == "running"


async def test_h_halts_trading_after_confirmation_and_h_resumes_it(tmp_path: Path) -> None:
    db = tmp_path / "cma.db"
    feed = SteppedFeed()
    app = make_app(tmp_path, feed, make_settings(db))
    async with app.run_test(size=(120, 40)) as pilot:
        await boot(app, pilot, feed)
        await pilot.press("h", "y")
        await settle(app, pilot)
        assert app.engine is not None
        assert app.engine.risk_snapshot().state.value == "HALTED"
        assert app.main.has_class("-halted")
        await pilot.press("a")  # an entry while halted is denied, and says so
        await settle(app, pilot)
        await pilot.press("h", "y")
        await settle(app, pilot)
        assert app.engine.risk_snapshot().state.value == "ACTIVE"
    states = query(db, "SELECT kind FROM events WHERE kind = 'TradingStateChanged' ORDER BY seq")
    assert len(states) >= 2
    assert query(db, "SELECT COUNT(*) FROM decisions WHERE action = 'approve'") == [(1,)]
    assert query(db, "SELECT COUNT(*) FROM order_intents WHERE status = 'denied'") == [(1,)]


async def test_capital_a_switches_to_auto_with_the_typed_percentage_read_back(
    tmp_path: Path,
) -> None:
    feed = SteppedFeed()
    app = make_app(tmp_path, feed, make_settings(tmp_path / "cma.db"))
    async with app.run_test(size=(120, 40)) as pilot:
        await boot(app, pilot, feed, batches=10)
        await pilot.press("A", "ctrl+a", "ctrl+k", *"150", "enter")
        await pilot.pause()
        assert "between 0 and 100" in str(app.screen.query_one("#policy-error").render())
        await pilot.press("ctrl+a", "ctrl+k", *"80", "enter")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, PolicyDialog)  # read back first, not yet switched
        read_back = str(dialog.query_one("#policy-read-back").render())
        assert "Auto-approve proposals with confidence ≥ 80%?" in read_back
        assert app.engine is not None and app.engine.policy == "manual"
        await pilot.press("enter")
        await settle(app, pilot)
        assert (app.engine.policy, app.engine.auto_confidence) == ("auto", 0.8)
        # The same wording in the status bar and in the activity log.
        assert "auto ≥ 80%" in app.main.query_one(StatusBar).part("policy")
        assert any("≥ 80%" in entry.text for _, entry in app.activity)
        await pilot.press("A", "enter")
        await settle(app, pilot)
        assert app.engine.policy == "manual"


async def test_a_threshold_below_the_floor_needs_a_second_explicit_yes(tmp_path: Path) -> None:
    feed = SteppedFeed()
    app = make_app(tmp_path, feed, make_settings(tmp_path / "cma.db"))
    async with app.run_test(size=(120, 40)) as pilot:
        await boot(app, pilot, feed, batches=10)
        await pilot.press("A", "ctrl+a", "ctrl+k", *"1.5", "enter", "enter")
        await pilot.pause()
        floor = app.screen
        assert isinstance(floor, FloorConfirmDialog)
        assert "≥ 1.5%" in str(floor.query_one("#floor-message").render())
        await pilot.press("enter")  # enter is not a yes here
        await pilot.pause()
        assert app.screen is floor
        assert app.engine is not None and app.engine.policy == "manual"
        await pilot.press("question_mark")
        help_screen = app.screen
        assert isinstance(help_screen, HelpScreen)
        assert help_screen.title_text == "low threshold dialog"
        assert {"floor.yes", "floor.no"} <= {key for key, _ in help_screen.rows}
        await pilot.press("escape")
        assert app.screen is floor
        await pilot.press("y")
        await settle(app, pilot)
        assert isinstance(app.screen, MainScreen)
        assert (app.engine.policy, app.engine.auto_confidence) == ("auto", 0.015)


async def test_e_exports_the_running_session_in_the_configured_formats_and_shows_the_paths(
    tmp_path: Path,
) -> None:
    import json

    feed = SteppedFeed()
    settings = make_settings(tmp_path / "cma.db", report={"formats": ["html", "json"]})
    app = make_app(tmp_path, feed, settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await boot(app, pilot, feed)
        assert app.engine is not None
        await pilot.press("end", "a")  # one decision for the report to hold
        await settle(app, pilot)
        await pilot.press("e")
        await settle(app, pilot)
        written = sorted((tmp_path / "reports").iterdir())
        assert [p.suffix for p in written] == [".html", ".json"]
        lines = [entry.text for _, entry in app.events.activity]
        for path in written:
            assert f"report written: {path}" in lines
        data = json.loads(written[1].read_text())
        assert data["session"]["session_id"] == app.engine.session_id
        assert [d["status"] for d in data["decisions"]].count("approved") == 1
        assert written[0].read_text().startswith("<!DOCTYPE html>")
        # The engine went on: it is not paused, and it takes the next candles.
        seen = app.engine.core.candles_seen
        await feed.advance(3)
        await settle(app, pilot)
        assert app.engine.status == "running" and app.engine.core.candles_seen > seen


async def test_e_says_why_when_the_report_cannot_be_written(tmp_path: Path) -> None:
    feed = SteppedFeed()
    (tmp_path / "reports").write_text("a file where the folder should be")
    app = make_app(tmp_path, feed, make_settings(tmp_path / "cma.db"))
    async with app.run_test(size=(80, 24)) as pilot:
        await boot(app, pilot, feed, batches=5)
        await pilot.press("e")
        await settle(app, pilot)
        messages = [str(n.message) for n in app._notifications]
        assert any(
            m.startswith("Could not export the report: cannot write to") for m in messages
        ), messages
        # A second try is not refused as "already being written".
        await pilot.press("e")
        await settle(app, pilot)
        assert not any("already being written" in str(n.message) for n in app._notifications)


async def test_closing_a_position_that_is_already_gone_says_why(tmp_path: Path) -> None:
    feed = SteppedFeed()
    app = make_app(tmp_path, feed, make_settings(tmp_path / "cma.db"))
    async with app.run_test(size=(120, 40)) as pilot:
        await boot(app, pilot, feed, batches=5)
        # What the screen showed a moment ago; a stop has closed it since.
        stale = Position(
            symbol="BTC/USDT",
            side=Side.LONG,
            qty=Decimal("0.01"),
            entry_price=Decimal("91500"),
            cost_basis=Decimal("915"),
            opened_at=0,
        )
        app.ask_close_position(stale)
        await pilot.press("y")
        await settle(app, pilot)
        messages = [str(n.message) for n in app._notifications]
        assert any("Could not close BTC/USDT: no open position" in m for m in messages), messages
        assert CommandError.__name__ not in " ".join(messages)


async def test_a_store_another_cma_is_writing_is_refused_with_a_message(tmp_path: Path) -> None:
    db = tmp_path / "cma.db"
    other = await Store.open(db)
    try:
        app = make_app(tmp_path, SteppedFeed(), make_settings(db))
        async with app.run_test(size=(120, 40)) as pilot:
            await app.workers.wait_for_complete()
            await pilot.pause()
        assert app.return_code == 1
        assert app.engine is None
    finally:
        await other.close()
