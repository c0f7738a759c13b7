"""The risk engine: runs the ordered checks on every entry and exit, and keeps the denials.

Pure, synchronous code with no I/O. The portfolio owns money and passes
positions and marks in; the :class:`~engine.account.Account` owns equity, its
peak and the day's start. The pieces the engine runs live beside it: the limits
(:mod:`engine.risk.limits`), the Kelly sizer (:mod:`engine.risk.sizer`), the
correlation tracker (:mod:`engine.risk.correlation`) and the drawdown monitor
that sets the trading state (:mod:`engine.risk.drawdown`).

**Correlation sign.** What matters is whether two positions' P&L move together,
so the engine uses the *P&L correlation*: the returns' correlation times +1 when
the new proposal and the open position are on the same side and times -1 when
they are on opposite sides. Long BTC and long ETH with return correlation 0.9 is
doubled risk (0.9, denied at 0.8); long BTC and short ETH with 0.9 is a hedge
(-0.9, allowed); long BTC and short ETH with -0.9 is doubled risk again (0.9,
denied). Only a P&L correlation *above* ``max_correlation`` denies, so hedges
are never denied for correlation.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext

from engine.account import Account
from engine.events import OrderDenied, TradingStateChanged
from engine.models import Position, Proposal, TradingState, q_qty, to_decimal
from engine.risk._inputs import (
    PRECISION,
    check_marks,
    check_proposal,
    require_decimal,
    require_ts,
)
from engine.risk.correlation import CorrelationTracker
from engine.risk.drawdown import DrawdownMonitor
from engine.risk.limits import RiskLimits
from engine.risk.sizer import EdgeStats, exposures_of, size_entry
from engine.timeframes import DAY_MS

#: How many recent denials the risk pane shows.
DENIALS_KEPT = 20


@dataclass(frozen=True, slots=True)
class RiskCheck:
    """The risk engine's answer to one entry or exit: the quantity allowed, or 0 and why not."""

    allowed: bool
    quantity: Decimal
    reason: str


def _denied(reason: str) -> RiskCheck:
    return RiskCheck(False, Decimal(0), reason)


@dataclass(frozen=True, slots=True)
class RiskSnapshot:
    """Everything the console's risk pane shows, each value next to its limit.

    ``peak_equity``, ``day_start_equity``, ``day`` and ``halted_by_limit`` are
    what the store keeps so that ``RiskEngine.restore`` can resume after a restart.
    """

    state: TradingState
    state_reason: str
    halted_by_limit: bool
    equity: Decimal
    total_exposure: float
    max_total_exposure: float
    symbol_exposure: Mapping[str, float]
    max_symbol_exposure: float
    daily_loss: float
    max_daily_loss: float
    drawdown: float
    reduce_drawdown: float
    max_drawdown: float
    open_positions: int
    max_open_positions: int
    peak_equity: Decimal | None
    day_start_equity: Decimal | None
    day: int | None
    denials: tuple[OrderDenied, ...]


