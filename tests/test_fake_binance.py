"""The local Binance-spot exchange (tests/fake_binance.py) against real ccxt.

Every test talks to a real server on 127.0.0.1 through ``ccxt.pro.binance`` (or
``ccxt.async_support.binance``), so what passes here is what the product's exchange code can
rely on. The fault tests pin which ccxt error class each failure arrives as.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import ccxt.async_support as ccxt_async
import ccxt.pro as ccxtpro
import pytest
from ccxt.base import errors
from fake_binance import (
    CCXT_OPTIONS,
    FakeBinance,
    client,
    load_candles,
    point,
)
from shared_data import shared_data_dir

BTC_USDT = shared_data_dir() / "binanceus_BTC-USDT_1m_2023-03.csv"
ETH_BTC = shared_data_dir() / "binance_ETH-BTC_5m_2018-01.csv"
LTC_BTC = shared_data_dir() / "binance_LTC-BTC_5m_2018-01.csv"
CANDLES = load_candles(BTC_USDT.resolve())
START = 500  # the fixture's cursor
FEE = Decimal("0.001")


@pytest.fixture
async def exchange(fake_binance: FakeBinance) -> AsyncIterator[Any]:
    """ccxt.pro binance with the test keys and its markets loaded."""
    ex = client(fake_binance)
    await ex.load_markets()
    yield ex
    await ex.close()


def d(value: Any) -> Decimal:
    return Decimal(str(value))


async def until(predicate: Any, limit: float = 5.0) -> None:
    """Poll ``predicate`` until it is true (a generous limit in seconds, no fixed sleeps)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not predicate():
        assert loop.time() < deadline, "the condition did not come true"
        await asyncio.sleep(0.005)


# -- markets, candles, tickers -----------------------------------------------------------


async def test_load_markets_asks_only_exchange_info_and_gets_precision_and_limits(
    fake_binance: FakeBinance,
) -> None:
    ex = client(fake_binance, keys=True)
    try:
        markets = await ex.load_markets()
    finally:
        await ex.close()
    market = markets["BTC/USDT"]
    assert (market["id"], market["spot"], market["active"]) == ("BTCUSDT", True, True)
    assert market["precision"]["price"] == 0.01
    assert market["precision"]["amount"] == 0.00001
    assert market["limits"]["amount"]["min"] == 0.00001
    assert market["limits"]["cost"]["min"] == 5
    # With the documented options, keys or not, no sapi/fapi/dapi endpoint is asked.
    assert [path for _, path, _ in fake_binance.requests] == ["/api/v3/exchangeInfo"]


async def test_without_the_options_ccxt_asks_futures_endpoints_the_fake_does_not_serve(
    fake_binance: FakeBinance,
) -> None:
    ex = ccxt_async.binance({"timeout_on_exit": 0})
    point(ex, fake_binance.url)
    try:
        with pytest.raises(errors.ExchangeNotAvailable, match="404"):
            await ex.load_markets()
    finally:
        await ex.close()
    assert "/fapi/v1/exchangeInfo" in [path for _, path, _ in fake_binance.requests]


async def test_fetch_ohlcv_pages_with_since_and_stops_at_the_forming_candle(
    exchange: Any, fake_binance: FakeBinance
) -> None:
    got: list[list[Any]] = []
    since = CANDLES[0].ts
    while True:
        page = await exchange.fetch_ohlcv("BTC/USDT", "1m", since=since, limit=200)
        if not page:
            break
        got.extend(page)
        since = page[-1][0] + 60_000
    assert len(got) == START + 1  # history and the forming candle, nothing after it
    assert [row[0] for row in got] == [c.ts for c in CANDLES[: START + 1]]
    closed = got[START - 1]
    c = CANDLES[START - 1]
    assert [d(v) for v in closed[1:]] == [c.open, c.high, c.low, c.close, c.volume]
    forming = got[START]
    o = CANDLES[START].open
    assert [d(v) for v in forming[1:]] == [o, o, o, o, Decimal(0)]
    # Paged as asked: three klines requests of at most 200, then one empty page.
    limits = [p["limit"] for m, path, p in fake_binance.requests if path == "/api/v3/klines"]
    assert limits == ["200"] * 4


async def test_fetch_ohlcv_without_since_gives_the_latest_candles(exchange: Any) -> None:
    rows = await exchange.fetch_ohlcv("BTC/USDT", "1m", limit=3)
    assert [r[0] for r in rows] == [c.ts for c in CANDLES[START - 2 : START + 1]]


