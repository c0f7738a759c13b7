"""The ccxt feed against the local Binance-spot exchange (tests/fake_binance.py), real ccxt.

Every candle the feed yields is compared with the shared data file the exchange replays:
closed candles only (never the forming one's partial values), each once, in order.
"""

from __future__ import annotations

import asyncio
import csv
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from fake_binance import FakeBinance
from shared_data import shared_data_dir

from engine.exchange.session import ExchangeSpec, open_exchange
from engine.feeds.ccxt import CcxtFeed, FeedSetupError, FeedUnavailable
from engine.models import Candle

USDT = shared_data_dir() / "binanceus_BTC-USDT_1m_2023-03.csv"
USDC = shared_data_dir() / "binanceus_BTC-USDC_1m_2023-03.csv"
ADA = shared_data_dir() / "binance_ADA-BTC_5m_2018-01.csv"
SYMBOLS = ["BTC/USDT", "BTC/USDC"]
START = 500


def rows(path: Path) -> list[tuple[int, float, float, float, float, float]]:
    with path.open(encoding="utf-8") as handle:
        reader = csv.reader(handle)
        next(reader)
        return [(int(r[0]), *map(float, r[1:6])) for r in reader]  # type: ignore[misc]


DATA = {"BTC/USDT": rows(USDT), "BTC/USDC": rows(USDC)}


def expected(symbol: str, first: int, last: int) -> list[tuple[Any, ...]]:
    """The file's candles ``first`` to ``last`` (indices, inclusive) as the feed gives them."""
    return [(symbol, *row) for row in DATA[symbol][first : last + 1]]


def as_rows(batches: list[list[Candle]], symbol: str) -> list[tuple[Any, ...]]:
    return [
        (c.symbol, c.ts, c.open, c.high, c.low, c.close, c.volume)
        for batch in batches
        for c in batch
        if c.symbol == symbol
    ]


async def until(condition: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


class Run:
    """A feed consumed in the background: ``batches`` and which of them were live."""

    def __init__(self, feed: CcxtFeed) -> None:
        self.feed = feed
        self.batches: list[list[Candle]] = []
        self.live: list[bool] = []
        self.task = asyncio.create_task(self._consume())

    async def _consume(self) -> None:
        async for batch in self.feed.batches():
            self.batches.append(batch)
            self.live.append(self.feed.is_live(batch))

    async def stop(self) -> None:
        self.feed.close()
        await asyncio.wait_for(self.task, 5)

    def ts(self) -> list[int]:
        return [b[0].ts for b in self.batches]


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinance]:
    async with FakeBinance([USDT, USDC], start=START) as server:
        yield server


def make_feed(fake: FakeBinance, *, websocket: bool = True, **kw: Any) -> CcxtFeed:
    exchange = open_exchange(ExchangeSpec("binance", api_base=fake.url, timeout_ms=2000))
    options: dict[str, Any] = {
        "warmup_candles": 20,
        "poll": 0.05,
        "grace": 0.2,
        "backoff": (0.02, 0.2),
    }
    options.update(kw)
    return CcxtFeed(exchange, SYMBOLS, "1m", owns_exchange=True, websocket=websocket, **options)


async def subscribed(fake: FakeBinance, run: Run, warm: int) -> None:
    """The warm-up is out and the websocket streams every symbol."""
    await until(lambda: len(run.batches) >= warm)
    await until(lambda: sum(len(s) for s in fake._sockets.values()) >= len(SYMBOLS))


async def test_warm_up_yields_the_last_closed_candles_in_order_as_history(
    fake: FakeBinance,
) -> None:
    run = Run(make_feed(fake, warmup_candles=30))
    await until(lambda: len(run.batches) >= 30)
    await asyncio.sleep(0.1)  # nothing more comes while the exchange stands still
    await run.stop()
    assert run.feed.warmup_batches == 30
    assert len(run.batches) == 30
    for symbol in SYMBOLS:
        assert as_rows(run.batches, symbol) == expected(symbol, START - 30, START - 1)
    assert [[c.symbol for c in b] for b in run.batches] == [SYMBOLS] * 30
    assert not any(run.live)


async def test_live_candles_are_the_closed_ones_once_and_in_order_across_two_symbols(
    fake: FakeBinance,
) -> None:
    run = Run(make_feed(fake))
    await subscribed(fake, run, 20)
    for n in range(1, 6):
        await fake.advance()
        await until(lambda n=n: len(run.batches) >= 20 + n)  # type: ignore[misc]
    await asyncio.sleep(0.1)
    await run.stop()
    for symbol in SYMBOLS:
        # The final values of each candle, not the forming one's partial ones.
        assert as_rows(run.batches, symbol) == expected(symbol, START - 20, START + 4)
    assert run.live == [False] * 20 + [True] * 5
    assert run.feed.gaps == {}
    assert run.feed.reconnects == 0


async def test_rest_polling_gives_the_same_candles(fake: FakeBinance) -> None:
    run = Run(make_feed(fake, websocket=False))
    await until(lambda: len(run.batches) >= 20)
    for n in range(1, 6):
        await fake.advance()
        await until(lambda n=n: len(run.batches) >= 20 + n)  # type: ignore[misc]
    assert len(run.feed._tasks) <= 1  # one REST round at a time, finished ones let go
    await run.stop()
    for symbol in SYMBOLS:
        assert as_rows(run.batches, symbol) == expected(symbol, START - 20, START + 4)
    assert run.live == [False] * 20 + [True] * 5
    assert not fake._sockets  # no websocket was opened


