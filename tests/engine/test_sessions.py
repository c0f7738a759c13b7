"""The sessions table: each run of the engine on a store is one row, stamped with wall time.

A session's ``started_at`` and ``ended_at`` are wall-clock epoch milliseconds
(what the console's session clock counts), not market time: a fresh store has
no market time before its first candle, and a replay's market time is years back.
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from pathlib import Path

from crafted_market import FLAT, CraftedFeed, settings

from engine.runtime import Engine
from persistence.store import Store


class StepClock:
    """A wall clock the test reads: each call returns the next planned time."""

    def __init__(self, *times: float) -> None:
        self.times = list(times)

    def __call__(self) -> float:
        return self.times.pop(0) if len(self.times) > 1 else self.times[0]


async def run_session(db: Path, wall_clock: StepClock | None = None) -> int | None:
    store = await Store.open(db)
    try:
        feed = CraftedFeed({"BTC/USDT": [FLAT] * 5})
        if wall_clock is None:
            engine = Engine(settings(), store, feed)
        else:
            engine = Engine(settings(), store, feed, wall_clock=wall_clock)
        assert engine.session_id is None
        await engine.start()
        await engine.wait()
        await engine.stop()
        return engine.session_id
    finally:
        await store.close()


def sessions(db: Path) -> list[tuple[int, int | None]]:
    with closing(sqlite3.connect(db)) as conn:
        return conn.execute("SELECT started_at, ended_at FROM sessions ORDER BY id").fetchall()


async def test_the_first_session_of_a_fresh_store_starts_at_the_wall_clock(
    tmp_path: Path,
) -> None:
    db = tmp_path / "cma.db"
    before = time.time()
    await run_session(db)
    after = time.time()
    [(started, ended)] = sessions(db)
    # The bug stored market time, which a fresh store does not have yet: 0.
    assert before * 1000 - 1 <= started <= after * 1000 + 1
    assert ended is not None and started <= ended <= after * 1000 + 1


async def test_each_session_is_stamped_with_its_own_wall_clock_start_and_end(
    tmp_path: Path,
) -> None:
    db = tmp_path / "cma.db"
    await run_session(db, StepClock(1_800_000_000.0, 1_800_000_042.5))
    await run_session(db, StepClock(1_800_003_600.0, 1_800_003_601.25))
    assert sessions(db) == [
        (1_800_000_000_000, 1_800_000_042_500),
        (1_800_003_600_000, 1_800_003_601_250),
    ]


async def test_the_engine_knows_the_id_of_the_session_it_began(tmp_path: Path) -> None:
    db = tmp_path / "cma.db"
    first = await run_session(db)
    second = await run_session(db)
    with closing(sqlite3.connect(db)) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM sessions ORDER BY id")]
    assert [first, second] == ids and first != second