async def test_fetch_ohlcv_up_to_an_end_time(exchange: Any) -> None:
    rows = await exchange.fetch_ohlcv("BTC/USDT", "1m", limit=5, params={"until": CANDLES[100].ts})
    assert [r[0] for r in rows] == [c.ts for c in CANDLES[96:101]]
    assert [d(r[4]) for r in rows] == [c.close for c in CANDLES[96:101]]


async def test_klines_of_another_interval_or_symbol_are_refused(exchange: Any) -> None:
    with pytest.raises(errors.BadRequest):
        await exchange.fetch_ohlcv("BTC/USDT", "5m", limit=3)
    with pytest.raises(errors.BadSymbol):
        await exchange.public_get_klines({"symbol": "DOGEUSDT", "interval": "1m"})


async def test_ticker_and_time_follow_the_cursor(exchange: Any, fake_binance: FakeBinance) -> None:
    ticker = await exchange.fetch_ticker("BTC/USDT")
    assert d(ticker["last"]) == CANDLES[START].open
    assert ticker["bid"] < ticker["ask"]
    assert await exchange.fetch_time() == CANDLES[START].ts
    await fake_binance.advance(2)
    ticker = await exchange.fetch_ticker("BTC/USDT")
    assert d(ticker["last"]) == CANDLES[START + 2].open
    assert await exchange.fetch_time() == CANDLES[START + 2].ts
    prices = await exchange.public_get_ticker_price()
    assert prices == [{"symbol": "BTCUSDT", "price": f"{CANDLES[START + 2].open:.8f}"}]


async def test_markets_of_several_files_share_one_timeframe() -> None:
    async with FakeBinance([ETH_BTC, LTC_BTC], start=10) as fake:
        ex = client(fake, keys=False)
        try:
            markets = await ex.load_markets()
            assert {"ETH/BTC", "LTC/BTC"} <= set(markets)
            assert markets["ETH/BTC"]["limits"]["cost"]["min"] == 0.0001
            rows = await ex.fetch_ohlcv("LTC/BTC", "5m", limit=2)
        finally:
            await ex.close()
    ltc = load_candles(LTC_BTC.resolve())
    assert [r[0] for r in rows] == [ltc[9].ts, ltc[10].ts]
    with pytest.raises(ValueError, match="one timeframe"):
        FakeBinance([ETH_BTC, BTC_USDT])


def test_point_rewrites_every_api_url_and_keeps_the_paths() -> None:
    ex = ccxtpro.binance()
    point(ex, "http://127.0.0.1:4321")
    api = ex.urls["api"]
    assert api["public"] == "http://127.0.0.1:4321/api/v3"
    assert api["fapiPublic"] == "http://127.0.0.1:4321/fapi/v1"
    assert api["ws"]["spot"] == "ws://127.0.0.1:4321/ws"
    assert api["ws"]["ws-api"]["spot"] == "ws://127.0.0.1:4321/ws-api/v3"
    strings = json.dumps(api)
    assert "binance.com" not in strings
    assert "https://" not in strings


# -- account and orders ------------------------------------------------------------------


async def test_balance_of_the_quote_currency(exchange: Any) -> None:
    balance = await exchange.fetch_balance()
    assert (balance["USDT"]["free"], balance["USDT"]["used"]) == (10000.0, 0.0)
    assert balance["BTC"]["total"] == 0.0


