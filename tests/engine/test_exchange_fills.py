"""A ccxt order structure becomes one exact fill: what is held is what arrived (a buy's
fee taken in the base currency comes off the quantity), and the cash the fill moves is
what the exchange charged, whichever currency the fee was taken in."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from engine.exchange.broker import remote_of
from engine.models import CASH_QUANTUM, OrderSide

QTY = st.decimals(min_value=Decimal("0.0001"), max_value=Decimal(50), places=6)
PRICE = st.decimals(min_value=Decimal("0.01"), max_value=Decimal(100_000), places=2)
RATE = st.decimals(min_value=Decimal(0), max_value=Decimal("0.01"), places=4)


def _order(side: str, filled: Decimal, average: Decimal, fees: list[dict[str, object]]) -> dict:
    return {
        "clientOrderId": "ord-1",
        "side": side,
        "status": "closed",
        "amount": str(filled),
        "filled": str(filled),
        "average": str(average),
        "fees": fees,
        "timestamp": 1_700_000_000_000,
    }


@given(filled=QTY, average=PRICE, rate=RATE, in_base=st.booleans(), buy=st.booleans())
def test_the_cash_a_fill_moves_is_what_the_exchange_charged(
    filled: Decimal, average: Decimal, rate: Decimal, in_base: bool, buy: bool
) -> None:
    side = "buy" if buy else "sell"
    if in_base:
        fee = {"cost": str(filled * rate), "currency": "BTC"}
        charged = filled * rate * average
    else:
        fee = {"cost": str(filled * average * rate), "currency": "USDT"}
        charged = filled * average * rate
    fill = remote_of(_order(side, filled, average, [fee]), "BTC/USDT", "ord-1").fill()
    assert fill is not None and fill.side is (OrderSide.BUY if buy else OrderSide.SELL)
    if buy and in_base and rate > 0:
        assert fill.qty == filled - filled * rate  # held: what arrived
    else:
        assert fill.qty == filled
    # The cash the fill moves (out for a buy, in for a sell) is what the exchange moved.
    moved = fill.qty * fill.price + fill.fee if buy else fill.qty * fill.price - fill.fee
    # A buy's fee in the base currency is no cash: it comes off the quantity instead.
    paid = filled * average + (0 if in_base else charged)
    exchange = paid if buy else filled * average - charged
    assert abs(moved - exchange) <= filled * CASH_QUANTUM + 2 * CASH_QUANTUM
    assert abs(fill.fee - charged) <= CASH_QUANTUM


def test_a_fee_in_a_third_currency_is_not_cash_of_this_account() -> None:
    order = _order("buy", Decimal(1), Decimal(100), [{"cost": "0.01", "currency": "BNB"}])
    fill = remote_of(order, "BTC/USDT", "ord-1").fill()
    assert fill is not None and fill.fee == 0 and fill.qty == 1


def test_an_order_with_nothing_filled_makes_no_fill_and_an_average_from_the_cost() -> None:
    empty = _order("buy", Decimal(0), Decimal(0), [])
    assert remote_of(empty, "BTC/USDT", "ord-1").fill() is None
    costed = {**_order("buy", Decimal(2), Decimal(0), []), "average": None, "cost": "300"}
    fill = remote_of(costed, "BTC/USDT", "ord-1").fill()
    assert fill is not None and fill.price == Decimal(150)