async def test_a_websocket_closed_mid_stream_reconnects_and_rest_fills_the_gap(
    fake: FakeBinance, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cma.feed")
    run = Run(make_feed(fake))
    await subscribed(fake, run, 20)
    for n in (21, 22):
        await fake.advance()
        await until(lambda n=n: len(run.batches) >= n)  # type: ignore[misc]
    await fake.close_websockets()
    await fake.advance(3)  # closed while the feed is not listening
    await until(lambda: len(run.batches) >= 25)
    await subscribed(fake, run, 25)
    for n in (26, 27):
        await fake.advance()
        await until(lambda n=n: len(run.batches) >= n)  # type: ignore[misc]
    await asyncio.sleep(0.1)
    await run.stop()
    for symbol in SYMBOLS:
        assert as_rows(run.batches, symbol) == expected(symbol, START - 20, START + 6)
    assert run.ts() == sorted(set(run.ts()))
    assert run.feed.reconnects >= len(SYMBOLS)
    # The newest candle of a catch-up is live, what it caught up on is history.
    assert run.live[20:22] == [True, True]
    assert run.live[-2:] == [True, True]
    assert run.live[22:24] == [False, False]
    lost = [r.getMessage() for r in caplog.records if "websocket lost" in r.getMessage()]
    assert lost and all("reconnecting in" in m for m in lost)


async def test_staleness_turns_on_when_the_exchange_stops_and_off_again(
    fake: FakeBinance,
) -> None:
    run = Run(make_feed(fake, stale_seconds=0.3))
    await subscribed(fake, run, 20)
    await fake.advance()
    await until(lambda: len(run.batches) >= 21)
    assert run.feed.staleness() is None
    await until(lambda: run.feed.staleness() is not None)
    stale = run.feed.staleness()
    assert stale is not None and stale > 0.3
    await fake.advance()
    await until(lambda: run.feed.staleness() is None)
    assert len(run.batches) == 22
    age = run.feed.last_candle_age()
    assert age is not None and 0 <= age < 60
    await run.stop()
    assert run.feed.staleness() is None  # a closed feed is not stale


async def test_a_symbol_the_exchange_does_not_list_names_feed_symbols(fake: FakeBinance) -> None:
    exchange = open_exchange(ExchangeSpec("binance", api_base=fake.url, timeout_ms=2000))
    feed = CcxtFeed(exchange, ["BTC/USDT", "DOGE/USDT"], "1m", owns_exchange=True)
    with pytest.raises(FeedSetupError, match=r"feed\.symbols: binance does not list DOGE/USDT"):
        await feed.prepare()
    await feed.aclose()


async def test_an_exchange_that_cannot_be_reached_is_unavailable_not_a_traceback() -> None:
    exchange = open_exchange(ExchangeSpec("binance", api_base="http://127.0.0.1:9", timeout_ms=200))
    feed = CcxtFeed(exchange, ["BTC/USDT"], "1m", owns_exchange=True, read_attempts=2)
    with pytest.raises(FeedUnavailable, match="cannot get binance's markets"):
        await feed.prepare()
    await feed.aclose()


async def test_candles_the_exchange_does_not_have_are_gaps_not_candles() -> None:
    async with FakeBinance([ADA], start=1510) as server:
        exchange = open_exchange(ExchangeSpec("binance", api_base=server.url, timeout_ms=2000))
        gaps: list[tuple[str, int, int]] = []
        feed = CcxtFeed(
            exchange,
            ["ADA/BTC"],
            "5m",
            owns_exchange=True,
            warmup_candles=20,
            websocket=False,
            on_gap=lambda *g: gaps.append(g),
        )
        run = Run(feed)
        await until(lambda: len(run.batches) >= 18)
        await asyncio.sleep(0.1)
        await run.stop()
    data = rows(ADA)
    assert [b[0].ts for b in run.batches] == [r[0] for r in data[1492:1510]]
    assert feed.gaps == {"ADA/BTC": 2}
    assert gaps == [
        ("ADA/BTC", data[1502][0] + 300_000, 1),
        ("ADA/BTC", data[1505][0] + 300_000, 1),
    ]


async def test_local_feeds_are_never_stale_and_know_no_candle_age() -> None:
    from engine.feeds.sim import SimFeed

    feed = SimFeed(symbols=["BTC/USDT"], timeframe="1m", seed=1, limit=3)
    await feed.prepare()  # nothing to check against
    assert [len(b) async for b in feed.batches()] == [1, 1, 1]
    assert feed.staleness() is None and feed.last_candle_age() is None


async def test_rest_failures_while_live_back_off_and_miss_no_candle(
    fake: FakeBinance, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="cma.feed")
    run = Run(make_feed(fake, websocket=False, read_attempts=1))
    await until(lambda: len(run.batches) >= 20)
    fake.fault("500", path="/api/v3/klines", count=3)
    for n in (21, 22):
        await fake.advance()
        await until(lambda n=n: len(run.batches) >= n)  # type: ignore[misc]
    await run.stop()
    for symbol in SYMBOLS:
        assert as_rows(run.batches, symbol) == expected(symbol, START - 20, START + 1)
    failed = [r.getMessage() for r in caplog.records if "fetching candles failed" in r.getMessage()]
    assert failed and all("again in" in m and "ExchangeNotAvailable" in m for m in failed)