async def test_market_order_fills_at_the_next_open_with_the_fee_in_quote(
    exchange: Any, fake_binance: FakeBinance
) -> None:
    order = await exchange.create_order(
        "BTC/USDT", "market", "buy", 0.01, params={"clientOrderId": "cma-buy-1"}
    )
    assert (order["clientOrderId"], order["status"]) == ("cma-buy-1", "open")
    assert fake_binance.orders["cma-buy-1"].status == "NEW"
    await fake_binance.advance()
    fetched = await exchange.fetch_order(
        None, "BTC/USDT", params={"origClientOrderId": "cma-buy-1"}
    )
    price = CANDLES[START + 1].open
    assert fetched["status"] == "closed"
    assert d(fetched["average"]) == price
    assert d(fetched["filled"]) == Decimal("0.01")
    cost = Decimal("0.01") * price
    fee = (cost * FEE).quantize(Decimal("1e-8"))
    trades = await exchange.fetch_order_trades(fetched["id"], "BTC/USDT")
    assert [(d(t["price"]), d(t["fee"]["cost"]), t["fee"]["currency"]) for t in trades] == [
        (price, fee, "USDT")
    ]
    balance = await exchange.fetch_balance()
    assert d(balance["BTC"]["free"]) == Decimal("0.01")
    assert d(balance["USDT"]["free"]) == Decimal(10000) - cost - fee
    assert d(balance["USDT"]["used"]) == 0
    # And back: a market sell pays the fee in USDT too.
    await exchange.create_order("BTC/USDT", "market", "sell", 0.01, params={"clientOrderId": "s"})
    await fake_binance.advance()
    sell_price = CANDLES[START + 2].open
    proceeds = Decimal("0.01") * sell_price
    sell_fee = (proceeds * FEE).quantize(Decimal("1e-8"))
    balance = await exchange.fetch_balance()
    assert d(balance["BTC"]["total"]) == 0
    expected = Decimal(10000) - cost - fee + proceeds - sell_fee
    assert d(balance["USDT"]["total"]) == expected


async def test_the_post_answer_carries_the_fills_of_an_already_filled_order(
    exchange: Any, fake_binance: FakeBinance
) -> None:
    # A limit order above the next open fills there; its fill shows in GET /_fake/orders.
    price = CANDLES[START + 1].open + 100
    await exchange.create_order(
        "BTC/USDT", "limit", "buy", 0.01, price, params={"clientOrderId": "l"}
    )
    await fake_binance.advance()
    async with aiohttp.ClientSession() as http, http.get(fake_binance.url + "/_fake/orders") as r:
        orders = await r.json()
    assert orders["l"]["status"] == "FILLED"
    assert orders["l"]["fills"][0]["price"] == f"{CANDLES[START + 1].open:.8f}"
    assert orders["l"]["fills"][0]["commissionAsset"] == "USDT"


async def test_limit_order_rests_locks_funds_and_fills_when_the_range_reaches_it(
    exchange: Any, fake_binance: FakeBinance
) -> None:
    # A price the next candle opens above but trades down to.
    candle = CANDLES[START + 1]
    assert candle.low < candle.open
    price = candle.low
    await exchange.create_order(
        "BTC/USDT", "limit", "buy", 0.01, price, params={"clientOrderId": "r"}
    )
    balance = await exchange.fetch_balance()
    locked = (Decimal("0.01") * price * (1 + FEE)).quantize(Decimal("1e-8"))
    assert d(balance["USDT"]["used"]) == locked
    assert [o["clientOrderId"] for o in await exchange.fetch_open_orders("BTC/USDT")] == ["r"]
    await fake_binance.advance()  # opens above the price: still working
    assert (await exchange.fetch_order(None, "BTC/USDT", {"origClientOrderId": "r"}))[
        "status"
    ] == "open"
    await fake_binance.advance()  # the candle closes having traded down to the price
    order = await exchange.fetch_order(None, "BTC/USDT", {"origClientOrderId": "r"})
    assert (order["status"], d(order["average"])) == ("closed", price)
    assert await exchange.fetch_open_orders() == []


async def test_open_orders_with_and_without_symbol_and_cancel_gives_funds_back(
    exchange: Any,
) -> None:
    await exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 10000, {"clientOrderId": "a"})
    await exchange.create_order("BTC/USDT", "limit", "buy", 0.02, 10000, {"clientOrderId": "b"})
    assert {o["clientOrderId"] for o in await exchange.fetch_open_orders()} == {"a", "b"}
    assert len(await exchange.fetch_open_orders("BTC/USDT")) == 2
    order = await exchange.fetch_order(None, "BTC/USDT", {"origClientOrderId": "a"})
    cancelled = await exchange.cancel_order(order["id"], "BTC/USDT")
    assert cancelled["status"] == "canceled"
    assert [o["clientOrderId"] for o in await exchange.fetch_open_orders()] == ["b"]
    balance = await exchange.fetch_balance()
    assert d(balance["USDT"]["used"]) == (Decimal("0.02") * 10000 * (1 + FEE))
    with pytest.raises(errors.OrderNotFound):
        await exchange.cancel_order(order["id"], "BTC/USDT")
    [rest] = await exchange.cancel_all_orders("BTC/USDT")
    assert (rest["clientOrderId"], rest["status"]) == ("b", "canceled")
    assert (await exchange.fetch_balance())["USDT"]["used"] == 0


