"""Domain models shared by the engine, the store and the console.

Hot-path values (candles, votes) are slotted frozen dataclasses: the design
measured that building a million pydantic objects costs several times the
loop itself. Everything that crosses a boundary less often (proposals,
decisions, events) is a frozen pydantic model.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal
from enum import StrEnum
from types import MappingProxyType
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

#: Cash, fees and notionals are kept to this many decimal places of the quote
#: currency; quantities to QTY_PLACES of the base currency.
CASH_QUANTUM = Decimal("0.00000001")
QTY_QUANTUM = Decimal("0.00000001")
PRICE_QUANTUM = Decimal("0.00000001")


def q_cash(value: Decimal) -> Decimal:
    """Round an amount of quote currency to the store's unit (banker's rounding)."""
    return value.quantize(CASH_QUANTUM, rounding=ROUND_HALF_EVEN)


def q_qty(value: Decimal) -> Decimal:
    """Round a quantity of base currency to the store's unit, never up."""
    return value.quantize(QTY_QUANTUM, rounding=ROUND_DOWN)


def q_price(value: Decimal) -> Decimal:
    """Round a price to the store's unit."""
    return value.quantize(PRICE_QUANTUM, rounding=ROUND_HALF_EVEN)


def to_decimal(value: float | int | str | Decimal) -> Decimal:
    """Convert a market number to Decimal without binary float noise."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(value)


def new_id(prefix: str) -> str:
    """A short unique id with a readable prefix, e.g. ``prp-3f9a1c2b7d4e``."""
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


class Side(StrEnum):
    """The side of a proposal, order or position."""

    LONG = "long"
    SHORT = "short"

    @property
    def sign(self) -> int:
        return 1 if self is Side.LONG else -1


_Price = TypeVar("_Price", float, Decimal)
_Model = TypeVar("_Model", bound="Frozen")


def evolve(obj: _Model, **changes: object) -> _Model:
    """A copy of the immutable record ``obj`` with ``changes``: the one way the core
    derives a changed record (a merged proposal, a grown position)."""
    return obj.model_copy(update=changes)


def stop_or_take_profit(
    side: Side,
    stop: _Price | None,
    take_profit: _Price | None,
    open_: _Price,
    high: _Price,
    low: _Price,
) -> tuple[_Price, Literal["stop", "take-profit"]] | None:
    """Where a position's stop or take-profit triggers inside one candle, and which.

    The stop first when both fall inside the candle (the candle cannot say which
    came first, so the worse is assumed); a gap through a level fills at the open.
    The paper exits and the learning agent's counterfactual trades both use it.
    """
    if side is Side.LONG:
        if stop is not None and low <= stop:
            return min(open_, stop), "stop"
        if take_profit is not None and high >= take_profit:
            return max(open_, take_profit), "take-profit"
    else:
        if stop is not None and high >= stop:
            return max(open_, stop), "stop"
        if take_profit is not None and low <= take_profit:
            return min(open_, take_profit), "take-profit"
    return None


class OrderSide(StrEnum):
    """What an order does on the exchange."""

    BUY = "buy"
    SELL = "sell"


class TradingState(StrEnum):
    """Whether the risk manager lets new entries through."""

    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"  # exits only
    HALTED = "HALTED"


class DecisionAction(StrEnum):
    """The three ways a proposal ends."""

    APPROVE = "approve"
    REJECT = "reject"
    EXPIRE = "expire"


class RejectReason(StrEnum):
    """Reason codes a person picks from when rejecting."""

    WEAK_SIGNAL = "weak_signal"
    BAD_TIMING = "bad_timing"
    TOO_MUCH_RISK = "too_much_risk"
    DISAGREE = "disagree"
    NEWS = "news"
    OTHER = "other"
    POLICY = "policy"  # rejected by an automatic policy

    @property
    def label(self) -> str:
        """The reason in words, as the console shows it."""
        return REJECT_REASON_LABELS[self]


#: Each reject reason in words: the one list the console's dialog and activity pane read.
REJECT_REASON_LABELS: Mapping[str, str] = MappingProxyType(
    {
        RejectReason.WEAK_SIGNAL: "weak signal",
        RejectReason.BAD_TIMING: "bad timing",
        RejectReason.TOO_MUCH_RISK: "too much risk",
        RejectReason.DISAGREE: "disagree",
        RejectReason.NEWS: "news",
        RejectReason.OTHER: "other",
        RejectReason.POLICY: "policy",
    }
)


@dataclass(frozen=True, slots=True)
class Candle:
    """One closed OHLCV candle. ``ts`` is its open time in ms since the epoch, UTC."""

    symbol: str
    ts: int
    open: float
    high: float
    low: float
    close: float
    volume: float


@dataclass(frozen=True, slots=True)
class AgentVote:
    """One agent's opinion on one closed candle."""

    agent: str
    symbol: str
    direction: Side
    strength: float  # in [0, 1]
    rationale: str

    def __post_init__(self) -> None:
        if not 0.0 <= self.strength <= 1.0:
            raise ValueError(f"strength must lie in [0, 1], got {self.strength!r}")


