"""Engine events: what happened in the engine, immutable and in the past tense.

Each event is a frozen, slotted dataclass with its own timestamp (``ts``, ms since
the epoch, UTC); the engine emits them, the store records them and the console
draws them. They carry the records of :mod:`engine.models` (a proposal, a fill, a
position), which also re-exports every event, so ``from engine.models import
OrderFilled`` keeps working.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from engine.models import (
    Decision,
    Fill,
    OrderIntent,
    Position,
    Proposal,
    Side,
    TradingState,
)

__all__ = [
    "DecisionMade",
    "EngineEvent",
    "EngineMessage",
    "EngineStateChanged",
    "EquityUpdated",
    "OrderDenied",
    "OrderFilled",
    "OrderSubmitted",
    "PositionChanged",
    "PositionClosed",
    "PositionOpened",
    "ProposalCreated",
    "ProposalMerged",
    "TradingStateChanged",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineEvent:
    ts: int

    @property
    def kind(self) -> str:
        return type(self).__name__


@dataclass(frozen=True, slots=True, kw_only=True)
class ProposalCreated(EngineEvent):
    proposal: Proposal


@dataclass(frozen=True, slots=True, kw_only=True)
class ProposalMerged(EngineEvent):
    proposal_id: str
    merged: int
    confidence: float


@dataclass(frozen=True, slots=True, kw_only=True)
class DecisionMade(EngineEvent):
    decision: Decision
    symbol: str
    side: Side


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderDenied(EngineEvent):
    symbol: str
    reason: str
    proposal_id: str | None = None
    client_order_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderSubmitted(EngineEvent):
    intent: OrderIntent


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderFilled(EngineEvent):
    fill: Fill


@dataclass(frozen=True, slots=True, kw_only=True)
class PositionOpened(EngineEvent):
    position: Position


@dataclass(frozen=True, slots=True, kw_only=True)
class PositionChanged(EngineEvent):
    position: Position


@dataclass(frozen=True, slots=True, kw_only=True)
class PositionClosed(EngineEvent):
    symbol: str
    side: Side
    qty: Decimal
    entry_price: Decimal
    exit_price: Decimal
    realized_pnl: Decimal
    fees: Decimal
    reason: str
    opened_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class EquityUpdated(EngineEvent):
    equity: Decimal
    cash: Decimal
    unrealized: Decimal
    realized_today: Decimal
    drawdown: float  # fraction of the equity peak, in [0, 1]


@dataclass(frozen=True, slots=True, kw_only=True)
class TradingStateChanged(EngineEvent):
    old: TradingState
    new: TradingState
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineStateChanged(EngineEvent):
    state: Literal["starting", "running", "paused", "stopping", "stopped"]


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineMessage(EngineEvent):
    level: Literal["info", "warning", "error"] = "info"
    text: str