async def test_duplicate_client_order_id_is_refused(
    exchange: Any, fake_binance: FakeBinance
) -> None:
    await exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 10000, {"clientOrderId": "x"})
    with pytest.raises(errors.InvalidOrder, match="Duplicate order sent"):
        await exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 10000, {"clientOrderId": "x"})
    assert list(fake_binance.orders) == ["x"]


async def test_refusals_arrive_as_ccxt_error_classes(exchange: Any) -> None:
    with pytest.raises(errors.InsufficientFunds):
        await exchange.create_order("BTC/USDT", "market", "buy", 10)
    with pytest.raises(errors.BadRequest, match="NOTIONAL"):
        await exchange.create_order("BTC/USDT", "limit", "buy", 0.0001, 20000)
    # ccxt rounds amounts itself; sent raw, a quantity off the lot step is -1013 LOT_SIZE.
    with pytest.raises(errors.InvalidOrder, match="LOT_SIZE"):
        await exchange.private_post_order(
            {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.010001"}
        )
    with pytest.raises(errors.OrderNotFound):
        await exchange.fetch_order("999", "BTC/USDT")
    with pytest.raises(errors.OrderNotFound):
        await exchange.fetch_order(None, "BTC/USDT", {"origClientOrderId": "nobody"})


async def test_signed_requests_need_the_right_key_and_secret(fake_binance: FakeBinance) -> None:
    wrong_secret = client(fake_binance, secret="not-the-secret")
    wrong_key = client(fake_binance, apiKey="not-the-key")
    try:
        with pytest.raises(errors.AuthenticationError, match="-1022"):
            await wrong_secret.fetch_balance()
        with pytest.raises(errors.AuthenticationError, match="-2015"):
            await wrong_key.fetch_balance()
    finally:
        await wrong_secret.close()
        await wrong_key.close()
    # The log keeps the parameters but never the signature.
    assert all("signature" not in params for _, _, params in fake_binance.requests)


# -- websocket ---------------------------------------------------------------------------


BY_TS = {c.ts: c for c in CANDLES}


def is_closed(row: list[Any]) -> bool:
    """A watched candle that carries its recorded values (a forming one has volume 0)."""
    c = BY_TS[row[0]]
    return [d(v) for v in row[1:]] == [c.open, c.high, c.low, c.close, c.volume]


async def watch_until_closed(exchange: Any, ts: int) -> list[Any]:
    """watch_ohlcv until a candle opened at ``ts`` or later arrives closed."""
    while True:
        rows = await exchange.watch_ohlcv("BTC/USDT", "1m")
        for row in rows:
            if row[0] >= ts and is_closed(row):
                return list(row)


async def test_watch_ohlcv_sees_the_forming_candle_then_its_close(
    exchange: Any, fake_binance: FakeBinance
) -> None:
    first = await asyncio.wait_for(exchange.watch_ohlcv("BTC/USDT", "1m"), 5)
    assert first[-1][0] == CANDLES[START].ts
    watching = asyncio.ensure_future(watch_until_closed(exchange, CANDLES[START].ts))
    await fake_binance.advance()
    row = await asyncio.wait_for(watching, 5)
    c = CANDLES[START]
    assert [d(v) for v in row[1:]] == [c.open, c.high, c.low, c.close, c.volume]


async def test_watch_ohlcv_for_symbols_and_watch_trades(
    exchange: Any, fake_binance: FakeBinance
) -> None:
    got = await asyncio.wait_for(exchange.watch_ohlcv_for_symbols([["BTC/USDT", "1m"]]), 5)
    assert got["BTC/USDT"]["1m"][-1][0] == CANDLES[START].ts
    trades = asyncio.ensure_future(exchange.watch_trades("BTC/USDT"))
    await until(lambda: sum(1 for m, _, p in fake_binance.requests if m == "WS" and p) >= 2)
    await fake_binance.advance()
    [trade] = await asyncio.wait_for(trades, 5)
    assert d(trade["price"]) == CANDLES[START].close
    assert trade["timestamp"] == CANDLES[START + 1].ts - 1


async def test_watch_ohlcv_for_symbols_sees_every_symbol_close() -> None:
    eth, ltc = load_candles(ETH_BTC.resolve()), load_candles(LTC_BTC.resolve())
    async with FakeBinance([ETH_BTC, LTC_BTC], start=20) as fake:
        ex = client(fake, keys=False)
        try:
            await ex.load_markets()
            wanted = [["ETH/BTC", "5m"], ["LTC/BTC", "5m"]]
            closed: dict[str, list[Any]] = {}
            await asyncio.wait_for(ex.watch_ohlcv_for_symbols(wanted), 5)
            await fake.advance()
            async with asyncio.timeout(5):
                while len(closed) < 2:
                    got = await ex.watch_ohlcv_for_symbols(wanted)
                    for symbol, by_tf in got.items():
                        for row in by_tf["5m"]:
                            if row[0] == eth[20].ts and row[5]:
                                closed[symbol] = row
        finally:
            await ex.close()
    assert d(closed["ETH/BTC"][4]) == eth[20].close
    assert d(closed["LTC/BTC"][4]) == ltc[20].close


async def test_interval_mode_advances_by_itself() -> None:
    async with FakeBinance([BTC_USDT], start=50, interval=0.05) as fake:
        ex = client(fake, keys=False)
        try:
            await ex.load_markets()
            row = await asyncio.wait_for(watch_until_closed(ex, CANDLES[51].ts), 5)
            assert row[0] >= CANDLES[51].ts  # closed by the server's own clock
            before = fake.cursor
            now = await ex.fetch_time()
            after = fake.cursor
            assert CANDLES[before].ts <= now < CANDLES[after + 1].ts
        finally:
            await ex.close()


async def test_raw_kline_stream_acknowledges_and_alternates_forming_and_closed() -> None:
    # What ccxt relies on, seen on the wire: the SUBSCRIBE answer, the forming candle at
    # once, its update half-way, then each close ("x": true) followed by the next forming.
    seen: list[tuple[int, bool]] = []
    async with (
        FakeBinance([BTC_USDT], start=50, interval=0.1) as fake,
        aiohttp.ClientSession() as http,
        http.ws_connect(fake.url + "/stream") as ws,
    ):
        await ws.send_json({"method": "SUBSCRIBE", "params": ["btcusdt@kline_1m"], "id": 7})
        assert await ws.receive_json(timeout=5) == {"result": None, "id": 7}
        while sum(closed for _, closed in seen) < 2:
            frame = await ws.receive_json(timeout=5)
            assert frame["stream"] == "btcusdt@kline_1m"
            kline = frame["data"]["k"]
            seen.append((kline["t"], kline["x"]))
    first = seen[0][0]
    assert first >= CANDLES[50].ts
    closes = [i for i, (_, closed) in enumerate(seen) if closed]
    # A whole candle is sent forming twice (on opening and half-way), then closed; the one
    # forming when we subscribed was sent at least once (at the subscription).
    for n, i in enumerate(closes):
        ts = seen[i][0]
        forming = [t for t, closed in seen[:i] if t == ts and not closed]
        assert len(forming) == 2 if n else len(forming) >= 1
        assert seen[i + 1 :][:1] in ([], [(ts + 60_000, False)])
    assert [t for t, _ in seen] == sorted(t for t, _ in seen)


async def test_websocket_pings_are_answered(fake_binance: FakeBinance) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(fake_binance.url + "/ws", autoping=False) as ws,
    ):
        await ws.ping(b"still there?")
        pong = await ws.receive(timeout=5)
        assert (pong.type, pong.data) == (aiohttp.WSMsgType.PONG, b"still there?")


