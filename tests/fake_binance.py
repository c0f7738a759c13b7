"""A local Binance-spot exchange for tests: real ccxt talks to it over 127.0.0.1.

It is a test fixture, not a product: one aiohttp server that speaks the part of the
Binance SPOT REST and websocket API that ccxt 4.5 (``ccxt.async_support.binance`` and
``ccxt.pro.binance``) uses, replaying the shared candle files (tests/shared_data.py).

Data and clock
    Each file ``<exchange>_<BASE>-<QUOTE>_<timeframe>_<period>.csv`` is one market
    (``BTC-USDT`` -> ``BTC/USDT``, market id ``BTCUSDT``); all files of one server share one
    timeframe and should cover the same period. A cursor (one index into every file,
    ``start=500`` by default) splits the candles: before it is closed history, at it is the
    candle now forming. The forming candle
    is drawn as one that has just opened (open = high = low = close, volume 0).
    ``await fake.advance(n)`` closes it (a websocket kline with ``"x": true`` and one trade),
    starts the next one and fills working orders. With ``interval=SECONDS`` a background task
    advances by itself, and half-way sends the forming candle again (``update_forming()``).
    Timestamps are the data's own; ``/api/v3/time`` is the forming candle's open plus the
    elapsed fraction of the interval (0 without ``interval``).

Orders (the paper broker's rules)
    MARKET orders fill at the open of the next candle (on the next advance). A LIMIT order
    that is marketable at that open fills there; otherwise it rests and fills at its price
    when a later candle's range reaches it. The fee is 0.1 % of the cost, in the quote
    currency, reported in the order's ``fills`` (POST answer) and by ``/api/v3/myTrades``.
    With ``buy_fee_in_base=True`` (``--buy-fee-in-base``) a buy pays it as Binance does for
    an account without BNB: 0.1 % of the quantity in the base currency (8 decimals), so
    the base balance grows by the quantity less the fee (off the lot step).
    Balances move with fills; LIMIT orders lock their funds (``locked``), MARKET orders lock
    the estimated cost at the forming candle's open. Filters are checked like Binance
    (-1013 ``Filter failure: LOT_SIZE|PRICE_FILTER|NOTIONAL``); an insufficient balance or a
    client order id already known gives -2010. Requests are not checked against
    ``recvWindow`` (ccxt signs with wall time, the data is from the past).

Signed endpoints
    Given ``api_key``/``api_secret`` the server checks the ``X-MBX-APIKEY`` header (-2015,
    HTTP 401) and the HMAC-SHA256 ``signature`` (-1022, HTTP 400); without them it accepts any.

What the product must set on the ccxt exchange (so ``load_markets`` asks only
``/api/v3/exchangeInfo``, no sapi/fapi/dapi endpoint)::

    options = {
        "defaultType": "spot",
        "fetchMarkets": {"types": ["spot"]},   # default also loads linear + inverse (fapi/dapi)
        "fetchCurrencies": False,              # True with keys calls sapi capital/config/getall
        "fetchMargins": False,                 # True with keys calls sapi margin pairs
        "warnOnFetchOpenOrdersWithoutSymbol": False,  # else fetch_open_orders() raises
    }

and then ``point(exchange, fake.url)``: every URL of ``exchange.urls["api"]`` (REST and the
pro ``ws`` entries) gets this server's scheme://host, keeping its path.

In-process use::

    async with FakeBinance([shared_data_dir() / "binanceus_BTC-USDT_1m_2023-03.csv"]) as fake:
        exchange = ccxt.pro.binance({"options": OPTIONS, "timeout": 500})
        point(exchange, fake.url)
        ...

(the ``fake_binance`` fixture of tests/conftest.py does this with BTC/USDT 1m).

Faults: ``fake.fault(kind, path=None, count=1, **opts)`` makes the next ``count`` requests to
``path`` (any path when None) misbehave. These never reach the exchange: "429" (Retry-After
header, ``retry_after`` seconds, default 1; body -1003), "418" (IP ban, same), "500", "503",
"drop" (the connection is closed without an answer; aiohttp silently sends a GET again once
on a kept-alive connection, so drop a GET with count=2). These are carried out and then the
answer goes wrong: "timeout" (the answer waits ``seconds``, default 2.0), "malformed" (200 with
broken JSON), "lost_response" (POST /api/v3/order: the order is stored, the connection is
dropped). "ws_close" closes every websocket at once. ``fake.hold_orders()`` makes POST
/api/v3/order store the order and then wait for ``fake.release()`` before answering;
``fake.order_received`` (an asyncio.Event) is set and ``fake.orders_received`` counts up when
an order is stored.
``fake.requests`` lists ``(method, path, params)`` of every request (the signature left out;
a websocket connects as ("GET", "/ws/0", {}) then ("WS", "/ws/0", {}), and each message it
sends is ("WS", path, {"method", "params"})). ``fake.orders`` maps client order id -> the
``Order`` (``.status``, ``.executed``, ``.fills``, ``.as_json()`` for Binance's JSON).

Subprocess use (end-to-end tests)::

    python tests/fake_binance.py --data FILE... [--start N] [--interval S]
        [--api-key K --api-secret S] [--balance USDT=10000 ...] [--buy-fee-in-base]

prints ``listening http://127.0.0.1:PORT`` and serves until SIGTERM/SIGINT (exit 0). The keys
may come from FAKE_BINANCE_API_KEY / FAKE_BINANCE_API_SECRET instead of the arguments. Control
over HTTP: POST /_fake/fault (JSON {kind, path, count, ...opts}), POST /_fake/advance (JSON
{n}), POST /_fake/hold, POST /_fake/release, POST /_fake/ws_close, GET /_fake/orders (client
order id -> Binance order JSON with fills), GET /_fake/requests, GET /_fake/status (cursor,
serverTime, ordersReceived, held, websockets).

Endpoints served (under /api/v3): GET ping, time, exchangeInfo, ticker/24hr, ticker/price,
ticker/bookTicker, klines (uiKlines too); signed: GET account, POST/GET/DELETE order, GET and
DELETE openOrders, GET myTrades. Websocket: /ws, /ws/<anything>, /stream (combined frames
{"stream", "data"}) with SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS; streams
``<id>@kline_<timeframe>`` and ``<id>@trade``. Anything else under /api/v3 is a 404.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import csv
import functools
import hashlib
import hmac
import itertools
import json
import math
import os
import re
import signal
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from aiohttp import WSCloseCode, WSMsgType, web

FEE_RATE = Decimal("0.001")
USD_LIKE = {"USDT", "USDC", "USD", "BUSD", "FDUSD", "TUSD", "DAI"}
MIN_NOTIONAL = {"BTC": Decimal("0.0001"), "ETH": Decimal("0.001"), "BNB": Decimal("0.01")}
TIMEFRAME_MS = {
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "8h": 28_800_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
}
FAULT_KINDS = {"429", "418", "500", "503", "timeout", "drop", "malformed", "lost_response"}
_FILE_NAME = re.compile(r"^[^_]+_(?P<base>[A-Za-z0-9]+)-(?P<quote>[A-Za-z0-9]+)_(?P<tf>\w+?)_")


def fmt(value: Decimal) -> str:
    """A number as Binance writes it: a string with 8 decimals."""
    return f"{value:.8f}"


@dataclass(frozen=True)
class Candle:
    ts: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


@functools.lru_cache(maxsize=32)
def load_candles(path: Path) -> tuple[Candle, ...]:
    """The candles of one CSV file (cached: tests start many servers on the same files)."""
    with path.open(newline="") as handle:
        return tuple(
            Candle(
                int(row["timestamp"]),
                Decimal(row["open"]),
                Decimal(row["high"]),
                Decimal(row["low"]),
                Decimal(row["close"]),
                Decimal(row["volume"]),
            )
            for row in csv.DictReader(handle)
        )


def _decimals(text: Decimal) -> int:
    exponent = text.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


@dataclass
class Market:
    """One symbol: its candles and the filters Binance would publish for it."""

    base: str
    quote: str
    timeframe: str
    candles: tuple[Candle, ...]
    tick_size: Decimal = Decimal(0)
    step_size: Decimal = Decimal(0)
    min_notional: Decimal = Decimal(0)

    @functools.cached_property
    def timestamps(self) -> list[int]:
        return [c.ts for c in self.candles]

    @property
    def id(self) -> str:
        return self.base + self.quote

    @property
    def symbol(self) -> str:
        return f"{self.base}/{self.quote}"

    @classmethod
    def from_file(cls, path: Path) -> Market:
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise ValueError(f"{path.name}: not <exchange>_<BASE>-<QUOTE>_<timeframe>_...csv")
        candles = load_candles(path.resolve())
        market = cls(match["base"].upper(), match["quote"].upper(), match["tf"], candles)
        # Realistic filters from the data: the tick is the finest price step of the file,
        # the lot step makes one step worth about a tenth of the minimum notional.
        sample = candles[: min(len(candles), 2000)]
        decimals = max(_decimals(c.open) for c in sample)
        decimals = max(decimals, *(_decimals(c.close) for c in sample))
        market.tick_size = Decimal(1).scaleb(-decimals)
        quote = market.quote
        market.min_notional = (
            Decimal(5) if quote in USD_LIKE else MIN_NOTIONAL.get(quote, Decimal(1))
        )
        price = sample[0].open
        exponent = math.floor(math.log10(market.min_notional / price)) - 1
        market.step_size = Decimal(1).scaleb(exponent)
        return market

    def info(self) -> dict[str, Any]:
        """The market as /api/v3/exchangeInfo lists it."""
        return {
            "symbol": self.id,
            "status": "TRADING",
            "baseAsset": self.base,
            "baseAssetPrecision": 8,
            "quoteAsset": self.quote,
            "quotePrecision": 8,
            "quoteAssetPrecision": 8,
            "baseCommissionPrecision": 8,
            "quoteCommissionPrecision": 8,
            "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
            "icebergAllowed": True,
            "ocoAllowed": True,
            "quoteOrderQtyMarketAllowed": True,
            "allowTrailingStop": False,
            "cancelReplaceAllowed": True,
            "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "filters": [
                {
                    "filterType": "PRICE_FILTER",
                    "minPrice": fmt(self.tick_size),
                    "maxPrice": fmt(Decimal(1_000_000)),
                    "tickSize": fmt(self.tick_size),
                },
                {
                    "filterType": "LOT_SIZE",
                    "minQty": fmt(self.step_size),
                    "maxQty": fmt(Decimal(9_000_000)),
                    "stepSize": fmt(self.step_size),
                },
                {
                    "filterType": "NOTIONAL",
                    "minNotional": fmt(self.min_notional),
                    "applyMinToMarket": True,
                    "maxNotional": fmt(Decimal(9_000_000)),
                    "applyMaxToMarket": False,
                    "avgPriceMins": 5,
                },
            ],
            "permissions": [],
            "permissionSets": [["SPOT"]],
            "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
            "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
        }


class BinanceError(Exception):
    """An error answer: HTTP status and Binance's {"code", "msg"} body."""

    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg

    def response(self) -> web.Response:
        return web.json_response({"code": self.code, "msg": self.msg}, status=self.status)


