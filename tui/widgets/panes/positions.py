"""The positions pane: open positions with their mark, unrealized PnL, stop, take-profit, age."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal

from textual.app import ComposeResult

from engine.models import Position
from tui import format as fmt
from tui.widgets.panes.base import LivePane, side_cell
from tui.widgets.table import Cell, Column, Row, VirtualTable, cell

POSITION_COLUMNS = (
    Column("symbol", "Symbol", 9),
    Column("side", "Side", 5),
    Column("qty", "Qty", 8, "right"),
    Column("entry", "Entry", 8, "right"),
    Column("mark", "Mark", 8, "right"),
    Column("upnl", "Unrealized", 10, "right"),
    Column("stop", "Stop", 8, "right"),
    Column("tp", "TP", 8, "right"),
    # Six: ``fmt.duration`` is at most six characters below 100 days ("14m00s", "23h59m").
    Column("age", "Age", 6, "right"),
)

_UPNL_WIDTH = next(c.width for c in POSITION_COLUMNS if c.key == "upnl")


def position_static_cells(p: Position) -> tuple[Cell, ...]:
    """The cells of a position that do not move with the market: symbol to entry, stop, TP."""
    return (
        cell(fmt.one_line(p.symbol, 20)),
        side_cell(p.side),
        cell(fmt.qty(p.qty)),
        cell(fmt.price(p.entry_price)),
        cell(fmt.price(p.stop)),
        cell(fmt.price(p.take_profit)),
    )


def position_row(
    p: Position,
    mark: Decimal | None,
    market_ts: int,
    static: tuple[Cell, ...] | None = None,
) -> Row:
    """A position row at ``mark`` (None: no price yet); ``static`` reuses cached cells."""
    symbol, side, qty, entry, stop, take_profit = static or position_static_cells(p)
    if mark is None:
        upnl_cell, mark_cell = cell("—", "muted"), cell("—")
    else:
        upnl = p.unrealized(mark)
        upnl_cell = cell(fmt.pnl_in(upnl, _UPNL_WIDTH), fmt.direction(upnl))
        mark_cell = cell(fmt.price(mark))
    age = cell(fmt.duration(market_ts - p.opened_at), "muted")
    return (symbol, side, qty, entry, mark_cell, upnl_cell, stop, take_profit, age)


class PositionsPane(LivePane[Position]):
    """Open positions with their mark, unrealized PnL, stop, take-profit and age."""

    TITLE = "Positions"
    TABLE_ID = "positions-table"

    def __init__(self, *, id: str | None = "positions-pane") -> None:
        super().__init__(id=id)

    def compose(self) -> ComposeResult:
        yield VirtualTable(POSITION_COLUMNS, empty_text="No open positions.", id="positions-table")

    def key_of(self, item: Position) -> str:
        return item.symbol

    def _static_cells(self, p: Position) -> tuple[Cell, ...]:
        # The cells that do not move with the market, for the position they show.
        cached = self._static.get(p.symbol)
        if cached is None or cached[0] is not p:
            cached = self._static[p.symbol] = (p, position_static_cells(p))
        return cached[1]

    def show(
        self, positions: Sequence[Position], marks: Mapping[str, Decimal], market_ts: int
    ) -> None:
        """Draw ``positions`` at ``marks`` (copied: rows drawn later use these marks)."""
        items = tuple(positions)
        marks = dict(marks)

        def row(index: int) -> Row:
            p = items[index]
            return position_row(p, marks.get(p.symbol), market_ts, self._static_cells(p))

        self._push(items, row)
