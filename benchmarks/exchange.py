"""The exchange path against the local Binance exchange (tests/fake_binance.py, in this
process on 127.0.0.1): real ccxt, the engine's own broker, feed and engine.

Run: ``.venv/bin/python benchmarks/exchange.py [--orders N] [--warmup N] [--candles N]``

1. Orders per second through ``ExchangeBroker.submit`` (the market order sent, its
   answer read, the order adopted; sequential, as the commit pipeline sends them),
   then one advance of the exchange fills them all and one ``poll_once`` reports the
   fills. With ccxt's rate limiter off (``enableRateLimit`` False) and on (binance's
   ``rateLimit``, 50 ms a request unit; ``--limited-orders`` of them: the lookup of a
   filled order and its trades, for the fee, weigh 4 + 20 units). Baseline in the same
   run: bare ccxt ``create_order`` calls on the same exchange, limiter off, best of two
   (the broker over it is the ratio).
2. Start to the first proposal on the ccxt feed: the engine (paper broker, the
   scripted agent of tests/engine/crafted_market.py voting on the first live candle)
   starts on the feed with a warm-up of ``--warmup`` candles; the exchange closes the
   next candle as soon as the warm-up is in; the clock stops when the proposal is
   announced; with ccxt's rate limiter on (as cma runs: the klines and time requests
   wait for it) and off. Baseline in the same run: bare ccxt ``load_markets`` plus
   ``fetch_ohlcv`` pages of the same candles, limiter off.
3. Websocket candle to the engine: the time from just before ``fake.advance()``
   sends a closed kline to the engine's core having it (``core.candles_seen`` moves,
   polled every event-loop turn), median and p95 over ``--candles`` candles. Baseline
   in the same run: the same stamp to a bare ``ccxt.pro`` ``watch_ohlcv`` returning
   the closed candle.

It prints figures; it is not a test and exits 0 unless something crashes.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "engine")]

from crafted_market import AGENT_PATH, ScriptedAgent  # noqa: E402
from fake_binance import (  # noqa: E402
    TEST_API_KEY,
    TEST_API_SECRET,
    FakeBinance,
    client,
)
from pydantic import SecretStr  # noqa: E402

from engine.config import Settings  # noqa: E402
from engine.events import ProposalCreated  # noqa: E402
from engine.exchange.broker import ExchangeBroker  # noqa: E402
from engine.exchange.session import close_exchange, open_exchange, spec_of  # noqa: E402
from engine.feeds.ccxt import CcxtFeed  # noqa: E402
from engine.models import Fill, OrderIntent, OrderSide, Side  # noqa: E402
from engine.runtime import Engine  # noqa: E402
from persistence.store import Store  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "binanceus_BTC-USDT_1m_2023-03.csv"
BTC = "BTC/USDT"
QTY = Decimal("0.001")


def settings(url: str, store: Path, warmup: int) -> Settings:
    base = Settings(
        agents={"enabled": (), "user": (AGENT_PATH,), "min_confidence": 0.0},
        approval={"policy": "queue-only"},
        feed={"kind": "ccxt", "symbols": (BTC,), "timeframe": "1m", "warmup_candles": warmup},
        store={"path": str(store)},
    )
    exchange = base.exchange.model_copy(
        update={
            "api_base": url,
            "api_key": SecretStr(TEST_API_KEY),
            "api_secret": SecretStr(TEST_API_SECRET),
        }
    )
    return base.model_copy(update={"exchange": exchange})


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Counter:
    """A broker listener counting what it hears."""

    def __init__(self) -> None:
        self.fills: list[Fill] = []
        self.refused: list[str] = []

    def on_fill(self, fill: Fill) -> None:
        self.fills.append(fill)

    def on_rejected(self, intent: OrderIntent, reason: str) -> None:
        self.refused.append(reason)

    def on_breaker(self, is_open: bool, reason: str) -> None:
        pass


async def warmed(engine: Engine, within: float = 30.0) -> None:
    """Until the engine has had its feed's warm-up (the next candle is live)."""
    deadline = time.perf_counter() + within
    while not (0 < engine.feed.warmup_batches <= engine._batches):
        assert time.perf_counter() < deadline, "the warm-up never came"
        await asyncio.sleep(0.001)


# --- 1. orders per second ------------------------------------------------------------


