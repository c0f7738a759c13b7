"""What a live entry order must meet after the risk limits: the live notional caps
and the market's precision and limits (through ccxt's own helpers); and what an exit
can send: the position's quantity rounded down to the market's step, or nothing where
what is held is too small to trade (dust).

A plain, synchronous object the core calls while it approves (the markets are
loaded before trading starts). The day's notional so far is stored with each
decision (``live_notional`` in the store's state), so a restart goes on counting.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from engine.config.sections import ExchangeSettings
from engine.exchange.rules import Refused, fit_order, round_amount
from engine.models import q_cash
from engine.ports import UnitOfWork
from engine.timeframes import DAY_MS

STATE_KEY = "live_notional"


class LiveGate:
    """The live caps per order and per UTC day, then the market's rules."""

    def __init__(self, exchange: Any, settings: ExchangeSettings) -> None:
        self.exchange = exchange
        self.max_order = settings.max_order_notional
        self.max_day = settings.max_daily_notional
        self.day = -1
        self.spent = Decimal(0)

    def restore(self, stored: str | None) -> None:
        """Put back the day's notional from the store's ``live_notional`` (``day:amount``)."""
        if not stored:
            return
        day, _, amount = stored.partition(":")
        try:
            self.day, self.spent = int(day), Decimal(amount)
        except (ValueError, ArithmeticError):
            self.day, self.spent = -1, Decimal(0)

    def _today(self, now: int) -> Decimal:
        return self.spent if now // DAY_MS == self.day else Decimal(0)

    def fit(self, symbol: str, qty: Decimal, price: Decimal, now: int) -> Decimal | str:
        if price <= 0:
            return "no price to value the order at"
        left = self.max_day - self._today(now)
        if left <= 0:
            return f"live daily notional cap {self.max_day} reached"
        cap = min(self.max_order, left)
        if qty * price > cap:
            qty = cap / price
        fitted = fit_order(self.exchange, symbol, qty, price)
        if isinstance(fitted, Refused):
            return fitted.reason
        return fitted.qty

    def fit_exit(self, symbol: str, qty: Decimal, price: Decimal) -> Decimal | str:
        """The quantity an exit of ``qty`` sends (rounded down to the step: no cap, an
        exit always goes out), or why ``qty`` is too small to trade at ``price`` (dust).
        An exit the market refuses for another reason (not trading now, above a
        maximum) still goes out, rounded down: the exchange says why."""
        fitted = fit_order(self.exchange, symbol, qty, price)
        if isinstance(fitted, Refused):
            return fitted.reason if fitted.small else round_amount(self.exchange, symbol, qty)
        return fitted.qty

    def record(self, work: UnitOfWork, symbol: str, qty: Decimal, price: Decimal, now: int) -> None:
        day = now // DAY_MS
        self.spent = self._today(now) + q_cash(qty * price)
        self.day = day
        work.set_state(STATE_KEY, f"{day}:{self.spent}")
