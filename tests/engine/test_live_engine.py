"""The live engine against the local Binance exchange: real ccxt, a real SQLite store,
the engine's own exchange broker and order gate. An approved proposal becomes one order
on the exchange (client order id from the store's intent), its fill comes back and opens
the position, and the store's checks pass."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

from crafted_market import ScriptedAgent, assert_checks_pass, query, settings
from fake_binance import TEST_API_KEY, TEST_API_SECRET, FakeBinance
from pydantic import SecretStr
from shared_data import shared_data_dir

from engine.config import Settings
from engine.exchange.live import LiveParts, open_live
from engine.models import Side
from engine.runtime import Engine
from persistence.store import Store

BTC = "BTC/USDT"
DATA = "binanceus_BTC-USDT_1m_2023-03.csv"


def live_settings(url: str, tmp_path: Path, **sections: dict[str, Any]) -> Settings:
    base = settings(
        feed={"kind": "ccxt", "symbols": (BTC,), "timeframe": "1m", "warmup_candles": 30},
        broker={"kind": "ccxt"},
        approval={"policy": "auto"},
        store={"path": str(tmp_path / "live.db")},
        **sections,
    )
    exchange = base.exchange.model_copy(
        update={
            "api_base": url,
            "timeout_seconds": 1.0,
            "api_key": SecretStr(TEST_API_KEY),
            "api_secret": SecretStr(TEST_API_SECRET),
            "max_order_notional": Decimal(5000),
        }
    )
    return base.model_copy(update={"exchange": exchange})


async def wait_for(check: Callable[[], bool], within: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


@asynccontextmanager
async def live_engine(cfg: Settings) -> AsyncIterator[tuple[Engine, LiveParts]]:
    parts = await open_live(cfg)
    parts.broker._poll_seconds = 0.05
    store = await Store.open(str(cfg.store.resolved_path()))
    engine = Engine(cfg, store, parts.feed, broker=parts.broker, gate=parts.gate)
    try:
        yield engine, parts
    finally:
        if engine.status != "stopped":
            await engine.stop()
        await parts.close()
        await store.close()


@asynccontextmanager
async def signalling_exchange() -> AsyncIterator[FakeBinance]:
    """The local exchange, with a long vote scripted on its first live candle (the one at
    the cursor: it closes on the first advance)."""
    async with FakeBinance(
        [shared_data_dir() / DATA], api_key=TEST_API_KEY, api_secret=TEST_API_SECRET
    ) as fake:
        signal_ts = fake.markets["BTCUSDT"].candles[fake.cursor].ts
        ScriptedAgent.script = {(BTC, signal_ts): (Side.LONG, 1.0)}
        yield fake


async def open_long(engine: Engine, fake: FakeBinance) -> None:
    """Past the warm-up, the signal candle closes (a proposal the policy approves: one
    order), the next open fills it: the position is open."""
    await wait_for(lambda: engine.feed.warmup_batches > 0 and engine._batches >= 30)
    await fake.advance()
    await wait_for(lambda: fake.orders_received == 1)
    await fake.advance()
    await wait_for(lambda: BTC in engine.portfolio.positions)


async def test_an_approved_proposal_is_one_exchange_order_whose_fill_opens_the_position(
    tmp_path: Path,
) -> None:
    async with signalling_exchange() as fake:
        cfg = live_settings(fake.url, tmp_path)
        async with live_engine(cfg) as (engine, _):
            await engine.start()
            assert engine.mode == "LIVE" and engine.portfolio.cash == Decimal(10_000)
            await open_long(engine, fake)
            await engine.synced()
            [order] = fake.orders.values()
            [(coid,)] = await query(engine, "SELECT client_order_id FROM order_intents")
            assert order.client_id == coid and order.status == "FILLED"
            pos = engine.portfolio.positions[BTC]
            assert pos.qty == Decimal(str(order.executed))
            [(fills,)] = await query(engine, "SELECT COUNT(*) FROM fills")
            assert fills == 1
            posts = [r for r in fake.requests if r[0] == "POST" and r[1] == "/api/v3/order"]
            assert len(posts) == 1
            await engine.stop()
            await assert_checks_pass(engine)


async def test_a_restart_lists_what_the_exchange_holds_that_the_store_does_not_know(
    tmp_path: Path,
) -> None:
    from fake_binance import client

    async with signalling_exchange() as fake:
        cfg = live_settings(fake.url, tmp_path)
        async with live_engine(cfg) as (engine, _):
            await engine.start()
            await open_long(engine, fake)
            held = engine.portfolio.positions[BTC].qty
            await engine.stop()
        # Someone places an order by hand on the same account while cma is down.
        other = client(fake)
        try:
            await other.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "hand-1"})
        finally:
            await other.close()
        ScriptedAgent.script = {}
        async with live_engine(cfg) as (engine, _):
            recovery = await engine.start()
            assert engine.status == "paused" and recovery.needs_attention
            assert [d for d in recovery.differences if "hand-1" in d] == [
                "the exchange has an open order hand-1 (buy 0.01 BTC/USDT) the store does not know"
            ]
            assert any("hand-1" in n for n in recovery.notes)
            # The position the store kept is the one the exchange holds: no difference.
            assert engine.portfolio.positions[BTC].qty == held
            assert not [d for d in recovery.differences if d.startswith("BTC:")]
            await engine.stop()
            await assert_checks_pass(engine)


async def test_an_order_the_exchange_holds_up_does_not_hold_up_the_candles(
    tmp_path: Path,
) -> None:
    async with signalling_exchange() as fake:
        cfg = live_settings(fake.url, tmp_path)
        cfg = cfg.model_copy(
            update={"exchange": cfg.exchange.model_copy(update={"timeout_seconds": 30.0})}
        )
        async with live_engine(cfg) as (engine, _):
            await engine.start()
            await wait_for(lambda: engine.feed.warmup_batches > 0 and engine._batches >= 30)
            fake.hold_orders()  # the exchange takes the order and sits on its answer
            await fake.advance()
            await wait_for(lambda: fake.orders_received == 1)
            seen = engine.candles_seen
            await fake.advance(2)
            # The candle loop and the store go on while the answer is held.
            await wait_for(lambda: engine.candles_seen >= seen + 2)
            # Stored too: nothing waits for the exchange's answer.
            await asyncio.wait_for(engine.synced(), 5)
            assert BTC not in engine.portfolio.positions
            fake.release()
            await wait_for(lambda: BTC in engine.portfolio.positions)
            posts = [r for r in fake.requests if r[0] == "POST" and r[1] == "/api/v3/order"]
            assert len(posts) == 1
            await engine.stop()
            await assert_checks_pass(engine)
