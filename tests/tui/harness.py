"""Harness for the console tests: real engines on real SQLite files, driven deterministically.

``SteppedFeed`` is the demo market handed out one batch at a time by the test,
so a test can press a key between two candles. Apps get a fixed wall clock, a
fixed session start, no signal handlers and a private ui-state file.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from engine.config import Settings
from engine.feeds.base import SyncFeed
from engine.feeds.sim import SimFeed
from engine.models import Candle
from tui.app import CmaApp

#: The wall clock the snapshots show (the session clock reads 01:02:03).
WALL_CLOCK = 1_767_229_323.0
SESSION_STARTED = WALL_CLOCK - 3723.0


class SteppedFeed(SyncFeed):
    """The demo market, released batch by batch with :meth:`advance`."""

    name = "sim"

    def __init__(self, seed: int = 7, start_ts: int | None = None) -> None:
        self.sim = SimFeed(seed=seed, start_ts=start_ts)
        super().__init__(self.sim.symbols, self.sim.timeframe)
        self._permits = 0
        self._go: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None
        self.served = 0

    def iter_batches(self) -> Iterator[list[Candle]]:
        return self.sim.iter_batches()

    def _events(self) -> tuple[asyncio.Event, asyncio.Event]:
        if self._go is None or self._idle is None:
            self._go, self._idle = asyncio.Event(), asyncio.Event()
        return self._go, self._idle

    async def batches(self) -> AsyncIterator[list[Candle]]:
        go, idle = self._events()
        for batch in self.sim.iter_batches():
            while self._permits == 0 and not self._closed:
                # Parked: the engine has finished with every batch served so far.
                idle.set()
                go.clear()
                await go.wait()
            idle.clear()
            if self._closed:
                return
            self._permits -= 1
            self.served += 1
            yield batch

    def close(self) -> None:
        super().close()
        self._events()[0].set()

    async def advance(self, n: int) -> None:
        """Release ``n`` batches and return once the engine has processed all of them."""
        go, idle = self._events()
        target = self.served + n
        self._permits += n
        idle.clear()
        go.set()
        async with asyncio.timeout(30):
            while self.served < target or not idle.is_set():
                await idle.wait()


def make_settings(db: Path, **sections: dict[str, Any]) -> Settings:
    """Settings for a test: the store at ``db``, long-lived proposals, and ``sections``."""
    data: dict[str, dict[str, Any]] = {
        "store": {"path": db},
        "approval": {"policy": "manual", "ttl_seconds": 6 * 3600},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return Settings.model_validate(data)


def make_app(tmp_path: Path, feed: SyncFeed, settings: Settings, **hooks: Any) -> CmaApp:
    """A console with the test hooks: fixed clocks, no signal handlers, private state."""
    options: dict[str, Any] = {
        "wall_clock": lambda: WALL_CLOCK,
        "session_started": SESSION_STARTED,
        "engine_clock": lambda: 0.0,
        "state_path": tmp_path / "ui-state.json",
        "signal_handlers": False,
        "cursor_blink": False,
    }
    options.update(hooks)
    return CmaApp(settings, feed=feed, **options)


def query(db: Path, sql: str, *args: object) -> list[tuple[Any, ...]]:
    """Read the store the way ``cma db`` does: a separate connection to the file."""
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()