async def test_ws_close_drops_watchers_and_a_new_watch_reconnects(
    exchange: Any, fake_binance: FakeBinance
) -> None:
    await asyncio.wait_for(exchange.watch_ohlcv("BTC/USDT", "1m"), 5)
    pending = asyncio.ensure_future(exchange.watch_ohlcv("BTC/USDT", "1m"))
    await asyncio.sleep(0)
    fake_binance.fault("ws_close")
    with pytest.raises(errors.NetworkError):
        await asyncio.wait_for(pending, 5)
    again = await asyncio.wait_for(exchange.watch_ohlcv("BTC/USDT", "1m"), 5)
    assert again[-1][0] == CANDLES[START].ts
    connects = [path for method, path, _ in fake_binance.requests if method == "GET"]
    assert connects.count("/ws/0") == 2


# -- faults ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "count", "error"),
    [
        ("429", 1, errors.DDoSProtection),
        ("418", 1, errors.DDoSProtection),
        ("500", 1, errors.ExchangeNotAvailable),
        ("503", 1, errors.ExchangeNotAvailable),
        ("timeout", 1, errors.RequestTimeout),
        # aiohttp silently retries a GET once when a kept-alive connection drops.
        ("drop", 2, errors.ExchangeNotAvailable),
    ],
)
async def test_each_fault_surfaces_as_its_ccxt_error(
    fake_binance: FakeBinance, kind: str, count: int, error: type[Exception]
) -> None:
    ex = client(fake_binance)
    try:
        await ex.load_markets()
        fake_binance.fault(kind, path="/api/v3/ticker/24hr", count=count, seconds=3.0)
        ex.timeout = 300  # ms, well under the 3 s the "timeout" fault holds its answer
        with pytest.raises(error) as raised:
            await ex.fetch_ticker("BTC/USDT")
        ex.timeout = 10_000
        # RateLimitExceeded is a subclass of DDoSProtection: ccxt's binance maps HTTP 418/429
        # to DDoSProtection before it reads the -1003 body.
        assert type(raised.value) is error
        assert isinstance(raised.value, errors.NetworkError)
        # The fault is used up: the next request is answered.
        assert (await ex.fetch_ticker("BTC/USDT"))["last"]
    finally:
        await ex.close()


