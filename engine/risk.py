"""The risk manager: sizes entries with fractional Kelly and enforces the limits.

Pure, synchronous code with no I/O. The portfolio owns money and passes equity,
positions and marks in. The equity peak, the equity at the start of the UTC day
and the day rollover belong to the :class:`~engine.account.Account`, which the
manager reads (and feeds with ``on_equity``); the manager itself keeps only
bounded per-symbol close windows (for correlation), the trading state and the
last denials. State changes come back as ``TradingStateChanged`` events for the
caller to store.

Choices worth knowing:

* **Correlation sign.** What matters is whether two positions' P&L move
  together, so the manager uses the *P&L correlation*: the returns' correlation
  times +1 when the new proposal and the open position are on the same side and
  times -1 when they are on opposite sides. Long BTC and long ETH with return
  correlation 0.9 is doubled risk (0.9, denied at 0.8); long BTC and short ETH
  with 0.9 is a hedge (-0.9, allowed); long BTC and short ETH with -0.9 is
  doubled risk again (0.9, denied). Only a P&L correlation *above*
  ``max_correlation`` denies, so hedges are never denied for correlation.
* **Gaps.** Returns are taken between consecutive timestamps at which *both*
  symbols have a close, so a missing candle is skipped, never a zero return,
  and both returns of a pair always span the same interval. A correlation needs
  at least ``max(3, correlation_window // 2)`` aligned returns; with fewer it
  is unknown and does not deny.
* **Halts latch.** HALTED is left only by ``resume()``, or, when
  ``auto_resume_next_day`` is set, by the first equity update of a new UTC day
  if the halt came from a limit (a person's ``halt()`` is never lifted by a
  timer) and the drawdown limit no longer applies. REDUCING is soft: it clears
  by itself once the drawdown is back within ``reduce_drawdown``.
* **Resume re-bases, and nothing else does.** ``resume()`` restarts the
  drawdown peak and the day's starting equity from the last equity seen, so the
  losses a person has just acknowledged do not re-trigger the halt on the next
  update; a further loss of the full limit halts again. REDUCING clearing by
  itself (or a halt lifted on a new day) keeps the peak.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from decimal import Decimal, localcontext
from itertools import pairwise
from typing import Any, NamedTuple

from engine.account import Account
from engine.config import RiskSettings
from engine.models import (
    QTY_QUANTUM,
    Position,
    Proposal,
    Side,
    TradingState,
    TradingStateChanged,
    q_qty,
    to_decimal,
)
from engine.timeframes import DAY_MS as MS_PER_DAY

#: How many recent denials the risk pane shows.
DENIALS_KEPT = 20
# Products of 8-place quantities and prices of large accounts exceed the default 28 digits.
_PRECISION = 60
_FRACTION_QUANTUM = Decimal("1e-12")


# --- input validation ------------------------------------------------------------


def _require_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _require_unit(name: str, value: object, *, allow_zero: bool) -> None:
    ok = False
    # NaN fails both comparisons, so it is rejected here too.
    if isinstance(value, int | float) and not isinstance(value, bool):
        ok = 0 < value <= 1 or (allow_zero and value == 0)
    if not ok:
        interval = "[0, 1]" if allow_zero else "(0, 1]"
        raise ValueError(f"{name} must lie in {interval}, got {value!r}")


def _require_float(name: str, value: object, *, allow_zero: bool) -> None:
    ok = False
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        ok = value > 0 or (allow_zero and value == 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")


def _require_decimal(name: str, value: object, *, positive: bool) -> None:
    if not isinstance(value, Decimal) or not value.is_finite():
        raise ValueError(f"{name} must be a finite Decimal, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")


def _require_ts(name: str, value: object) -> None:
    _require_int(name, value, 0)


def _require_text(name: str, value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")


def _check_proposal(proposal: Proposal) -> None:
    _require_text("proposal.symbol", proposal.symbol)
    _require_decimal("proposal.entry", proposal.entry, positive=True)
    _require_decimal("proposal.stop", proposal.stop, positive=False)
    if proposal.stop < 0:
        raise ValueError(f"proposal.stop must be >= 0 (0 means no stop), got {proposal.stop}")
    if proposal.stop == 0:
        return
    if proposal.side is Side.LONG and proposal.stop >= proposal.entry:
        raise ValueError(
            f"proposal.stop must be below proposal.entry for a long, "
            f"got stop {proposal.stop} >= entry {proposal.entry}"
        )
    if proposal.side is Side.SHORT and proposal.stop <= proposal.entry:
        raise ValueError(
            f"proposal.stop must be above proposal.entry for a short, "
            f"got stop {proposal.stop} <= entry {proposal.entry}"
        )


def _check_marks(marks: Mapping[str, Decimal]) -> None:
    for symbol, mark in marks.items():
        _require_decimal(f"marks[{symbol!r}]", mark, positive=True)


def _utc_date(day: int) -> str:
    return datetime.fromtimestamp(day * MS_PER_DAY / 1000, tz=UTC).date().isoformat()


# --- sizing --------------------------------------------------------------------


def kelly_fraction(win_rate: float, avg_win: float, avg_loss: float) -> float:
    """The full-Kelly fraction ``f* = W - (1 - W) / R`` with ``R = avg_win / avg_loss``.

    ``avg_loss`` is a positive magnitude. The result is clipped at 0: a negative
    edge means do not bet, never bet the other way. It lies in [0, 1] and never
    decreases as ``win_rate`` grows.
    """
    _require_unit("win_rate", win_rate, allow_zero=True)
    _require_float("avg_win", avg_win, allow_zero=False)
    _require_float("avg_loss", avg_loss, allow_zero=False)
    return _kelly(win_rate, avg_win, avg_loss)


def _kelly(win_rate: float, avg_win: float, avg_loss: float) -> float:
    if win_rate >= 1.0:
        return 1.0
    # (1 - W) * (avg_loss / avg_win) is (1 - W) / R without dividing by an R that underflowed to 0.
    return max(0.0, win_rate - (1.0 - win_rate) * (avg_loss / avg_win))


@dataclass(frozen=True, slots=True)
class EdgeStats:
    """The learning agent's record, the input to Kelly sizing.

    ``avg_win`` and ``avg_loss`` are positive magnitudes in any common unit
    (quote currency or return); 0 means no win or no loss was recorded.
    """

    trades: int
    win_rate: float
    avg_win: float
    avg_loss: float

    def __post_init__(self) -> None:
        _require_int("trades", self.trades, 0)
        _require_unit("win_rate", self.win_rate, allow_zero=True)
        _require_float("avg_win", self.avg_win, allow_zero=True)
        _require_float("avg_loss", self.avg_loss, allow_zero=True)

    def kelly(self) -> float:
        """Full-Kelly fraction; 0 without a recorded win, ``win_rate`` without a recorded loss."""
        if self.win_rate == 0 or self.avg_win == 0:
            return 0.0
        if self.avg_loss == 0:
            return self.win_rate  # the limit of W - (1 - W) / R as R grows without bound
        return _kelly(self.win_rate, self.avg_win, self.avg_loss)


def _setting(name: str) -> Any:
    """The default of ``risk.<name>`` in the configuration: the one source of every limit's."""
    return RiskSettings.model_fields[name].default


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """The risk limits. Fractions are of equity; all are validated on creation.

    Every default is :class:`~engine.config.RiskSettings`' (the configuration's), so
    the two cannot drift; :meth:`from_settings` builds the limits a configuration sets.
    """

    max_open_positions: int = _setting("max_open_positions")
    max_symbol_exposure: float = _setting("max_symbol_exposure")
    max_total_exposure: float = _setting("max_total_exposure")
    #: Deny when the P&L correlation with an open position is above this.
    max_correlation: float = _setting("max_correlation")
    #: How many close-to-close returns the correlation looks at.
    correlation_window: int = _setting("correlation_window")
    max_daily_loss: float = _setting("max_daily_loss")
    max_drawdown: float = _setting("max_drawdown")
    #: Drawdown from the peak beyond which only exits are allowed (REDUCING).
    reduce_drawdown: float = _setting("reduce_drawdown")
    kelly_multiplier: float = _setting("kelly_multiplier")
    #: The per-position cap: no single entry is worth more than this of equity.
    max_position_fraction: float = _setting("max_position_fraction")
    #: Loss at the stop may not exceed this of equity.
    max_risk_per_trade: float = _setting("max_risk_per_trade")
    #: The fraction used until the learning agent has ``min_trades_for_kelly`` trades.
    default_risk_fraction: float = _setting("default_risk_fraction")
    min_trades_for_kelly: int = _setting("min_trades_for_kelly")
    min_notional: Decimal = _setting("min_notional")  # noqa: RUF009 (a Decimal is immutable)
    #: Lift a limit's halt on the first equity update of a new UTC day.
    auto_resume_next_day: bool = _setting("auto_resume_next_day")

    @classmethod
    def from_settings(cls, risk: RiskSettings) -> RiskLimits:
        """The limits the configuration's ``risk`` section sets."""
        return cls(**{f.name: getattr(risk, f.name) for f in fields(cls)})

    def __post_init__(self) -> None:
        _require_int("max_open_positions", self.max_open_positions, 1)
        _require_unit("max_symbol_exposure", self.max_symbol_exposure, allow_zero=False)
        _require_unit("max_total_exposure", self.max_total_exposure, allow_zero=False)
        _require_unit("max_correlation", self.max_correlation, allow_zero=True)
        _require_int("correlation_window", self.correlation_window, 3)
        _require_unit("max_daily_loss", self.max_daily_loss, allow_zero=False)
        _require_unit("max_drawdown", self.max_drawdown, allow_zero=False)
        _require_unit("reduce_drawdown", self.reduce_drawdown, allow_zero=False)
        if self.reduce_drawdown > self.max_drawdown:
            raise ValueError(
                f"reduce_drawdown must be <= max_drawdown ({self.max_drawdown!r}), "
                f"got {self.reduce_drawdown!r}"
            )
        _require_unit("kelly_multiplier", self.kelly_multiplier, allow_zero=False)
        _require_unit("max_position_fraction", self.max_position_fraction, allow_zero=False)
        _require_unit("max_risk_per_trade", self.max_risk_per_trade, allow_zero=False)
        _require_unit("default_risk_fraction", self.default_risk_fraction, allow_zero=False)
        _require_int("min_trades_for_kelly", self.min_trades_for_kelly, 1)
        _require_decimal("min_notional", self.min_notional, positive=True)
        if not isinstance(self.auto_resume_next_day, bool):
            raise ValueError(
                f"auto_resume_next_day must be a bool, got {self.auto_resume_next_day!r}"
            )

    @property
    def min_correlation_samples(self) -> int:
        """Fewest aligned returns for which a correlation is trusted."""
        return max(3, self.correlation_window // 2)


@dataclass(frozen=True, slots=True)
class RiskDecision:
    """The answer to one entry or exit: the approved quantity, or 0 and why not."""

    approved: bool
    qty: Decimal
    reason: str


class Denial(NamedTuple):
    """One denied entry or exit, as the risk pane lists it."""

    ts: int
    symbol: str
    reason: str


@dataclass(frozen=True, slots=True)
class RiskSnapshot:
    """Everything the console's risk pane shows, each value next to its limit.

    ``peak_equity``, ``day_start_equity``, ``day`` and ``halted_by_limit`` are
    what the store keeps so that ``RiskManager.restore`` can resume after a restart.
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
    denials: tuple[Denial, ...]


def _denied(reason: str) -> RiskDecision:
    return RiskDecision(False, Decimal(0), reason)


def _pearson(xs: Sequence[float], ys: Sequence[float]) -> float:
    n = len(xs)
    mean_x = math.fsum(xs) / n
    mean_y = math.fsum(ys) / n
    dx = [x - mean_x for x in xs]
    dy = [y - mean_y for y in ys]
    var_x = math.fsum(d * d for d in dx)
    var_y = math.fsum(d * d for d in dy)
    if var_x <= 0 or var_y <= 0:
        return 0.0  # a flat series moves with nothing
    cov = math.fsum(a * b for a, b in zip(dx, dy, strict=True))
    return max(-1.0, min(1.0, cov / math.sqrt(var_x * var_y)))


class RiskManager:
    """Checks every entry and exit before a broker sees it, and keeps the trading state.

    Entries go through ``size``, exits through ``check_exit``. Feed it closes with
    ``on_candle`` and equity with ``on_equity``. The peak and the day's start are
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
        self._account = Account() if account is None else account
        self._state = TradingState(state)
        self._state_reason = f"started {self._state}"
        # A HALTED start is treated like a person's halt: no timer lifts it.
        self._halted_by_limit = False
        self._closes: dict[str, deque[tuple[int, float]]] = {}
        # Twice the window, so that gaps in one symbol still leave a window of aligned returns.
        self._closes_kept = 2 * limits.correlation_window + 1
        self._denials: deque[Denial] = deque(maxlen=DENIALS_KEPT)

    @property
    def limits(self) -> RiskLimits:
        """The limits this manager enforces."""
        return self._limits

    @property
    def account(self) -> Account:
        """The account whose peak and day's start the limits are measured from."""
        return self._account

    @property
    def state(self) -> TradingState:
        """ACTIVE, REDUCING (exits only) or HALTED (exits only, until resumed)."""
        return self._state

    @property
    def state_reason(self) -> str:
        """Why the state is what it is."""
        return self._state_reason

    @property
    def halted_by_limit(self) -> bool:
        """HALTED by a limit rather than by a person; only such a halt may auto-resume."""
        return self._halted_by_limit

    @property
    def denials(self) -> tuple[Denial, ...]:
        """The last ``DENIALS_KEPT`` denials, oldest first."""
        return tuple(self._denials)

    # --- market data -----------------------------------------------------------

    def on_candle(self, symbol: str, ts: int, close: float) -> None:
        """Record a closed candle's close. O(1); an older ``ts`` than the last is ignored."""
        _require_text("symbol", symbol)
        _require_ts("ts", ts)
        _require_float("close", close, allow_zero=False)
        window = self._closes.get(symbol)
        if window is None:
            window = self._closes[symbol] = deque(maxlen=self._closes_kept)
        if window and ts <= window[-1][0]:
            if ts == window[-1][0]:
                window[-1] = (ts, float(close))  # the same candle, revised
            return
        window.append((ts, float(close)))

    def correlation(self, symbol_a: str, symbol_b: str) -> float | None:
        """Correlation of close-to-close returns over the last ``correlation_window`` aligned
        returns, or None while there are fewer than ``limits.min_correlation_samples``."""
        _require_text("symbol_a", symbol_a)
        _require_text("symbol_b", symbol_b)
        window_a = self._closes.get(symbol_a)
        window_b = self._closes.get(symbol_b)
        if not window_a or not window_b:
            return None
        closes_b = dict(window_b)
        common = [(close_a, closes_b[ts]) for ts, close_a in window_a if ts in closes_b]
        returns_a: list[float] = []
        returns_b: list[float] = []
        for (a0, b0), (a1, b1) in pairwise(common):
            returns_a.append(a1 / a0 - 1.0)
            returns_b.append(b1 / b0 - 1.0)
        window = self._limits.correlation_window
        returns_a, returns_b = returns_a[-window:], returns_b[-window:]
        if len(returns_a) < self._limits.min_correlation_samples:
            return None
        return _pearson(returns_a, returns_b)

    # --- equity and the trading state ----------------------------------------

    def on_equity(self, ts: int, equity: Decimal) -> list[TradingStateChanged]:
        """Track the peak and the day's starting equity; halt or reduce on a breached limit."""
        _require_ts("ts", ts)
        _require_decimal("equity", equity, positive=False)
        day = ts // MS_PER_DAY
        account = self._account
        new_day = account.observe(ts, equity)
        limits = self._limits
        with localcontext() as ctx:
            ctx.prec = _PRECISION
            daily_loss = account.daily_loss(equity)
            drawdown = account.drawdown(equity)
            over_daily = daily_loss > to_decimal(limits.max_daily_loss)
            over_max = drawdown > to_decimal(limits.max_drawdown)
            over_reduce = drawdown > to_decimal(limits.reduce_drawdown)
        if self._state is TradingState.HALTED:
            lift = new_day and limits.auto_resume_next_day and self._halted_by_limit
            if not lift or over_max:
                return []
            date = _utc_date(day)
            if over_reduce:
                reason = (
                    f"new UTC day {date}: auto resume, but drawdown {drawdown:.1%} "
                    f"exceeds {limits.reduce_drawdown:.1%}"
                )
                return self._transition(ts, TradingState.REDUCING, reason)
            return self._transition(ts, TradingState.ACTIVE, f"new UTC day {date}: auto resume")
        if over_daily:
            reason = f"daily loss {daily_loss:.1%} exceeds {limits.max_daily_loss:.1%}"
            self._halted_by_limit = True
            return self._transition(ts, TradingState.HALTED, reason)
        if over_max:
            reason = f"drawdown {drawdown:.1%} exceeds {limits.max_drawdown:.1%}"
            self._halted_by_limit = True
            return self._transition(ts, TradingState.HALTED, reason)
        if over_reduce:
            reason = (
                f"drawdown {drawdown:.1%} exceeds reduce level {limits.reduce_drawdown:.1%}: "
                "exits only"
            )
            return self._transition(ts, TradingState.REDUCING, reason)
        if self._state is TradingState.REDUCING:
            reason = f"drawdown {drawdown:.1%} back within {limits.reduce_drawdown:.1%}"
            return self._transition(ts, TradingState.ACTIVE, reason)
        return []

    def halt(self, ts: int, reason: str) -> list[TradingStateChanged]:
        """Stop new entries until ``resume``. Exits stay allowed."""
        _require_ts("ts", ts)
        _require_text("reason", reason)
        # A person's halt, even on top of a limit's, is never lifted by a new day.
        self._halted_by_limit = False
        return self._transition(ts, TradingState.HALTED, reason)

    def resume(self, ts: int, reason: str) -> list[TradingStateChanged]:
        """Back to ACTIVE, re-basing the drawdown peak and the day's start on the last equity."""
        _require_ts("ts", ts)
        _require_text("reason", reason)
        if self._state is TradingState.ACTIVE:
            return []
        # Unknown last equity (after a restore): the next on_equity sets both baselines.
        self._account.rebase()
        return self._transition(ts, TradingState.ACTIVE, reason)

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
        _require_decimal("peak_equity", peak_equity, positive=False)
        _require_decimal("day_start_equity", day_start_equity, positive=False)
        _require_int("day", day, 0)
        self._state = TradingState(state)
        self._state_reason = f"restored {self._state}"
        self._halted_by_limit = self._state is TradingState.HALTED and halted_by_limit
        self._account.restore(peak_equity, day_start_equity, day)

    def _transition(self, ts: int, new: TradingState, reason: str) -> list[TradingStateChanged]:
        if new is self._state:
            return []
        event = TradingStateChanged(ts=ts, old=self._state, new=new, reason=reason)
        if new is not TradingState.HALTED:
            self._halted_by_limit = False
        self._state = new
        self._state_reason = reason
        return [event]

    # --- entries and exits -----------------------------------------------------

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
    ) -> RiskDecision:
        """Size an entry, or deny it with the reason.

        Checks, in this order: trading state; equity; daily loss; drawdown (max,
        then reduce level); open positions; correlation with each open position;
        sizing (Kelly or default fraction, per-position cap, stop risk,
        confidence; a person's ``requested_qty`` replaces Kelly and confidence
        but keeps the caps); per-symbol exposure; total exposure; minimum
        notional. ``proposal.size`` is not used. Exposure is ``qty × mark``
        (the entry price where ``marks`` has no mark), on either side. ``ts``
        (default ``proposal.created_at``) dates a denial; ``record=False`` (a
        preview) keeps it out of ``denials``.
        """
        _check_proposal(proposal)
        _require_decimal("equity", equity, positive=False)
        _check_marks(marks)
        if requested_qty is not None:
            _require_decimal("requested_qty", requested_qty, positive=True)
        if ts is not None:
            _require_ts("ts", ts)
        when = proposal.created_at if ts is None else ts
        with localcontext() as ctx:
            ctx.prec = _PRECISION
            exposures = self._exposures(positions, marks)
            reason = self._entry_denial(proposal, equity, positions, exposures, when)
            if reason is not None:
                decision = _denied(reason)
            else:
                decision = self._size_entry(proposal, equity, exposures, edge, requested_qty)
        if record and not decision.approved:
            self._denials.append(Denial(when, proposal.symbol, decision.reason))
        return decision

    def check_exit(self, ts: int, position: Position, qty: Decimal | None = None) -> RiskDecision:
        """Allow an exit in every state, as long as it does not exceed what is held.

        ``qty`` None closes the whole position.
        """
        _require_ts("ts", ts)
        if qty is not None:
            _require_decimal("qty", qty, positive=True)
        if position.qty == 0:
            return self._deny(ts, position.symbol, f"no open {position.symbol} position to exit")
        exit_qty = position.qty if qty is None else q_qty(qty)
        if exit_qty == 0:
            return self._deny(ts, position.symbol, f"exit qty {qty} rounds to 0")
        if exit_qty > position.qty:
            reason = f"exit qty {exit_qty} exceeds open {position.symbol} qty {position.qty}"
            return self._deny(ts, position.symbol, reason)
        return RiskDecision(True, exit_qty, f"exit of {exit_qty} {position.symbol} allowed")

    def snapshot(
        self, equity: Decimal, positions: Sequence[Position], marks: Mapping[str, Decimal]
    ) -> RiskSnapshot:
        """The risk pane's figures at ``equity``."""
        _require_decimal("equity", equity, positive=False)
        _check_marks(marks)
        limits = self._limits
        with localcontext() as ctx:
            ctx.prec = _PRECISION
            exposures = self._exposures(positions, marks)
            total = sum(exposures.values(), Decimal(0))
            account = self._account

            def share(notional: Decimal) -> float:
                return float(notional / equity) if equity > 0 else math.inf

            return RiskSnapshot(
                state=self._state,
                state_reason=self._state_reason,
                halted_by_limit=self._halted_by_limit,
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

    @staticmethod
    def _exposures(
        positions: Sequence[Position], marks: Mapping[str, Decimal]
    ) -> dict[str, Decimal]:
        exposures: dict[str, Decimal] = {}
        for index, position in enumerate(positions):
            if position.qty == 0:
                continue
            mark = marks.get(position.symbol)
            if mark is None:
                mark = position.entry_price
                _require_decimal(f"positions[{index}].entry_price", mark, positive=True)
            exposures[position.symbol] = (
                exposures.get(position.symbol, Decimal(0)) + position.qty * mark
            )
        return exposures

    def _entry_denial(
        self,
        proposal: Proposal,
        equity: Decimal,
        positions: Sequence[Position],
        exposures: Mapping[str, Decimal],
        when: int,
    ) -> str | None:
        limits = self._limits
        if self._state is not TradingState.ACTIVE:
            return f"trading {self._state} ({self._state_reason}): exits only"
        if equity <= 0:
            return f"equity {equity} leaves nothing to size against"
        account = self._account
        if account.day == when // MS_PER_DAY:
            daily_loss = account.daily_loss(equity)
            if daily_loss > to_decimal(limits.max_daily_loss):
                return f"daily loss {daily_loss:.1%} exceeds {limits.max_daily_loss:.1%}"
        drawdown = account.drawdown(equity)
        if drawdown > to_decimal(limits.max_drawdown):
            return f"drawdown {drawdown:.1%} exceeds {limits.max_drawdown:.1%}"
        if drawdown > to_decimal(limits.reduce_drawdown):
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
                seen[position.symbol] = self.correlation(proposal.symbol, position.symbol)
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

    def _size_entry(
        self,
        proposal: Proposal,
        equity: Decimal,
        exposures: Mapping[str, Decimal],
        edge: EdgeStats | None,
        requested_qty: Decimal | None,
    ) -> RiskDecision:
        limits = self._limits
        entry = proposal.entry
        symbol = proposal.symbol
        notes: list[str] = []
        cap = to_decimal(limits.max_position_fraction) * equity
        if requested_qty is not None:
            notional = requested_qty * entry
            notes.append(f"requested {requested_qty}")
        else:
            if edge is not None and edge.trades >= limits.min_trades_for_kelly:
                full = edge.kelly()
                fraction = limits.kelly_multiplier * full
                if fraction <= 0:
                    return _denied(
                        f"no edge: Kelly fraction 0 from {edge.trades} trades "
                        f"(win rate {edge.win_rate:.1%})"
                    )
                notes.append(f"Kelly {limits.kelly_multiplier:g}×{full:.3f}={fraction:.2%}")
            else:
                fraction = limits.default_risk_fraction
                notes.append(f"default {fraction:.2%}")
            # Float noise (0.25 × 0.4 = 0.09999999999999999) would cost a quantum of size.
            notional = to_decimal(fraction).quantize(_FRACTION_QUANTUM) * equity
        if notional > cap:
            notional = cap
            notes.append(f"position cap {limits.max_position_fraction:.1%}")
        if proposal.stop > 0:
            risk_cap = to_decimal(limits.max_risk_per_trade) * equity * entry
            risk_cap /= abs(entry - proposal.stop)
            if notional > risk_cap:
                notional = risk_cap
                notes.append(f"stop risk {limits.max_risk_per_trade:.1%}")
        if requested_qty is None:
            notional *= to_decimal(proposal.confidence)
            notes.append(f"confidence {proposal.confidence:.2f}")

        limit_hit: str | None = None
        symbol_room = to_decimal(limits.max_symbol_exposure) * equity - exposures.get(
            symbol, Decimal(0)
        )
        if notional > symbol_room:
            after = (exposures.get(symbol, Decimal(0)) + notional) / equity
            limit_hit = (
                f"{symbol} exposure {after:.1%} would exceed {limits.max_symbol_exposure:.1%}"
            )
            notional = max(symbol_room, Decimal(0))
            notes.append(f"{symbol} exposure headroom")
        total = sum(exposures.values(), Decimal(0))
        total_room = to_decimal(limits.max_total_exposure) * equity - total
        if notional > total_room:
            after = (total + notional) / equity
            limit_hit = f"total exposure {after:.1%} would exceed {limits.max_total_exposure:.1%}"
            notional = max(total_room, Decimal(0))
            notes.append("total exposure headroom")

        qty = q_qty(notional / entry)
        if qty * entry > notional:
            qty -= QTY_QUANTUM  # the division rounded up past a quantum
        value = qty * entry
        if qty <= 0 or value < limits.min_notional:
            if limit_hit is not None:
                return _denied(limit_hit)
            return _denied(
                f"size below minimum notional: {value:.2f} < {limits.min_notional} "
                f"({', '.join(notes)})"
            )
        return RiskDecision(True, qty, f"{qty} {symbol} ≈ {value:.2f}: {', '.join(notes)}")

    def _deny(self, ts: int, symbol: str, reason: str) -> RiskDecision:
        self._denials.append(Denial(ts, symbol, reason))
        return RiskDecision(False, Decimal(0), reason)