@dataclass
class Fault:
    kind: str
    path: str | None
    count: int
    opts: dict[str, Any] = field(default_factory=dict)


MALFORMED = '{"symbol": "BTCUSDT", "pri'
PARAMS = web.RequestKey("params", dict)
SIGNATURE = web.RequestKey("signature", object)
BODY = web.RequestKey("body", str)
FAULT = web.RequestKey("fault", object)
COMBINED = web.ResponseKey("combined", bool)


@dataclass
class Order:
    """One order as the exchange keeps it; ``as_json`` writes Binance's fields."""

    order_id: int
    client_id: str
    market: Market
    side: str  # BUY | SELL
    type: str  # MARKET | LIMIT
    quantity: Decimal
    price: Decimal  # 0 for MARKET
    time_in_force: str
    time: int
    live_from: int  # the first candle index this order can fill in
    status: str = "NEW"
    executed: Decimal = Decimal(0)
    cumulative_quote: Decimal = Decimal(0)
    update_time: int = 0
    locked_asset: str = ""
    locked: Decimal = Decimal(0)
    fills: list[dict[str, Any]] = field(default_factory=list)

    @property
    def is_open(self) -> bool:
        return self.status in ("NEW", "PARTIALLY_FILLED")

    def as_json(self, *, with_fills: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {
            "symbol": self.market.id,
            "orderId": self.order_id,
            "orderListId": -1,
            "clientOrderId": self.client_id,
            "price": fmt(self.price),
            "origQty": fmt(self.quantity),
            "executedQty": fmt(self.executed),
            "cummulativeQuoteQty": fmt(self.cumulative_quote),
            "status": self.status,
            "timeInForce": self.time_in_force,
            "type": self.type,
            "side": self.side,
            "stopPrice": fmt(Decimal(0)),
            "icebergQty": fmt(Decimal(0)),
            "time": self.time,
            "updateTime": self.update_time or self.time,
            "isWorking": True,
            "workingTime": self.time,
            "origQuoteOrderQty": fmt(Decimal(0)),
            "selfTradePreventionMode": "EXPIRE_MAKER",
        }
        if with_fills:
            body["transactTime"] = self.update_time or self.time
            body["fills"] = [
                {k: v for k, v in fill.items() if k not in ("id", "time", "orderId")}
                for fill in self.fills
            ]
        return body


#: The ccxt options the product must set so that nothing but the spot API is asked.
CCXT_OPTIONS: dict[str, Any] = {
    "defaultType": "spot",
    "fetchMarkets": {"types": ["spot"]},
    "fetchCurrencies": False,
    "fetchMargins": False,
    "warnOnFetchOpenOrdersWithoutSymbol": False,
}
#: The keys the ``fake_binance`` fixture's server checks (test values, not secrets).
TEST_API_KEY = "fake-binance-test-key"
TEST_API_SECRET = "fake-binance-test-secret"


def client(fake: FakeBinance, *, pro: bool = True, keys: bool = True, **config: Any) -> Any:
    """A real ccxt binance (``ccxt.pro`` or ``ccxt.async_support``) pointed at ``fake``.

    ``keys`` gives it the fixture's test keys; ``config`` goes to the ccxt constructor
    (``timeout`` in ms defaults to 10 000; ccxt's own throttle is off, the fake has no rate
    limit and the throttle would cost seconds: fetch_open_orders() without a symbol weighs
    40 x 50 ms). The caller closes it (``await exchange.close()``).
    """
    if pro:
        import ccxt.pro as module
    else:
        import ccxt.async_support as module
    settings: dict[str, Any] = {
        "timeout": 10_000,
        "enableRateLimit": False,
        "timeout_on_exit": 0,  # close() would wait 250 ms for TLS that 127.0.0.1 does not use
        "options": dict(CCXT_OPTIONS),
    }
    if keys:
        settings.update(
            apiKey=fake.api_key or TEST_API_KEY, secret=fake.api_secret or TEST_API_SECRET
        )
    settings.update(config)
    exchange = module.binance(settings)
    point(exchange, fake.url)
    return exchange


def point(exchange: Any, base_url: str) -> None:
    """Send every API URL of a ccxt exchange to ``base_url``, keeping each URL's path.

    ``https://api.binance.com/api/v3`` -> ``http://127.0.0.1:PORT/api/v3`` and (ccxt.pro)
    ``wss://stream.binance.com:9443/ws`` -> ``ws://127.0.0.1:PORT/ws``; nested dicts too.
    """
    target = urlsplit(base_url)
    secure = target.scheme == "https"

    def rewrite(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: rewrite(item) for key, item in value.items()}
        if isinstance(value, str) and "://" in value:
            parts = urlsplit(value)
            scheme = ("wss" if secure else "ws") if parts.scheme in ("ws", "wss") else target.scheme
            return urlunsplit((scheme, target.netloc, parts.path, parts.query, parts.fragment))
        return value

    exchange.urls["api"] = rewrite(exchange.urls["api"])


class FakeBinance:
    """The server. Start it with ``async with`` (or ``await start()`` / ``await stop()``)."""

    def __init__(
        self,
        data: Iterable[Path | str],
        *,
        start: int = 500,
        interval: float | None = None,
        api_key: str | None = None,
        api_secret: str | None = None,
        balances: Mapping[str, Decimal | str | int] | None = None,
        port: int = 0,
        buy_fee_in_base: bool = False,
    ) -> None:
        self.buy_fee_in_base = buy_fee_in_base
        self.markets: dict[str, Market] = {}
        for path in data:
            market = Market.from_file(Path(path))
            self.markets[market.id] = market
        if not self.markets:
            raise ValueError("FakeBinance needs at least one candle file")
        timeframes = {m.timeframe for m in self.markets.values()}
        if len(timeframes) != 1:
            raise ValueError(f"all files of one server share one timeframe, got {timeframes}")
        self.timeframe = timeframes.pop()
        self.tf_ms = TIMEFRAME_MS[self.timeframe]
        self.length = min(len(m.candles) for m in self.markets.values())
        if not 0 <= start < self.length:
            raise ValueError(f"start={start} is outside the data (0..{self.length - 1})")
        self.cursor = start
        self.interval = interval
        self.api_key, self.api_secret = api_key, api_secret
        self.balances: dict[str, list[Decimal]] = {}  # asset -> [free, locked]
        if balances is None:
            balances = {
                m.quote: Decimal(10_000) if m.quote in USD_LIKE else Decimal(1)
                for m in self.markets.values()
            }
        for asset, amount in balances.items():
            self.balances[asset.upper()] = [Decimal(str(amount)), Decimal(0)]
        for market in self.markets.values():
            for asset in (market.base, market.quote):
                self.balances.setdefault(asset, [Decimal(0), Decimal(0)])
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.orders: dict[str, Order] = {}
        self.trades: list[dict[str, Any]] = []
        self.order_received = asyncio.Event()
        self.orders_received = 0
        self.faults: list[Fault] = []
        self._ids = itertools.count(1)
        self._trade_ids = itertools.count(1)
        self._released = asyncio.Event()
        self._released.set()
        self._sockets: dict[web.WebSocketResponse, set[str]] = {}
        self._advanced_at = time.monotonic()
        self._lock = asyncio.Lock()
        self._port = port
        self._runner: web.AppRunner | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.url = ""

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> FakeBinance:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_route("*", "/api/v3/{name:.*}", self._api)
        for prefix in ("/ws", "/stream"):
            app.router.add_get(prefix, self._websocket)
            app.router.add_get(prefix + "/{tail:.*}", self._websocket)
        app.router.add_post("/_fake/fault", self._control_fault)
        app.router.add_post("/_fake/advance", self._control_advance)
        app.router.add_post("/_fake/hold", self._control_hold)
        app.router.add_post("/_fake/release", self._control_release)
        app.router.add_post("/_fake/ws_close", self._control_ws_close)
        app.router.add_get("/_fake/orders", self._control_orders)
        app.router.add_get("/_fake/requests", self._control_requests)
        app.router.add_get("/_fake/status", self._control_status)
        self._runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=0.1
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self._port)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        self._advanced_at = time.monotonic()
        if self.interval:
            self._ticker = asyncio.create_task(self._tick())
        return self

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        self._released.set()
        await self.close_websockets()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeBinance:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _tick(self) -> None:
        # Half-way through each interval the forming candle is sent again (as Binance sends
        # updates of a forming kline), then the interval ends with its close.
        assert self.interval
        while self.cursor + 1 < self.length:
            await asyncio.sleep(self.interval / 2)
            await self.update_forming()
            await asyncio.sleep(self.interval / 2)
            await self.advance()

    # -- test controls -----------------------------------------------------------------

    def fault(self, kind: str, path: str | None = None, count: int = 1, **opts: Any) -> None:
        """The next ``count`` requests to ``path`` (any when None) misbehave as ``kind``."""
        if kind == "ws_close":
            task = asyncio.get_running_loop().create_task(self.close_websockets())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}")
        self.faults.append(Fault(kind, path, count, dict(opts)))

    def hold_orders(self) -> None:
        """POST /api/v3/order stores the order, then waits for release() to answer."""
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    async def close_websockets(self) -> None:
        for ws in list(self._sockets):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"fake: closed")
        self._sockets.clear()

    async def advance(self, n: int = 1) -> None:
        """Close the forming candle ``n`` times (fills, websocket events)."""
        for _ in range(n):
            async with self._lock:
                if self.cursor + 1 >= self.length:
                    raise RuntimeError("the fake exchange ran out of candles")
                closing = self.cursor
                self._fill_resting(closing)
                self.cursor += 1
                self._advanced_at = time.monotonic()
                self._fill_at_open(self.cursor)
            for market in self.markets.values():
                closed = market.candles[closing]
                await self._broadcast(market, "kline", self._kline_event(market, closing, True))
                trade = {
                    "e": "trade",
                    "E": closed.ts + self.tf_ms - 1,
                    "s": market.id,
                    "t": next(self._trade_ids),
                    "p": fmt(closed.close),
                    "q": fmt(closed.volume),
                    "T": closed.ts + self.tf_ms - 1,
                    "m": False,
                    "M": True,
                }
                await self._broadcast(market, "trade", trade)
                await self._broadcast(
                    market, "kline", self._kline_event(market, self.cursor, False)
                )

    async def update_forming(self) -> None:
        """Send the forming candle to its subscribers again (an update with ``"x": false``)."""
        for market in self.markets.values():
            await self._broadcast(market, "kline", self._kline_event(market, self.cursor, False))

    # -- candles -----------------------------------------------------------------------

    def candle(self, market: Market, index: int) -> Candle:
        """Candle ``index`` as the outside sees it: the forming one has only just opened."""
        candle = market.candles[index]
        if index < self.cursor:
            return candle
        o = candle.open
        return Candle(candle.ts, o, o, o, o, Decimal(0))

    def server_time(self) -> int:
        ts = self.markets[next(iter(self.markets))].candles[self.cursor].ts
        if not self.interval:
            return ts
        fraction = min(1.0, (time.monotonic() - self._advanced_at) / self.interval)
        return ts + int(fraction * (self.tf_ms - 1))

    def price(self, market: Market) -> Decimal:
        """The last price: the forming candle's open."""
        return market.candles[self.cursor].open

    def _kline_event(self, market: Market, index: int, closed: bool) -> dict[str, Any]:
        c = self.candle(market, index) if not closed else market.candles[index]
        return {
            "e": "kline",
            "E": c.ts + (self.tf_ms - 1 if closed else 0),
            "s": market.id,
            "k": {
                "t": c.ts,
                "T": c.ts + self.tf_ms - 1,
                "s": market.id,
                "i": self.timeframe,
                "f": 0,
                "L": 0,
                "o": fmt(c.open),
                "c": fmt(c.close),
                "h": fmt(c.high),
                "l": fmt(c.low),
                "v": fmt(c.volume),
                "n": 0,
                "x": closed,
                "q": fmt(c.volume * c.close),
                "V": fmt(Decimal(0)),
                "Q": fmt(Decimal(0)),
                "B": "0",
            },
        }

    # -- orders ------------------------------------------------------------------------

    def _fill(self, order: Order, price: Decimal, when: int) -> None:
        market = order.market
        qty = order.quantity
        cost = qty * price
        in_base = order.side == "BUY" and self.buy_fee_in_base
        fee = ((qty if in_base else cost) * FEE_RATE).quantize(Decimal("1e-8"))
        fee_asset = market.base if in_base else market.quote
        base, quote = self.balances[market.base], self.balances[market.quote]
        # Give back what the order locked, then move the real amounts.
        held = self.balances[order.locked_asset]
        held[1] -= order.locked
        held[0] += order.locked
        order.locked = Decimal(0)
        if in_base:
            quote[0] -= cost
            base[0] += qty - fee
        elif order.side == "BUY":
            quote[0] -= cost + fee
            base[0] += qty
        else:
            base[0] -= qty
            quote[0] += cost - fee
        trade = {
            "symbol": market.id,
            "id": next(self._trade_ids),
            "orderId": order.order_id,
            "orderListId": -1,
            "price": fmt(price),
            "qty": fmt(qty),
            "quoteQty": fmt(cost),
            "commission": fmt(fee),
            "commissionAsset": fee_asset,
            "time": when,
            "isBuyer": order.side == "BUY",
            "isMaker": order.type == "LIMIT",
            "isBestMatch": True,
        }
        self.trades.append(trade)
        order.fills.append(
            {
                "price": fmt(price),
                "qty": fmt(qty),
                "commission": fmt(fee),
                "commissionAsset": fee_asset,
                "tradeId": trade["id"],
            }
        )
        order.executed = qty
        order.cumulative_quote = cost
        order.status = "FILLED"
        order.update_time = when

    def _fill_at_open(self, index: int) -> None:
        for order in self.orders.values():
            if not order.is_open or order.live_from > index:
                continue
            candle = order.market.candles[index]
            if (
                order.type == "MARKET"
                or (order.side == "BUY" and candle.open <= order.price)
                or (order.side == "SELL" and candle.open >= order.price)
            ):
                self._fill(order, candle.open, candle.ts)

    def _fill_resting(self, index: int) -> None:
        for order in self.orders.values():
            if not order.is_open or order.type != "LIMIT" or order.live_from > index:
                continue
            candle = order.market.candles[index]
            reached = (
                candle.low <= order.price if order.side == "BUY" else candle.high >= order.price
            )
            if reached:
                self._fill(order, order.price, candle.ts + self.tf_ms - 1)

    def _new_order(self, params: Mapping[str, str]) -> Order:
        market = self._market(params)
        side = params.get("side", "").upper()
        kind = params.get("type", "").upper()
        if side not in ("BUY", "SELL"):
            raise BinanceError(400, -1117, "Invalid side.")
        if kind not in ("MARKET", "LIMIT"):
            raise BinanceError(400, -1116, "Invalid orderType.")
        client_id = params.get("newClientOrderId") or f"fake-{next(self._ids)}"
        if client_id in self.orders:
            raise BinanceError(400, -2010, "Duplicate order sent.")
        try:
            quantity = Decimal(params["quantity"])
            price = Decimal(params.get("price", "0")) if kind == "LIMIT" else Decimal(0)
        except (KeyError, ArithmeticError) as error:
            raise BinanceError(
                400, -1102, "Mandatory parameter 'quantity' was not sent, was empty/null."
            ) from error
        if kind == "LIMIT" and price <= 0:
            raise BinanceError(400, -1102, "Mandatory parameter 'price' was not sent.")
        if quantity < market.step_size or quantity % market.step_size != 0:
            raise BinanceError(400, -1013, "Filter failure: LOT_SIZE")
        if kind == "LIMIT" and price % market.tick_size != 0:
            raise BinanceError(400, -1013, "Filter failure: PRICE_FILTER")
        reference = price if kind == "LIMIT" else self.price(market)
        if quantity * reference < market.min_notional:
            raise BinanceError(400, -1013, "Filter failure: NOTIONAL")
        if side == "BUY":
            asset = market.quote
            need = (quantity * reference * (1 + FEE_RATE)).quantize(Decimal("1e-8"))
        else:
            asset, need = market.base, quantity
        balance = self.balances[asset]
        if balance[0] < need:
            raise BinanceError(400, -2010, "Account has insufficient balance for requested action.")
        balance[0] -= need
        balance[1] += need
        now = self.server_time()
        order = Order(
            order_id=next(self._ids),
            client_id=client_id,
            market=market,
            side=side,
            type=kind,
            quantity=quantity,
            price=price,
            time_in_force=params.get("timeInForce", "GTC") if kind == "LIMIT" else "GTC",
            time=now,
            live_from=self.cursor + 1,
            locked_asset=asset,
            locked=need,
        )
        self.orders[client_id] = order
        return order

    def _find_order(self, params: Mapping[str, str]) -> Order | None:
        market = self._market(params)
        client_id = params.get("origClientOrderId")
        order_id = params.get("orderId")
        for order in self.orders.values():
            if order.market is not market:
                continue
            if client_id is not None and order.client_id == client_id:
                return order
            if order_id is not None and str(order.order_id) == order_id:
                return order
        return None

    def _market(self, params: Mapping[str, str]) -> Market:
        market = self.markets.get(params.get("symbol", ""))
        if market is None:
            raise BinanceError(400, -1121, "Invalid symbol.")
        return market

    # -- HTTP --------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/_fake/"):
            return await handler(request)
        params = dict(parse_qsl(request.query_string, keep_blank_values=True))
        body = await request.text() if request.can_read_body else ""
        params.update(parse_qsl(body, keep_blank_values=True))
        signature = params.pop("signature", None)
        self.requests.append((request.method, request.path, dict(params)))
        request[PARAMS], request[SIGNATURE], request[BODY] = params, signature, body
        fault = self._take_fault(request.path)
        request[FAULT] = fault
        if fault is None or fault.kind in ("lost_response", "timeout", "malformed"):
            # These reach the exchange: the request is carried out, the answer goes wrong.
            response = await handler(request)
            if fault is not None and fault.kind == "timeout":
                await asyncio.sleep(float(fault.opts.get("seconds", 2.0)))
            if fault is not None and fault.kind == "malformed":
                return web.Response(text=MALFORMED, content_type="application/json")
            return response
        # These never reach it.
        if fault.kind in ("429", "418"):
            retry = str(fault.opts.get("retry_after", 1))
            msg = (
                "Too much request weight used; current limit is 6000 request weight per"
                " 1 MINUTE. Please use WebSocket Streams for live updates to avoid polling"
                " the API."
                if fault.kind == "429"
                else "Way too much request weight used; IP banned until 1677628800000."
                " Please use WebSocket Streams for live updates to avoid bans."
            )
            return web.json_response(
                {"code": -1003, "msg": msg}, status=int(fault.kind), headers={"Retry-After": retry}
            )
        if fault.kind in ("500", "503"):
            text = "Internal Server Error" if fault.kind == "500" else "Service Unavailable"
            return web.Response(status=int(fault.kind), text=text)
        assert fault.kind == "drop"
        return self._drop(request)

    def _drop(self, request: web.Request) -> web.Response:
        transport = request.transport
        if transport is not None:
            transport.abort()
        return web.Response(status=204)

    def _take_fault(self, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.path is None or fault.path == path:
                fault.count -= 1
                if fault.count <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    def _check_signature(self, request: web.Request) -> None:
        if self.api_key is None or self.api_secret is None:
            return
        if request.headers.get("X-MBX-APIKEY") != self.api_key:
            raise BinanceError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        signed = request.query_string + request[BODY]
        payload = re.sub(r"&?signature=[^&]*", "", signed)
        expected = hmac.new(self.api_secret.encode(), payload.encode(), hashlib.sha256)
        if not hmac.compare_digest(expected.hexdigest(), request[SIGNATURE] or ""):
            raise BinanceError(400, -1022, "Signature for this request is not valid.")

    async def _api(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        params = request[PARAMS]
        route = (request.method, name)
        try:
            if route in self._signed_routes:
                self._check_signature(request)
            if route == ("POST", "order"):
                return await self._post_order(request, params)
            async with self._lock:
                handler = self._routes.get(route)
                if handler is None:
                    raise BinanceError(404, -1000, f"fake: no {request.method} /api/v3/{name}")
                return web.json_response(handler(self, params))
        except BinanceError as error:
            return error.response()

    async def _post_order(self, request: web.Request, params: dict[str, str]) -> web.Response:
        async with self._lock:
            order = self._new_order(params)
        self.orders_received += 1
        self.order_received.set()
        await self._released.wait()
        fault = request[FAULT]
        if fault is not None and fault.kind == "lost_response":
            return self._drop(request)
        kind = params.get("newOrderRespType", "FULL")
        if kind == "ACK":
            body = {
                "symbol": order.market.id,
                "orderId": order.order_id,
                "orderListId": -1,
                "clientOrderId": order.client_id,
                "transactTime": order.time,
            }
        else:
            body = order.as_json(with_fills=kind == "FULL")
            body["transactTime"] = order.time
        return web.json_response(body)

    def _ping(self, params: dict[str, str]) -> Any:
        return {}

    def _time(self, params: dict[str, str]) -> Any:
        return {"serverTime": self.server_time()}

    def _exchange_info(self, params: dict[str, str]) -> Any:
        wanted = self._symbols(params)
        return {
            "timezone": "UTC",
            "serverTime": self.server_time(),
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": "MINUTE",
                    "intervalNum": 1,
                    "limit": 6000,
                },
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
            ],
            "exchangeFilters": [],
            "symbols": [m.info() for m in wanted],
        }

    def _symbols(self, params: Mapping[str, str]) -> list[Market]:
        if "symbol" in params:
            return [self._market(params)]
        if "symbols" in params:
            ids = json.loads(params["symbols"])
            return [self._market({"symbol": i}) for i in ids]
        return list(self.markets.values())

    def _one_or_list(self, params: Mapping[str, str], make: Any) -> Any:
        rows = [make(m) for m in self._symbols(params)]
        return rows[0] if "symbol" in params else rows

    def _ticker_24hr(self, params: dict[str, str]) -> Any:
        def make(market: Market) -> dict[str, Any]:
            day = 86_400_000 // self.tf_ms
            first = max(0, self.cursor - day)
            window = [self.candle(market, i) for i in range(first, self.cursor + 1)]
            last = self.price(market)
            opened = window[0].open
            volume = sum((c.volume for c in window), Decimal(0))
            quote_volume = sum((c.volume * c.close for c in window), Decimal(0))
            return {
                "symbol": market.id,
                "priceChange": fmt(last - opened),
                "priceChangePercent": f"{(last - opened) / opened * 100:.3f}",
                "weightedAvgPrice": fmt(quote_volume / volume if volume else last),
                "prevClosePrice": fmt(window[-2].close if len(window) > 1 else opened),
                "lastPrice": fmt(last),
                "lastQty": fmt(Decimal(0)),
                "bidPrice": fmt(last),
                "bidQty": fmt(Decimal(1)),
                "askPrice": fmt(last + market.tick_size),
                "askQty": fmt(Decimal(1)),
                "openPrice": fmt(opened),
                "highPrice": fmt(max(c.high for c in window)),
                "lowPrice": fmt(min(c.low for c in window)),
                "volume": fmt(volume),
                "quoteVolume": fmt(quote_volume),
                "openTime": window[0].ts,
                "closeTime": self.server_time(),
                "firstId": 0,
                "lastId": 0,
                "count": 0,
            }

        return self._one_or_list(params, make)

    def _ticker_price(self, params: dict[str, str]) -> Any:
        return self._one_or_list(params, lambda m: {"symbol": m.id, "price": fmt(self.price(m))})

    def _book_ticker(self, params: dict[str, str]) -> Any:
        return self._one_or_list(
            params,
            lambda m: {
                "symbol": m.id,
                "bidPrice": fmt(self.price(m)),
                "bidQty": fmt(Decimal(1)),
                "askPrice": fmt(self.price(m) + m.tick_size),
                "askQty": fmt(Decimal(1)),
            },
        )

    def _klines(self, params: dict[str, str]) -> Any:
        market = self._market(params)
        if params.get("interval") != self.timeframe:
            raise BinanceError(400, -1120, "Invalid interval.")
        limit = int(params.get("limit", 500))
        if not 1 <= limit <= 1000:
            raise BinanceError(400, -1130, "Invalid data sent for a parameter.")
        stamps = market.timestamps
        first, end = 0, self.cursor + 1  # nothing after the forming candle
        if "startTime" in params:
            first = bisect.bisect_left(stamps, int(params["startTime"]), 0, end)
        if "endTime" in params:
            end = bisect.bisect_right(stamps, int(params["endTime"]), first, end)
        if "startTime" in params:
            end = min(end, first + limit)
        else:
            first = max(first, end - limit)
        candles = [self.candle(market, i) for i in range(first, end)]
        return [
            [
                c.ts,
                fmt(c.open),
                fmt(c.high),
                fmt(c.low),
                fmt(c.close),
                fmt(c.volume),
                c.ts + self.tf_ms - 1,
                fmt(c.volume * c.close),
                0,
                fmt(Decimal(0)),
                fmt(Decimal(0)),
                "0",
            ]
            for c in candles
        ]

    def _account(self, params: dict[str, str]) -> Any:
        return {
            "makerCommission": 10,
            "takerCommission": 10,
            "buyerCommission": 0,
            "sellerCommission": 0,
            "commissionRates": {
                "maker": "0.00100000",
                "taker": "0.00100000",
                "buyer": "0.00000000",
                "seller": "0.00000000",
            },
            "canTrade": True,
            "canWithdraw": False,
            "canDeposit": False,
            "brokered": False,
            "requireSelfTradePrevention": False,
            "preventSor": False,
            "updateTime": self.server_time(),
            "accountType": "SPOT",
            "balances": [
                {"asset": asset, "free": fmt(free), "locked": fmt(locked)}
                for asset, (free, locked) in sorted(self.balances.items())
            ],
            "permissions": ["SPOT"],
            "uid": 1,
        }

    def _get_order(self, params: dict[str, str]) -> Any:
        order = self._find_order(params)
        if order is None:
            raise BinanceError(400, -2013, "Order does not exist.")
        return order.as_json()

    def _cancel_order(self, params: dict[str, str]) -> Any:
        order = self._find_order(params)
        if order is None or not order.is_open:
            raise BinanceError(400, -2011, "Unknown order sent.")
        held = self.balances[order.locked_asset]
        held[1] -= order.locked
        held[0] += order.locked
        order.locked = Decimal(0)
        order.status = "CANCELED"
        order.update_time = self.server_time()
        body = order.as_json()
        body["origClientOrderId"] = order.client_id
        body["transactTime"] = order.update_time
        return body

    def _cancel_open_orders(self, params: dict[str, str]) -> Any:
        market = self._market(params)
        mine = [o for o in self.orders.values() if o.is_open and o.market is market]
        return [self._cancel_order({"symbol": market.id, "orderId": str(o.order_id)}) for o in mine]

    def _open_orders(self, params: dict[str, str]) -> Any:
        market = self._market(params) if "symbol" in params else None
        return [
            o.as_json()
            for o in self.orders.values()
            if o.is_open and (market is None or o.market is market)
        ]

    def _my_trades(self, params: dict[str, str]) -> Any:
        market = self._market(params)
        rows = [t for t in self.trades if t["symbol"] == market.id]
        if "orderId" in params:
            rows = [t for t in rows if str(t["orderId"]) == params["orderId"]]
        if "startTime" in params:
            rows = [t for t in rows if t["time"] >= int(params["startTime"])]
        if "endTime" in params:
            rows = [t for t in rows if t["time"] <= int(params["endTime"])]
        if "fromId" in params:
            rows = [t for t in rows if t["id"] >= int(params["fromId"])]
        return rows[: int(params.get("limit", 500))]

    _routes: ClassVar[dict[tuple[str, str], Any]] = {
        ("GET", "ping"): _ping,
        ("GET", "time"): _time,
        ("GET", "exchangeInfo"): _exchange_info,
        ("GET", "ticker/24hr"): _ticker_24hr,
        ("GET", "ticker/price"): _ticker_price,
        ("GET", "ticker/bookTicker"): _book_ticker,
        ("GET", "klines"): _klines,
        ("GET", "uiKlines"): _klines,
        ("GET", "account"): _account,
        ("GET", "order"): _get_order,
        ("DELETE", "order"): _cancel_order,
        ("GET", "openOrders"): _open_orders,
        ("DELETE", "openOrders"): _cancel_open_orders,
        ("GET", "myTrades"): _my_trades,
    }
    _signed_routes: ClassVar[set[tuple[str, str]]] = {
        ("GET", "account"),
        ("POST", "order"),
        ("GET", "order"),
        ("DELETE", "order"),
        ("GET", "openOrders"),
        ("DELETE", "openOrders"),
        ("GET", "myTrades"),
    }

    # -- websocket ---------------------------------------------------------------------

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        combined = request.path.startswith("/stream")
        streams: set[str] = set()
        # /ws/<stream> and /stream?streams=a/b name streams in the URL.
        tail = request.match_info.get("tail", "")
        named = [*request.query.get("streams", "").split("/"), tail]
        streams.update(s for s in named if "@" in s)
        ws[COMBINED] = combined
        self._sockets[ws] = streams
        self.requests.append(("WS", request.path, {}))
        for stream in list(streams):
            await self._greet(ws, stream)
        async for message in ws:
            if message.type != WSMsgType.TEXT:
                continue
            try:
                body = json.loads(message.data)
            except ValueError:
                await ws.send_json({"error": {"code": 3, "msg": "Invalid JSON"}, "id": None})
                continue
            method, ident = body.get("method"), body.get("id")
            streams_named = ",".join(str(p) for p in body.get("params", []))
            self.requests.append(("WS", request.path, {"method": method, "params": streams_named}))
            if method == "SUBSCRIBE":
                new = [s for s in body.get("params", []) if s not in streams]
                streams.update(body.get("params", []))
                await ws.send_json({"result": None, "id": ident})
                for stream in new:
                    await self._greet(ws, stream)
            elif method == "UNSUBSCRIBE":
                streams.difference_update(body.get("params", []))
                await ws.send_json({"result": None, "id": ident})
            elif method == "LIST_SUBSCRIPTIONS":
                await ws.send_json({"result": sorted(streams), "id": ident})
            else:
                await ws.send_json({"error": {"code": 2, "msg": "Invalid request"}, "id": ident})
        self._sockets.pop(ws, None)
        return ws

    async def _greet(self, ws: web.WebSocketResponse, stream: str) -> None:
        """A new kline subscriber sees the forming candle at once."""
        market_id, _, channel = stream.partition("@")
        market = self.markets.get(market_id.upper())
        if market is not None and channel == f"kline_{self.timeframe}":
            await self._send(ws, stream, self._kline_event(market, self.cursor, False))

    async def _broadcast(self, market: Market, kind: str, event: dict[str, Any]) -> None:
        stream = market.id.lower() + "@" + (f"kline_{self.timeframe}" if kind == "kline" else kind)
        for ws, streams in list(self._sockets.items()):
            if stream in streams and not ws.closed:
                with contextlib.suppress(ConnectionError):
                    await self._send(ws, stream, event)

    async def _send(self, ws: web.WebSocketResponse, stream: str, event: dict[str, Any]) -> None:
        await ws.send_json({"stream": stream, "data": event} if ws[COMBINED] else event)

    # -- control endpoints (subprocess mode) -------------------------------------------

    async def _control_fault(self, request: web.Request) -> web.Response:
        body = await request.json()
        kind = str(body.pop("kind"))
        path = body.pop("path", None)
        count = int(body.pop("count", 1))
        try:
            self.fault(kind, path=path, count=count, **body)
        except ValueError as error:
            return web.json_response({"error": str(error)}, status=400)
        return web.json_response({"ok": True})

    async def _control_advance(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else {}
        await self.advance(int(body.get("n", 1)))
        return web.json_response({"cursor": self.cursor, "serverTime": self.server_time()})

    async def _control_hold(self, request: web.Request) -> web.Response:
        self.hold_orders()
        return web.json_response({"ok": True})

    async def _control_release(self, request: web.Request) -> web.Response:
        self.release()
        return web.json_response({"ok": True})

    async def _control_ws_close(self, request: web.Request) -> web.Response:
        await self.close_websockets()
        return web.json_response({"ok": True})

    async def _control_orders(self, request: web.Request) -> web.Response:
        return web.json_response(
            {cid: o.as_json(with_fills=True) for cid, o in self.orders.items()}
        )

    async def _control_status(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "cursor": self.cursor,
                "serverTime": self.server_time(),
                "ordersReceived": self.orders_received,
                "held": not self._released.is_set(),
                "websockets": len(self._sockets),
            }
        )

    async def _control_requests(self, request: web.Request) -> web.Response:
        return web.json_response([list(r) for r in self.requests])


async def _serve(args: argparse.Namespace) -> None:
    balances: dict[str, str] | None = None
    if args.balance:
        balances = dict(item.split("=", 1) for item in args.balance)
    fake = FakeBinance(
        args.data,
        start=args.start,
        interval=args.interval,
        api_key=args.api_key,
        api_secret=args.api_secret,
        balances=balances,
        port=args.port,
        buy_fee_in_base=args.buy_fee_in_base,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with fake:
        print(f"listening {fake.url}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A local Binance-spot exchange for tests.")
    parser.add_argument("--data", nargs="+", required=True, help="candle CSV files")
    parser.add_argument("--start", type=int, default=500)
    parser.add_argument("--interval", type=float, default=None)
    # The keys may come from the environment instead, to keep them out of the process list.
    parser.add_argument("--api-key", default=os.environ.get("FAKE_BINANCE_API_KEY"))
    parser.add_argument("--api-secret", default=os.environ.get("FAKE_BINANCE_API_SECRET"))
    parser.add_argument("--balance", action="append", default=[], help="ASSET=AMOUNT")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--buy-fee-in-base", action="store_true", help="a buy pays its fee in the base currency"
    )
    asyncio.run(_serve(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
