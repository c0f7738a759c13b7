"""Brokers: one interface, a paper implementation (a ccxt one plugs in beside it).

A broker never sees an order the risk manager has not passed, and never an
order whose intent is not already in the store.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from decimal import Decimal

from engine.models import Candle, Fill, OrderIntent, OrderSide, q_cash, q_price, to_decimal

BPS = Decimal("0.0001")


class Broker(ABC):
    """Where orders go and fills come from."""

    name: str = "broker"
    live: bool = False

    @abstractmethod
    def submit(self, intent: OrderIntent) -> None:
        """Accept a market order whose intent is stored; it fills at the next price."""

    @abstractmethod
    def on_candle(self, candle: Candle) -> list[Fill]:
        """Fills of open market orders in ``candle.symbol`` at this candle's open."""

    @abstractmethod
    def fill_now(self, intent: OrderIntent, price: Decimal, ts: int) -> Fill:
        """Fill an order at a known price (a triggered stop or take-profit)."""

    @abstractmethod
    def open_orders(self, symbol: str | None = None) -> list[OrderIntent]:
        """Orders accepted and not yet filled."""

    @abstractmethod
    def cancel(self, client_order_id: str) -> bool:
        """Cancel an open order; False if it is not open."""


class PaperBroker(Broker):
    """Simulated fills with fees and slippage; no look-ahead.

    A market order fills at the open of the next candle of its symbol, moved
    against the trader by ``slippage_bps``; the fee is ``fee_rate`` of the
    notional, rounded to the cash unit.
    """

    name = "paper"

    def __init__(self, fee_rate: Decimal, slippage_bps: Decimal) -> None:
        if not Decimal(0) <= fee_rate < 1:
            raise ValueError(f"fee_rate must lie in [0, 1), got {fee_rate}")
        if slippage_bps < 0:
            raise ValueError(f"slippage_bps must be >= 0, got {slippage_bps}")
        self.fee_rate = fee_rate
        self.slippage = slippage_bps * BPS
        self._open: dict[str, dict[str, OrderIntent]] = {}

    def submit(self, intent: OrderIntent) -> None:
        self._open.setdefault(intent.symbol, {})[intent.client_order_id] = intent

    def open_orders(self, symbol: str | None = None) -> list[OrderIntent]:
        if symbol is not None:
            return list(self._open.get(symbol, {}).values())
        return [i for orders in self._open.values() for i in orders.values()]

    def cancel(self, client_order_id: str) -> bool:
        return any(orders.pop(client_order_id, None) is not None for orders in self._open.values())

    def on_candle(self, candle: Candle) -> list[Fill]:
        orders = self._open.get(candle.symbol)
        if not orders:
            return []
        price = to_decimal(candle.open)
        fills = [self.fill_now(intent, price, candle.ts) for intent in orders.values()]
        orders.clear()
        return fills

    def fill_now(self, intent: OrderIntent, price: Decimal, ts: int) -> Fill:
        if price <= 0:
            raise ValueError(f"price must be > 0, got {price}")
        adverse = (
            Decimal(1) + self.slippage
            if intent.side is OrderSide.BUY
            else (Decimal(1) - self.slippage)
        )
        px = q_price(price * adverse)
        fee = q_cash(intent.qty * px * self.fee_rate)
        return Fill(
            client_order_id=intent.client_order_id,
            symbol=intent.symbol,
            side=intent.side,
            qty=intent.qty,
            price=px,
            fee=fee,
            ts=ts,
        )
