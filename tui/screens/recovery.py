"""What the console found in the store after a restart, shown before trading resumes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, Label, Static

from engine.models import Position, Proposal, TradingState
from tui import format as fmt
from tui.keys import HELP_BINDING
from tui.widgets.bigtext import BigText
from tui.widgets.panes import POSITION_COLUMNS, PROPOSAL_COLUMNS, position_row, proposal_row
from tui.widgets.table import VirtualTable

if TYPE_CHECKING:
    from engine.runtime import Engine, Recovery


class RecoveryScreen(Screen[bool]):
    """The restart summary: open positions, pending proposals still alive, trading state, notes.

    The engine stays paused (no new proposals) until enter; dismisses with True
    to resume, or the app's quit dialog opens with q.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "resume", "Resume trading", id="recovery.resume"),
        Binding("q", "app.request_quit", "Quit", id="quit"),
        HELP_BINDING,
    ]

    def __init__(
        self,
        positions: Sequence[Position],
        pending: Sequence[Proposal],
        trading_state: TradingState,
        notes: Sequence[str],
        *,
        marks: Mapping[str, Decimal],
        market_ts: int,
    ) -> None:
        super().__init__(classes="recovery")
        self.positions = list(positions)
        self.pending = list(pending)
        self.trading_state = trading_state
        self.notes = list(notes)
        self.marks = dict(marks)
        self.market_ts = market_ts

    @classmethod
    def after(cls, recovery: Recovery, engine: Engine) -> RecoveryScreen:
        """The summary of ``recovery``, priced at ``engine``'s marks."""
        return cls(
            recovery.positions,
            recovery.pending,
            recovery.trading_state,
            recovery.notes,
            marks=engine.marks,
            market_ts=engine.market_ts,
        )

    def compose(self) -> ComposeResult:
        with Vertical(id="recovery-box") as box:
            box.border_title = "Recovered from the store"
            yield Label(
                Text(
                    f"Last market time {fmt.market_time(self.market_ts)}. "
                    "Nothing new is proposed until you resume."
                ),
                id="recovery-intro",
            )
            state = BigText(self.trading_state.value, id="recovery-state")
            state.add_class(f"-{self.trading_state.value.lower()}")
            yield state
            yield Label(Text(f"Open positions ({len(self.positions)})"), classes="recovery-title")
            yield VirtualTable(
                POSITION_COLUMNS,
                empty_text="No open positions.",
                show_cursor=False,
                rows=[
                    (p.symbol, position_row(p, self.marks.get(p.symbol), self.market_ts))
                    for p in self.positions
                ],
                id="recovery-positions",
            )
            yield Label(
                Text(f"Pending proposals still alive ({len(self.pending)})"),
                classes="recovery-title",
            )
            yield VirtualTable(
                PROPOSAL_COLUMNS,
                empty_text="No pending proposals.",
                show_cursor=False,
                rows=[(p.id, proposal_row(p, self.market_ts)) for p in self.pending],
                id="recovery-pending",
            )
            yield Label(Text("Notes"), classes="recovery-title")
            notes = "\n".join(f"• {fmt.one_line(n, 300)}" for n in self.notes) or "none"
            yield Static(Text(notes), id="recovery-notes")
            yield Label(Text("enter  resume trading     q  quit"), id="recovery-keys")
        yield Footer()

    def action_resume(self) -> None:
        self.dismiss(True)
