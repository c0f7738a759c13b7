"""Crafted markets for engine tests: a candle-table feed, a scripted agent, a fake clock.

``CraftedFeed`` is a real :class:`engine.feeds.base.SyncFeed` over a small table.
Its ``batches()`` can run a hook after a batch, inside the engine's own loop
and before the next candle: that is where a test plays the person (approve,
reject, resize, halt). ``ScriptedAgent`` is a user agent, loaded by the engine
from its dotted path like any other, that votes where the test says.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any, ClassVar

from engine.agents.base import Agent
from engine.config import Settings
from engine.feeds.base import SyncFeed
from engine.models import AgentVote, Candle, Side
from engine.runtime import Engine
from persistence.checks import run_checks
from persistence.store import Store

MIN = 60_000
T0 = 1_767_225_600_000  # 2026-01-01 00:00 UTC
AGENT_PATH = f"{__name__}:ScriptedAgent"

Row = tuple[float, float, float, float]  # open, high, low, close
FLAT: Row = (100.0, 101.0, 99.0, 100.0)  # true range 2, so ATR(14) is exactly 2.0
WARMUP = 15  # flat candles before the table: the ATR needs 14
Hook = Callable[[Engine], Awaitable[None]]


class FakeClock:
    """A monotonic clock the test moves by hand (decision latencies become exact)."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class ScriptedAgent(Agent):
    """Votes ``script[(symbol, ts)] = (side, strength)``; nothing elsewhere."""

    name = "scripted"
    script: ClassVar[dict[tuple[str, int], tuple[Side, float]]] = {}

    def on_candle(self, candle: Candle) -> AgentVote | None:
        planned = self.script.get((candle.symbol, candle.ts))
        if planned is None:
            return None
        return self.vote(planned[0], planned[1], f"scripted {planned[0].value}")


class CraftedFeed(SyncFeed):
    """Candle tables, one per symbol, played as one market of 1m candles from ``start``.

    A ``None`` row is a missing candle (a gap). ``hooks[i]`` runs after the
    engine has handled batch ``i`` and before batch ``i + 1`` exists.
    """

    name = "crafted"

    def __init__(
        self,
        tables: Mapping[str, Sequence[Row | None]],
        *,
        start: int = T0,
        hooks: Mapping[int, Hook] | None = None,
    ) -> None:
        super().__init__(list(tables), "1m")
        self.tables = {s: list(rows) for s, rows in tables.items()}
        self.start = start
        self.hooks = dict(hooks or {})
        self.engine: Engine | None = None

    def ts(self, index: int) -> int:
        return self.start + index * MIN

    def iter_batches(self) -> Iterator[list[Candle]]:
        length = max(len(rows) for rows in self.tables.values())
        for i in range(length):
            if self._closed:
                return
            batch = [
                Candle(symbol, self.ts(i), *row, 1.0)
                for symbol, rows in self.tables.items()
                if i < len(rows) and (row := rows[i]) is not None
            ]
            if batch:
                yield batch

    async def batches(self) -> AsyncIterator[list[Candle]]:
        for batch in self.iter_batches():
            if self._closed:
                return
            yield batch
            hook = self.hooks.get((batch[0].ts - self.start) // MIN)
            if hook is not None:
                assert self.engine is not None
                await hook(self.engine)


def with_warmup(rows: Sequence[Row | None]) -> list[Row | None]:
    """``rows`` after the flat warm-up; row 0 of ``rows`` is candle index ``WARMUP``."""
    return [FLAT] * WARMUP + list(rows)


def settings(**sections: dict[str, Any]) -> Settings:
    """Test settings: only the scripted agent, exact fees and slippage, auto policy."""
    base: dict[str, dict[str, Any]] = {
        "agents": {"enabled": (), "user": (AGENT_PATH,), "min_confidence": 0.0},
        "approval": {"policy": "auto", "auto_confidence": 0.7, "ttl_seconds": 3600.0},
        "broker": {"fee_rate": Decimal("0.001"), "slippage_bps": Decimal("10")},
        "feed": {"symbols": ("BTC/USDT",), "timeframe": "1m"},
    }
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values}
    return Settings(**base)


@asynccontextmanager
async def crafted_engine(
    settings_: Settings,
    feed: CraftedFeed,
    votes: Mapping[tuple[str, int], tuple[Side, float]],
    *,
    path: str = ":memory:",
    clock: FakeClock | None = None,
) -> AsyncIterator[Engine]:
    """An engine on ``feed`` and a store at ``path``, not started; stopped and closed after."""
    ScriptedAgent.script = dict(votes)
    store = await Store.open(path)
    engine: Engine | None = None
    try:
        engine = Engine(settings_, store, feed, clock=clock or FakeClock())
        feed.engine = engine
        yield engine
    finally:
        if engine is not None:
            await engine.stop()  # a no-op once stopped
        await store.close()


def store_of(engine: Engine) -> Store:
    assert isinstance(engine.store, Store)
    return engine.store


async def play(engine: Engine) -> Engine:
    """Start the engine, let the feed run out and stop gracefully (the store stays open)."""
    await engine.start()
    await engine.wait()
    await engine.stop()
    return engine


def check_store(conn: sqlite3.Connection) -> None:
    """Every invariant of ``cma db check`` holds."""
    failed = [r for r in run_checks(conn) if not r.ok]
    assert not failed, failed


async def assert_checks_pass(where: Engine | Store) -> None:
    store = await _synced(where)
    await store.run(check_store)


async def _synced(where: Engine | Store) -> Store:
    """The store, once an engine's Steps so far are in it (its commits are pipelined)."""
    if isinstance(where, Engine):
        await where.synced()
        return store_of(where)
    return where


async def query(where: Engine | Store, sql: str, *params: object) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` on the store's own connection."""
    store = await _synced(where)

    def _q(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
        return list(conn.execute(sql, params).fetchall())

    return await store.run(_q)