class Frozen(BaseModel):
    """Base for immutable models."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


class VoteModel(Frozen):
    """A vote as stored with a proposal."""

    agent: str
    direction: Side
    strength: float = Field(ge=0.0, le=1.0)
    rationale: str

    @classmethod
    def of(cls, vote: AgentVote) -> VoteModel:
        return cls(
            agent=vote.agent,
            direction=vote.direction,
            strength=vote.strength,
            rationale=vote.rationale,
        )


class Proposal(Frozen):
    """What the engine suggests: a trade a person or a policy can decide on."""

    id: str
    symbol: str
    side: Side
    entry: Decimal
    stop: Decimal
    take_profit: Decimal
    confidence: float = Field(ge=0.0, le=1.0)
    size: Decimal = Field(ge=0)  # quantity of base currency
    created_at: int  # ms
    expires_at: int  # ms
    votes: tuple[VoteModel, ...] = ()
    merged: int = 0  # how many later duplicates were folded into this one
    #: Why the risk manager would not size it right now ("" when it would); such a
    #: proposal is still shown, with size 0, so a person sees the signal and the reason.
    risk_note: str = ""

    @property
    def notional(self) -> Decimal:
        return self.size * self.entry


class Decision(Frozen):
    """How a proposal ended: approve (possibly resized), reject or expire."""

    proposal_id: str
    action: DecisionAction
    reason: str | None = None
    size: Decimal | None = None  # the approved quantity; differs from the proposal's when resized
    resized: bool = False
    latency_ms: int = Field(ge=0)
    decided_at: int
    decided_by: Literal["human", "policy", "engine"] = "human"


class OrderIntent(Frozen):
    """An order we mean to send, written durably before any broker sees it."""

    client_order_id: str
    proposal_id: str | None
    symbol: str
    side: OrderSide
    qty: Decimal = Field(gt=0)
    purpose: Literal["entry", "exit"]
    created_at: int
    reason: str = ""


class Fill(Frozen):
    """What came back from a broker for one order."""

    client_order_id: str
    symbol: str
    side: OrderSide
    qty: Decimal = Field(gt=0)
    price: Decimal = Field(gt=0)
    fee: Decimal = Field(ge=0)
    ts: int


class Position(Frozen):
    """What is held in one symbol. ``qty`` is never negative; ``side`` says which way."""

    symbol: str
    side: Side
    qty: Decimal = Field(ge=0)
    entry_price: Decimal
    cost_basis: Decimal  # sum of entry notionals still held, in quote currency
    stop: Decimal | None = None
    take_profit: Decimal | None = None
    opened_at: int
    proposal_id: str | None = None
    realized_pnl: Decimal = Decimal(0)
    fees: Decimal = Decimal(0)

    def unrealized(self, mark: Decimal) -> Decimal:
        """Unrealized PnL at ``mark``, before exit fees."""
        value = self.qty * mark
        return q_cash((value - self.cost_basis) * self.side.sign)


# --- engine events: immutable, past tense, each with its own timestamp -----------


class EngineEvent(Frozen):
    ts: int

    @property
    def kind(self) -> str:
        return type(self).__name__


class ProposalCreated(EngineEvent):
    proposal: Proposal


class ProposalMerged(EngineEvent):
    proposal_id: str
    merged: int
    confidence: float


class DecisionMade(EngineEvent):
    decision: Decision
    symbol: str
    side: Side


class OrderDenied(EngineEvent):
    symbol: str
    reason: str
    proposal_id: str | None = None
    client_order_id: str | None = None


class OrderSubmitted(EngineEvent):
    intent: OrderIntent


class OrderFilled(EngineEvent):
    client_order_id: str
    symbol: str
    side: OrderSide
    last_qty: Decimal
    last_px: Decimal
    commission: Decimal
    realized_pnl: Decimal = Decimal(0)


class PositionOpened(EngineEvent):
    position: Position


class PositionChanged(EngineEvent):
    position: Position


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


class EquityUpdated(EngineEvent):
    equity: Decimal
    cash: Decimal
    unrealized: Decimal
    realized_today: Decimal
    drawdown: float  # fraction of the equity peak, in [0, 1]


class TradingStateChanged(EngineEvent):
    old: TradingState
    new: TradingState
    reason: str


class EngineStateChanged(EngineEvent):
    state: Literal["starting", "running", "paused", "stopping", "stopped"]


class EngineMessage(EngineEvent):
    level: Literal["info", "warning", "error"] = "info"
    text: str