async def test_drop_once_is_retried_by_aiohttp_for_a_get(fake_binance: FakeBinance) -> None:
    ex = client(fake_binance)
    try:
        await ex.load_markets()
        fake_binance.fault("drop", path="/api/v3/ticker/24hr")
        assert (await ex.fetch_ticker("BTC/USDT"))["last"]
    finally:
        await ex.close()
    paths = [path for _, path, _ in fake_binance.requests]
    assert paths.count("/api/v3/ticker/24hr") == 2


async def test_rate_limit_answers_carry_retry_after_and_binance_bodies(
    fake_binance: FakeBinance,
) -> None:
    fake_binance.fault("429", path="/api/v3/ping", retry_after=7)
    fake_binance.fault("418", path="/api/v3/ping", retry_after=60)
    async with aiohttp.ClientSession() as http:
        async with http.get(fake_binance.url + "/api/v3/ping") as r:
            assert (r.status, r.headers["Retry-After"]) == (429, "7")
            assert (await r.json())["code"] == -1003
        async with http.get(fake_binance.url + "/api/v3/ping") as r:
            assert (r.status, r.headers["Retry-After"]) == (418, "60")
            assert "banned" in (await r.json())["msg"]
        async with http.get(fake_binance.url + "/api/v3/ping") as r:
            assert (r.status, await r.json()) == (200, {})


async def test_malformed_json_is_not_an_error_for_ccxt(
    exchange: Any, fake_binance: FakeBinance
) -> None:
    # ccxt cannot parse the body and hands back the text: the structures come back empty.
    # The product must check what it gets (an order without id, candles of None).
    fake_binance.fault("malformed", path="/api/v3/ticker/24hr")
    ticker = await exchange.fetch_ticker("BTC/USDT")
    assert ticker["last"] is None
    fake_binance.fault("malformed", path="/api/v3/order")
    order = await exchange.create_order(
        "BTC/USDT", "limit", "buy", 0.01, 10000, {"clientOrderId": "m"}
    )
    assert order["id"] is None
    assert "m" in fake_binance.orders  # yet the exchange took it
    fake_binance.fault("malformed", path="/api/v3/klines")
    rows = await exchange.fetch_ohlcv("BTC/USDT", "1m", limit=2)
    assert rows == [[None] * 6] * 2


async def test_lost_response_leaves_the_order_on_the_server(
    exchange: Any, fake_binance: FakeBinance
) -> None:
    fake_binance.fault("lost_response", path="/api/v3/order")
    with pytest.raises(errors.NetworkError) as raised:
        await exchange.create_order(
            "BTC/USDT", "market", "buy", 0.01, params={"clientOrderId": "L"}
        )
    assert type(raised.value) is errors.ExchangeNotAvailable
    assert "L" in fake_binance.orders
    posts = [p for m, path, p in fake_binance.requests if (m, path) == ("POST", "/api/v3/order")]
    assert len(posts) == 1  # neither ccxt nor aiohttp sent it again
    found = await exchange.fetch_order(None, "BTC/USDT", {"origClientOrderId": "L"})
    assert (found["clientOrderId"], found["status"]) == ("L", "open")