class RiskEngine:
    """Checks every entry and exit before a broker sees it; keeps the last denials.

    Entries go through :meth:`check_entry` (or :meth:`size`, the limits alone),
    exits through :meth:`check_exit`. Feed it closes with :meth:`on_candle` and
    equity with :meth:`on_equity`. The peak and the day's start are
    ``account``'s (a fresh :class:`Account` when none is given).
    """

    def __init__(
        self,
        limits: RiskLimits,
        state: TradingState = TradingState.ACTIVE,
        account: Account | None = None,
    ) -> None:
        if not isinstance(limits, RiskLimits):
            raise ValueError(f"limits must be a RiskLimits, got {limits!r}")
        self._limits = limits
        #: The loss limits as Decimals, made once (every entry compares against them).
        self._loss_limits = (
            to_decimal(limits.max_daily_loss),
            to_decimal(limits.max_drawdown),
            to_decimal(limits.reduce_drawdown),
        )
        self._account = Account() if account is None else account
        self._monitor = DrawdownMonitor(limits, self._account, state)
        self._tracker = CorrelationTracker(
            limits.correlation_window, limits.min_correlation_samples
        )
        self._denials: deque[OrderDenied] = deque(maxlen=DENIALS_KEPT)

    @property
    def limits(self) -> RiskLimits:
        """The limits this engine enforces."""
        return self._limits

    @property
    def account(self) -> Account:
        """The account whose peak and day's start the limits are measured from."""
        return self._account

    @property
    def state(self) -> TradingState:
        """ACTIVE, REDUCING (exits only) or HALTED (exits only, until resumed)."""
        return self._monitor.state

    @property
    def state_reason(self) -> str:
        """Why the state is what it is."""
        return self._monitor.reason

    @property
    def halted_by_limit(self) -> bool:
        """HALTED by a limit rather than by a person; only such a halt may auto-resume."""
        return self._monitor.halted_by_limit

    @property
    def denials(self) -> tuple[OrderDenied, ...]:
        """The last ``DENIALS_KEPT`` denials, oldest first."""
        return tuple(self._denials)

    # --- market data and equity --------------------------------------------------

    def on_candle(self, symbol: str, ts: int, close: float) -> None:
        """Record a closed candle's close for the correlation check (O(1))."""
        self._tracker.on_candle(symbol, ts, close)

    def skip(self, symbol: str, ts: list[int], closes: list[float]) -> None:
        """Record candles a backtest did not feed one by one (in order, already checked)."""
        self._tracker.extend(symbol, ts, closes)

    def correlation(self, symbol_a: str, symbol_b: str) -> float | None:
        """The two symbols' return correlation, or None while it is unknown."""
        return self._tracker.correlation(symbol_a, symbol_b)

    def on_equity(self, ts: int, equity: Decimal) -> list[TradingStateChanged]:
        """Feed the account; halt or reduce on a breached limit (the drawdown monitor's)."""
        return self._monitor.on_equity(ts, equity)

    def halt(self, ts: int, reason: str) -> list[TradingStateChanged]:
        """Stop new entries until ``resume``. Exits stay allowed."""
        return self._monitor.halt(ts, reason)

    def resume(self, ts: int, reason: str) -> list[TradingStateChanged]:
        """Back to ACTIVE, re-basing the drawdown peak and the day's start on the last equity."""
        return self._monitor.resume(ts, reason)

    @property
    def held(self) -> str | None:
        """Why trading is held in REDUCING from outside (an open circuit breaker), or None."""
        return self._monitor.held

    def hold(self, ts: int, reason: str) -> list[TradingStateChanged]:
        """Exits only until :meth:`release` (REDUCING does not clear by itself meanwhile)."""
        return self._monitor.hold(ts, reason)

    def release(self, ts: int, reason: str) -> list[TradingStateChanged]:
        """End a :meth:`hold`; REDUCING clears unless the drawdown keeps it."""
        return self._monitor.release(ts, reason)

    def restore(
        self,
        state: TradingState,
        peak_equity: Decimal,
        day_start_equity: Decimal,
        day: int,
        *,
        halted_by_limit: bool = False,
    ) -> None:
        """Put back what the store kept (see ``RiskSnapshot``) after a restart."""
        self._monitor.restore(
            state, peak_equity, day_start_equity, day, halted_by_limit=halted_by_limit
        )

    # --- entries and exits -----------------------------------------------------

    def check_entry(
        self,
        proposal: Proposal,
        quantity: Decimal | None = None,
        *,
        positions: Mapping[str, Position],
        committed: Sequence[Position],
        marks: Mapping[str, Decimal],
        edge: EdgeStats | None,
        ts: int,
        record: bool = True,
        human: bool = False,
        equity: Decimal | None = None,
    ) -> RiskCheck:
        """The answer for an entry of ``proposal`` (at ``quantity``, a person's size).

        Before the limits: an open position on the other side, a price already
        through the stop or past the take-profit (an old proposal the market has
        run past would fill and exit at once). A person who approves against a
        record without edge overrides the statistics, not the limits (``human``):
        the entry is sized by the default fraction instead of being denied for "no
        edge". Then :meth:`size` against ``committed`` (open positions plus
        entries not yet filled). ``equity`` defaults to the account's. A bad input
        is a denial ("invalid order: ..."), never an exception; every other denial
        is kept in ``denials`` (only with ``record``), the checks before the limits
        included, so the risk pane lists them too.
        """
        try:
            reason = None
            held = positions.get(proposal.symbol)
            mark = marks.get(proposal.symbol)
            if held is not None and held.side is not proposal.side:
                reason = f"{held.side.value} {proposal.symbol} is open"
            elif mark is not None and (mark - proposal.stop) * proposal.side.sign <= 0:
                reason = f"price {mark} is already through the stop {proposal.stop}"
            elif mark is not None and (proposal.take_profit - mark) * proposal.side.sign <= 0:
                reason = f"price {mark} is already past the take-profit {proposal.take_profit}"
            if reason is not None:
                return self._deny(ts, proposal.symbol, reason) if record else _denied(reason)
            if human and edge is not None and edge.kelly() <= 0:
                edge = None
            if equity is None:
                equity = self._account.equity()
            return self.size(
                proposal,
                equity,
                committed,
                marks,
                edge,
                requested_qty=quantity,
                ts=ts,
                record=record,
            )
        except ValueError as exc:
            return _denied(f"invalid order: {exc}")

    def size(
        self,
        proposal: Proposal,
        equity: Decimal,
        positions: Sequence[Position],
        marks: Mapping[str, Decimal],
        edge: EdgeStats | None,
        requested_qty: Decimal | None = None,
        *,
        ts: int | None = None,
        record: bool = True,
    ) -> RiskCheck:
        """Size an entry against the limits at ``equity``, or deny it with the reason.

        Checks, in this order: trading state; equity; daily loss; drawdown (max,
        then reduce level); open positions; correlation with each open position;
        then the sizer (Kelly or default fraction, per-position cap, stop risk,
        confidence; a person's ``requested_qty`` replaces Kelly and confidence
        but keeps the caps; per-symbol exposure; total exposure; minimum
        notional). ``proposal.size`` is not used. Exposure is ``qty × mark``
        (the entry price where ``marks`` has no mark), on either side. ``ts``
        (default ``proposal.created_at``) dates a denial; ``record=False`` (a
        preview) keeps it out of ``denials``. A bad input raises ValueError.
        """
        check_proposal(proposal)
        require_decimal("equity", equity, positive=False)
        check_marks(marks)
        if requested_qty is not None:
            require_decimal("requested_qty", requested_qty, positive=True)
        if ts is not None:
            require_ts("ts", ts)
        when = proposal.created_at if ts is None else ts
        with localcontext() as ctx:
            ctx.prec = PRECISION
            exposures = exposures_of(positions, marks)
            reason = self._entry_denial(proposal, equity, positions, exposures, when)
            if reason is not None:
                check = _denied(reason)
            else:
                sized = size_entry(self._limits, proposal, equity, exposures, edge, requested_qty)
                check = RiskCheck(sized.quantity > 0, sized.quantity, sized.reason)
        if record and not check.allowed:
            self._record(when, proposal.symbol, check.reason, proposal.id)
        return check

    def check_exit(self, ts: int, position: Position, quantity: Decimal | None = None) -> RiskCheck:
        """Allow an exit in every state, as long as it does not exceed what is held.

        ``quantity`` None closes the whole position.
        """
        require_ts("ts", ts)
        if quantity is not None:
            require_decimal("qty", quantity, positive=True)
        symbol = position.symbol
        if position.qty == 0:
            return self._deny(ts, symbol, f"no open {symbol} position to exit")
        exit_qty = position.qty if quantity is None else q_qty(quantity)
        if exit_qty == 0:
            return self._deny(ts, symbol, f"exit qty {quantity} rounds to 0")
        if exit_qty > position.qty:
            reason = f"exit qty {exit_qty} exceeds open {symbol} qty {position.qty}"
            return self._deny(ts, symbol, reason)
        return RiskCheck(True, exit_qty, f"exit of {exit_qty} {symbol} allowed")

    def snapshot(
        self, equity: Decimal, positions: Sequence[Position], marks: Mapping[str, Decimal]
    ) -> RiskSnapshot:
        """The risk pane's figures at ``equity``."""
        require_decimal("equity", equity, positive=False)
        check_marks(marks)
        limits = self._limits
        with localcontext() as ctx:
            ctx.prec = PRECISION
            exposures = exposures_of(positions, marks)
            total = sum(exposures.values(), Decimal(0))
            account = self._account

            def share(notional: Decimal) -> float:
                return float(notional / equity) if equity > 0 else math.inf

            return RiskSnapshot(
                state=self.state,
                state_reason=self.state_reason,
                halted_by_limit=self.halted_by_limit,
                equity=equity,
                total_exposure=share(total) if total else 0.0,
                max_total_exposure=limits.max_total_exposure,
                symbol_exposure={symbol: share(n) for symbol, n in exposures.items()},
                max_symbol_exposure=limits.max_symbol_exposure,
                daily_loss=float(account.daily_loss(equity)),
                max_daily_loss=limits.max_daily_loss,
                drawdown=float(account.drawdown(equity)),
                reduce_drawdown=limits.reduce_drawdown,
                max_drawdown=limits.max_drawdown,
                open_positions=len(exposures),
                max_open_positions=limits.max_open_positions,
                peak_equity=account.peak,
                day_start_equity=account.day_start,
                day=account.day,
                denials=tuple(self._denials),
            )

    # --- the checks, in order ----------------------------------------------------

    def _entry_denial(
        self,
        proposal: Proposal,
        equity: Decimal,
        positions: Sequence[Position],
        exposures: Mapping[str, Decimal],
        when: int,
    ) -> str | None:
        limits = self._limits
        if self.state is not TradingState.ACTIVE:
            return f"trading {self.state} ({self.state_reason}): exits only"
        if equity <= 0:
            return f"equity {equity} leaves nothing to size against"
        account = self._account
        max_daily_loss, max_drawdown, reduce_drawdown = self._loss_limits
        if account.day == when // DAY_MS:
            daily_loss = account.daily_loss(equity)
            if daily_loss > max_daily_loss:
                return f"daily loss {daily_loss:.1%} exceeds {limits.max_daily_loss:.1%}"
        drawdown = account.drawdown(equity)
        if drawdown > max_drawdown:
            return f"drawdown {drawdown:.1%} exceeds {limits.max_drawdown:.1%}"
        if drawdown > reduce_drawdown:
            return (
                f"drawdown {drawdown:.1%} exceeds reduce level {limits.reduce_drawdown:.1%}: "
                "exits only"
            )
        if proposal.symbol not in exposures and len(exposures) >= limits.max_open_positions:
            return f"max open positions {limits.max_open_positions} reached"
        return self._correlation_denial(proposal, positions)

    def _correlation_denial(self, proposal: Proposal, positions: Sequence[Position]) -> str | None:
        limit = self._limits.max_correlation
        seen: dict[str, float | None] = {}
        for position in positions:
            if position.qty == 0 or position.symbol == proposal.symbol:
                continue
            if position.symbol not in seen:
                seen[position.symbol] = self._tracker.correlation(proposal.symbol, position.symbol)
            corr = seen[position.symbol]
            if corr is None:
                continue
            same_side = position.side is proposal.side
            co_movement = corr if same_side else -corr
            if co_movement <= limit:
                continue
            if same_side:
                return f"correlation {corr:.2f} with {position.symbol} exceeds {limit:.2f}"
            return (
                f"correlation {corr:.2f} with {position.side} {position.symbol}: "
                f"a {proposal.side} moves with it ({co_movement:.2f} exceeds {limit:.2f})"
            )
        return None

    def _record(self, ts: int, symbol: str, reason: str, proposal_id: str | None = None) -> None:
        self._denials.append(
            OrderDenied(ts=ts, symbol=symbol, reason=reason, proposal_id=proposal_id)
        )

    def _deny(self, ts: int, symbol: str, reason: str) -> RiskCheck:
        self._record(ts, symbol, reason)
        return _denied(reason)
