"""The ccxt feed against the local Binance-spot exchange: warm-up time and candle latency.

Run: ``.venv/bin/python benchmarks/ccxt_feed.py [--rounds N] [--symbols N]``

The exchange is tests/fake_binance.py in this process, replaying the 2023 1m files
(BTC quoted in USDT, USDC and USD: up to three symbols). Real ccxt (``ccxt.pro``),
its rate limiter on, talks to it over 127.0.0.1. Printed:

1. Warm-up: from ``batches()`` to the last of the ``--warmup`` (300) history batches,
   markets loaded and every symbol's candles fetched page by page through REST.
2. Websocket latency: ``--rounds`` times, the exchange closes a candle
   (``fake.advance()``) and the clock runs until the feed has yielded that
   timestamp's batch (every symbol's candle) to its consumer: median, p95, max.
3. The same through REST polling at ``--poll`` seconds (default 0.5; the product polls
   1m candles every 5 s): the latency is bounded by the poll interval.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from fake_binance import FakeBinance  # noqa: E402
from shared_data import shared_data_dir  # noqa: E402

from engine.exchange.session import ExchangeSpec, open_exchange  # noqa: E402
from engine.feeds.ccxt import CcxtFeed  # noqa: E402

QUOTES = ("USDT", "USDC", "USD")


async def measure(websocket: bool, args: argparse.Namespace) -> None:
    quotes = QUOTES[: args.symbols]
    files = [shared_data_dir() / f"binanceus_BTC-{q}_1m_2023-03.csv" for q in quotes]
    symbols = [f"BTC/{q}" for q in quotes]
    async with FakeBinance(files, start=args.warmup + 100) as fake:
        exchange = open_exchange(ExchangeSpec("binance", api_base=fake.url), pro=websocket)
        feed = CcxtFeed(
            exchange,
            symbols,
            "1m",
            owns_exchange=True,
            warmup_candles=args.warmup,
            websocket=websocket,
            poll=None if websocket else args.poll,
        )
        arrived: asyncio.Queue[float] = asyncio.Queue()
        warm = asyncio.Event()
        started = time.perf_counter()
        seen = 0

        async def consume() -> None:
            nonlocal seen
            async for _ in feed.batches():
                seen += 1
                if seen == feed.warmup_batches:
                    warm.set()
                elif seen > feed.warmup_batches:
                    arrived.put_nowait(time.perf_counter())

        task = asyncio.create_task(consume())
        await warm.wait()
        warm_up = time.perf_counter() - started
        deadline = time.monotonic() + 30
        while websocket and sum(len(s) for s in fake._sockets.values()) < len(symbols):
            if time.monotonic() > deadline:
                raise SystemExit("the feed did not subscribe in 30 s")
            await asyncio.sleep(0.01)  # the feed's websocket subscribes every symbol
        rounds = args.rounds if websocket else max(3, args.rounds // 10)
        latencies = []
        for _ in range(rounds):
            closed = time.perf_counter()
            await fake.advance()
            latencies.append((await asyncio.wait_for(arrived.get(), 60) - closed) * 1000)
            await asyncio.sleep(0.02)
        feed.close()
        await task
    latencies.sort()
    p95 = latencies[max(0, round(0.95 * len(latencies)) - 1)]
    how = "websocket" if websocket else f"REST polling every {args.poll:g} s"
    print(
        f"{how}: warm-up {args.warmup} candles x {len(symbols)} symbols {warm_up:.2f} s; "
        f"candle close -> batch, {rounds} rounds: median {statistics.median(latencies):.1f} ms, "
        f"p95 {p95:.1f} ms, max {latencies[-1]:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--symbols", type=int, default=3, choices=[1, 2, 3])
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--poll", type=float, default=0.5)
    args = parser.parse_args()
    import ccxt.pro  # noqa: F401  (its ~1 s import is not what is measured)

    asyncio.run(measure(True, args))
    asyncio.run(measure(False, args))


if __name__ == "__main__":
    main()
