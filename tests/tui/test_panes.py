"""The proposals and positions panes on a long queue: rows are formatted only when on
screen, with the latest data, and the selection follows its proposal or position."""

from __future__ import annotations

from decimal import Decimal

from textual.app import App, ComposeResult

from engine.models import AgentVote, Position, Proposal, Side, q_cash
from tui import format as fmt
from tui.widgets.panes import PositionsPane, ProposalsPane
from tui.widgets.table import VirtualTable

T0 = 1_767_225_600_000


def proposal(i: int) -> Proposal:
    side = Side.LONG if i % 2 == 0 else Side.SHORT
    return Proposal(
        id=f"prp-{i:03d}",
        symbol=f"S{i:03d}/USDT",
        side=side,
        entry=Decimal("100"),
        stop=Decimal("98") if side is Side.LONG else Decimal("102"),
        take_profit=Decimal("104") if side is Side.LONG else Decimal("96"),
        confidence=0.7,
        size=Decimal("1.5"),
        created_at=T0,
        expires_at=T0 + (40 * 60 + i) * 1000,
        votes=(
            AgentVote(
                agent=f"agent-{i}",
                symbol=f"S{i:03d}/USDT",
                direction=side,
                strength=0.6,
                rationale="r",
            ),
        ),
    )


def position(i: int) -> Position:
    return Position(
        symbol=f"S{i:03d}/USDT",
        side=Side.LONG,
        qty=Decimal("2"),
        entry_price=Decimal("100"),
        cost_basis=q_cash(Decimal("200")),
        stop=Decimal("95"),
        take_profit=Decimal("110"),
        opened_at=T0,
    )


class PanesApp(App[None]):
    def compose(self) -> ComposeResult:
        yield ProposalsPane()
        yield PositionsPane()


def lines(table: VirtualTable) -> list[str]:
    return [table.render_line(y).text for y in range(table.size.height)]


async def test_proposals_are_formatted_only_on_screen_and_off_screen_ones_count_down() -> None:
    app = PanesApp()
    async with app.run_test(size=(100, 40)) as pilot:
        pane = app.query_one(ProposalsPane)
        table = pane.table
        pending = [proposal(i) for i in range(500)]
        pane.show(pending, T0, {})
        await pilot.pause()
        visible = table.scrollable_content_region.height - 1
        assert 0 < table.computed_rows <= visible
        assert pane.border_title == "Proposals (500)"
        # A market second later every countdown changed: the rows on screen are computed again.
        computed = table.computed_rows
        pane.show(pending, T0 + 1000, {})
        await pilot.pause()
        assert table.computed_rows - computed <= visible
        # The newest proposal was never on screen: it shows its countdown at the latest time.
        table.focus()
        await pilot.press("end")
        assert pane.selected is pending[-1]
        left = fmt.duration(pending[-1].expires_at - (T0 + 1000))
        row = next(line for line in lines(table) if line.startswith("S499/USDT"))
        assert row.rstrip().endswith(left)
        assert table.get_row(pending[-1].id) is not None
        # The queue is reordered: the selection stays on the same proposal, with its votes.
        pane.show(list(reversed(pending)), T0 + 2000, {})
        await pilot.pause()
        assert (table.cursor_key, table.cursor_row) == (pending[-1].id, 0)
        assert pane.selected is pending[-1]
        votes = pane.query_one("#votes-table", VirtualTable)
        assert "agent-499" in lines(votes)[1]
        # It goes: the proposal now at the cursor's place is selected, with its votes.
        pane.show(list(reversed(pending[:-1])), T0 + 3000, {})
        await pilot.pause()
        assert pane.selected is pending[-2]
        assert "agent-498" in lines(votes)[1]


async def test_positions_are_drawn_at_the_marks_of_the_last_push() -> None:
    app = PanesApp()
    async with app.run_test(size=(100, 40)) as pilot:
        pane = app.query_one(PositionsPane)
        table = pane.table
        positions = [position(i) for i in range(100)]
        marks = {p.symbol: Decimal("101") for p in positions}
        pane.show(positions, marks, T0)
        await pilot.pause()
        visible = table.scrollable_content_region.height - 1
        assert 0 < table.computed_rows <= visible
        # The caller's marks move on after the push: rows drawn later use the pushed marks.
        marks["S099/USDT"] = Decimal("120")
        table.focus()
        await pilot.press("end")
        assert pane.selected is positions[-1]
        row = next(line for line in lines(table) if line.startswith("S099/USDT"))
        assert fmt.pnl(Decimal("2.00"), grouped=False) in row
        pane.show(positions, marks, T0 + 1000)
        await pilot.pause()
        row = next(line for line in lines(table) if line.startswith("S099/USDT"))
        assert fmt.pnl(Decimal("40.00"), grouped=False) in row
