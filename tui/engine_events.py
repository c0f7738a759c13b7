"""What the console keeps of the engine's events, and which panes each makes stale.

The engine calls :meth:`EngineEvents.on_event` (a plain callback, in the console's
loop) for every stored event. It records what must not be lost at once (equity
points) and posts a Textual message; the app hands each message back here, where
it becomes an activity line and stale panes for the redraw scheduler.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from textual.message import Message

from engine.models import (
    DecisionMade,
    EngineEvent,
    EngineMessage,
    EngineStateChanged,
    EquityUpdated,
    OrderDenied,
    OrderFilled,
    OrderSubmitted,
    PositionChanged,
    PositionClosed,
    PositionOpened,
    ProposalCreated,
    ProposalMerged,
    TradingStateChanged,
)
from tui.activity import ActivityEntry, describe
from tui.equity_series import EquitySeries
from tui.messages import EngineEventPosted, EquityTicked
from tui.widgets.panes import ACTIVITY_LIMIT

if TYPE_CHECKING:
    from engine.account import EquitySnapshot

_PROPOSAL_EVENTS = (ProposalCreated, ProposalMerged, DecisionMade)
_POSITION_EVENTS = (OrderFilled, PositionOpened, PositionChanged, PositionClosed, OrderSubmitted)


class EngineEvents:
    """The activity lines, the equity series and the latest equity figures of a session.

    ``post`` posts a message to the app; ``mark`` marks panes stale (the redraw
    scheduler's :meth:`~tui.redraw.RedrawScheduler.mark`); ``error`` shows an
    engine error to the person.
    """

    def __init__(
        self,
        post: Callable[[Message], object],
        mark: Callable[..., None],
        error: Callable[[str], None],
    ) -> None:
        self._post = post
        self._mark = mark
        self._error = error
        self.equity_series = EquitySeries()
        #: Activity lines, newest first: (sequence number, entry).
        self.activity: deque[tuple[int, ActivityEntry]] = deque(maxlen=ACTIVITY_LIMIT)
        self._seq = 0
        #: The equity figures the equity pane shows (the engine's snapshot until a candle).
        self.last_equity: EquityUpdated | EquitySnapshot | None = None

    def on_event(self, event: EngineEvent) -> None:
        """The engine's subscriber: called in the console's loop for every stored event."""
        if isinstance(event, EquityUpdated):
            self.equity_series.add(event.ts, float(event.equity), event.drawdown)
            self._post(EquityTicked(event))
        else:
            self._post(EngineEventPosted(event))

    def equity_ticked(self, event: EquityUpdated) -> None:
        self.last_equity = event
        self._mark("equity", "risk", "positions", "proposals", "status")

    def posted(self, event: EngineEvent) -> None:
        entry = describe(event)
        if entry is not None:
            self._seq += 1
            self.activity.appendleft((self._seq, entry))
            self._mark("activity")
        if isinstance(event, _PROPOSAL_EVENTS):
            self._mark("proposals")
        if isinstance(event, _POSITION_EVENTS):
            self._mark("positions", "risk", "equity")
        if isinstance(event, (OrderDenied, TradingStateChanged)):
            self._mark("risk")
        if isinstance(event, (EngineStateChanged, TradingStateChanged)):
            self._mark("status")
        if isinstance(event, EngineMessage) and event.level == "error":
            self._error(event.text)
