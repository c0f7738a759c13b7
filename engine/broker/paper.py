"""The paper broker: simulated fills with fees and slippage, and the paper brackets.

It is both the broker port's paper implementation and the simulated market the
synchronous core matches against: the core hands it orders with :meth:`accept`
at decision time and asks :meth:`on_candle` for the fills, so fills never
depend on when a store write finishes.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from engine.broker.port import Broker, Order, OrderStatus
from engine.ids import new_id
from engine.models import (
    Candle,
    Fill,
    OrderIntent,
    OrderSide,
    Side,
    q_cash,
    q_price,
    stop_or_take_profit,
    to_decimal,
)

BPS = Decimal("0.0001")

#: How many finished orders :meth:`PaperBroker.fetch_order` still finds.
_FINISHED_KEPT = 10_000


@dataclass(slots=True)
class Bracket:
    """A position's stop and take-profit, emulated on paper."""

    side: Side
    qty: Decimal
    stop: Decimal | None
    take_profit: Decimal | None


class PaperBroker(Broker):
    """Simulated fills with fees and slippage; no look-ahead.

    A market order fills at the open of the next candle of its symbol, moved
    against the trader by ``slippage_bps``; the fee is ``fee_rate`` of the
    notional, rounded to the cash unit. Each position's bracket (stop and
    take-profit, set when an entry fills, cleared on exit) triggers inside a
    candle after that candle's working orders filled: the stop first when both
    are hit, a gap through a level fills at the open.
    """

    name = "paper"

    def __init__(self, fee_rate: Decimal, slippage_bps: Decimal, *, matching: bool = True) -> None:
        if not Decimal(0) <= fee_rate < 1:
            raise ValueError(f"fee_rate must lie in [0, 1), got {fee_rate}")
        if slippage_bps < 0:
            raise ValueError(f"slippage_bps must be >= 0, got {slippage_bps}")
        self.fee_rate = fee_rate
        self.slippage = slippage_bps * BPS
        #: Whether candles fill the working orders. Off beside a live broker: the core
        #: still tracks its orders here, the exchange fills them (:meth:`settle`), and a
        #: position's stop or take-profit sends an exit order instead of filling on paper.
        self.matching = matching
        self._open: dict[str, dict[str, OrderIntent]] = {}
        #: The stop and take-profit each entry sets on its position when it fills.
        self._levels: dict[str, tuple[Decimal | None, Decimal | None]] = {}
        self._brackets: dict[str, Bracket] = {}
        #: Exit orders a triggered bracket made, until the core takes their intent.
        self._triggered: dict[str, OrderIntent] = {}
        self._finished: dict[str, Order] = {}

    # --- the simulated market (synchronous) ------------------------------------------

    def accept(
        self,
        intent: OrderIntent,
        stop: Decimal | None = None,
        take_profit: Decimal | None = None,
    ) -> None:
        """Take a market order; an entry's ``stop`` and ``take_profit`` become its
        position's bracket when it fills."""
        self._open.setdefault(intent.symbol, {})[intent.client_order_id] = intent
        if intent.purpose == "entry":
            self._levels[intent.client_order_id] = (stop, take_profit)

    def withdraw(self, client_order_id: str) -> OrderIntent | None:
        """Cancel a working order; the intent, or None if it is not working."""
        for orders in self._open.values():
            intent = orders.pop(client_order_id, None)
            if intent is not None:
                self._levels.pop(client_order_id, None)
                self._finish(intent, "cancelled")
                return intent
        return None

    def working(self, symbol: str | None = None) -> list[OrderIntent]:
        """Orders accepted and not yet filled."""
        if symbol is not None:
            return list(self._open.get(symbol, {}).values())
        return [i for orders in self._open.values() for i in orders.values()]

    def has_working(self) -> bool:
        """Whether any order waits for its fill."""
        return any(self._open.values())

    def restore_bracket(
        self, symbol: str, side: Side, qty: Decimal, stop: Decimal | None, tp: Decimal | None
    ) -> None:
        """Put back the bracket of a position recovered from the store."""
        if self.matching:
            self._brackets[symbol] = Bracket(side, qty, stop, tp)

    def active(self, symbol: str) -> bool:
        """Whether ``symbol`` has working orders or a bracket (a candle can fill)."""
        if not self.matching:
            return False
        return bool(self._open.get(symbol)) or symbol in self._brackets

    def settle(self, fill: Fill) -> bool:
        """A working order filled elsewhere (a live broker's fill): it stops working.
        False if it was not working here."""
        orders = self._open.get(fill.symbol)
        intent = orders.pop(fill.client_order_id, None) if orders is not None else None
        if intent is None:
            return False
        self._levels.pop(fill.client_order_id, None)
        self._finish(intent, "filled")
        return True

    def bracket(self, symbol: str) -> Bracket | None:
        return self._brackets.get(symbol)

    def on_candle(self, candle: Candle) -> list[Fill]:
        """Fills in ``candle.symbol``: working orders at the open, then a triggered bracket."""
        symbol = candle.symbol
        orders = self._open.get(symbol)
        if not orders and symbol not in self._brackets:
            return []
        fills: list[Fill] = []
        if orders:
            price = to_decimal(candle.open)
            for intent in orders.values():
                fills.append(self.fill_at(intent, price, candle.ts))
            orders.clear()
        bracket = self._brackets.get(symbol)
        if bracket is not None:
            hit = stop_or_take_profit(
                bracket.side,
                bracket.stop,
                bracket.take_profit,
                to_decimal(candle.open),
                to_decimal(candle.high),
                to_decimal(candle.low),
            )
            if hit is not None:
                intent = self.exit_intent(symbol, bracket.side, bracket.qty, hit[1], candle.ts)
                self._triggered[intent.client_order_id] = intent
                fills.append(self.fill_at(intent, hit[0], candle.ts))
        return fills

    def take_triggered(self, client_order_id: str) -> OrderIntent | None:
        """The exit order a bracket made for this fill (None for an order the core sent)."""
        return self._triggered.pop(client_order_id, None)

    @staticmethod
    def exit_intent(symbol: str, side: Side, qty: Decimal, reason: str, ts: int) -> OrderIntent:
        """A market order closing ``qty`` of a ``side`` position."""
        return OrderIntent(
            client_order_id=new_id("ord"),
            proposal_id=None,
            symbol=symbol,
            side=OrderSide.SELL if side is Side.LONG else OrderSide.BUY,
            qty=qty,
            purpose="exit",
            created_at=ts,
            reason=reason,
        )

    def fill_at(self, intent: OrderIntent, price: Decimal, ts: int) -> Fill:
        """Fill ``intent`` at ``price`` moved by the slippage, with its fee; the bracket
        follows (an entry sets it, an exit clears it)."""
        if price <= 0:
            raise ValueError(f"price must be > 0, got {price}")
        adverse = (
            Decimal(1) + self.slippage
            if intent.side is OrderSide.BUY
            else (Decimal(1) - self.slippage)
        )
        px = q_price(price * adverse)
        fee = q_cash(intent.qty * px * self.fee_rate)
        self._follow(intent)
        self._finish(intent, "filled")
        return Fill(
            client_order_id=intent.client_order_id,
            symbol=intent.symbol,
            side=intent.side,
            qty=intent.qty,
            price=px,
            fee=fee,
            ts=ts,
        )

    def _follow(self, intent: OrderIntent) -> None:
        symbol = intent.symbol
        if intent.purpose != "entry":
            self._brackets.pop(symbol, None)
            return
        stop, tp = self._levels.pop(intent.client_order_id, (None, None))
        side = Side.LONG if intent.side is OrderSide.BUY else Side.SHORT
        held = self._brackets.get(symbol)
        if held is None or held.side is not side:
            self._brackets[symbol] = Bracket(side, intent.qty, stop, tp)
            return
        held.qty += intent.qty
        if stop is not None:
            held.stop = stop
        if tp is not None:
            held.take_profit = tp

    def _finish(self, intent: OrderIntent, status: OrderStatus) -> None:
        if len(self._finished) >= _FINISHED_KEPT:
            self._finished.pop(next(iter(self._finished)))
        self._finished[intent.client_order_id] = Order.of(intent, status)

    # --- the broker port ------------------------------------------------------------

    async def submit(self, intent: OrderIntent) -> None:
        self.accept(intent)

    async def cancel(self, client_order_id: str) -> bool:
        return self.withdraw(client_order_id) is not None

    async def fetch_order(self, client_order_id: str) -> Order | None:
        for orders in self._open.values():
            intent = orders.get(client_order_id)
            if intent is not None:
                return Order.of(intent)
        return self._finished.get(client_order_id)

    async def open_orders(self, symbol: str | None = None) -> list[Order]:
        orders = sorted(self.working(symbol), key=lambda i: i.created_at)
        return [Order.of(i) for i in orders]

    async def balances(self) -> dict[str, Decimal]:
        """The paper broker holds no cash of its own: the account does."""
        return {}