async def orders_per_second(n: int, *, rate_limit: bool, tag: str) -> tuple[float, float]:
    """(orders/s through submit, orders/s including the fill reported)."""
    async with FakeBinance([DATA], api_key=TEST_API_KEY, api_secret=TEST_API_SECRET) as fake:
        cfg = settings(fake.url, Path("unused.db"), 10)
        exchange = open_exchange(replace(spec_of(cfg.exchange), rate_limit=rate_limit))
        try:
            await exchange.load_markets()
            broker = ExchangeBroker(exchange, poll_seconds=3600)
            heard = Counter()
            broker.listener = heard
            intents = [
                OrderIntent(
                    client_order_id=f"bench-{tag}-{i}",
                    symbol=BTC,
                    side=OrderSide.BUY,
                    qty=QTY,
                    purpose="entry",
                    proposal_id=None,
                    created_at=0,
                )
                for i in range(n)
            ]
            await exchange.fetch_time()  # the connection opened before the clock starts
            t0 = time.perf_counter()
            for intent in intents:
                await broker.submit(intent)
            sent = time.perf_counter() - t0
            await fake.advance()
            await broker.poll_once()
            done = time.perf_counter() - t0
            assert len(heard.fills) == n and not heard.refused, (len(heard.fills), heard.refused)
            assert fake.orders_received == n
            return n / sent, n / done
        finally:
            await close_exchange(exchange)


async def bare_orders_per_second(n: int) -> float:
    async with FakeBinance([DATA], api_key=TEST_API_KEY, api_secret=TEST_API_SECRET) as fake:
        exchange = client(fake, pro=False)
        try:
            await exchange.load_markets()
            await exchange.fetch_time()  # the connection opened before the clock starts
            t0 = time.perf_counter()
            for i in range(n):
                await exchange.create_order(
                    BTC, "market", "buy", float(QTY), None, {"clientOrderId": f"bare-{i}"}
                )
            return n / (time.perf_counter() - t0)
        finally:
            await exchange.close()


# --- 2. start to the first proposal --------------------------------------------------


async def first_proposal(warmup: int, folder: Path, *, rate_limit: bool) -> dict[str, float]:
    async with FakeBinance([DATA], start=max(500, warmup + 10)) as fake:
        signal_ts = fake.markets["BTCUSDT"].candles[fake.cursor].ts
        ScriptedAgent.script = {(BTC, signal_ts): (Side.LONG, 1.0)}
        cfg = settings(fake.url, folder / f"first-{warmup}-{rate_limit}.db", warmup)
        proposed = asyncio.Event()
        t0 = time.perf_counter()
        exchange = open_exchange(replace(spec_of(cfg.exchange), rate_limit=rate_limit))
        feed = CcxtFeed(
            exchange, cfg.feed.symbols, cfg.feed.timeframe, owns_exchange=True,
            warmup_candles=warmup,
        )  # fmt: skip
        await feed.prepare()
        t_prepared = time.perf_counter()
        store = await Store.open(str(cfg.store.resolved_path()))
        engine = Engine(cfg, store, feed)
        engine.subscribe(lambda e: proposed.set() if isinstance(e, ProposalCreated) else None)
        try:
            await engine.start()
            t_started = time.perf_counter()
            await warmed(engine)
            t_warm = time.perf_counter()
            await fake.advance()
            await asyncio.wait_for(proposed.wait(), 30)
            t_end = time.perf_counter()
        finally:
            await engine.stop()
            await store.close()
            await feed.aclose()
        return {
            "total": t_end - t0,
            "markets": t_prepared - t0,
            "engine start": t_started - t_prepared,
            "warm-up": t_warm - t_started,
            "live candle": t_end - t_warm,
        }


async def bare_history(warmup: int) -> float:
    async with FakeBinance([DATA], start=max(500, warmup + 10)) as fake:
        exchange = client(fake, pro=False, keys=False)
        try:
            t0 = time.perf_counter()
            await exchange.load_markets()
            since = fake.markets["BTCUSDT"].candles[fake.cursor - warmup].ts
            got: list[Any] = []
            while len(got) < warmup:
                page = await exchange.fetch_ohlcv(BTC, "1m", since, min(1000, warmup - len(got)))
                if not page:
                    break
                got += page
                since = page[-1][0] + 60_000
            return time.perf_counter() - t0
        finally:
            await exchange.close()


# --- 3. websocket candle to the engine -----------------------------------------------


