"""The proposals pane: the pending queue, with the selected proposal's votes underneath."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from textual.app import ComposeResult

from engine.models import Proposal
from tui import format as fmt
from tui.widgets.panes.base import LivePane, side_cell
from tui.widgets.table import Cell, Column, Row, VirtualTable, cell

PROPOSAL_COLUMNS = (
    Column("symbol", "Symbol", 9),
    Column("side", "Side", 5),
    Column("conf", "Conf", 5, "right"),  # "100%+": merged, at full confidence
    Column("size", "Size", 9, "right"),
    Column("entry", "Entry", 8, "right"),
    Column("stop", "Stop", 8, "right"),
    Column("tp", "TP", 8, "right"),
    Column("notional", "Notional", 9, "right"),
    Column("expires", "Expires", 7, "right"),
)

VOTE_COLUMNS = (
    Column("agent", "Agent", 14),
    Column("dir", "Vote", 5),
    Column("strength", "Str", 4, "right"),
    Column("rationale", "Rationale", 20, stretch=True),
)

_NOTIONAL_WIDTH = next(c.width for c in PROPOSAL_COLUMNS if c.key == "notional")


def proposal_cells(p: Proposal) -> tuple[Cell, ...]:
    """The cells of a proposal row that do not depend on the clock."""
    conf = fmt.confidence(p.confidence)
    if p.merged:
        conf = f"{conf}+"
    # A proposal the risk manager would not size now is still shown, flagged, with its reason
    # in the votes below.
    unsized = bool(p.risk_note)
    return (
        cell(fmt.one_line(p.symbol, 20)),
        side_cell(p.side),
        cell(conf),
        cell("risk!", "warn") if unsized else cell(fmt.qty(p.size)),
        cell(fmt.price(p.entry)),
        cell(fmt.price(p.stop)),
        cell(fmt.price(p.take_profit)),
        cell("—", "muted") if unsized else cell(fmt.money_in(p.notional, _NOTIONAL_WIDTH)),
    )


def expiry_cell(
    p: Proposal, market_ts: int, busy: str | None = None, speed: float | None = None
) -> Cell:
    """Time left before ``p`` expires, or what is being done to it.

    With a paced market (``speed`` market seconds a wall second) the time left is
    shown in wall time, which is what a person has to decide; else in market time.
    """
    if busy is not None:
        return cell(busy, "warn")
    left = p.expires_at - market_ts
    if speed:
        left = int(left / speed)
    return cell(fmt.duration(left), "warn" if left < 60_000 else "")


def proposal_row(p: Proposal, market_ts: int, busy: str | None = None) -> Row:
    """A whole proposal row."""
    return (*proposal_cells(p), expiry_cell(p, market_ts, busy))


class VotesTable(VirtualTable, can_focus=False):
    """The votes of the selected proposal (not focusable: it follows the proposals table)."""


class ProposalsPane(LivePane[Proposal]):
    """The pending queue, with the selected proposal's votes underneath."""

    TITLE = "Proposals"
    TABLE_ID = "proposals-table"

    def __init__(self, *, id: str | None = "proposals-pane") -> None:
        super().__init__(id=id)
        self._votes_for: tuple[str | None, tuple[object, ...]] = (None, ())

    def compose(self) -> ComposeResult:
        yield VirtualTable(
            PROPOSAL_COLUMNS,
            empty_text="No pending proposals: the agents are watching the market.",
            id="proposals-table",
        )
        yield VotesTable(
            VOTE_COLUMNS,
            empty_text="No votes to show.",
            show_cursor=False,
            id="votes-table",
        )

    def key_of(self, item: Proposal) -> str:
        return item.id

    def _static_cells(self, p: Proposal) -> tuple[Cell, ...]:
        # Cells that change only when the proposal does.
        signature = (p.confidence, p.size, p.entry, p.stop, p.take_profit, p.merged, p.risk_note)
        cached = self._static.get(p.id)
        if cached is not None and cached[0] == signature:
            return cached[1]
        cells = proposal_cells(p)
        self._static[p.id] = (signature, cells)
        return cells

    def show(
        self,
        pending: Sequence[Proposal],
        market_ts: int,
        busy: Mapping[str, str],
        speed: float | None = None,
    ) -> None:
        """Draw ``pending`` (oldest first); ``busy`` maps ids being decided to a word."""
        items = tuple(pending)
        busy = dict(busy)

        def row(index: int) -> Row:
            p = items[index]
            return (*self._static_cells(p), expiry_cell(p, market_ts, busy.get(p.id), speed))

        self._push(items, row)
        self.show_votes()

    def show_votes(self) -> None:
        """Draw the votes of the selected proposal."""
        selected = self.selected
        key: tuple[str | None, tuple[object, ...]] = (
            (selected.id, (selected.risk_note, *selected.votes))
            if selected is not None
            else (None, ())
        )
        if key == self._votes_for:
            return
        self._votes_for = key
        votes = self.query_one("#votes-table", VotesTable)
        if selected is None:
            votes.set_rows(())
            return
        rows: list[tuple[str, Row]] = []
        if selected.risk_note:
            note = f"not sized now: {fmt.one_line(selected.risk_note, 300)}"
            rows.append(
                ("risk", (cell("risk manager", "warn"), cell(""), cell(""), cell(note, "warn")))
            )
        rows.extend(
            (
                str(i),
                (
                    cell(fmt.one_line(v.agent, 30)),
                    side_cell(v.direction),
                    cell(f"{v.strength:.2f}"),
                    cell(fmt.one_line(v.rationale, 300)),
                ),
            )
            for i, v in enumerate(selected.votes)
        )
        votes.set_rows(rows)

    def on_virtual_table_cursor_moved(self, event: VirtualTable.CursorMoved) -> None:
        if event.table.id == "proposals-table":
            self.show_votes()
