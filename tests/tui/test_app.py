"""The console's behaviour beyond single keys: layout, help, keymap, palette, escaping."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

from harness import SteppedFeed, make_app, make_settings, query
from textual.binding import Binding
from textual.pilot import Pilot
from textual.widgets import TabbedContent

from engine.models import AgentVote, Proposal, Side
from tui.app import MAIN_COMMANDS, CmaApp, binding_classes, known_binding_ids
from tui.screens import modals
from tui.screens.detail import ProposalDetailScreen
from tui.screens.help import HelpScreen
from tui.screens.main import MainScreen
from tui.screens.recovery import RecoveryScreen
from tui.widgets.panes import EquityPane, ProposalsPane
from tui.widgets.status import StatusBar
from tui.widgets.table import VirtualTable


async def until(pilot: Pilot[int], condition: Callable[[], bool]) -> None:
    """Let the app run until ``condition`` holds (a layout change takes a few refreshes)."""
    for _ in range(50):
        if condition():
            return
        await pilot.pause()
    raise AssertionError("the app never got there")


async def boot(app: CmaApp, pilot: Pilot[int], feed: SteppedFeed, batches: int) -> None:
    await app.workers.wait_for_complete()
    await feed.advance(batches)
    app.redraw(force=True)
    await pilot.pause()


def test_every_binding_has_an_id_and_a_description() -> None:
    classes = binding_classes()
    assert len(classes) >= 12
    for cls in classes:
        for binding in cls.BINDINGS:
            assert isinstance(binding, Binding), cls
            assert binding.id, (cls.__name__, binding.key)
            assert binding.description, (cls.__name__, binding.key)
    assert {"approve", "reject", "resize", "detail", "policy", "close-position"} <= (
        known_binding_ids()
    )
    assert {"close-all", "pause", "halt", "export", "next-pane", "help", "quit"} <= (
        known_binding_ids()
    )


async def test_keymap_remaps_approve_and_help_shows_the_new_key(tmp_path: Path) -> None:
    db = tmp_path / "cma.db"
    feed = SteppedFeed()
    settings = make_settings(db, ui={"keymap": {"approve": "y", "no-such-binding": "z"}})
    app = make_app(tmp_path, feed, settings)
    async with app.run_test(size=(120, 40)) as pilot:
        await boot(app, pilot, feed, 300)
        proposal = app.selected_proposal()
        assert proposal is not None
        await pilot.press("a")
        await pilot.pause()
        await app.workers.wait_for_complete()
        assert app.find_pending(proposal.id) is not None
        await pilot.press("y")
        await pilot.pause()
        await app.workers.wait_for_complete()
        assert app.find_pending(proposal.id) is None
        await pilot.press("question_mark")
        help_screen = app.screen
        assert isinstance(help_screen, HelpScreen)
        rows = {key: row for key, row in help_screen.rows}
        assert rows["approve"][0][0] == "y"
        assert rows["quit"][0][0] == "q"
        messages = " ".join(str(n.message) for n in app._notifications)
        assert "no-such-binding" in messages
    assert query(db, "SELECT action FROM decisions WHERE proposal_id = ?", proposal.id) == [
        ("approve",)
    ]


async def test_dialogs_have_help_too(tmp_path: Path) -> None:
    feed = SteppedFeed()
    app = make_app(tmp_path, feed, make_settings(tmp_path / "cma.db"))
    async with app.run_test(size=(120, 40)) as pilot:
        await boot(app, pilot, feed, 300)
        await pilot.press("r", "question_mark")
        help_screen = app.screen
        assert isinstance(help_screen, HelpScreen)
        ids = {key for key, _ in help_screen.rows}
        assert {"reject.weak_signal", "reject.other", "dialog.cancel"} <= ids
        assert "approve" not in ids  # the main screen's keys do not work in a dialog
        await pilot.press("escape", "escape")
        assert isinstance(app.screen, MainScreen)


async def test_layout_collapses_to_tabs_when_the_terminal_shrinks(tmp_path: Path) -> None:
    feed = SteppedFeed()
    app = make_app(tmp_path, feed, make_settings(tmp_path / "cma.db"))
    async with app.run_test(size=(120, 40)) as pilot:
        await boot(app, pilot, feed, 300)
        assert not app.main.compact and not app.main.query(TabbedContent)
        await pilot.press("down", "down")
        selected = app.selected_proposal_id()
        await pilot.resize_terminal(80, 24)
        await until(pilot, lambda: app.main.compact and not app.main.rebuilding)
        await until(pilot, lambda: app.main.focused is not None)
        tabs = app.main.query_one(TabbedContent)
        assert "sim 1m" in app.main.query_one(StatusBar).part("feed")
        assert tabs.active == "tab-proposals"
        assert app.selected_proposal_id() == selected
        await pilot.press("tab")
        await pilot.pause()
        assert tabs.active == "tab-positions"
        await pilot.press("shift+tab", "shift+tab")
        await pilot.pause()
        assert tabs.active == "tab-activity"
        # Keys typed faster than the screen refreshes still add up.
        for _ in range(3):
            await app.main.run_action("next_pane")
        await pilot.pause()
        assert tabs.active == "tab-risk"
        await pilot.resize_terminal(120, 40)
        await until(pilot, lambda: not app.main.compact and not app.main.rebuilding)
        assert app.selected_proposal_id() == selected


async def test_hidden_equity_chart_is_not_redrawn(tmp_path: Path) -> None:
    feed = SteppedFeed()
    app = make_app(tmp_path, feed, make_settings(tmp_path / "cma.db"))
    async with app.run_test(size=(80, 24)) as pilot:
        await boot(app, pilot, feed, 50)
        pane = app.main.query_one(EquityPane)
        assert not pane.visible_now
        app._replot(force=True)
        assert pane.replots == 0
        await pilot.press("tab", "tab", "tab")  # Positions, Risk, Equity
        await pilot.pause()
        assert pane.visible_now
        app._replot()
        assert pane.replots == 1
        app._replot()  # nothing new: not drawn again
        assert pane.replots == 1


async def test_untrusted_symbol_and_rationale_are_shown_as_text(tmp_path: Path) -> None:
    feed = SteppedFeed()
    app = make_app(tmp_path, feed, make_settings(tmp_path / "cma.db"))
    hostile = "[@click=app.quit]X[/]"
    proposal = Proposal(
        id="prp-hostile",
        symbol=hostile,
        side=Side.LONG,
        entry=Decimal("1"),
        stop=Decimal("0.9"),
        take_profit=Decimal("1.2"),
        confidence=0.5,
        size=Decimal("1"),
        created_at=0,
        expires_at=60_000,
        votes=(
            AgentVote(
                agent="user", symbol=hostile, direction=Side.LONG, strength=0.5, rationale=hostile
            ),
        ),
    )
    async with app.run_test(size=(120, 40)) as pilot:
        await app.workers.wait_for_complete()
        pane = app.main.query_one(ProposalsPane)
        pane.show([proposal], 0, {})
        # Read straight away: the app's next redraw puts the engine's (empty) queue back.
        table = app.main.query_one("#proposals-table", VirtualTable)
        votes = app.main.query_one("#votes-table", VirtualTable)
        assert table.render_line(1).text.startswith(hostile[:8] + "…")
        assert hostile in votes.render_line(1).text
        app.show_detail(proposal)
        await pilot.pause()
        assert isinstance(app.screen, ProposalDetailScreen)
        assert hostile in str(app.screen.query_one("#detail-fields").render())


async def test_command_palette_offers_every_main_action_and_each_theme(tmp_path: Path) -> None:
    app = make_app(tmp_path, SteppedFeed(), make_settings(tmp_path / "cma.db"))
    async with app.run_test(size=(120, 40)):
        titles = [c.title for c in app.get_system_commands(app.main)]
        for title, _, _ in MAIN_COMMANDS:
            assert title in titles
        for theme in ("cma-dark", "cma-light", "cma-contrast"):
            assert f"Theme: {theme}" in titles
        assert "Help" in titles and "Quit" in titles


async def test_live_mode_is_spelled_out_and_styled_apart(tmp_path: Path) -> None:
    app = make_app(tmp_path, SteppedFeed(), make_settings(tmp_path / "cma.db"))
    async with app.run_test(size=(120, 40)) as pilot:
        await app.workers.wait_for_complete()
        status = app.main.query_one(StatusBar)
        assert status.part("mode") == "PAPER" and not status.live
        assert not app.main.has_class("-live")
        status.set_mode("LIVE")
        await pilot.pause()
        assert "LIVE — REAL MONEY" in status.part("mode") and status.live
        assert app.main.has_class("-live")
        assert "LIVE — REAL MONEY" in str(status.render())


async def test_q_on_the_restart_summary_asks_before_quitting(tmp_path: Path) -> None:
    db = tmp_path / "cma.db"
    feed = SteppedFeed()
    app = make_app(tmp_path, feed, make_settings(db))
    async with app.run_test(size=(120, 40)) as pilot:
        await boot(app, pilot, feed, 20)
        await pilot.press("h", "y")  # halted: something to decide on the next start
        await app.workers.wait_for_complete()
    again = make_app(tmp_path, SteppedFeed(seed=9, start_ts=None), make_settings(db))
    async with again.run_test(size=(120, 40)) as pilot:
        await again.workers.wait_for_complete()
        await pilot.pause()
        assert isinstance(again.screen, RecoveryScreen)
        await pilot.press("q")
        assert isinstance(again.screen, modals.QuitDialog)
        await pilot.press("escape")
        assert isinstance(again.screen, RecoveryScreen)
