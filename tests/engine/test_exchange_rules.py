"""engine.exchange.rules: orders fitted to a market's precision and limits through ccxt's
own helpers, on markets parsed by ccxt's binance class from exchangeInfo entries (no
network: fit_order works on loaded markets)."""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal
from typing import Any

import ccxt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.exchange.rules import Fitted, Refused, fit_order


def _info(
    symbol: str,
    base: str,
    quote: str,
    *,
    tick: str = "0.01",
    step: str = "0.00001",
    min_qty: str | None = None,
    max_qty: str = "9000",
    min_notional: str = "5",
    min_price: str | None = None,
    max_price: str = "1000000",
    status: str = "TRADING",
) -> dict[str, Any]:
    """One market as Binance's /api/v3/exchangeInfo lists it."""
    return {
        "symbol": symbol,
        "status": status,
        "baseAsset": base,
        "quoteAsset": quote,
        "baseAssetPrecision": 8,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "orderTypes": ["LIMIT", "MARKET"],
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "permissions": ["SPOT"],
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": min_price or tick,
                "maxPrice": max_price,
                "tickSize": tick,
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": min_qty or step,
                "maxQty": max_qty,
                "stepSize": step,
            },
            {"filterType": "NOTIONAL", "minNotional": min_notional, "maxNotional": "9000000"},
        ],
    }


def _exchange(*infos: dict[str, Any], exchange: Any = None) -> Any:
    exchange = exchange or ccxt.binance()
    exchange.options["crossMarginPairsData"] = []
    exchange.options["isolatedMarginPairsData"] = []
    exchange.markets = None
    exchange.set_markets([exchange.parse_market(info) for info in infos])
    return exchange


SHARED = ccxt.binance()  # built once: a ccxt exchange takes about 50 ms to make


@pytest.fixture(scope="module")
def binance() -> Any:
    return _exchange(
        _info("BTCUSDT", "BTC", "USDT", step="0.001", min_notional="10"),
        _info("ETHBTC", "ETH", "BTC", tick="0.00001", step="0.0001", min_notional="0.0001"),
        _info("OLDUSDT", "OLD", "USDT", status="BREAK"),
    )


def test_the_amount_is_rounded_down_to_the_step_and_the_price_to_the_tick(binance: Any) -> None:
    fitted = fit_order(binance, "BTC/USDT", Decimal("0.0129999"), Decimal("50000.006"))
    assert fitted == Fitted("BTC/USDT", Decimal("0.012"), Decimal("50000.01"))
    assert isinstance(fitted, Fitted) and fitted.notional == Decimal("600.00012")


@pytest.mark.parametrize(
    ("symbol", "qty", "price", "reason"),
    [
        (
            "BTC/USDT",
            "0.0004",
            "50000",
            "amount 0.0004 BTC rounds to 0 at step 0.001",
        ),
        (
            "BTC/USDT",
            "0.0001",
            "50000",
            "amount 0.0001 BTC rounds to 0 at step 0.001",
        ),
        ("BTC/USDT", "0.001", "4200", "notional 4.20 USDT below the minimum 10 USDT"),
        ("BTC/USDT", "0.0019", "9999.99", "notional 9.99 USDT below the minimum 10 USDT"),
        ("ETH/BTC", "0.0012", "0.05", "notional 0.000060 BTC below the minimum 0.0001 BTC"),
        ("BTC/USDT", "9001", "1", "amount 9001 BTC above the market's maximum amount 9000 BTC"),
        ("BTC/USDT", "1", "2000000", "price 2000000 USDT above the maximum 1000000 USDT"),
        ("BTC/USDT", "0", "100", "amount 0 must be above 0"),
        ("BTC/USDT", "1", "-1", "price -1 must be above 0"),
        ("DOGE/USDT", "1", "1", "binance has no market DOGE/USDT"),
        ("OLD/USDT", "1", "100", "OLD/USDT is not trading on binance now"),
    ],
)
def test_an_order_that_cannot_meet_the_rules_is_refused_in_words(
    binance: Any, symbol: str, qty: str, price: str, reason: str
) -> None:
    assert fit_order(binance, symbol, Decimal(qty), Decimal(price)) == Refused(symbol, reason)


