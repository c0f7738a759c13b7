"""Domain values and records shared by the engine, the store and the console.

Every record (candle, vote, proposal, decision, order intent, fill, position)
is a frozen, slotted dataclass: the design measured that building a million
pydantic objects costs several times the loop itself. The checks pydantic used
to make (a confidence in [0, 1], a positive quantity) are plain
``__post_init__`` checks raising ``ValueError``. Pydantic stays at the edges:
settings, themes, anything read from outside.

The engine events live in :mod:`engine.events` and the id source in
:mod:`engine.ids`; this module re-exports :func:`new_id` and each event (the
events loaded on first use, as they import the records from here), so
``from engine.models import OrderFilled`` keeps working.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import replace as evolve
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from engine.ids import new_id

if TYPE_CHECKING:
    from engine.events import (
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

__all__ = [
    "CASH_QUANTUM",
    "PRICE_QUANTUM",
    "QTY_QUANTUM",
    "REJECT_REASON_LABELS",
    "AgentVote",
    "Candle",
    "Decision",
    "DecisionAction",
    "DecisionMade",
    "EngineEvent",
    "EngineMessage",
    "EngineStateChanged",
    "EquityUpdated",
    "Fill",
    "OrderDenied",
    "OrderFilled",
    "OrderIntent",
    "OrderSide",
    "OrderSubmitted",
    "Position",
    "PositionChanged",
    "PositionClosed",
    "PositionOpened",
    "Proposal",
    "ProposalCreated",
    "ProposalMerged",
    "RejectReason",
    "Side",
    "TradingState",
    "TradingStateChanged",
    "evolve",
    "new_id",
    "q_cash",
    "q_price",
    "q_qty",
    "stop_or_take_profit",
    "to_decimal",
]

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


#: Floats already converted by :func:`to_decimal` (settings, and prices that repeat from
#: one candle to the next); cleared when full, so it stays small.
_DECIMALS: dict[float, Decimal] = {}
_DECIMALS_MAX = 4096


def to_decimal(value: float | int | str | Decimal) -> Decimal:
    """Convert a market number to Decimal without binary float noise."""
    if type(value) is float and value:  # not ±0.0: equal keys, different signs
        d = _DECIMALS.get(value)
        if d is None:
            if len(_DECIMALS) >= _DECIMALS_MAX:
                _DECIMALS.clear()
            d = _DECIMALS[value] = Decimal(repr(value))
        return d
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(value)


class Side(StrEnum):
    """The side of a proposal, order or position."""

    LONG = "long"
    SHORT = "short"

    @property
    def sign(self) -> int:
        return 1 if self is Side.LONG else -1


_Price = TypeVar("_Price", float, Decimal)

# ``evolve(obj, **changes)``, imported above, is :func:`dataclasses.replace`: a copy of the
# frozen record ``obj`` with ``changes``, the one way the core derives a changed record (a
# merged proposal, a grown position). It runs the record's checks again, and because it is
# the very function (not an alias), mypy checks the names and types of the changes.


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
    """Whether the risk engine lets new entries through."""

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


def _at_least(name: str, value: float | Decimal, low: int) -> None:
    if not value >= low:
        raise ValueError(f"{name} must be >= {low}, got {value!r}")


def _above(name: str, value: float | Decimal, low: int) -> None:
    if not value > low:
        raise ValueError(f"{name} must be > {low}, got {value!r}")


def _unit(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Proposal:
    """What the engine suggests: a trade a person or a policy can decide on."""

    id: str
    symbol: str
    side: Side
    entry: Decimal
    stop: Decimal
    take_profit: Decimal
    confidence: float
    size: Decimal  # quantity of base currency
    created_at: int  # ms
    expires_at: int  # ms
    votes: tuple[AgentVote, ...] = ()
    merged: int = 0  # how many later duplicates were folded into this one
    #: Why the risk engine would not size it right now ("" when it would); such a
    #: proposal is still shown, with size 0, so a person sees the signal and the reason.
    risk_note: str = ""

    def __post_init__(self) -> None:
        _unit("confidence", self.confidence)
        _at_least("size", self.size, 0)

    @property
    def notional(self) -> Decimal:
        return self.size * self.entry


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """How a proposal ended: approve (possibly resized), reject or expire."""

    proposal_id: str
    action: DecisionAction
    reason: str | None = None
    size: Decimal | None = None  # the approved quantity; differs from the proposal's when resized
    resized: bool = False
    latency_ms: int
    decided_at: int
    decided_by: Literal["human", "policy", "engine"] = "human"

    def __post_init__(self) -> None:
        _at_least("latency_ms", self.latency_ms, 0)


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderIntent:
    """An order we mean to send, written durably before any broker sees it."""

    client_order_id: str
    proposal_id: str | None
    symbol: str
    side: OrderSide
    qty: Decimal
    purpose: Literal["entry", "exit"]
    created_at: int
    reason: str = ""

    def __post_init__(self) -> None:
        _above("qty", self.qty, 0)


@dataclass(frozen=True, slots=True, kw_only=True)
class Fill:
    """What came back from a broker for one order, and the money it moved: the one
    shape of a fill, from the broker through the portfolio to the store and the UI.

    ``realized_pnl`` is before fees (0 until the portfolio applies the fill, and for
    a fill that opens or adds); ``fee`` is the fill's whole fee in quote currency.
    """

    client_order_id: str
    symbol: str
    side: OrderSide
    qty: Decimal
    price: Decimal
    fee: Decimal
    ts: int
    realized_pnl: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        _above("qty", self.qty, 0)
        _above("price", self.price, 0)
        _at_least("fee", self.fee, 0)


@dataclass(frozen=True, slots=True, kw_only=True)
class Position:
    """What is held in one symbol. ``qty`` is never negative; ``side`` says which way."""

    symbol: str
    side: Side
    qty: Decimal
    entry_price: Decimal
    cost_basis: Decimal  # sum of entry notionals still held, in quote currency
    stop: Decimal | None = None
    take_profit: Decimal | None = None
    opened_at: int
    proposal_id: str | None = None
    realized_pnl: Decimal = Decimal(0)
    fees: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        _at_least("qty", self.qty, 0)

    def unrealized(self, mark: Decimal) -> Decimal:
        """Unrealized PnL at ``mark``, before exit fees."""
        value = self.qty * mark
        return q_cash((value - self.cost_basis) * self.side.sign)


#: The engine events this module re-exports from :mod:`engine.events`: the names of
#: ``__all__`` not defined above (the imports at the top are only for mypy).
_EVENTS = frozenset(__all__) - globals().keys()


if not TYPE_CHECKING:  # mypy sees the imports above, so a wrong name is still its error

    def __getattr__(name: str) -> Any:
        if name not in _EVENTS:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module("engine.events"), name)
        globals()[name] = value  # the next lookup is a plain one
        return value