async def test_a_timed_out_order_was_still_placed(exchange: Any, fake_binance: FakeBinance) -> None:
    fake_binance.fault("timeout", path="/api/v3/order", seconds=3.0)
    exchange.timeout = 300
    with pytest.raises(errors.RequestTimeout):
        await exchange.create_order(
            "BTC/USDT", "market", "buy", 0.01, params={"clientOrderId": "T"}
        )
    exchange.timeout = 10_000
    found = await exchange.fetch_order(None, "BTC/USDT", {"origClientOrderId": "T"})
    assert (found["clientOrderId"], found["status"]) == ("T", "open")


async def test_hold_orders_stores_the_order_and_answers_on_release(
    exchange: Any, fake_binance: FakeBinance
) -> None:
    fake_binance.hold_orders()
    placing = asyncio.ensure_future(
        exchange.create_order("BTC/USDT", "market", "buy", 0.01, params={"clientOrderId": "H"})
    )
    await asyncio.wait_for(fake_binance.order_received.wait(), 5)
    assert fake_binance.orders_received == 1
    assert "H" in fake_binance.orders
    assert not placing.done()
    fake_binance.release()
    order = await asyncio.wait_for(placing, 5)
    assert order["clientOrderId"] == "H"


def test_unknown_fault_kind_is_refused() -> None:
    fake = FakeBinance([BTC_USDT])
    with pytest.raises(ValueError, match="unknown fault"):
        fake.fault("gremlins")


# -- subprocess mode ---------------------------------------------------------------------


async def test_subprocess_mode_serves_until_sigterm_and_is_controlled_over_http() -> None:
    script = Path(__file__).with_name("fake_binance.py")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        "--data",
        str(BTC_USDT),
        "--start",
        "100",
        "--api-key",
        "k",
        "--api-secret",
        "s",
        "--balance",
        "USDT=250",
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 10)).decode()
        assert line.startswith("listening http://127.0.0.1:")
        url = line.split()[1]
        ex = ccxt_async.binance(
            {
                "apiKey": "k",
                "secret": "s",
                "timeout_on_exit": 0,
                "options": dict(CCXT_OPTIONS),
            }
        )
        point(ex, url)
        try:
            balance = await ex.fetch_balance()
            assert balance["USDT"]["free"] == 250
            async with aiohttp.ClientSession() as http:
                async with http.post(url + "/_fake/advance", json={"n": 3}) as r:
                    assert (await r.json())["cursor"] == 103
                assert await ex.fetch_time() == CANDLES[103].ts
                fault = {"kind": "503", "path": "/api/v3/time"}
                async with http.post(url + "/_fake/fault", json=fault) as r:
                    assert r.status == 200
                with pytest.raises(errors.ExchangeNotAvailable):
                    await ex.fetch_time()
                async with http.post(url + "/_fake/fault", json={"kind": "nope"}) as r:
                    assert r.status == 400
                await ex.create_order(
                    "BTC/USDT", "limit", "buy", 0.001, 20000, {"clientOrderId": "p"}
                )
                async with http.get(url + "/_fake/orders") as r:
                    assert list(await r.json()) == ["p"]
                async with http.get(url + "/_fake/status") as r:
                    assert (await r.json())["ordersReceived"] == 1
                # Held: the order is stored, its answer waits for the release.
                async with http.post(url + "/_fake/hold") as r:
                    assert r.status == 200
                placing = asyncio.ensure_future(
                    ex.create_order(
                        "BTC/USDT", "market", "buy", 0.001, params={"clientOrderId": "h"}
                    )
                )
                status: dict[str, Any] = {}

                async def held() -> bool:
                    async with http.get(url + "/_fake/status") as r:
                        status.update(await r.json())
                    return bool(status["ordersReceived"] == 2 and status["held"])

                async with asyncio.timeout(5):
                    while not await held():
                        assert not placing.done()
                        await asyncio.sleep(0.01)
                async with http.post(url + "/_fake/release") as r:
                    assert r.status == 200
                assert (await asyncio.wait_for(placing, 5))["clientOrderId"] == "h"
                async with http.get(url + "/_fake/requests") as r:
                    paths = [path for _, path, _ in await r.json()]
                assert paths.count("/api/v3/time") == 2
        finally:
            await ex.close()
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 10) == 0