def test_below_the_minimum_amount_names_the_minimum() -> None:
    exchange = _exchange(_info("BTCUSDT", "BTC", "USDT", step="0.001", min_qty="0.01"))
    assert fit_order(exchange, "BTC/USDT", Decimal("0.0099"), Decimal("50000")) == Refused(
        "BTC/USDT", "amount 0.009 BTC below the market's minimum amount 0.01 BTC"
    )


def test_a_price_below_the_markets_minimum_is_refused() -> None:
    exchange = _exchange(_info("BTCUSDT", "BTC", "USDT", min_price="1000"))
    assert fit_order(exchange, "BTC/USDT", Decimal(1), Decimal("999.99")) == Refused(
        "BTC/USDT", "price 999.99 USDT below the minimum 1000 USDT"
    )


@pytest.mark.parametrize(
    ("mode", "precision", "words"),
    [("DECIMAL_PLACES", 3, "step 0.001"), ("TICK_SIZE", 0.001, "step 0.001")],
)
def test_the_step_is_told_in_the_exchanges_precision_mode(
    mode: str, precision: int, words: str
) -> None:
    from ccxt.base import decimal_to_precision

    exchange = _exchange(_info("BTCUSDT", "BTC", "USDT", step="0.001"))
    exchange.precisionMode = getattr(decimal_to_precision, mode)
    exchange.markets["BTC/USDT"]["precision"]["amount"] = precision
    result = fit_order(exchange, "BTC/USDT", Decimal("0.00001"), Decimal(100))
    assert result == Refused("BTC/USDT", f"amount 0.00001 BTC rounds to 0 at {words}")


def test_markets_not_loaded_refuse_every_order() -> None:
    exchange = ccxt.binance()
    assert fit_order(exchange, "BTC/USDT", Decimal(1), Decimal(1)) == Refused(
        "BTC/USDT", "the markets of binance are not loaded"
    )


steps = st.sampled_from(["1", "0.1", "0.01", "0.001", "0.00001", "0.00000001", "0.5", "0.25"])
ticks = st.sampled_from(["1", "0.1", "0.01", "0.0001", "0.00000001", "0.5"])


@settings(max_examples=300, deadline=None)
@given(
    step=steps,
    tick=ticks,
    min_steps=st.integers(1, 50),
    min_notional=st.decimals("0.0001", "100", places=4),
    qty=st.decimals("0.00000001", "50000", places=8),
    price=st.decimals("0.00000001", "200000", places=8),
)
def test_a_fitted_order_meets_every_rule_and_a_refused_one_could_not(
    step: str,
    tick: str,
    min_steps: int,
    min_notional: Decimal,
    qty: Decimal,
    price: Decimal,
) -> None:
    min_qty = Decimal(step) * min_steps
    exchange = _exchange(
        _info(
            "ABCUSDT",
            "ABC",
            "USDT",
            tick=tick,
            step=step,
            min_qty=format(min_qty, "f"),
            max_qty="90000",
            min_notional=format(min_notional, "f"),
        ),
        exchange=SHARED,
    )
    result = fit_order(exchange, "ABC/USDT", qty, price)
    # The truth, computed here without ccxt: qty down to the step, price to the nearest tick.
    step_d, tick_d = Decimal(step), Decimal(tick)
    down = (qty / step_d).to_integral_value(rounding=ROUND_DOWN) * step_d
    if isinstance(result, Fitted):
        assert result.qty <= qty and result.qty == down
        assert result.qty % step_d == 0 and result.price % tick_d == 0
        assert abs(result.price - price) <= tick_d / 2
        assert result.qty >= min_qty and result.qty * result.price >= min_notional
        assert result.price >= tick_d
    else:
        assert isinstance(result, Refused) and result.reason
        near = (price / tick_d).to_integral_value() * tick_d
        assert (
            down < min_qty
            or down * near < min_notional
            or near < tick_d
            or down > 90000
            or down * near > 9000000
        )