async def candle_latency(candles: int, folder: Path) -> list[float]:
    async with FakeBinance([DATA]) as fake:
        cfg = settings(fake.url, folder / "latency.db", 10)
        ScriptedAgent.script = {}
        feed = CcxtFeed.from_settings(cfg)
        await feed.prepare()
        store = await Store.open(str(cfg.store.resolved_path()))
        engine = Engine(cfg, store, feed)
        out: list[float] = []
        try:
            await engine.start()
            await warmed(engine)
            for i in range(candles + 2):
                seen = engine.core.candles_seen
                t0 = time.perf_counter()
                await fake.advance()
                deadline = t0 + 10
                while engine.core.candles_seen == seen:
                    assert time.perf_counter() < deadline, "the candle never reached the engine"
                    await asyncio.sleep(0)
                if i >= 2:  # the first closes may still meet the websocket's subscription
                    out.append(time.perf_counter() - t0)
                await asyncio.sleep(0.002)
        finally:
            await engine.stop()
            await store.close()
            await feed.aclose()
        return out


async def bare_latency(candles: int) -> list[float]:
    async with FakeBinance([DATA]) as fake:
        exchange = client(fake, keys=False)
        out: list[float] = []
        try:
            await exchange.load_markets()
            await exchange.watch_ohlcv(BTC, "1m")
            for i in range(candles + 2):
                closing = fake.markets["BTCUSDT"].candles[fake.cursor]
                t0 = time.perf_counter()
                await fake.advance()
                while True:
                    bars = await exchange.watch_ohlcv(BTC, "1m")
                    if any(b[0] == closing.ts and b[4] == float(closing.close) for b in bars):
                        break
                if i >= 2:
                    out.append(time.perf_counter() - t0)
                await asyncio.sleep(0.002)
        finally:
            await exchange.close()
        return out


async def main(args: argparse.Namespace) -> None:
    print(f"exchange benchmark: local Binance on 127.0.0.1, {DATA.name}")
    print(f"\n1. Orders through ExchangeBroker.submit ({args.orders} market orders, sequential)")
    bare = max([await bare_orders_per_second(args.orders) for _ in range(2)])
    print(f"   bare ccxt create_order (limiter off)    {bare:9.1f} orders/s")
    for on, n in ((False, args.orders), (True, args.limited_orders)):
        sent, filled = await orders_per_second(n, rate_limit=on, tag="on" if on else "off")
        what = f"on, {n} orders" if on else "off"
        print(
            f"   broker, rate limiter {what:14} {sent:9.1f} orders/s "
            f"({sent / bare:.2f} of bare); with the fills reported {filled:9.1f} orders/s"
        )

    print(f"\n2. Start to the first proposal on the ccxt feed (warm-up {args.warmup} candles)")
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        bare_s = await bare_history(args.warmup)
        print(f"   bare ccxt markets + {args.warmup} candles of history   {bare_s * 1000:8.1f} ms")
        for on in (True, False):
            parts = await first_proposal(args.warmup, Path(folder), rate_limit=on)
            detail = ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in parts.items() if k != "total")
            print(
                f"   engine start to first proposal, limiter {'on ' if on else 'off'}"
                f" {parts['total'] * 1000:8.1f} ms ({parts['total'] / bare_s:.2f} x bare; {detail})"
            )

        print(f"\n3. Websocket candle close to the engine ({args.candles} candles)")
        bare_l = await bare_latency(args.candles)
        engine_l = await candle_latency(args.candles, Path(folder))
    for name, values in (("bare ccxt.pro watch_ohlcv", bare_l), ("engine core", engine_l)):
        print(
            f"   {name:26} median {statistics.median(values) * 1000:7.2f} ms"
            f"  p95 {pct(values, 0.95) * 1000:7.2f} ms"
        )
    ratio = statistics.median(engine_l) / statistics.median(bare_l)
    print(f"   engine / bare (median): {ratio:.2f}")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=200, help="orders in part 1")
    parser.add_argument(
        "--limited-orders",
        type=int,
        default=20,
        help="orders in part 1 with the rate limiter on (each fill's lookup and trades "
        "weigh 24 request units: 1.2 s an order)",
    )
    parser.add_argument("--warmup", type=int, default=500, help="warm-up candles in part 2")
    parser.add_argument("--candles", type=int, default=100, help="candles in part 3")
    parser.add_argument("--dir", type=Path, default=None, help="where temporary stores go")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse()))
