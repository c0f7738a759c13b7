"""The interface through which the engine reaches its store.

The engine owns this interface; ``persistence.store.Store`` implements it on a
SQLite file, and backtests run it on ``:memory:``. A :class:`UnitOfWork`
collects one state change (for example "fill closes position and credits
cash") and commits it as one transaction when its ``async with`` block ends:
either all of it lands or none does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from types import TracebackType
from typing import Protocol, TypeVar

from engine.events import (
    DecisionMade,
    EngineEvent,
    EngineMessage,
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
from engine.models import Candle, Decision, Fill, OrderIntent, Position, Proposal, Side

E = TypeVar("E", bound=EngineEvent)


@dataclass(frozen=True, slots=True)
class AgentRecordRow:
    """The learning agent's record of one agent on one symbol (``*`` for all)."""

    agent: str
    symbol: str
    trades: int = 0
    wins: int = 0
    sum_win: float = 0.0
    sum_loss: float = 0.0
    cf_trades: int = 0
    cf_wins: int = 0
    cf_sum_win: float = 0.0
    cf_sum_loss: float = 0.0


@dataclass(frozen=True, slots=True)
class CounterfactualRow:
    """How one declined (rejected or expired) proposal would have ended, followed on
    paper by the learning agent with its own stop and take-profit."""

    proposal_id: str
    symbol: str
    side: str  # 'long' or 'short'
    #: The agents that voted the proposal's side.
    agents: tuple[str, ...]
    entry: float
    exit_price: float
    #: ``(exit - entry) / entry`` signed by the side: a fraction of the entry, no fees.
    ret: float
    exit_reason: str  # 'stop', 'take_profit' or 'time'
    #: The open time (ms) of the candle it closed on.
    closed_at: int


@dataclass(frozen=True, slots=True)
class OpenIntent:
    """An order intent that has no final outcome yet (found on restart)."""

    intent: OrderIntent
    status: str  # 'pending' (never sent) or 'sent' (an order exists)
    proposal: Proposal | None = None  # behind an entry: its stop, take-profit and votes


#: The store's state key holding the market time of the last batch whose units are
#: stored (they go in together): a restart resumes after it.
BATCH_TS = "batch_ts"


@dataclass(slots=True)
class RecoveredState:
    """What the store held when the engine started."""

    initial_cash: Decimal | None = None
    cash: Decimal | None = None
    #: The currency the account's cash is held in (the quote of the symbols it trades).
    currency: str | None = None
    positions: list[Position] = field(default_factory=list)
    pending: list[Proposal] = field(default_factory=list)
    open_intents: list[OpenIntent] = field(default_factory=list)
    records: list[AgentRecordRow] = field(default_factory=list)
    state: dict[str, str] = field(default_factory=dict)
    last_ts: int | None = None
    #: Highest equity point since the risk baselines were last reset.
    equity_peak: Decimal | None = None
    #: First equity point of the UTC day of ``last_ts``.
    day_start_equity: Decimal | None = None
    #: Realized PnL net of fees on the UTC day of ``last_ts``.
    realized_today: Decimal = Decimal(0)
    #: The proposal behind each open position (for the learning agent).
    position_proposals: dict[str, Proposal] = field(default_factory=dict)
    #: Proposals declined (rejected, expired) whose counterfactual had not closed, each
    #: with its decision's market time, in the order decided: the learning agent
    #: follows them again from there.
    followed: list[tuple[Proposal, int]] = field(default_factory=list)

    @property
    def is_fresh(self) -> bool:
        return self.cash is None


class UnitOfWork(Protocol):
    """One state change; every method also appends its event to the log."""

    def __len__(self) -> int:
        """How many statements it holds (0: nothing to store)."""
        ...

    def proposal_created(self, proposal: Proposal, ts: int) -> ProposalCreated: ...
    def proposal_merged(self, event: ProposalMerged) -> ProposalMerged: ...
    def decision_made(
        self, decision: Decision, symbol: str, side: Side, intent: OrderIntent | None
    ) -> DecisionMade: ...
    def intent_created(self, intent: OrderIntent) -> None: ...
    def order_denied(self, event: OrderDenied) -> OrderDenied: ...
    def order_submitted(self, intent: OrderIntent, ts: int) -> OrderSubmitted: ...
    def intent_cancelled(self, client_order_id: str, ts: int, reason: str) -> EngineMessage: ...
    def order_filled(self, fill: Fill, cash: Decimal) -> OrderFilled: ...
    def position_opened(self, position: Position, ts: int) -> PositionOpened: ...
    def position_changed(self, position: Position, ts: int) -> PositionChanged: ...
    def position_closed(self, event: PositionClosed) -> PositionClosed: ...
    def trading_state_changed(self, event: TradingStateChanged) -> TradingStateChanged: ...
    def set_state(self, key: str, value: str) -> None: ...
    def agent_records(self, rows: Sequence[AgentRecordRow]) -> None: ...
    def counterfactuals(self, rows: Sequence[CounterfactualRow]) -> None: ...
    def event(self, event: E) -> E: ...


class UnitOfWorkContext(Protocol):
    async def __aenter__(self) -> UnitOfWork: ...
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class StorePort(Protocol):
    """Everything the engine needs from a store (``persistence.store.Store`` is checked
    against it by mypy)."""

    #: Where the store lives, for messages (``:memory:`` for backtests).
    path: str

    def unit_of_work(self) -> UnitOfWorkContext: ...
    def begin_work(self) -> UnitOfWork:
        """A fresh, empty unit of work the core fills with plain calls."""

    async def commit(self, work: UnitOfWork, *more: UnitOfWork) -> None:
        """Store ``work`` (from :meth:`begin_work`) as ONE transaction, in call order;
        units in ``more`` go into the same transaction after it (a group commit: each
        unit whole, all of them or none)."""

    async def begin_session(self, mode: str, feed: str, config_json: str, ts: int) -> int: ...
    async def end_session(self, ts: int) -> None: ...
    async def init_balance(self, currency: str, cash: Decimal, ts: int) -> None: ...
    def record_equity(self, event: EquityUpdated) -> None: ...
    def record_candles(self, timeframe: str, candles: Sequence[Candle]) -> None: ...
    async def flush(self) -> None: ...
    async def prune(self, now_ms: int, equity_days: int, candle_days: int) -> tuple[int, int]: ...
    async def load_state(self) -> RecoveredState: ...
    def set_reporter(self, report: Callable[[EngineMessage], None]) -> None:
        """Tell ``report`` when buffered writes fail (a warning) and recover (info)."""
