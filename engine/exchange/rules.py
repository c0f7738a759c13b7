"""A market's rules applied to an order before it is sent: precision and limits.

:func:`fit_order` rounds the quantity down to the market's amount step and the price to
its tick through ccxt's own helpers (``amount_to_precision`` truncates,
``price_to_precision`` rounds; ccxt handles the exchange's precision mode), then checks
the market's limits (``market(symbol)['limits']``: amount, price and cost, the cost
being the notional). An order that cannot meet them is :class:`Refused` with a reason a
person reads; the risk path denies the proposal with it.

A plain synchronous function on markets already loaded (``load_markets``): no network,
no ccxt import at module level (the exchange object brings ccxt with it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Any

__all__ = ["Fitted", "Refused", "fit_order", "round_amount"]


@dataclass(frozen=True, slots=True)
class Fitted:
    """The order as the market takes it: ``qty`` rounded down to the amount step (never
    up), ``price`` rounded to the tick; ``notional`` is their product."""

    symbol: str
    qty: Decimal
    price: Decimal

    @property
    def notional(self) -> Decimal:
        return self.qty * self.price


@dataclass(frozen=True, slots=True)
class Refused:
    """The order cannot meet the market's rules; ``reason`` says which, in words.
    ``small``: it is too small to trade (its amount rounds to 0 at the step, or is below
    the minimum amount, or its notional below the minimum), not refused for another
    reason (a market not trading, an amount or price above a maximum)."""

    symbol: str
    reason: str
    small: bool = field(default=False, compare=False)


def _decimal(value: Any) -> Decimal | None:
    """A limit of ccxt's (a float, or None where the market has none)."""
    return None if value is None else Decimal(str(value))


def _show(value: Decimal) -> str:
    """A number as a person writes it: no exponent, no trailing zeros."""
    return format(value.normalize(), "f")


def _show_notional(value: Decimal, like: Decimal) -> str:
    """``value`` with two more decimals than ``like`` has, and at least two."""
    exponent = like.normalize().as_tuple().exponent
    places = max(2, 2 - exponent) if isinstance(exponent, int) else 2
    return format(value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_DOWN), "f")


def _step(exchange: Any, precision: Any) -> str:
    """The amount step in words, ``step 0.001``, from a step (ccxt's TICK_SIZE mode) or
    a number of decimals (DECIMAL_PLACES). Significant digits never round to 0."""
    from ccxt.base.decimal_to_precision import DECIMAL_PLACES

    value = Decimal(str(precision))
    if exchange.precisionMode == DECIMAL_PLACES:
        value = Decimal(1).scaleb(-int(value))
    return f"step {_show(value)}"


def fit_order(exchange: Any, symbol: str, qty: Decimal, price: Decimal) -> Fitted | Refused:
    """``qty`` of ``symbol`` at ``price`` (a limit price, or the reference price of a
    market order) fitted to the market's precision and checked against its limits."""
    import ccxt

    if not exchange.markets:
        return Refused(symbol, f"the markets of {exchange.id} are not loaded")
    if symbol not in exchange.markets:
        return Refused(symbol, f"{exchange.id} has no market {symbol}")
    market = exchange.market(symbol)
    if market.get("active") is False:
        return Refused(symbol, f"{symbol} is not trading on {exchange.id} now")
    if not qty > 0:
        return Refused(symbol, f"amount {_show(qty)} must be above 0")
    if not price > 0:
        return Refused(symbol, f"price {_show(price)} must be above 0")
    base, quote = market.get("base") or "", market.get("quote") or ""
    try:
        fitted_qty = Decimal(exchange.amount_to_precision(symbol, format(qty, "f")))
    except ccxt.InvalidOrder:
        step = _step(exchange, market["precision"].get("amount"))
        return Refused(symbol, f"amount {_show(qty)} {base} rounds to 0 at {step}", small=True)
    try:
        fitted_price = Decimal(exchange.price_to_precision(symbol, format(price, "f")))
    except ccxt.InvalidOrder:
        return Refused(symbol, f"price {_show(price)} {quote} rounds to 0 at the market's tick")
    limits = market.get("limits") or {}
    amount = limits.get("amount") or {}
    prices = limits.get("price") or {}
    cost = limits.get("cost") or {}
    low, high = _decimal(amount.get("min")), _decimal(amount.get("max"))
    if low is not None and fitted_qty < low:
        return Refused(
            symbol,
            f"amount {_show(fitted_qty)} {base} below the market's minimum amount "
            f"{_show(low)} {base}",
            small=True,
        )
    if high is not None and fitted_qty > high:
        return Refused(
            symbol,
            f"amount {_show(fitted_qty)} {base} above the market's maximum amount "
            f"{_show(high)} {base}",
        )
    low, high = _decimal(prices.get("min")), _decimal(prices.get("max"))
    if low is not None and fitted_price < low:
        return Refused(
            symbol, f"price {_show(fitted_price)} {quote} below the minimum {_show(low)} {quote}"
        )
    if high is not None and fitted_price > high:
        return Refused(
            symbol, f"price {_show(fitted_price)} {quote} above the maximum {_show(high)} {quote}"
        )
    notional = fitted_qty * fitted_price
    low, high = _decimal(cost.get("min")), _decimal(cost.get("max"))
    if low is not None and notional < low:
        return Refused(
            symbol,
            f"notional {_show_notional(notional, low)} {quote} below the minimum "
            f"{_show(low)} {quote}",
            small=True,
        )
    if high is not None and notional > high:
        return Refused(
            symbol,
            f"notional {_show_notional(notional, high)} {quote} above the maximum "
            f"{_show(high)} {quote}",
        )
    return Fitted(symbol, fitted_qty, fitted_price)


def round_amount(exchange: Any, symbol: str, qty: Decimal) -> Decimal:
    """``qty`` rounded down to ``symbol``'s amount step (ccxt's ``amount_to_precision``,
    as ccxt sends it); ``qty`` itself where the market is unknown or it rounds to 0."""
    import ccxt

    if symbol not in (exchange.markets or {}):
        return qty
    try:
        return Decimal(exchange.amount_to_precision(symbol, format(qty, "f")))
    except ccxt.InvalidOrder:
        return qty
