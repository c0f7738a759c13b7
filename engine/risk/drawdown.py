"""The drawdown monitor: sets the trading state (ACTIVE, REDUCING, HALTED) from the account.

The :class:`~engine.account.Account` owns the equity peak, the day's starting
equity, today's P&L and the day rollover; the monitor feeds it equity
(:meth:`DrawdownMonitor.on_equity`), reads the losses back and moves the state.
Each change comes back as a ``TradingStateChanged`` event (nautilus_trader's
``TradingStateChanged`` is the model) for the caller to store and announce.

* **Halts latch.** HALTED is left only by :meth:`~DrawdownMonitor.resume`, or,
  when ``auto_resume_next_day`` is set, by the first equity update of a new UTC
  day if the halt came from a limit (a person's ``halt()`` is never lifted by a
  timer) and the drawdown limit no longer applies. REDUCING is soft: it clears
  by itself once the drawdown is back within ``reduce_drawdown``.
* **Resume re-bases, and nothing else does.** ``resume()`` restarts the drawdown
  peak and the day's starting equity from the last equity seen, so the losses a
  person has just acknowledged do not re-trigger the halt on the next update; a
  further loss of the full limit halts again. REDUCING clearing by itself (or a
  halt lifted on a new day) keeps the peak.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, localcontext

from engine.account import Account
from engine.events import TradingStateChanged
from engine.models import TradingState, to_decimal
from engine.risk._inputs import PRECISION, require_decimal, require_int, require_text, require_ts
from engine.risk.limits import RiskLimits
from engine.timeframes import DAY_MS


def _utc_date(day: int) -> str:
    return datetime.fromtimestamp(day * DAY_MS / 1000, tz=UTC).date().isoformat()


class DrawdownMonitor:
    """The trading state and why, moved by the daily loss and the drawdown limits."""

    def __init__(
        self, limits: RiskLimits, account: Account, state: TradingState = TradingState.ACTIVE
    ) -> None:
        self._limits = limits
        self._account = account
        self._state = TradingState(state)
        self._reason = f"started {self._state}"
        # A HALTED start is treated like a person's halt: no timer lifts it.
        self._halted_by_limit = False
        # Why trading is held in REDUCING from outside the account (an exchange's open
        # circuit breaker): REDUCING does not clear by itself while it is set.
        self._hold: str | None = None

    @property
    def state(self) -> TradingState:
        """ACTIVE, REDUCING (exits only) or HALTED (exits only, until resumed)."""
        return self._state

    @property
    def reason(self) -> str:
        """Why the state is what it is."""
        return self._reason

    @property
    def halted_by_limit(self) -> bool:
        """HALTED by a limit rather than by a person; only such a halt may auto-resume."""
        return self._halted_by_limit

    def on_equity(self, ts: int, equity: Decimal) -> list[TradingStateChanged]:
        """Track the peak and the day's starting equity; halt or reduce on a breached limit."""
        require_ts("ts", ts)
        require_decimal("equity", equity, positive=False)
        account = self._account
        new_day = account.observe(ts, equity)
        limits = self._limits
        with localcontext() as ctx:
            ctx.prec = PRECISION
            daily_loss = account.daily_loss(equity)
            drawdown = account.drawdown(equity)
            over_daily = daily_loss > to_decimal(limits.max_daily_loss)
            over_max = drawdown > to_decimal(limits.max_drawdown)
            over_reduce = drawdown > to_decimal(limits.reduce_drawdown)
        if self._state is TradingState.HALTED:
            lift = new_day and limits.auto_resume_next_day and self._halted_by_limit
            if not lift or over_max:
                return []
            date = _utc_date(ts // DAY_MS)
            if self._hold is not None:
                return self._transition(ts, TradingState.REDUCING, self._hold)
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
        if self._hold is not None:
            if self._state is TradingState.ACTIVE:
                return self._transition(ts, TradingState.REDUCING, self._hold)
            return []
        if self._state is TradingState.REDUCING:
            reason = f"drawdown {drawdown:.1%} back within {limits.reduce_drawdown:.1%}"
            return self._transition(ts, TradingState.ACTIVE, reason)
        return []

    @property
    def held(self) -> str | None:
        """Why trading is held in REDUCING from outside (None: it is not)."""
        return self._hold

    def hold(self, ts: int, reason: str) -> list[TradingStateChanged]:
        """Exits only while ``reason`` lasts (until :meth:`release`): ACTIVE moves to
        REDUCING now; HALTED stays HALTED."""
        require_ts("ts", ts)
        require_text("reason", reason)
        self._hold = reason
        if self._state is TradingState.ACTIVE:
            return self._transition(ts, TradingState.REDUCING, reason)
        return []

    def release(self, ts: int, reason: str) -> list[TradingStateChanged]:
        """End a :meth:`hold`: REDUCING clears at once unless the drawdown keeps it."""
        require_ts("ts", ts)
        require_text("reason", reason)
        if self._hold is None:
            return []
        self._hold = None
        if self._state is not TradingState.REDUCING:
            return []
        with localcontext() as ctx:
            ctx.prec = PRECISION
            equity = self._account.last_equity
            if equity is not None and self._account.drawdown(equity) > to_decimal(
                self._limits.reduce_drawdown
            ):
                return []
        return self._transition(ts, TradingState.ACTIVE, reason)

    def halt(self, ts: int, reason: str) -> list[TradingStateChanged]:
        """Stop new entries until ``resume``. Exits stay allowed."""
        require_ts("ts", ts)
        require_text("reason", reason)
        # A person's halt, even on top of a limit's, is never lifted by a new day.
        self._halted_by_limit = False
        return self._transition(ts, TradingState.HALTED, reason)

    def resume(self, ts: int, reason: str) -> list[TradingStateChanged]:
        """Back to ACTIVE, re-basing the drawdown peak and the day's start on the last equity."""
        require_ts("ts", ts)
        require_text("reason", reason)
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
        require_decimal("peak_equity", peak_equity, positive=False)
        require_decimal("day_start_equity", day_start_equity, positive=False)
        require_int("day", day, 0)
        self._state = TradingState(state)
        self._reason = f"restored {self._state}"
        self._halted_by_limit = self._state is TradingState.HALTED and halted_by_limit
        self._account.restore(peak_equity, day_start_equity, day)

    def _transition(self, ts: int, new: TradingState, reason: str) -> list[TradingStateChanged]:
        if new is self._state:
            return []
        event = TradingStateChanged(ts=ts, old=self._state, new=new, reason=reason)
        if new is not TradingState.HALTED:
            self._halted_by_limit = False
        self._state = new
        self._reason = reason
        return [event]
