"""The trading core runs with no shell and no event loop (how a backtest drives it), and
trades exactly as the live engine does: fills never depend on when a commit finishes."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from crafted_market import (
    FLAT,
    WARMUP,
    CraftedFeed,
    FakeClock,
    Row,
    ScriptedAgent,
    crafted_engine,
    play,
    settings,
    with_warmup,
)

from engine.broker import PaperBroker
from engine.core import TradingCore
from engine.models import EngineEvent, OrderFilled, Position, Side, evolve
from engine.wiring import load_agents
from persistence.store import UnitOfWork

BTC, ETH = "BTC/USDT", "ETH/USDT"
UP: Row = (100.0, 104.0, 99.0, 103.0)
DOWN: Row = (103.0, 103.5, 94.0, 95.0)


def _tables() -> dict[str, list[Row | None]]:
    return {
        BTC: with_warmup([FLAT, FLAT, UP, UP, DOWN, FLAT]),
        ETH: with_warmup([FLAT, UP, None, FLAT, UP, UP, FLAT]),
    }


def _votes(feed: CraftedFeed) -> dict[tuple[str, int], tuple[Side, float]]:
    return {
        (BTC, feed.ts(WARMUP)): (Side.LONG, 1.0),
        (ETH, feed.ts(WARMUP + 1)): (Side.LONG, 1.0),
        (BTC, feed.ts(WARMUP + 5)): (Side.SHORT, 1.0),
    }


def _fills(events: list[EngineEvent]) -> list[tuple[str, int, str]]:
    return [(e.fill.symbol, e.ts, e.fill.side.value) for e in events if isinstance(e, OrderFilled)]


def test_the_core_alone_trades_as_the_live_engine_does() -> None:
    cfg = settings(feed={"symbols": (BTC, ETH)})
    feed = CraftedFeed(_tables())
    ScriptedAgent.script = _votes(feed)
    core = TradingCore(
        cfg,
        currency="USDT",
        tf_ms=60_000,
        agent_classes=load_agents(cfg),
        new_work=lambda: UnitOfWork(None),
        market=PaperBroker(cfg.broker.fee_rate, cfg.broker.slippage_bps),
        clock=FakeClock(),
    )
    core.proposing = True
    events: list[EngineEvent] = []
    for batch in feed.iter_batches():
        for candle in batch:
            for step in core.on_candle(candle):
                events += step.events
        for step in core.after_batch(batch[-1].ts + 60_000):
            events += step.events
    alone = _fills(events)
    assert len(alone) >= 3

    async def live() -> tuple[list[EngineEvent], Decimal, list[Position]]:
        heard: list[EngineEvent] = []
        again = CraftedFeed(_tables())
        async with crafted_engine(cfg, again, _votes(again)) as engine:
            engine.subscribe(heard.append)
            await play(engine)
            return heard, engine.portfolio.cash, engine.positions()

    heard, cash, positions = asyncio.run(live())
    assert _fills(heard) == alone
    # The same prices and fees: the same cash to the last unit, the same positions.
    assert cash == core.portfolio.cash != cfg.risk.initial_cash

    def same(held: list[Position]) -> list[Position]:
        return [evolve(p, proposal_id=None) for p in held]  # ids are random

    assert same(positions) == same(list(core.portfolio.positions.values()))
